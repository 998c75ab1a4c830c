//! The registry built from a DstackKms contract through JSON-RPC.
//!
//! [`ChainRegistry::connect`] builds the view from the KMS's and every registered app's events
//! between `from_block` and `head − confirmations` (`log_range` blocks per `eth_getLogs`, with
//! progress), reading what events do not fully convey (flags, code, EIP-1967 implementation) at
//! that block. [`ChainRegistry::spawn_follower`] then polls every `poll_interval`, applying each
//! new confirmed range in order; if the followed block's hash changes (a reorg) the view is
//! rebuilt, and answers are unavailable meanwhile. Answers are also unavailable once the view
//! has not been confirmed current for `max_staleness` (RPC down or failing): never allowed.
//!
//! An app is decided locally only if it runs known code: an EIP-1967 proxy whose runtime code is
//! the KMS's app proxy (learned from apps the KMS deployed itself, or listed in
//! `proxy_code_hashes`) and whose implementation is one the KMS has named as `appImplementation`
//! or whose code hash is in `app_code_hashes`, with every upgrade seen so far going to such an
//! implementation. Other apps (and apps without code) are asked with `eth_call
//! DstackKms.isAppAllowed` at the view's block, cached per (block, boot info).
//!
//! `from_block` must not be later than the KMS's deployment: events before it are not seen.
//! Staleness is measured with the monotonic clock: it is the follower's scheduling, not a
//! verification input.

mod events;
mod rpc;
mod sync;
mod timelock;

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use alloy::sol_types::SolCall;
use tokio::sync::broadcast;

use self::rpc::{CallOutcome, Rpc};
use self::sync::{apply, Base, EmptyBase, Syncer, Trust};
use super::abi::{AppBootInfo, IDstackKms};
use super::decision::{kms_is_app_allowed, kms_is_kms_allowed, AppVerdict};
use super::view::{self, AppCode, Bytes32, RegistryView};
use super::{
    decision_from_view, lookup_in, status_of, BoxFuture, Decision, Evaluation, Lookup,
    LookupAnswer, Registry, RegistryChange, RegistryError, Snapshot, TimelockChanges, ViewStatus,
    CHANGE_CHANNEL_CAPACITY,
};
use crate::boot_info::BootInfo;
use crate::governance::explain::Removals;

/// How the chain source reaches and follows the KMS contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainConfig {
    /// The JSON-RPC endpoint (http or https URL) of an Ethereum node.
    pub rpc_url: String,
    /// The DstackKms (proxy) address.
    pub kms_contract: view::Address,
    /// Blocks behind head that the view stays (0: follow the head itself).
    pub confirmations: u64,
    /// First block to read events from; at or before the KMS's deployment.
    pub from_block: u64,
    /// After this long without confirming the view is current, answers are unavailable.
    pub max_staleness: Duration,
    /// How often the head is polled for new blocks.
    pub poll_interval: Duration,
    /// Blocks per `eth_getLogs` request.
    pub log_range: u64,
    /// Code hashes of app implementations trusted to be DstackApp (beside the KMS's own
    /// `appImplementation`s).
    pub app_code_hashes: Vec<Bytes32>,
    /// Runtime code hashes of app proxies trusted to be plain EIP-1967 proxies (beside the code
    /// of apps the KMS deployed with `deployAndRegisterApp`).
    pub proxy_code_hashes: Vec<Bytes32>,
    /// Timeout of one JSON-RPC request.
    pub request_timeout: Duration,
    /// The chain the KMS is deployed on; when set, a node on another chain is refused
    /// (`invalid_config`) instead of being read.
    pub chain_id: Option<u64>,
    /// TimelockControllers to follow for pending changes, beside those found as `owner()` of
    /// the KMS or of an app.
    pub timelocks: Vec<view::Address>,
}

impl ChainConfig {
    /// Defaults: 6 confirmations, from block 0, 60 s staleness, 2 s polls, 2000-block log ranges,
    /// 10 s requests, any chain id.
    pub fn new(rpc_url: impl Into<String>, kms_contract: view::Address) -> Self {
        ChainConfig {
            rpc_url: rpc_url.into(),
            kms_contract,
            confirmations: 6,
            from_block: 0,
            max_staleness: Duration::from_secs(60),
            poll_interval: Duration::from_secs(2),
            log_range: 2000,
            app_code_hashes: Vec::new(),
            proxy_code_hashes: Vec::new(),
            request_timeout: Duration::from_secs(10),
            chain_id: None,
            timelocks: Vec::new(),
        }
    }

