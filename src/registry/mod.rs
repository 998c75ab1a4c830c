//! The on-chain allowlist: answers `DstackKms.isAppAllowed` / `isKmsAllowed` from a local view of
//! the KMS contract and every registered app, exactly as the contracts would (reason strings
//! included), and tells when it cannot.
//!
//! - [`view`]: the data model (os images, KMS aggregated MRs and devices, registered apps with
//!   their compose hashes, devices, flags and code status), shared by both sources.
//! - [`decision`]: the contracts' decision logic as pure functions of a view.
//! - [`chain`]: the view built from a DstackKms contract's events through JSON-RPC, then
//!   followed block by block (reorgs rebuild it; staleness makes answers unavailable). Apps whose
//!   code is not known DstackApp code are asked with `eth_call` at the view's block.
//! - [`file`](mod@file): the same view read from a TOML file (the format of [`Snapshot`]), reloaded
//!   when it changes; [`file::FileRegistry::embedded_default`] is the built-in default registry.
//!
//! Both sources implement [`Registry`], the interface the CLI and the service use.

#[cfg(feature = "chain")]
pub mod abi;
#[cfg(feature = "chain")]
pub mod chain;
pub mod decision;
mod error;
pub mod file;
mod snapshot;
pub mod view;

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::boot_info::BootInfo;
pub use error::RegistryError;
pub use snapshot::{AppSnapshot, Hex, Snapshot};
use view::{Address, AppCode, Bytes32, KmsList, RegistryView};

/// A decision, with the block it was decided at and the KMS's gateway app id (the KMS webhook
/// returns it beside every answer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Whether the boot may receive its keys.
    pub allowed: bool,
    /// The contract's reason string; empty when allowed.
    pub reason: String,
    /// The block the answer holds at.
    pub block: u64,
    /// The KMS's `gatewayAppId`.
    pub gateway_app_id: String,
    /// Whether the local view or the contract decided.
    pub evaluated_by: Evaluation,
}

/// Where a decision came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Evaluation {
    /// The local view and [`decision`]'s logic.
    View,
    /// `eth_call DstackKms.isAppAllowed` (or `isKmsAllowed`) at the view's block: the app's
    /// code, or the KMS's own, is not known.
    Contract,
}

/// What a view is as of, for service info and health: the block, the KMS's gateway app id and
/// `appImplementation`, and (chain sources) the chain id the node reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViewStatus {
    /// The block the view holds at.
    pub block: u64,
    /// The KMS's `gatewayAppId`.
    pub gateway_app_id: String,
    /// The KMS's `appImplementation` (the DstackApp code new apps are deployed with); `None` if
    /// unset.
    pub app_implementation: Option<Address>,
    /// The chain id the node reported; `None` for file sources.
    pub chain_id: Option<u64>,
    /// The code the KMS runs (chain sources); `None` for file sources.
    pub kms_code: Option<KmsCodeStatus>,
}

/// The code the KMS (proxy) runs, as the chain source judged it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KmsCodeStatus {
    /// Its [code identity](chain::code_identity) (`None`: no code).
    pub identity: Option<Bytes32>,
    /// Whether it is trusted to be DstackKms. When it is not, every decision is an `eth_call`
    /// and lookups are refused.
    pub trusted: bool,
}

/// A membership question about one allowlist.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Lookup {
    /// `DstackKms.allowedOsImages(hash)` (the "isAuthorized(osImageHash)" of some docs).
    OsImageHash(Bytes32),
    /// `DstackApp(appId).allowedComposeHashes(hash)`; false for unregistered apps.
    ComposeHash {
        /// The app (20-byte address).
        app_id: Address,
        /// The compose hash asked about.
        compose_hash: Bytes32,
    },
    /// `DstackKms.kmsAllowedAggregatedMrs(mr)`.
    KmsAggregatedMr(Bytes32),
    /// `DstackKms.kmsAllowedDeviceIds(id)`.
    KmsDeviceId(Bytes32),
    /// `DstackKms.registeredApps(appId)`.
    RegisteredApp(Address),
}

/// The answer to a [`Lookup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LookupAnswer {
    /// Whether the value is in the list.
    pub present: bool,
    /// The block the answer holds at.
    pub block: u64,
}

/// One allowlist entry, as announced to subscribers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Entry {
    /// An OS image hash in `allowedOsImages`.
    OsImageHash(Bytes32),
    /// An aggregated MR in `kmsAllowedAggregatedMrs`.
    KmsAggregatedMr(Bytes32),
    /// A device id in `kmsAllowedDeviceIds`.
    KmsDeviceId(Bytes32),
    /// An app in `registeredApps`.
    App(Address),
    /// A compose hash in an app's `allowedComposeHashes`.
    ComposeHash {
        /// The app.
        app_id: Address,
        /// The compose hash.
        compose_hash: Bytes32,
    },
    /// A device id in an app's `allowedDeviceIds`.
    AppDevice {
        /// The app.
        app_id: Address,
        /// The device id.
        device_id: Bytes32,
    },
}

/// What subscribers hear. Changes of one block come before its `Advanced`. After `Rebuilt` (a
/// build, a reorg, a file reload) or a lagged receiver, take a fresh [`Registry::snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryChange {
    /// An entry joined its list.
    Added(Entry),
    /// An entry left its list.
    Removed(Entry),
    /// An app's flags or code status changed.
    AppPolicyChanged {
        /// The app.
        app_id: Address,
    },
    /// The KMS's `gatewayAppId` changed to this value.
    GatewayAppIdChanged(String),
    /// The view now holds at `block`; every change up to it has been sent.
    Advanced {
        /// The new block.
        block: u64,
    },
    /// The view was rebuilt from scratch; subscribers must re-snapshot.
    Rebuilt {
        /// The block the rebuilt view holds at.
        block: u64,
    },
    /// The source can no longer answer (the reason says why).
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// Capacity of the change channel; slower subscribers see `Lagged` and should re-snapshot.
pub const CHANGE_CHANNEL_CAPACITY: usize = 4096;

