//! Turns a block range of the chain into a `Delta` for the view: DstackKms logs, the logs of every
//! registered app (in a build, topic-filtered over many app addresses per request; when
//! following, one chain-wide topic filter kept only for registered addresses), a backfill for
//! apps registered by hand, and each touched app's code, implementation and flags read at the
//! range's last block (one JSON-RPC batch per hundred apps). Log pages adapt to the provider (see [`Syncer::logs`]).

use std::collections::{HashMap, HashSet};

use alloy::primitives::{Address, B256};
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::SolCall;
use tokio::task::JoinSet;

use super::events::{decode_app, decode_kms, AppEvent, KmsEvent, APP_TOPICS};
use super::rpc::{CallOutcome, LogsError, Rpc};
use super::{ChainConfig, ProgressFn, SyncProgress, SyncStage};
use crate::governance::explain::Removals;
use crate::registry::abi::{IDstackApp, IDstackKms, EIP1967_IMPLEMENTATION_SLOT};
use crate::registry::view::{AppCode, AppList, AppPolicy, KmsList, RegistryView};
use crate::registry::{Entry, RegistryChange, RegistryError};

/// A page with fewer logs than this doubles the next page's range.
const QUIET_PAGE_LOGS: usize = 1_000;
/// Retries of a failed page of logs before the sync fails.
const PAGE_RETRIES: u32 = 2;
/// Apps per log filter in a build (topic-filtered over many addresses per request).
const BUILD_ADDRESSES: usize = 100;

/// `50 ms · 2^(attempt − 1)`, less up to half of it at random, so that views restarted together
/// do not retry together.
fn backoff(attempt: u32) -> std::time::Duration {
    let base = 50u64 << attempt.saturating_sub(1).min(6);
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::from(elapsed.subsec_nanos()))
        % (base / 2 + 1);
    std::time::Duration::from_millis(base - jitter)
}

/// Apps whose state is read in one JSON-RPC batch (four reads each).
const APPS_PER_BATCH: usize = 100;
/// Implementations whose code is read concurrently.
const IMPLEMENTATION_READ_CONCURRENCY: usize = 16;
/// Addresses per log filter when backfilling apps registered by hand.
const BACKFILL_ADDRESSES: usize = 64;

/// What the view already knows (the view being extended, or nothing for a build).
pub(crate) trait Base: Sync {
    fn is_registered(&self, app: &Address) -> bool;
    fn code_of(&self, app: &Address) -> Option<AppCode>;
}

/// A view being built from scratch.
pub(crate) struct EmptyBase;

impl Base for EmptyBase {
    fn is_registered(&self, _: &Address) -> bool {
        false
    }
    fn code_of(&self, _: &Address) -> Option<AppCode> {
        None
    }
}

/// Which code is trusted to be DstackApp. Learned facts travel with the view they were learned
/// for and are dropped on rebuild.
#[derive(Clone, Debug, Default)]
pub(crate) struct Trust {
    /// Code identity of the app proxy: configured, or learned from apps the KMS deployed itself.
    proxy_code_hashes: HashSet<B256>,
    /// Configured implementation code identities.
    app_code_hashes: HashSet<B256>,
    /// Every implementation the KMS has named as `appImplementation`.
    app_implementations: HashSet<Address>,
    /// Code identities of implementations looked at so far (`None`: no code).
    implementation_code: HashMap<Address, Option<B256>>,
}

impl Trust {
    pub(crate) fn new(config: &ChainConfig) -> Self {
        Trust {
            proxy_code_hashes: config
                .proxy_code_hashes
                .iter()
                .map(|h| B256::from(*h))
                .collect(),
            app_code_hashes: config
                .app_code_hashes
                .iter()
                .map(|h| B256::from(*h))
                .collect(),
            ..Trust::default()
        }
    }

    /// Keeps the implementations `previous` saw the KMS name. A build reads `appImplementation`
    /// at its last block only and the KMS's initializer names its first one without an event, so
    /// a rebuild after `setAppImplementation` would otherwise forget the implementation that
    /// every older app was deployed with.
    pub(crate) fn keep_named_implementations(&mut self, previous: &Trust) {
        self.app_implementations
            .extend(previous.app_implementations.iter().copied());
    }

