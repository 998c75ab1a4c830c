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
//! The KMS's own logic is applied locally only while the KMS runs known code: the code identity
//! (see [`code_identity`]) it ran when this source first built its view (the operator pointed
//! it at a KMS it trusts; the identity is logged), or one listed in `kms_code_identities`. The
//! KMS is re-read whenever it emits an event, which its `Upgraded` is; after an upgrade to any
//! other code every decision is an `eth_call` (`isAppAllowed` and `isKmsAllowed`), lookups are
//! refused, and [`ViewStatus::kms_code`] says so. An app judged unknown because it ran an
//! implementation the KMS had not named yet is judged again, by a rebuild, once the KMS names it.
//!
//! `from_block` must not be later than the KMS's deployment: events before it are not seen.
//! Staleness is measured with the monotonic clock: it is the follower's scheduling, not a
//! verification input.

mod events;
mod identity;
mod rpc;
mod sync;
mod timelock;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use alloy::sol_types::SolCall;
use tokio::sync::broadcast;

pub use self::identity::code_identity;
use self::rpc::{is_websocket, CallOutcome, Heads, Rpc};
use self::sync::{apply, Base, EmptyBase, Syncer, Trust};
use super::abi::{AppBootInfo, IDstackKms};
use super::decision::{kms_is_app_allowed, kms_is_kms_allowed, AppVerdict};
use super::view::{self, AppCode, Bytes32, RegistryView};
use super::{
    decision_from_view, lookup_in, status_of, BoxFuture, Decision, Evaluation, KmsCodeStatus,
    Lookup, LookupAnswer, Registry, RegistryChange, RegistryError, Snapshot, TimelockChanges,
    ViewStatus, CHANGE_CHANNEL_CAPACITY,
};
use crate::boot_info::BootInfo;
use crate::governance::explain::Removals;

/// How the chain source reaches and follows the KMS contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainConfig {
    /// The JSON-RPC endpoint of an Ethereum node: http(s), or ws(s), which also pushes new heads.
    pub rpc_url: String,
    /// A WebSocket endpoint (ws:// or wss://) to follow `eth_subscribe("newHeads")` on, beside
    /// an http(s) `rpc_url`: each new head is applied at once instead of at the next poll.
    /// Polling goes on meanwhile, so a dropped socket only costs latency.
    pub ws_url: Option<String>,
    /// The DstackKms (proxy) address.
    pub kms_contract: view::Address,
    /// Blocks behind head that the view stays (0: follow the head itself).
    pub confirmations: u64,
    /// When set, the view follows the node's `safe` or `finalized` block instead of
    /// `head − confirmations`.
    pub finality: Option<Finality>,
    /// First block to read events from; at or before the KMS's deployment.
    pub from_block: u64,
    /// After this long without confirming the view is current, answers are unavailable.
    pub max_staleness: Duration,
    /// How often the head is polled for new blocks.
    pub poll_interval: Duration,
    /// Blocks in the first `eth_getLogs` page of a stream; pages then halve when the provider
    /// refuses them as too large and double after quiet ones.
    pub log_range: u64,
    /// [Code identities](code_identity) of app implementations trusted to be DstackApp (beside
    /// the KMS's own `appImplementation`s).
    pub app_code_hashes: Vec<Bytes32>,
    /// [Code identities](code_identity) of app proxies trusted to be plain EIP-1967 proxies
    /// (beside the code of apps the KMS deployed with `deployAndRegisterApp`).
    pub proxy_code_hashes: Vec<Bytes32>,
    /// [Code identities](code_identity) of KMS implementations trusted to be DstackKms, beside
    /// the one the KMS runs when the view is first built.
    pub kms_code_identities: Vec<Bytes32>,
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
            ws_url: None,
            kms_contract,
            confirmations: 6,
            finality: None,
            from_block: 0,
            max_staleness: Duration::from_secs(60),
            poll_interval: Duration::from_secs(2),
            log_range: 2000,
            app_code_hashes: Vec::new(),
            proxy_code_hashes: Vec::new(),
            kms_code_identities: Vec::new(),
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
        if self.ws_url.as_deref().is_some_and(|url| !is_websocket(url)) {
            return invalid("ws_url must be a ws:// or wss:// URL");
        }
        Ok(())
    }
}

/// A block tag the view can follow instead of a depth behind head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finality {
    /// The node's `safe` block.
    Safe,
    /// The node's `finalized` block.
    Finalized,
}