/// A boxed, `Send` future (object-safe async for [`Registry`]).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The allowlist, from whichever source. Every error means "no answer", which callers must treat
/// as a denial; `kind() == "unavailable"` is the source's own failure (stale, rebuilding, broken
/// file) rather than a bad question.
pub trait Registry: Send + Sync {
    /// `DstackKms.isAppAllowed(bootInfo)`. Async because apps running unknown code are asked on
    /// chain.
    fn decide_app<'a>(
        &'a self,
        boot: &'a BootInfo,
    ) -> BoxFuture<'a, Result<Decision, RegistryError>>;

    /// `DstackKms.isKmsAllowed(bootInfo)`. Async because a KMS running unknown code is asked
    /// on chain.
    fn decide_kms<'a>(
        &'a self,
        boot: &'a BootInfo,
    ) -> BoxFuture<'a, Result<Decision, RegistryError>>;

    /// Whether one value is in one allowlist (`false` for a compose hash of an unregistered app); a
    /// [`RegistryError::UnknownAppCode`] for compose hashes of apps whose code is not known.
    fn lookup(&self, query: &Lookup) -> Result<LookupAnswer, RegistryError>;

    /// The view's block and KMS facts; an error (like every answer's) when it cannot answer.
    fn status(&self) -> Result<ViewStatus, RegistryError>;

    /// The whole view (sorted lists; the registry file format).
    fn snapshot(&self) -> Result<Snapshot, RegistryError>;

    /// Changes of the view, from now on; see [`RegistryChange`].
    fn subscribe(&self) -> broadcast::Receiver<RegistryChange>;

    /// The allowlist changes of the timelocks that govern the contracts (any state), with the
    /// block they hold at. `None`: this source follows no timelock (a registry file has no
    /// pending changes, only the lists as they are), which is the default.
    #[cfg(feature = "chain")]
    fn timelock_changes(&self) -> Result<Option<TimelockChanges>, RegistryError> {
        Ok(None)
    }

    /// Whether `address` has contract code at the view's block; `None`: the source cannot tell
    /// (a registry file), the default.
    #[cfg(feature = "chain")]
    fn has_code<'a>(
        &'a self,
        address: &'a Address,
    ) -> BoxFuture<'a, Result<Option<bool>, RegistryError>> {
        let _ = address;
        Box::pin(async { Ok(None) })
    }

    /// The block of each entry's latest removal, as far as the source has history (a registry
    /// file has none: empty, the default).
    #[cfg(feature = "chain")]
    fn removals(&self) -> Result<crate::governance::explain::Removals, RegistryError> {
        Ok(crate::governance::explain::Removals::new())
    }
}

/// A source's timelock changes at one block ([`Registry::timelock_changes`]).
#[cfg(feature = "chain")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelockChanges {
    /// The block the changes (and their waiting/ready states) hold at.
    pub block: u64,
    /// The followed timelocks and their minimum delays (seconds).
    pub timelocks: Vec<(Address, u64)>,
    /// Every allowlist change of the followed timelocks: waiting, ready, executed, cancelled.
    pub changes: Vec<crate::governance::PendingChange>,
}

#[cfg(feature = "chain")]
impl TimelockChanges {
    /// The changes still to happen (waiting or ready).
    pub fn pending(&self) -> impl Iterator<Item = &crate::governance::PendingChange> + '_ {
        self.changes
            .iter()
            .filter(|change| change.state.is_pending())
    }
}

/// A verdict of the local logic as a decision.
fn decision_from_view(verdict: decision::Verdict, block: u64, view: &RegistryView) -> Decision {
    Decision {
        allowed: verdict.allowed,
        reason: verdict.reason.to_owned(),
        block,
        gateway_app_id: view.gateway_app_id().to_owned(),
        evaluated_by: Evaluation::View,
    }
}

/// A view's status at `block`; `chain_id` is the node's, for chain sources.
fn status_of(view: &RegistryView, block: u64, chain_id: Option<u64>) -> ViewStatus {
    ViewStatus {
        block,
        gateway_app_id: view.gateway_app_id().to_owned(),
        app_implementation: view.app_implementation(),
        chain_id,
        kms_code: None,
    }
}

/// Answers a lookup from a view.
fn lookup_in(
    view: &RegistryView,
    query: &Lookup,
    block: u64,
) -> Result<LookupAnswer, RegistryError> {
    let present = match query {
        Lookup::OsImageHash(hash) => view.contains(KmsList::OsImages, hash),
        Lookup::KmsAggregatedMr(mr) => view.contains(KmsList::KmsAggregatedMrs, mr),
        Lookup::KmsDeviceId(id) => view.contains(KmsList::KmsDeviceIds, id),
        Lookup::RegisteredApp(app_id) => view.app(app_id).is_some(),
        Lookup::ComposeHash {
            app_id,
            compose_hash,
        } => match view.app(app_id) {
            None => false,
            Some(app) => match app.policy().code {
                AppCode::Known => app.allows_compose_hash(compose_hash),
                // Storage is only ever written by code.
                AppCode::Absent => false,
                AppCode::Unknown => {
                    return Err(RegistryError::UnknownAppCode(crate::encoding::to_0x_hex(
                        app_id,
                    )))
                }
            },
        },
    };
    Ok(LookupAnswer { present, block })
}