    fn add_app_implementation(&mut self, implementation: Address) {
        if implementation != Address::ZERO {
            self.app_implementations.insert(implementation);
        }
    }

    fn is_trusted_implementation(&self, implementation: &Address) -> bool {
        *implementation != Address::ZERO
            && (self.app_implementations.contains(implementation)
                || self
                    .implementation_code
                    .get(implementation)
                    .and_then(|hash| hash.as_ref())
                    .is_some_and(|hash| self.app_code_hashes.contains(hash)))
    }
}

/// One app's new state and its list changes, in chain order.
#[derive(Debug)]
pub(crate) struct AppUpdate {
    app_id: Address,
    policy: AppPolicy,
    values: Vec<(AppList, B256, bool)>,
}

/// Everything a block range changes.
#[derive(Debug, Default)]
pub(crate) struct Delta {
    kms_events: Vec<KmsEvent>,
    gateway_app_id: Option<String>,
    app_implementation: Option<Address>,
    /// The code identity the KMS runs at the range's end (its EIP-1967 implementation's, or its
    /// own when it is no proxy), re-read whenever the KMS emitted anything (an upgrade emits
    /// `Upgraded`); `Some(None)`: no code.
    kms_code: Option<Option<B256>>,
    apps: Vec<AppUpdate>,
    /// Every removal event of the range (the KMS's and registered apps'), with its block.
    removals: Vec<(Entry, u64)>,
}

impl Delta {
    /// Whether the KMS emitted anything in the range (its owner may have changed).
    pub(crate) fn kms_changed(&self) -> bool {
        !self.kms_events.is_empty()
    }

    /// The KMS's code identity, when the range re-read it.
    pub(crate) fn kms_code(&self) -> Option<Option<B256>> {
        self.kms_code
    }

    /// Whether the KMS named an `appImplementation` in the range (apps that already run it may
    /// have been judged unknown before it was named).
    pub(crate) fn names_app_implementation(&self) -> bool {
        self.kms_events
            .iter()
            .any(|event| matches!(event, KmsEvent::AppImplementationSet(_)))
    }

    /// Apps registered or changed in the range.
    pub(crate) fn touched_apps(&self) -> impl Iterator<Item = Address> + '_ {
        self.apps.iter().map(|update| update.app_id)
    }
}

/// What was read about one app at the range's last block.
struct AppRead {
    code_hash: Option<B256>,
    implementation: Address,
    allow_any_device: Option<bool>,
    require_tcb_up_to_date: Option<bool>,
}

pub(crate) struct Syncer<'a> {
    pub(crate) rpc: &'a Rpc,
    pub(crate) config: &'a ChainConfig,
    pub(crate) progress: Option<&'a ProgressFn>,
}