    fn validate(&self) -> Result<(), RegistryError> {
        let invalid = |what: &str| Err(RegistryError::InvalidConfig(what.to_owned()));
        if self.log_range == 0 {
            return invalid("log_range must be at least 1");
        }
        if self.poll_interval.is_zero() || self.request_timeout.is_zero() {
            return invalid("poll_interval and request_timeout must be positive");
        }
        if self.max_staleness < self.poll_interval {
            return invalid("max_staleness must be at least poll_interval");
        }
        if self.kms_contract == [0; 20] {
            return invalid("kms_contract must not be the zero address");
        }
        Ok(())
    }
}

/// A phase of building or extending the view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncStage {
    /// The KMS contract's logs (os images, KMS lists, app registrations).
    KmsEvents,
    /// The logs of every registered app (compose hashes, devices, flags).
    AppEvents,
    /// Older events of apps registered by hand in the new range.
    AppBackfill,
    /// Code, implementation and flags of touched apps.
    AppState,
    /// Logs of the followed timelocks.
    TimelockEvents,
}

/// Progress of one stage: `done` of `total` blocks (log stages) or apps (`AppState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncProgress {
    /// The stage running.
    pub stage: SyncStage,
    /// Blocks (log stages) or apps (`AppState`) done so far.
    pub done: u64,
    /// How many there are in this stage.
    pub total: u64,
    /// The block the view is being brought to.
    pub target_block: u64,
}

/// Receives [`SyncProgress`] while the view is built or extended (called from the sync task; keep
/// it cheap).
pub type ProgressFn = Arc<dyn Fn(SyncProgress) + Send + Sync>;

/// What one poll did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollOutcome {
    /// No new confirmed block; the view is confirmed current at `block`.
    Unchanged {
        /// The confirmed block.
        block: u64,
    },
    /// New confirmed blocks were applied.
    Advanced {
        /// The block the view held before.
        from: u64,
        /// The block it holds now.
        to: u64,
    },
    /// Built from scratch (first build, or after a reorg or an unavailable period).
    Rebuilt {
        /// The block the new view holds at.
        block: u64,
    },
}

/// The view as of one block.
struct ChainView {
    view: RegistryView,
    /// The block of each entry's latest removal event (direct or executed by a timelock).
    removals: Removals,
    timelocks: timelock::Timelocks,
    block: u64,
    block_hash: B256,
    confirmed_at: Instant,
}

enum Served {
    Ready(Box<ChainView>),
    Unavailable(String),
}

/// Fallback decisions, per (block, block hash, boot info): never served across blocks.
type FallbackCache = moka::sync::Cache<(u64, B256, BootInfo), Result<Decision, RegistryError>>;
const FALLBACK_CACHE_ENTRIES: u64 = 10_000;

struct Inner {
    config: ChainConfig,
    rpc: Rpc,
    /// What the node reported at connect (`eth_chainId`).
    chain_id: u64,
    served: RwLock<Served>,
    /// Serializes syncs; the trust learned while building the served view.
    trust: tokio::sync::Mutex<Trust>,
    changes: broadcast::Sender<RegistryChange>,
    fallback: FallbackCache,
    progress: Option<ProgressFn>,
    last_error: Mutex<Option<RegistryError>>,
}

impl Inner {
    /// Reads events and state for the view with this source's RPC, settings and progress.
    fn syncer(&self) -> Syncer<'_> {
        Syncer {
            rpc: &self.rpc,
            config: &self.config,
            progress: self.progress.as_ref(),
        }
    }
}

/// The chain source. Cheap to clone (one shared view).
#[derive(Clone)]
pub struct ChainRegistry {
    inner: Arc<Inner>,
}

