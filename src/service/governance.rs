//! The governance side of the API: timelock changes on the wire (in `GetRegistry`,
//! `CheckMeasurement` and `WatchRegistry`) and the `Explain` RPC.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::Status;

use super::convert::{self, registry_status};
use super::core::Core;
use super::proto;
use crate::evidence::Unauthorizable;
use crate::governance::explain::{explain_app, explain_kms, Context, Explanation, Hint};
use crate::governance::{PendingChange, PendingState};
use crate::registry::view::Bytes32;
use crate::registry::{Entry, Lookup, Registry, RegistryError, Snapshot};

fn state_to_proto(state: PendingState) -> proto::PendingState {
    match state {
        PendingState::Waiting => proto::PendingState::Waiting,
        PendingState::Ready => proto::PendingState::Ready,
        PendingState::Executed => proto::PendingState::Executed,
        PendingState::Cancelled => proto::PendingState::Cancelled,
    }
}

/// One timelock change on the wire.
pub(super) fn pending_to_proto(change: &PendingChange) -> proto::PendingChange {
    let json = change.json();
    proto::PendingChange {
        operation_id: json.operation_id,
        timelock: json.timelock,
        target: json.target,
        function: json.function.to_owned(),
        args: json.args,
        eta: json.eta,
        state: state_to_proto(change.state).into(),
    }
}

/// The source's timelock changes (any state) and their block; none for a source without
/// timelocks.
fn changes_of(registry: &dyn Registry) -> Result<(Option<u64>, Vec<PendingChange>), RegistryError> {
    Ok(match registry.timelock_changes()? {
        Some(changes) => (Some(changes.block), changes.changes),
        None => (None, Vec::new()),
    })
}

/// Timelock changes, or why they cannot be read. A timelock whose logs disagree with its state
/// makes its changes unreadable, not the allowlist: answers carry the reason instead.
pub(super) type Changes = Result<Vec<PendingChange>, String>;

/// How often a snapshot is re-read when the follower advanced between it and the timelock
/// changes (they must be of one block).
const CONSISTENT_READ_ATTEMPTS: usize = 3;

/// The view and its timelock changes, of one block.
pub(super) fn snapshot_with_changes(
    registry: &dyn Registry,
) -> Result<(Snapshot, Changes), Status> {
    for _ in 0..CONSISTENT_READ_ATTEMPTS {
        let snapshot = registry.snapshot().map_err(registry_status)?;
        match changes_of(registry) {
            Err(error) => return Ok((snapshot, Err(error.to_string()))),
            Ok((block, changes)) if block.is_none_or(|block| block == snapshot.block) => {
                return Ok((snapshot, Ok(changes)))
            }
            Ok(_) => {}
        }
    }
    Err(registry_status(RegistryError::Unavailable(
        "the view kept advancing while it was read; try again".to_owned(),
    )))
}

/// The pending changes of one lookup's entry (`CheckMeasurement`), or why they cannot be read.
pub(super) fn pending_for(registry: &dyn Registry, lookup: &Lookup) -> Changes {
    let entry = match lookup {
        Lookup::OsImageHash(hash) => Entry::OsImageHash(*hash),
        Lookup::KmsAggregatedMr(mr) => Entry::KmsAggregatedMr(*mr),
        Lookup::KmsDeviceId(id) => Entry::KmsDeviceId(*id),
        Lookup::ComposeHash {
            app_id,
            compose_hash,
        } => Entry::ComposeHash {
            app_id: *app_id,
            compose_hash: *compose_hash,
        },
        // No allowlist call registers an app.
        Lookup::RegisteredApp(_) => return Ok(Vec::new()),
    };
    let (_, changes) = changes_of(registry).map_err(|error| error.to_string())?;
    Ok(changes
        .into_iter()
        .filter(|change| change.state.is_pending() && change.call.entry() == entry)
        .collect())
}

/// The pending (waiting or ready) changes of `changes`, for a snapshot; limited to the KMS's
/// and the apps in `only` unless it is empty.
pub(super) fn pending_of(changes: &[PendingChange], only: &[[u8; 20]]) -> Vec<PendingChange> {
    changes
        .iter()
        .filter(|change| change.state.is_pending())
        .filter(|change| {
            only.is_empty()
                || only.contains(&change.call.contract)
                || !matches!(
                    change.call.entry(),
                    Entry::ComposeHash { .. } | Entry::AppDevice { .. }
                )
        })
        .cloned()
        .collect()
}