impl Syncer<'_> {
    fn report(&self, stage: SyncStage, done: u64, total: u64, target_block: u64) {
        if let Some(progress) = self.progress {
            progress(SyncProgress {
                stage,
                done,
                total,
                target_block,
            });
        }
    }

    /// Logs matching `filter` in `[from, to]`, in pages that adapt to the provider: the first
    /// is `log_range` blocks; a page the provider refuses as too large is halved and asked
    /// again; a quiet page (under [`QUIET_PAGE_LOGS`] logs) doubles the next one, so sparse
    /// history costs few requests. A failed page is retried [`PAGE_RETRIES`] times with
    /// jittered backoff before the sync fails.
    pub(crate) async fn logs(
        &self,
        filter: Filter,
        from: u64,
        to: u64,
        stage: SyncStage,
    ) -> Result<Vec<Log>, RegistryError> {
        let mut logs = Vec::new();
        if from > to {
            return Ok(logs);
        }
        let total = to - from + 1;
        let mut range = self.config.log_range.max(1);
        let mut start = from;
        let mut retries = 0;
        loop {
            let end = start.saturating_add(range - 1).min(to);
            let page = filter.clone().from_block(start).to_block(end);
            match self.rpc.logs(&page).await {
                Ok(found) => {
                    retries = 0;
                    if found.len() < QUIET_PAGE_LOGS {
                        range = range.saturating_mul(2);
                    }
                    logs.extend(found);
                    self.report(stage, end - from + 1, total, to);
                    if end == to {
                        return Ok(logs);
                    }
                    start = end + 1;
                }
                Err(LogsError::PageTooLarge(message)) => {
                    if start == end {
                        return Err(RegistryError::Rpc {
                            call: "eth_getLogs",
                            message: format!("block {start} alone is refused: {message}"),
                        });
                    }
                    range = (end - start).div_ceil(2);
                }
                Err(LogsError::Failed(error)) => {
                    if retries == PAGE_RETRIES {
                        return Err(error);
                    }
                    retries += 1;
                    tokio::time::sleep(backoff(retries)).await;
                }
            }
        }
    }

    /// The changes of blocks `[start, end]` on top of `base`. `full` re-reads the KMS scalars
    /// even without KMS logs (a build).
    pub(crate) async fn delta(
        &self,
        base: &dyn Base,
        trust: &mut Trust,
        start: u64,
        end: u64,
        end_hash: B256,
        full: bool,
    ) -> Result<Delta, RegistryError> {
        let kms = Address::from(self.config.kms_contract);
        let kms_logs = self
            .logs(Filter::new().address(kms), start, end, SyncStage::KmsEvents)
            .await?;
        let mut delta = Delta::default();
        for log in &kms_logs {
            let event = decode_kms(log).ok_or_else(|| RegistryError::Rpc {
                call: "eth_getLogs",
                message: format!("malformed DstackKms log {:?}", log.topic0()),
            })?;
            if let KmsEvent::Set(list, value, false) = &event {
                let block = log.block_number.unwrap_or(end);
                delta.removals.push((kms_entry(*list, value.0), block));
            }
            delta.kms_events.push(event);
        }

        let mut new_apps = Vec::new();
        let mut new_app_set = HashSet::new();
        let mut factory_apps = HashSet::new();
        for event in &delta.kms_events {
            match event {
                KmsEvent::AppRegistered(app) => {
                    if !base.is_registered(app) && new_app_set.insert(*app) {
                        new_apps.push(*app);
                    }
                }
                KmsEvent::AppDeployedViaFactory(app) => {
                    factory_apps.insert(*app);
                }
                KmsEvent::AppImplementationSet(implementation) => {
                    trust.add_app_implementation(*implementation);
                }
                KmsEvent::Set(..) | KmsEvent::Other => {}
            }
        }
        if full || !kms_logs.is_empty() {
            let gateway = self
                .call_kms(IDstackKms::gatewayAppIdCall {}, end_hash)
                .await?;
            let implementation = self
                .call_kms(IDstackKms::appImplementationCall {}, end_hash)
                .await?;
            trust.add_app_implementation(implementation);
            delta.gateway_app_id = Some(gateway);
            delta.app_implementation = Some(implementation);
            delta.kms_code = Some(self.kms_code(end_hash).await?);
        }

        let mut app_events: HashMap<Address, Vec<AppEvent>> = HashMap::new();
        // Apps registered by hand may have been configured before registration; a proxy the KMS
        // just created cannot have older logs.
        let backfill: Vec<Address> = new_apps
            .iter()
            .filter(|app| !factory_apps.contains(*app))
            .copied()
            .collect();
        if start > self.config.from_block {
            for addresses in backfill.chunks(BACKFILL_ADDRESSES) {
                let filter = Filter::new()
                    .address(addresses.to_vec())
                    .event_signature(APP_TOPICS.to_vec());
                let logs = self
                    .logs(
                        filter,
                        self.config.from_block,
                        start - 1,
                        SyncStage::AppBackfill,
                    )
                    .await?;
                collect_app_events(&logs, &mut app_events, &mut delta.removals, |_| true);
            }
        }
        if full {
            // A build covers the whole history: a chain-wide topic filter would also return
            // every other EIP-1967 proxy's `Upgraded`, so ask for the registered apps' logs,
            // many addresses per request.
            for addresses in new_apps.chunks(BUILD_ADDRESSES) {
                let filter = Filter::new()
                    .address(addresses.to_vec())
                    .event_signature(APP_TOPICS.to_vec());
                let logs = self.logs(filter, start, end, SyncStage::AppEvents).await?;
                collect_app_events(&logs, &mut app_events, &mut delta.removals, |_| true);
            }
        } else {
            // A few new blocks: one chain-wide topic filter, kept for registered apps.
            let logs = self
                .logs(
                    Filter::new().event_signature(APP_TOPICS.to_vec()),
                    start,
                    end,
                    SyncStage::AppEvents,
                )
                .await?;
            collect_app_events(&logs, &mut app_events, &mut delta.removals, |app| {
                new_app_set.contains(app) || base.is_registered(app)
            });
        }

        let mut touched: Vec<Address> = new_apps;
        touched.extend(
            app_events
                .keys()
                .filter(|app| !new_app_set.contains(*app))
                .copied(),
        );
        let reads = self.read_apps(base, &touched, end_hash, end).await?;
        for app in factory_apps.iter() {
            if let Some(Some(code_hash)) = reads.get(app).map(|read| read.code_hash) {
                trust.proxy_code_hashes.insert(code_hash);
            }
        }
        self.learn_implementations(trust, &reads, &app_events, end_hash)
            .await?;

        for app_id in touched {
            let events = app_events.remove(&app_id).unwrap_or_default();
            // Unknown code never becomes known again: storage it wrote without events cannot be
            // recovered from events.
            let Some(read) = reads.get(&app_id) else {
                continue;
            };
            let policy = classify(read, &events, trust);
            let values = events
                .into_iter()
                .filter_map(|event| match event {
                    AppEvent::Set(list, value, enabled) => Some((list, value, enabled)),
                    AppEvent::Upgraded(_) | AppEvent::FlagChanged => None,
                })
                .collect();
            delta.apps.push(AppUpdate {
                app_id,
                policy,
                values,
            });
        }
        Ok(delta)
    }

    /// The code identity the KMS proxy delegates to (or the KMS's own, when it is no proxy).
    async fn kms_code(&self, at: B256) -> Result<Option<B256>, RegistryError> {
        let kms = Address::from(self.config.kms_contract);
        let slot = self
            .rpc
            .storage(kms, EIP1967_IMPLEMENTATION_SLOT, at)
            .await?;
        let implementation = Address::from_word(slot);
        let runs = if implementation == Address::ZERO {
            kms
        } else {
            implementation
        };
        self.rpc.code_identity(runs, at).await
    }

    async fn call_kms<C: SolCall>(&self, call: C, at: B256) -> Result<C::Return, RegistryError> {
        let kms = Address::from(self.config.kms_contract);
        match self.rpc.call(kms, call.abi_encode(), at).await? {
            CallOutcome::Returned(bytes) => {
                C::abi_decode_returns(&bytes).map_err(|e| RegistryError::Rpc {
                    call: "eth_call",
                    message: format!("DstackKms.{}: {e}", C::SIGNATURE),
                })
            }
            CallOutcome::Reverted(message) => Err(RegistryError::Rpc {
                call: "eth_call",
                message: format!("DstackKms.{} reverted: {message}", C::SIGNATURE),
            }),
        }
    }

    /// Reads code, implementation and flags of the apps (skipping apps already known to be
    /// unknown code, which never become known again), [`APPS_PER_BATCH`] apps per JSON-RPC batch.
    async fn read_apps(
        &self,
        base: &dyn Base,
        apps: &[Address],
        at: B256,
        target_block: u64,
    ) -> Result<HashMap<Address, AppRead>, RegistryError> {
        let wanted: Vec<Address> = apps
            .iter()
            .filter(|app| base.code_of(app) != Some(AppCode::Unknown))
            .copied()
            .collect();
        let total = u64::try_from(wanted.len()).unwrap_or(u64::MAX);
        let mut reads = HashMap::with_capacity(wanted.len());
        for batch in wanted.chunks(APPS_PER_BATCH) {
            reads.extend(read_app_batch(self.rpc, batch, at).await?);
            let done = u64::try_from(reads.len()).unwrap_or(u64::MAX);
            self.report(SyncStage::AppState, done, total, target_block);
        }
        Ok(reads)
    }

    /// Fetches the code hash of every implementation not yet judged.
    async fn learn_implementations(
        &self,
        trust: &mut Trust,
        reads: &HashMap<Address, AppRead>,
        events: &HashMap<Address, Vec<AppEvent>>,
        at: B256,
    ) -> Result<(), RegistryError> {
        let upgraded = events.values().flatten().filter_map(|event| match event {
            AppEvent::Upgraded(implementation) => Some(*implementation),
            AppEvent::Set(..) | AppEvent::FlagChanged => None,
        });
        let unseen: HashSet<Address> = reads
            .values()
            .map(|read| read.implementation)
            .chain(upgraded)
            .filter(|implementation| {
                *implementation != Address::ZERO
                    && !trust.app_implementations.contains(implementation)
                    && !trust.implementation_code.contains_key(implementation)
            })
            .collect();
        let unseen: Vec<Address> = unseen.into_iter().collect();
        for batch in unseen.chunks(IMPLEMENTATION_READ_CONCURRENCY) {
            let mut tasks = JoinSet::new();
            for implementation in batch {
                let (rpc, implementation) = (self.rpc.clone(), *implementation);
                tasks.spawn(async move {
                    (implementation, rpc.code_identity(implementation, at).await)
                });
            }
            while let Some(joined) = tasks.join_next().await {
                let (implementation, hash) = joined.map_err(|e| RegistryError::Rpc {
                    call: "implementation code",
                    message: e.to_string(),
                })?;
                trust.implementation_code.insert(implementation, hash?);
            }
        }
        Ok(())
    }
}