/// The background follower; stops when dropped.
pub struct Follower {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The served view as the base of an incremental sync (only the syncer mutates it, and it holds
/// the trust lock, so reads between awaits are consistent).
struct ServedBase<'a>(&'a RwLock<Served>);

impl ServedBase<'_> {
    fn with_view<T>(&self, f: impl FnOnce(&RegistryView) -> T) -> Option<T> {
        match &*self.0.read().ok()? {
            Served::Ready(chain_view) => Some(f(&chain_view.view)),
            Served::Unavailable(_) => None,
        }
    }
}

impl Base for ServedBase<'_> {
    fn is_registered(&self, app: &Address) -> bool {
        self.with_view(|view| view.app(&app.0 .0).is_some())
            .unwrap_or(false)
    }

    fn code_of(&self, app: &Address) -> Option<AppCode> {
        self.with_view(|view| view.app(&app.0 .0).map(|a| a.policy().code))
            .flatten()
    }
}

fn poisoned() -> RegistryError {
    RegistryError::Unavailable("registry state lock poisoned".to_owned())
}

impl ChainRegistry {
    /// Connects and builds the view (at `head − confirmations`). Fails if the first build fails.
    pub async fn connect(
        config: ChainConfig,
        progress: Option<ProgressFn>,
    ) -> Result<Self, RegistryError> {
        config.validate()?;
        let rpc = Rpc::connect(&config.rpc_url, config.request_timeout)?;
        let chain_id = rpc.chain_id().await?;
        if let Some(expected) = config.chain_id {
            if chain_id != expected {
                return Err(RegistryError::InvalidConfig(format!(
                    "the node is on chain {chain_id}, not the configured chain {expected}"
                )));
            }
        }
        let registry = ChainRegistry {
            inner: Arc::new(Inner {
                trust: tokio::sync::Mutex::new(Trust::new(&config)),
                config,
                rpc,
                chain_id,
                served: RwLock::new(Served::Unavailable("not built yet".to_owned())),
                changes: broadcast::channel(CHANGE_CHANNEL_CAPACITY).0,
                fallback: moka::sync::Cache::new(FALLBACK_CACHE_ENTRIES),
                progress,
                last_error: Mutex::new(None),
            }),
        };
        registry.poll().await?;
        Ok(registry)
    }

    /// The configuration this source was started with.
    pub fn config(&self) -> &ChainConfig {
        &self.inner.config
    }

    /// The block of the served view, if any.
    pub fn block(&self) -> Option<u64> {
        match &*self.inner.served.read().ok()? {
            Served::Ready(chain_view) => Some(chain_view.block),
            Served::Unavailable(_) => None,
        }
    }

    /// The allowlist changes of the followed timelocks, in any state (waiting, ready, executed,
    /// cancelled), as of the view's block. Unavailable when the view is, or when a timelock's
    /// logs disagree with its state.
    pub fn timelock_changes(&self) -> Result<Vec<crate::governance::PendingChange>, RegistryError> {
        let kms = Address::from(self.inner.config.kms_contract);
        self.read_fresh(|chain_view| chain_view.timelocks.changes(&chain_view.view, kms))?
    }

    /// The changes still to happen (waiting or ready).
    pub fn pending(&self) -> Result<Vec<crate::governance::PendingChange>, RegistryError> {
        let mut changes = self.timelock_changes()?;
        changes.retain(|change| change.state.is_pending());
        Ok(changes)
    }

    /// The followed timelocks and their minimum delays (seconds).
    pub fn timelocks(&self) -> Result<Vec<(view::Address, u64)>, RegistryError> {
        self.read_fresh(|chain_view| chain_view.timelocks.followed())
    }

    /// The last poll's error, cleared by a successful poll.
    pub fn last_error(&self) -> Option<RegistryError> {
        self.inner.last_error.lock().ok()?.clone()
    }