/// What a `WatchRegistry` stream has told its client about timelock changes.
#[derive(Default)]
pub(super) struct TimelockSeen(HashMap<(Bytes32, u64, Bytes32), PendingState>);

impl TimelockSeen {
    fn key(change: &PendingChange) -> (Bytes32, u64, Bytes32) {
        // The operation id is per timelock; the timelock's address completes it.
        let mut timelock = [0; 32];
        timelock[12..].copy_from_slice(&change.timelock);
        (change.operation_id, change.index, timelock)
    }

    /// Starts over from a snapshot's changes (the client has them in its `pending`).
    pub(super) fn reset(&mut self, changes: &[PendingChange]) {
        self.0 = changes
            .iter()
            .map(|change| (Self::key(change), change.state))
            .collect();
    }

    /// The events for changes new or changed since the last call, in the view's order.
    pub(super) fn events(&mut self, changes: &[PendingChange]) -> Vec<proto::RegistryEvent> {
        let mut events = Vec::new();
        for change in changes {
            let previous = self.0.insert(Self::key(change), change.state);
            if previous != Some(change.state) {
                events.push(proto::RegistryEvent {
                    event: Some(proto::registry_event::Event::Timelock(pending_to_proto(
                        change,
                    ))),
                });
            }
        }
        events
    }
}

/// The current timelock changes of a watched registry; none when they cannot be read (nothing
/// is announced then, and what the client knows stays as it was).
pub(super) fn current_changes(registry: &dyn Registry) -> Vec<PendingChange> {
    changes_of(registry).map(|(_, c)| c).unwrap_or_default()
}

/// `pending` and `pending_error` of an answer.
pub(super) fn pending_fields(changes: Changes) -> (Vec<proto::PendingChange>, String) {
    match changes {
        Ok(changes) => (
            changes.iter().map(pending_to_proto).collect(),
            String::new(),
        ),
        Err(error) => (Vec::new(), error),
    }
}

fn hint_to_proto(hint: Hint) -> proto::Hint {
    let kind = match serde_json::to_value(hint.kind) {
        Ok(serde_json::Value::String(kind)) => kind,
        _ => String::new(),
    };
    proto::Hint {
        kind,
        message: hint.message,
        field: hint.field.unwrap_or_default().to_owned(),
        value: hint.value.unwrap_or_default(),
        registered: hint.registered.unwrap_or_default(),
        apps: hint.apps,
        block: hint.block,
        operation_id: hint.operation_id.unwrap_or_default(),
        function: hint.function.unwrap_or_default().to_owned(),
        eta: hint.eta,
        state: hint
            .state
            .map_or(proto::PendingState::Unspecified, state_to_proto)
            .into(),
        service: hint.service.unwrap_or_default(),
        image: hint.image.unwrap_or_default(),
    }
}

fn explanation_to_proto(
    explanation: Explanation,
    decision: crate::registry::Decision,
) -> proto::Explanation {
    proto::Explanation {
        decision: Some(convert::decision_to_proto(decision)),
        checks: explanation
            .checks
            .into_iter()
            .map(|check| proto::ExplainCheck {
                name: check.name.to_owned(),
                ok: check.ok,
                reached: check.reached,
                detail: check.detail,
            })
            .collect(),
        hints: explanation.hints.into_iter().map(hint_to_proto).collect(),
        rejected: None,
    }
}

/// The boot info evidence attests, verified as `Verify` verifies it; `Err` (the inner one) is
/// why there is none to explain.
async fn attested_boot_info(
    core: &Core,
    mut evidence: proto::VerifyRequest,
) -> Result<Result<proto::BootInfo, proto::VerificationError>, Status> {
    evidence.authorize = proto::Authorize::None.into();
    let accept_os_image_claim = evidence.accept_os_image_claim;
    let response = core.verify(evidence).await?.value;
    let unauthorizable = |reason: Unauthorizable| proto::VerificationError {
        kind: "unauthorizable".to_owned(),
        message: reason.to_string(),
    };
    if !response.verified {
        return Ok(Err(response.error.unwrap_or_default()));
    }
    let Some(dstack) = response.attested.and_then(|attested| attested.dstack) else {
        return Ok(Err(unauthorizable(Unauthorizable::NoBootInfo)));
    };
    if !dstack.os_image_hash_bound && !accept_os_image_claim {
        return Ok(Err(unauthorizable(Unauthorizable::UnmeasuredOsImage)));
    }
    Ok(dstack
        .boot_info
        .ok_or_else(|| unauthorizable(Unauthorizable::NoBootInfo)))
}