fn collect_app_events(
    logs: &[Log],
    into: &mut HashMap<Address, Vec<AppEvent>>,
    removals: &mut Vec<(Entry, u64)>,
    keep: impl Fn(&Address) -> bool,
) {
    for log in logs {
        let app = log.address();
        if !keep(&app) {
            continue;
        }
        if let Some(event) = decode_app(log) {
            if let (AppEvent::Set(list, value, false), Some(block)) = (&event, log.block_number) {
                removals.push((app_entry(app.into_array(), *list, value.0), block));
            }
            into.entry(app).or_default().push(event);
        }
    }
}

fn kms_entry(list: KmsList, value: [u8; 32]) -> Entry {
    match list {
        KmsList::OsImages => Entry::OsImageHash(value),
        KmsList::KmsAggregatedMrs => Entry::KmsAggregatedMr(value),
        KmsList::KmsDeviceIds => Entry::KmsDeviceId(value),
    }
}

fn app_entry(app_id: [u8; 20], list: AppList, value: [u8; 32]) -> Entry {
    match list {
        AppList::ComposeHashes => Entry::ComposeHash {
            app_id,
            compose_hash: value,
        },
        AppList::DeviceIds => Entry::AppDevice {
            app_id,
            device_id: value,
        },
    }
}

/// Code, EIP-1967 implementation and flags of `apps` at `at`, in one JSON-RPC batch (an app
/// without code has no implementation or flags, whatever the node answered for them).
async fn read_app_batch(
    rpc: &Rpc,
    apps: &[Address],
    at: B256,
) -> Result<Vec<(Address, AppRead)>, RegistryError> {
    let mut batch = rpc.read_batch(at);
    let mut pending = Vec::with_capacity(apps.len());
    for app in apps {
        pending.push((
            *app,
            batch.code(*app)?,
            batch.storage(*app, EIP1967_IMPLEMENTATION_SLOT)?,
            batch.call(*app, IDstackApp::allowAnyDeviceCall {}.abi_encode())?,
            batch.call(*app, IDstackApp::requireTcbUpToDateCall {}.abi_encode())?,
        ));
    }
    batch.send().await?;
    let mut reads = Vec::with_capacity(pending.len());
    for (app, code, slot, allow_any_device, require_tcb_up_to_date) in pending {
        let Some(code_hash) = code.code_identity(app).await? else {
            reads.push((
                app,
                AppRead {
                    code_hash: None,
                    implementation: Address::ZERO,
                    allow_any_device: None,
                    require_tcb_up_to_date: None,
                },
            ));
            continue;
        };
        reads.push((
            app,
            AppRead {
                code_hash: Some(code_hash),
                implementation: Address::from_word(slot.word().await?),
                allow_any_device: flag::<IDstackApp::allowAnyDeviceCall>(
                    allow_any_device.outcome().await?,
                ),
                require_tcb_up_to_date: flag::<IDstackApp::requireTcbUpToDateCall>(
                    require_tcb_up_to_date.outcome().await?,
                ),
            },
        ));
    }
    Ok(reads)
}