    /// Follows the chain in the background on the current tokio runtime.
    pub fn spawn_follower(&self) -> Follower {
        let registry = self.clone();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(registry.inner.config.poll_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                // Failures are recorded in last_error; staleness turns answers unavailable.
                let _ = registry.poll().await;
            }
        });
        Follower { task }
    }

    /// One follow step: check the followed block is still canonical (else rebuild), then apply
    /// the newly confirmed blocks.
    pub async fn poll(&self) -> Result<PollOutcome, RegistryError> {
        let outcome = self.poll_inner().await;
        if let Ok(mut last) = self.inner.last_error.lock() {
            *last = outcome.as_ref().err().cloned();
        }
        outcome
    }

    async fn poll_inner(&self) -> Result<PollOutcome, RegistryError> {
        let inner = &self.inner;
        let mut trust = inner.trust.lock().await;
        let current = match &*inner.served.read().map_err(|_| poisoned())? {
            Served::Ready(chain_view) => Some((
                chain_view.block,
                chain_view.block_hash,
                chain_view.timelocks.clone(),
            )),
            Served::Unavailable(_) => None,
        };
        let Some((block, block_hash, timelocks)) = current else {
            return self.rebuild(&mut trust).await;
        };
        // What this poll confirms is the chain as of its head request: staleness counts from
        // then, not from when (possibly slow) answers arrived.
        let asked = Instant::now();
        let head = inner.rpc.block_number().await?;
        let target = head.saturating_sub(inner.config.confirmations);
        if target < block {
            // A lagging node cannot confirm a view it is behind, and its missing blocks are no
            // reorg: rebuilding from it would roll the view back.
            return Err(RegistryError::Rpc {
                call: "eth_blockNumber",
                message: format!(
                    "head {head} is behind the view's block {block} (confirmations {})",
                    inner.config.confirmations
                ),
            });
        }
        if inner.rpc.block_hash(block).await? != Some(block_hash) {
            self.set_unavailable(format!("block {block} was reorganized away; rebuilding"));
            return self.rebuild(&mut trust).await;
        }
        if target == block {
            self.with_ready(|chain_view| chain_view.confirmed_at = asked)?;
            return Ok(PollOutcome::Unchanged { block });
        }
        let target_hash = self.hash_of(target).await?;
        let start = (block + 1).max(inner.config.from_block);
        let delta = inner
            .syncer()
            .delta(
                &ServedBase(&inner.served),
                &mut trust,
                start,
                target,
                target_hash,
                false,
            )
            .await?;
        let mut owned: Vec<Address> = delta.touched_apps().collect();
        if delta.kms_changed() {
            owned.push(Address::from(inner.config.kms_contract));
        }
        let timelocks = timelocks
            .advanced(&inner.syncer(), &owned, start, target, target_hash)
            .await?;
        if inner.rpc.block_hash(target).await? != Some(target_hash) {
            return Err(RegistryError::Unavailable(format!(
                "block {target} changed while syncing"
            )));
        }
        let mut changes = Vec::new();
        self.with_ready(|chain_view| {
            apply(
                &mut chain_view.view,
                &mut chain_view.removals,
                delta,
                Some(&mut changes),
            );
            chain_view.timelocks = timelocks;
            chain_view.block = target;
            chain_view.block_hash = target_hash;
            chain_view.confirmed_at = asked;
        })?;
        for change in changes {
            let _ = inner.changes.send(change);
        }
        let _ = inner
            .changes
            .send(RegistryChange::Advanced { block: target });
        Ok(PollOutcome::Advanced {
            from: block,
            to: target,
        })
    }

    async fn hash_of(&self, block: u64) -> Result<B256, RegistryError> {
        self.inner
            .rpc
            .block_hash(block)
            .await?
            .ok_or_else(|| RegistryError::Rpc {
                call: "eth_getBlockByNumber",
                message: format!("block {block} not found"),
            })
    }

    /// Builds the view from scratch at `head − confirmations` and serves it.
    async fn rebuild(&self, trust: &mut Trust) -> Result<PollOutcome, RegistryError> {
        let inner = &self.inner;
        let head = inner.rpc.block_number().await?;
        let target = head.saturating_sub(inner.config.confirmations);
        let target_hash = self.hash_of(target).await?;
        let mut fresh_trust = Trust::new(&inner.config);
        let mut view = RegistryView::new();
        let mut removals = Removals::new();
        let mut timelocks = timelock::Timelocks::new(&inner.config.timelocks);
        if target >= inner.config.from_block {
            let kms = Address::from(inner.config.kms_contract);
            if inner.rpc.code_hash(kms, target_hash).await?.is_none() {
                return Err(RegistryError::InvalidConfig(format!(
                    "no contract at kms_contract {kms} as of block {target}"
                )));
            }
            let delta = inner
                .syncer()
                .delta(
                    &EmptyBase,
                    &mut fresh_trust,
                    inner.config.from_block,
                    target,
                    target_hash,
                    true,
                )
                .await?;
            apply(&mut view, &mut removals, delta, None);
            view.shrink_to_fit();
            let owned: Vec<Address> = std::iter::once(kms)
                .chain(view.app_ids().map(|app| Address::from(*app)))
                .collect();
            timelocks = timelocks
                .advanced(
                    &inner.syncer(),
                    &owned,
                    inner.config.from_block,
                    target,
                    target_hash,
                )
                .await?;
        }
        if inner.rpc.block_hash(target).await? != Some(target_hash) {
            return Err(RegistryError::Unavailable(format!(
                "block {target} changed while building"
            )));
        }
        *trust = fresh_trust;
        *inner.served.write().map_err(|_| poisoned())? = Served::Ready(Box::new(ChainView {
            view,
            removals,
            timelocks,
            block: target,
            block_hash: target_hash,
            confirmed_at: Instant::now(),
        }));
        let _ = inner
            .changes
            .send(RegistryChange::Rebuilt { block: target });
        Ok(PollOutcome::Rebuilt { block: target })
    }

    fn set_unavailable(&self, reason: String) {
        if let Ok(mut served) = self.inner.served.write() {
            *served = Served::Unavailable(reason.clone());
        }
        let _ = self
            .inner
            .changes
            .send(RegistryChange::Unavailable { reason });
    }

    fn with_ready<T>(&self, f: impl FnOnce(&mut ChainView) -> T) -> Result<T, RegistryError> {
        match &mut *self.inner.served.write().map_err(|_| poisoned())? {
            Served::Ready(chain_view) => Ok(f(chain_view)),
            Served::Unavailable(reason) => Err(RegistryError::Unavailable(reason.clone())),
        }
    }

    /// Runs `f` on the served view if it is fresh.
    fn read_fresh<T>(&self, f: impl FnOnce(&ChainView) -> T) -> Result<T, RegistryError> {
        match &*self.inner.served.read().map_err(|_| poisoned())? {
            Served::Unavailable(reason) => Err(RegistryError::Unavailable(reason.clone())),
            Served::Ready(chain_view) => {
                let age = chain_view.confirmed_at.elapsed();
                if age > self.inner.config.max_staleness {
                    return Err(RegistryError::Unavailable(format!(
                        "view at block {} not confirmed for {} ms (max_staleness {} ms)",
                        chain_view.block,
                        age.as_millis(),
                        self.inner.config.max_staleness.as_millis()
                    )));
                }
                Ok(f(chain_view))
            }
        }
    }

    /// `eth_call DstackKms.isAppAllowed` at the view's block, cached for that block.
    async fn ask_contract(
        &self,
        boot: &BootInfo,
        block: u64,
        block_hash: B256,
        gateway_app_id: String,
    ) -> Result<Decision, RegistryError> {
        let key = (block, block_hash, boot.clone());
        if let Some(cached) = self.inner.fallback.get(&key) {
            return cached;
        }
        let call = IDstackKms::isAppAllowedCall {
            bootInfo: AppBootInfo::from(boot),
        };
        let kms = Address::from(self.inner.config.kms_contract);
        let outcome = match self
            .inner
            .rpc
            .call(kms, call.abi_encode(), block_hash)
            .await
        {
            Ok(outcome) => outcome,
            // Not cached: the next attempt may succeed.
            Err(error) => {
                return Err(RegistryError::Unavailable(format!(
                    "asking the contract: {error}"
                )))
            }
        };
        let answer = match outcome {
            CallOutcome::Returned(bytes) => {
                IDstackKms::isAppAllowedCall::abi_decode_returns(&bytes)
                    .map(|ret| Decision {
                        allowed: ret.isAllowed,
                        reason: ret.reason,
                        block,
                        gateway_app_id,
                        evaluated_by: Evaluation::Contract,
                    })
                    .map_err(|e| {
                        RegistryError::ContractReverted(format!("undecodable return: {e}"))
                    })
            }
            CallOutcome::Reverted(message) => Err(RegistryError::ContractReverted(message)),
        };
        self.inner.fallback.insert(key, answer.clone());
        answer
    }
}