/// `Explain`: the decision `IsAppAllowed` / `IsKmsAllowed` gives for the boot info (given, or
/// attested by verified evidence), with the checks and hints.
pub(super) async fn explain(
    core: &Core,
    request: proto::ExplainRequest,
) -> Result<(proto::Explanation, &'static str), Status> {
    let boot_info = match (request.boot_info, request.evidence) {
        (Some(_), Some(_)) => {
            return Err(Status::invalid_argument(
                "give boot_info or evidence, not both",
            ))
        }
        (boot_info, None) => boot_info,
        (None, Some(evidence)) => match attested_boot_info(core, evidence).await? {
            Ok(boot_info) => Some(boot_info),
            Err(rejected) => {
                let outcome = "rejected";
                let explanation = proto::Explanation {
                    rejected: Some(rejected),
                    ..Default::default()
                };
                return Ok((explanation, outcome));
            }
        },
    };
    // As given, for width hints (evidence's boot info is full width: it gives none).
    let given = boot_info.clone();
    let boot = convert::boot_info_from_proto(boot_info)?;
    let decision = if request.kms {
        core.decide_kms(&boot).await?
    } else {
        core.decide_app(&boot).await?
    };
    let registry: Arc<dyn Registry> = Arc::clone(core.registry.get().map_err(registry_status)?);
    let outcome = convert::decision_outcome(&decision);
    let explained = tokio::task::spawn_blocking(move || {
        let (snapshot, changes) = snapshot_with_changes(registry.as_ref())?;
        // Without readable timelock changes the explanation has no `pending` hints.
        let changes = changes.unwrap_or_default();
        let view = snapshot
            .to_view()
            .map_err(|e| registry_status(RegistryError::Unavailable(e)))?;
        let removals = registry.removals().map_err(registry_status)?;
        let given = given.map(convert::boot_info_json);
        let context = Context {
            given: given.as_ref(),
            pending: &changes,
            removals: Some(&removals),
            app_compose: request.app_compose.as_deref(),
        };
        let explanation = if request.kms {
            explain_kms(&view, &decision, &boot, &context)
        } else {
            explain_app(&view, &decision, &boot, &context)
        };
        // The view moved between the decision and the explanation: no answer rather than one
        // that contradicts itself.
        let explanation = explanation.map_err(|error| {
            registry_status(RegistryError::Unavailable(format!(
                "the view moved while explaining: {error}"
            )))
        })?;
        Ok::<_, Status>(explanation_to_proto(explanation, decision))
    })
    .await
    .map_err(|e| Status::internal(format!("explain task failed: {e}")))??;
    Ok((explained, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::{AllowlistCall, Function};

    fn change(operation: u8, state: PendingState) -> PendingChange {
        PendingChange {
            timelock: [1; 20],
            operation_id: [operation; 32],
            index: 0,
            call: AllowlistCall {
                contract: [2; 20],
                function: Function::AddOsImageHash,
                value: [3; 32],
            },
            eta: 100,
            state,
            scheduled_block: 1,
            settled_block: None,
        }
    }

    #[test]
    fn watchers_hear_each_timelock_change_once() {
        let mut seen = TimelockSeen::default();
        seen.reset(&[change(1, PendingState::Waiting)]);
        assert!(seen.events(&[change(1, PendingState::Waiting)]).is_empty());
        let events = seen.events(&[
            change(1, PendingState::Ready),
            change(2, PendingState::Waiting),
        ]);
        let states: Vec<i32> = events
            .iter()
            .map(|event| match &event.event {
                Some(proto::registry_event::Event::Timelock(change)) => change.state,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            states,
            [
                proto::PendingState::Ready as i32,
                proto::PendingState::Waiting as i32
            ]
        );
        let events = seen.events(&[
            change(1, PendingState::Executed),
            change(2, PendingState::Cancelled),
        ]);
        assert_eq!(events.len(), 2);
        assert!(seen
            .events(&[
                change(1, PendingState::Executed),
                change(2, PendingState::Cancelled)
            ])
            .is_empty());
    }
}