/// A bool getter's answer; `None` when it reverted or returned something else.
fn flag<C: SolCall<Return = bool>>(outcome: CallOutcome) -> Option<bool> {
    match outcome {
        CallOutcome::Returned(bytes) => C::abi_decode_returns(&bytes).ok(),
        CallOutcome::Reverted(_) => None,
    }
}

/// Decides how an app is evaluated from what was read at the range's end and the upgrades it
/// went through within the range.
fn classify(read: &AppRead, events: &[AppEvent], trust: &Trust) -> AppPolicy {
    let unknown = |implementation: Address| AppPolicy {
        code: AppCode::Unknown,
        implementation: Some(implementation.into_array()),
        ..AppPolicy::default()
    };
    let Some(code_hash) = read.code_hash else {
        return AppPolicy {
            code: AppCode::Absent,
            ..AppPolicy::default()
        };
    };
    let implementation = read.implementation;
    let upgrades_trusted = events.iter().all(|event| match event {
        AppEvent::Upgraded(to) => trust.is_trusted_implementation(to),
        AppEvent::Set(..) | AppEvent::FlagChanged => true,
    });
    if !trust.proxy_code_hashes.contains(&code_hash)
        || !trust.is_trusted_implementation(&implementation)
        || !upgrades_trusted
    {
        return unknown(implementation);
    }
    let Some(allow_any_device) = read.allow_any_device else {
        return unknown(implementation);
    };
    AppPolicy {
        allow_any_device,
        // DstackApp before 2026-02 has no such getter: a revert means the flag does not exist.
        require_tcb_up_to_date: read.require_tcb_up_to_date.unwrap_or(false),
        code: AppCode::Known,
        implementation: Some(implementation.into_array()),
    }
}