impl Registry for ChainRegistry {
    fn decide_app<'a>(
        &'a self,
        boot: &'a BootInfo,
    ) -> BoxFuture<'a, Result<Decision, RegistryError>> {
        Box::pin(async move {
            let (verdict, block, block_hash, gateway_app_id) = self.read_fresh(|chain_view| {
                (
                    kms_is_app_allowed(&chain_view.view, boot),
                    chain_view.block,
                    chain_view.block_hash,
                    chain_view.view.gateway_app_id().to_owned(),
                )
            })?;
            match verdict {
                AppVerdict::Decided(verdict) => Ok(Decision {
                    allowed: verdict.allowed,
                    reason: verdict.reason.to_owned(),
                    block,
                    gateway_app_id,
                    evaluated_by: Evaluation::View,
                }),
                AppVerdict::AskContract => {
                    self.ask_contract(boot, block, block_hash, gateway_app_id)
                        .await
                }
            }
        })
    }

    fn decide_kms(&self, boot: &BootInfo) -> Result<Decision, RegistryError> {
        self.read_fresh(|chain_view| {
            decision_from_view(
                kms_is_kms_allowed(&chain_view.view, boot),
                chain_view.block,
                &chain_view.view,
            )
        })
    }

    fn lookup(&self, query: &Lookup) -> Result<LookupAnswer, RegistryError> {
        self.read_fresh(|chain_view| lookup_in(&chain_view.view, query, chain_view.block))?
    }

    fn status(&self) -> Result<ViewStatus, RegistryError> {
        self.read_fresh(|chain_view| {
            status_of(
                &chain_view.view,
                chain_view.block,
                Some(self.inner.chain_id),
            )
        })
    }

    fn snapshot(&self) -> Result<Snapshot, RegistryError> {
        self.read_fresh(|chain_view| Snapshot::of(&chain_view.view, chain_view.block))
    }

    fn subscribe(&self) -> broadcast::Receiver<RegistryChange> {
        self.inner.changes.subscribe()
    }

    fn timelock_changes(&self) -> Result<Option<TimelockChanges>, RegistryError> {
        let kms = Address::from(self.inner.config.kms_contract);
        self.read_fresh(|chain_view| {
            let changes = chain_view.timelocks.changes(&chain_view.view, kms)?;
            Ok(Some(TimelockChanges {
                block: chain_view.block,
                timelocks: chain_view.timelocks.followed(),
                changes,
            }))
        })?
    }

    fn has_code<'a>(
        &'a self,
        address: &'a view::Address,
    ) -> BoxFuture<'a, Result<Option<bool>, RegistryError>> {
        Box::pin(async move {
            let block_hash = self.read_fresh(|chain_view| chain_view.block_hash)?;
            let code = self
                .inner
                .rpc
                .code_hash(Address::from(*address), block_hash)
                .await?;
            Ok(Some(code.is_some()))
        })
    }

    fn removals(&self) -> Result<Removals, RegistryError> {
        self.read_fresh(|chain_view| chain_view.removals.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn invalid_configurations_are_rejected_before_connecting() {
        let valid = ChainConfig::new("http://127.0.0.1:1", [1; 20]);
        assert_eq!(valid.validate(), Ok(()));
        let cases = [
            ChainConfig {
                log_range: 0,
                ..valid.clone()
            },
            ChainConfig {
                poll_interval: Duration::ZERO,
                ..valid.clone()
            },
            ChainConfig {
                request_timeout: Duration::ZERO,
                ..valid.clone()
            },
            ChainConfig {
                max_staleness: Duration::from_millis(1),
                ..valid.clone()
            },
            ChainConfig {
                kms_contract: [0; 20],
                ..valid.clone()
            },
            ChainConfig {
                rpc_url: "not a url".into(),
                ..valid.clone()
            },
        ];
        for config in cases {
            let error = ChainRegistry::connect(config.clone(), None)
                .await
                .err()
                .unwrap();
            assert_eq!(
                error.kind().as_str(),
                "invalid_config",
                "{config:?}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_node_fails_the_first_build() {
        let mut config = ChainConfig::new("http://127.0.0.1:1", [1; 20]);
        config.request_timeout = Duration::from_millis(200);
        let error = ChainRegistry::connect(config, None).await.err().unwrap();
        assert_eq!(error.kind().as_str(), "rpc");
    }
}
