//! Watches whether the registry view can answer, for gRPC health, `/healthz`, `GET /` and the
//! registry gauges. Answers never depend on this: each one asks the registry, which refuses by
//! itself when stale. This only reports.

use super::core::Core;
use super::grpc::VerifierService;
use super::proto::verifier_server::VerifierServer;
use crate::registry::{RegistryChange, ViewStatus};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// How often the view is probed besides the change notifications.
pub(super) const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// What the last probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RegistryStatus {
    pub available: bool,
    /// Why not, when unavailable.
    pub reason: String,
    /// The view's block, KMS facts and chain; the last known ones while unavailable.
    pub view: ViewStatus,
}

impl Default for RegistryStatus {
    fn default() -> Self {
        RegistryStatus {
            available: false,
            reason: "the registry view is still being built".to_owned(),
            view: ViewStatus::default(),
        }
    }
}

/// Asks the view for its status, which it gives only when it can answer (without touching the
/// chain), or says why it cannot.
fn probe(core: &Core) -> RegistryStatus {
    match core.registry.get().and_then(|registry| registry.status()) {
        Ok(view) => RegistryStatus {
            available: true,
            reason: String::new(),
            view,
        },
        Err(error) => RegistryStatus {
            available: false,
            reason: error.to_string(),
            view: core.status.borrow().view.clone(),
        },
    }
}

/// Probes on every change notification and every [`PROBE_INTERVAL`], publishing the status to
/// `core.status` and the metrics, until shutdown.
pub(super) async fn run(core: Arc<Core>) {
    let mut shutdown = core.shutdown.clone();
    let mut ticker = tokio::time::interval(PROBE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut changes: Option<broadcast::Receiver<RegistryChange>> = None;
    loop {
        if changes.is_none() {
            changes = core
                .registry
                .get()
                .ok()
                .map(|registry| registry.subscribe());
        }
        let woke_by_change = tokio::select! {
            _ = shutdown.changed() => return,
            _ = ticker.tick() => None,
            change = next_change(&mut changes) => Some(change),
        };
        if let Some(Ok(RegistryChange::Advanced { .. } | RegistryChange::Rebuilt { .. })) =
            woke_by_change
        {
            core.metrics.registry_advanced();
        }
        let status = probe(&core);
        let previous_block = core.status.borrow().view.block;
        if status.available && status.view.block != previous_block {
            core.metrics.registry_advanced();
        }
        core.metrics.set_registry(
            status.available,
            status.available.then_some(status.view.block),
        );
        if let Some(kms_code) = status.view.kms_code {
            core.metrics.set_kms_code_trusted(kms_code.trusted);
        }
        core.status.send_if_modified(|current| {
            if *current == status {
                return false;
            }
            if current.available != status.available {
                if status.available {
                    tracing::info!(block = status.view.block, "registry view available");
                } else {
                    tracing::warn!(reason = %status.reason, "registry view unavailable; answering UNAVAILABLE");
                }
            }
            *current = status;
            true
        });
    }
}

async fn next_change(
    changes: &mut Option<broadcast::Receiver<RegistryChange>>,
) -> Result<RegistryChange, broadcast::error::RecvError> {
    match changes {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// Mirrors the registry status into gRPC health: SERVING only while the view can answer, and
/// NOT_SERVING from the moment shutdown begins.
pub(super) async fn publish_health(core: Arc<Core>, reporter: HealthReporter) {
    let mut status = core.status.subscribe();
    let mut shutdown = core.shutdown.clone();
    loop {
        let serving = status.borrow_and_update().available && !*shutdown.borrow();
        let state = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        reporter.set_service_status("", state).await;
        match state {
            ServingStatus::Serving => {
                reporter
                    .set_serving::<VerifierServer<VerifierService>>()
                    .await
            }
            _ => {
                reporter
                    .set_not_serving::<VerifierServer<VerifierService>>()
                    .await
            }
        }
        tokio::select! {
            changed = status.changed() => if changed.is_err() { return },
            changed = shutdown.changed() => if changed.is_err() { return },
        }
    }
}