/// Applies a delta (its removals into `removals`); with `changes`, records what subscribers
/// should hear about.
pub(crate) fn apply(
    view: &mut RegistryView,
    removals: &mut Removals,
    delta: Delta,
    mut changes: Option<&mut Vec<RegistryChange>>,
) {
    for (entry, block) in delta.removals {
        removals.record(entry, block);
    }
    let mut record = |change: RegistryChange| {
        if let Some(changes) = changes.as_deref_mut() {
            changes.push(change);
        }
    };
    for event in delta.kms_events {
        match event {
            KmsEvent::AppRegistered(app) => {
                if view.register_app(app.into_array()) {
                    record(RegistryChange::Added(Entry::App(app.into_array())));
                }
            }
            KmsEvent::Set(list, value, enabled) => {
                if view.set(list, value.0, enabled) {
                    let entry = kms_entry(list, value.0);
                    record(if enabled {
                        RegistryChange::Added(entry)
                    } else {
                        RegistryChange::Removed(entry)
                    });
                }
            }
            KmsEvent::AppDeployedViaFactory(_)
            | KmsEvent::AppImplementationSet(_)
            | KmsEvent::Other => {}
        }
    }
    if let Some(gateway) = delta.gateway_app_id {
        if view.set_gateway_app_id(gateway.clone()) {
            record(RegistryChange::GatewayAppIdChanged(gateway));
        }
    }
    if let Some(implementation) = delta.app_implementation {
        view.set_app_implementation(
            (implementation != Address::ZERO).then(|| implementation.into_array()),
        );
    }
    for update in delta.apps {
        let app_id = update.app_id.into_array();
        if view.set_app_policy(&app_id, update.policy) {
            record(RegistryChange::AppPolicyChanged { app_id });
        }
        for (list, value, enabled) in update.values {
            if view.set_app_value(&app_id, list, value.0, enabled) {
                let entry = app_entry(app_id, list, value.0);
                record(if enabled {
                    RegistryChange::Added(entry)
                } else {
                    RegistryChange::Removed(entry)
                });
            }
        }
    }
}