impl Finality {
    /// The tag's JSON-RPC name.
    pub fn as_str(self) -> &'static str {
        match self {
            Finality::Safe => "safe",
            Finality::Finalized => "finalized",
        }
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
    /// The code identity the KMS runs at `block` (`None`: no code).
    kms_code: Option<B256>,
    /// Whether that code is trusted to be DstackKms; if not, every decision asks the contract.
    kms_code_trusted: bool,
    block: u64,
    block_hash: B256,
    confirmed_at: Instant,
}

impl ChainView {
    fn kms_code_status(&self) -> KmsCodeStatus {
        KmsCodeStatus {
            identity: self.kms_code.map(|identity| identity.0),
            trusted: self.kms_code_trusted,
        }
    }
}

/// Which contract function a fallback `eth_call` asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Question {
    IsAppAllowed,
    IsKmsAllowed,
}

enum Served {
    Ready(Box<ChainView>),
    Unavailable(String),
}

/// Fallback decisions, per (block, block hash, question, boot info): never served across blocks.
type FallbackCache =
    moka::sync::Cache<(u64, B256, Question, BootInfo), Result<Decision, RegistryError>>;
const FALLBACK_CACHE_ENTRIES: u64 = 10_000;

struct Inner {
    config: ChainConfig,
    rpc: Rpc,
    /// What the node reported at connect (`eth_chainId`).
    chain_id: u64,
    /// The hash of the node's block 0, at connect or at the last chain change.
    genesis: Mutex<B256>,
    served: RwLock<Served>,
    /// Serializes syncs; the trust learned while building the served view.
    trust: tokio::sync::Mutex<Trust>,
    changes: broadcast::Sender<RegistryChange>,
    fallback: FallbackCache,
    progress: Option<ProgressFn>,
    last_error: Mutex<Option<RegistryError>>,
    /// The trusted KMS code identities: the configured ones and the one of the first build.
    trusted_kms_codes: OnceLock<HashSet<B256>>,
}

impl Inner {
    /// Whether the KMS code `identity` is trusted; the first call (the first build) also trusts
    /// the identity it is given.
    fn judge_kms_code(&self, identity: Option<B256>) -> bool {
        let trusted = self.trusted_kms_codes.get_or_init(|| {
            let mut trusted: HashSet<B256> = self
                .config
                .kms_code_identities
                .iter()
                .map(|identity| B256::from(*identity))
                .collect();
            if let Some(identity) = identity {
                tracing::info!(
                    kms = %Address::from(self.config.kms_contract),
                    code_identity = %identity,
                    "trusting the KMS's current code for local decisions"
                );
                trusted.insert(identity);
            }
            trusted
        });
        let known = identity.is_some_and(|identity| trusted.contains(&identity));
        if !known {
            tracing::warn!(
                kms = %Address::from(self.config.kms_contract),
                code_identity = ?identity,
                "the KMS runs unknown code: every decision is asked of the contract (eth_call)"
            );
        }
        known
    }

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

/// The next pushed head, or never without a subscription; `false` once the socket is gone.
async fn next_head(heads: &mut Option<Heads>) -> bool {
    match heads {
        Some(heads) => heads.next().await,
        None => std::future::pending().await,
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
        let rpc = Rpc::connect(&config.rpc_url, config.request_timeout).await?;
        let chain_id = rpc.chain_id().await?;
        let genesis = rpc.block_hash(0).await?.unwrap_or_default();
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
                genesis: Mutex::new(genesis),
                served: RwLock::new(Served::Unavailable("not built yet".to_owned())),
                changes: broadcast::channel(CHANGE_CHANNEL_CAPACITY).0,
                fallback: moka::sync::Cache::new(FALLBACK_CACHE_ENTRIES),
                progress,
                last_error: Mutex::new(None),
                trusted_kms_codes: OnceLock::new(),
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

    /// Follows the chain in the background on the current tokio runtime: every
    /// `poll_interval`, and at each head a WebSocket endpoint (`ws_url`, or a ws(s) `rpc_url`)
    /// pushes. A dropped socket falls back to the polls alone and is subscribed again at the
    /// next one.
    pub fn spawn_follower(&self) -> Follower {
        let registry = self.clone();
        let task = tokio::spawn(async move {
            let config = &registry.inner.config;
            let heads_url = config
                .ws_url
                .clone()
                .or_else(|| is_websocket(&config.rpc_url).then(|| config.rpc_url.clone()));
            let mut heads: Option<Heads> = None;
            let mut ticker = tokio::time::interval(config.poll_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                if let (None, Some(url)) = (&heads, &heads_url) {
                    // Bounded by the poll interval too: a hung endpoint must not delay polls.
                    let timeout = config.request_timeout.min(config.poll_interval);
                    heads = match Heads::subscribe(url, timeout).await {
                        Ok(subscribed) => Some(subscribed),
                        Err(error) => {
                            tracing::warn!(%error, "no newHeads subscription; polling");
                            None
                        }
                    };
                }
                tokio::select! {
                    _ = ticker.tick() => {}
                    alive = next_head(&mut heads) => {
                        if !alive {
                            tracing::warn!("the newHeads subscription dropped; polling");
                            heads = None;
                            // Re-subscribe at the next tick, not in a tight loop.
                            ticker.tick().await;
                        }
                    }
                }
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
        let (head, target) = self.head_and_target().await?;
        if target < block {
            if let Some(replaced) = self.replaced_genesis().await? {
                self.set_unavailable(format!("the chain changed under the view: {replaced}"));
                return self.rebuild(&mut trust).await;
            }
            // A lagging node cannot confirm a view it is behind, and its missing blocks are no
            // reorg: rebuilding from it would roll the view back. The view serves until
            // max_staleness, then reports this as its reason.
            return Err(RegistryError::ChainChanged(format!(
                "the node's head {head} (followed block {target}) is below the view's block \
                 {block}: another chain, or a node behind"
            )));
        }
        if inner.rpc.block_hash(block).await? != Some(block_hash) {
            let reason = match self.replaced_genesis().await? {
                Some(replaced) => format!("the chain changed under the view: {replaced}"),
                None => format!("block {block} was reorganized away; rebuilding"),
            };
            self.set_unavailable(reason);
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
        if delta.names_app_implementation()
            && self
                .read_fresh(|chain_view| chain_view.view.has_unknown_apps())
                .unwrap_or(true)
        {
            // Apps judged unknown for running this implementation before it was named must be
            // judged again with it trusted; a build judges every app with the whole history.
            return self.rebuild(&mut trust).await;
        }
        let kms_code = delta
            .kms_code()
            .map(|identity| (identity, inner.judge_kms_code(identity)));
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
            if let Some((identity, trusted)) = kms_code {
                chain_view.kms_code = identity;
                chain_view.kms_code_trusted = trusted;
            }
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

    /// The node's head, and the block the view is to hold at: `head − confirmations`, or the
    /// node's safe or finalized block.
    async fn head_and_target(&self) -> Result<(u64, u64), RegistryError> {
        let inner = &self.inner;
        let head = inner.rpc.block_number().await?;
        let target = match inner.config.finality {
            None => head.saturating_sub(inner.config.confirmations),
            Some(finality) => inner.rpc.tagged_block_number(finality).await?.min(head),
        };
        Ok((head, target))
    }

    /// When the node's genesis block is not the one the view was built on: says which, and
    /// takes the new one as the chain followed from now on (the rebuild reads it).
    async fn replaced_genesis(&self) -> Result<Option<String>, RegistryError> {
        let now = self.inner.rpc.block_hash(0).await?.unwrap_or_default();
        let mut genesis = self.inner.genesis.lock().map_err(|_| poisoned())?;
        if *genesis == now {
            return Ok(None);
        }
        let replaced = format!("genesis block {now}, was {}; rebuilding", *genesis);
        tracing::warn!(%replaced, "the node serves another chain");
        *genesis = now;
        Ok(Some(replaced))
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

    /// Builds the view from scratch at the followed block (`head − confirmations`, or the safe or finalized block) and serves it.
    async fn rebuild(&self, trust: &mut Trust) -> Result<PollOutcome, RegistryError> {
        let inner = &self.inner;
        let (_, target) = self.head_and_target().await?;
        let target_hash = self.hash_of(target).await?;
        let mut fresh_trust = Trust::new(&inner.config);
        fresh_trust.keep_named_implementations(trust);
        let mut view = RegistryView::new();
        let mut removals = Removals::new();
        let mut timelocks = timelock::Timelocks::new(&inner.config.timelocks);
        let mut kms_code = None;
        if target >= inner.config.from_block {
            let kms = Address::from(inner.config.kms_contract);
            if inner.rpc.code_identity(kms, target_hash).await?.is_none() {
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
            kms_code = delta.kms_code().flatten();
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
        let kms_code_trusted = inner.judge_kms_code(kms_code);
        *trust = fresh_trust;
        *inner.served.write().map_err(|_| poisoned())? = Served::Ready(Box::new(ChainView {
            view,
            removals,
            timelocks,
            kms_code,
            kms_code_trusted,
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
                    let last = self
                        .last_error()
                        .map(|error| format!("; last poll: {error}"))
                        .unwrap_or_default();
                    return Err(RegistryError::Unavailable(format!(
                        "view at block {} not confirmed for {} ms (max_staleness {} ms){last}",
                        chain_view.block,
                        age.as_millis(),
                        self.inner.config.max_staleness.as_millis()
                    )));
                }
                Ok(f(chain_view))
            }
        }
    }

    /// `eth_call DstackKms.isAppAllowed` (or `isKmsAllowed`) at the view's block, cached for
    /// that block.
    async fn ask_contract(
        &self,
        question: Question,
        boot: &BootInfo,
        block: u64,
        block_hash: B256,
        gateway_app_id: String,
    ) -> Result<Decision, RegistryError> {
        let key = (block, block_hash, question, boot.clone());
        if let Some(cached) = self.inner.fallback.get(&key) {
            return cached;
        }
        let boot_info = AppBootInfo::from(boot);
        let calldata = match question {
            Question::IsAppAllowed => IDstackKms::isAppAllowedCall {
                bootInfo: boot_info,
            }
            .abi_encode(),
            Question::IsKmsAllowed => IDstackKms::isKmsAllowedCall {
                bootInfo: boot_info,
            }
            .abi_encode(),
        };
        let kms = Address::from(self.inner.config.kms_contract);
        let outcome = match self.inner.rpc.call(kms, calldata, block_hash).await {
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
                let returned = match question {
                    Question::IsAppAllowed => {
                        IDstackKms::isAppAllowedCall::abi_decode_returns(&bytes)
                            .map(|ret| (ret.isAllowed, ret.reason))
                    }
                    Question::IsKmsAllowed => {
                        IDstackKms::isKmsAllowedCall::abi_decode_returns(&bytes)
                            .map(|ret| (ret.isAllowed, ret.reason))
                    }
                };
                returned
                    .map(|(allowed, reason)| Decision {
                        allowed,
                        reason,
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
                    chain_view
                        .kms_code_trusted
                        .then(|| kms_is_app_allowed(&chain_view.view, boot)),
                    chain_view.block,
                    chain_view.block_hash,
                    chain_view.view.gateway_app_id().to_owned(),
                )
            })?;
            match verdict {
                Some(AppVerdict::Decided(verdict)) => Ok(Decision {
                    allowed: verdict.allowed,
                    reason: verdict.reason.to_owned(),
                    block,
                    gateway_app_id,
                    evaluated_by: Evaluation::View,
                }),
                Some(AppVerdict::AskContract) | None => {
                    self.ask_contract(
                        Question::IsAppAllowed,
                        boot,
                        block,
                        block_hash,
                        gateway_app_id,
                    )
                    .await
                }
            }
        })
    }

    fn decide_kms<'a>(
        &'a self,
        boot: &'a BootInfo,
    ) -> BoxFuture<'a, Result<Decision, RegistryError>> {
        Box::pin(async move {
            let local = self.read_fresh(|chain_view| {
                if chain_view.kms_code_trusted {
                    Ok(decision_from_view(
                        kms_is_kms_allowed(&chain_view.view, boot),
                        chain_view.block,
                        &chain_view.view,
                    ))
                } else {
                    Err((
                        chain_view.block,
                        chain_view.block_hash,
                        chain_view.view.gateway_app_id().to_owned(),
                    ))
                }
            })?;
            match local {
                Ok(decision) => Ok(decision),
                Err((block, block_hash, gateway_app_id)) => {
                    self.ask_contract(
                        Question::IsKmsAllowed,
                        boot,
                        block,
                        block_hash,
                        gateway_app_id,
                    )
                    .await
                }
            }
        })
    }

    fn lookup(&self, query: &Lookup) -> Result<LookupAnswer, RegistryError> {
        self.read_fresh(|chain_view| {
            if !chain_view.kms_code_trusted {
                return Err(RegistryError::UnknownKmsCode(
                    chain_view
                        .kms_code
                        .map_or_else(|| "no code".to_owned(), |identity| identity.to_string()),
                ));
            }
            lookup_in(&chain_view.view, query, chain_view.block)
        })?
    }

    fn status(&self) -> Result<ViewStatus, RegistryError> {
        self.read_fresh(|chain_view| ViewStatus {
            kms_code: Some(chain_view.kms_code_status()),
            ..status_of(
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
                .code_identity(Address::from(*address), block_hash)
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
