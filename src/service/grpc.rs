//! `tee_verifier.v1.Verifier`: each method parses its request, asks the core, and maps the answer
//! (see `convert` for every mapping).

use super::convert::{self, registry_status};
use super::core::{Answer, Core};
use super::governance;
use super::metrics::Method;
use super::proto::{self, verifier_server};
use crate::governance::PendingChange;
use crate::registry::{Registry, RegistryChange};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Events buffered per watcher before the stream waits for its client.
const WATCH_BUFFER: usize = 256;

pub(super) struct VerifierService {
    core: Arc<Core>,
    /// Open WatchRegistry streams (they hold no request slot, so they are bounded here).
    watchers: Arc<Semaphore>,
}

impl VerifierService {
    pub(super) fn new(core: Arc<Core>) -> Self {
        let watchers = Arc::new(Semaphore::new(core.limits.max_concurrency));
        VerifierService { core, watchers }
    }
}

type EventStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<proto::RegistryEvent, Status>> + Send>>;

#[tonic::async_trait]
impl verifier_server::Verifier for VerifierService {
    async fn verify(
        &self,
        request: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        let deadline = client_deadline(&request);
        let core = &self.core;
        core.handle(Method::Verify, deadline, core.verify(request.into_inner()))
            .await
            .map(Response::new)
    }

    async fn is_app_allowed(
        &self,
        request: Request<proto::IsAppAllowedRequest>,
    ) -> Result<Response<proto::Decision>, Status> {
        let deadline = client_deadline(&request);
        let core = &self.core;
        let work = async {
            let boot_info = convert::boot_info_from_proto(request.into_inner().boot_info)?;
            let decision = core.decide_app(&boot_info).await?;
            let outcome = convert::decision_outcome(&decision);
            Ok(Answer::new(convert::decision_to_proto(decision), outcome))
        };
        core.handle(Method::IsAppAllowed, deadline, work)
            .await
            .map(Response::new)
    }

    async fn is_kms_allowed(
        &self,
        request: Request<proto::IsKmsAllowedRequest>,
    ) -> Result<Response<proto::Decision>, Status> {
        let deadline = client_deadline(&request);
        let core = &self.core;
        let work = async {
            let boot_info = convert::boot_info_from_proto(request.into_inner().boot_info)?;
            let decision = core.decide_kms(&boot_info).await?;
            let outcome = convert::decision_outcome(&decision);
            Ok(Answer::new(convert::decision_to_proto(decision), outcome))
        };
        core.handle(Method::IsKmsAllowed, deadline, work)
            .await
            .map(Response::new)
    }

    async fn check_measurement(
        &self,
        request: Request<proto::CheckMeasurementRequest>,
    ) -> Result<Response<proto::CheckMeasurementResponse>, Status> {
        let deadline = client_deadline(&request);
        let core = &self.core;
        let work = async {
            let lookup = convert::lookup_from_proto(request.into_inner())?;
            let registry = core.registry.get().map_err(registry_status)?;
            let answer = registry.lookup(&lookup).map_err(registry_status)?;
            let outcome = if answer.present {
                "registered"
            } else {
                "not_registered"
            };
            let (pending, pending_error) =
                governance::pending_fields(governance::pending_for(registry.as_ref(), &lookup));
            let response = proto::CheckMeasurementResponse {
                registered: answer.present,
                block: answer.block,
                pending,
                pending_error,
            };
            Ok(Answer::new(response, outcome))
        };
        core.handle(Method::CheckMeasurement, deadline, work)
            .await
            .map(Response::new)
    }

    async fn get_registry(
        &self,
        request: Request<proto::GetRegistryRequest>,
    ) -> Result<Response<proto::RegistrySnapshot>, Status> {
        let deadline = client_deadline(&request);
        let core = &self.core;
        let work = async {
            let only = convert::app_filter(&request.into_inner().app_ids)?;
            let registry = Arc::clone(core.registry.get().map_err(registry_status)?);
            let (snapshot, _) = snapshot_of(registry, core.source.clone(), only).await?;
            Ok(Answer::new(snapshot, "ok"))
        };
        core.handle(Method::GetRegistry, deadline, work)
            .await
            .map(Response::new)
    }

    type WatchRegistryStream = EventStream;

    async fn watch_registry(
        &self,
        request: Request<proto::WatchRegistryRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let deadline = client_deadline(&request);
        let core = Arc::clone(&self.core);
        let watchers = Arc::clone(&self.watchers);
        let work = async move {
            let watcher = watchers.try_acquire_owned().map_err(|_| {
                Status::resource_exhausted("too many registry watchers; try again later")
            })?;
            let registry = Arc::clone(core.registry.get().map_err(registry_status)?);
            // Subscribe before the first snapshot so no change falls between the two.
            let changes = registry.subscribe();
            let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
            let send_snapshot = request.into_inner().send_snapshot;
            let watch = Watch {
                registry,
                source: core.source.clone(),
                changes,
                sender,
                shutdown: core.shutdown.clone(),
                timelock: governance::TimelockSeen::default(),
            };
            tokio::spawn(async move {
                let _watcher = watcher;
                watch.run(send_snapshot).await;
            });
            let stream: EventStream = Box::pin(ReceiverStream::new(receiver));
            Ok(Answer::new(stream, "ok"))
        };
        self.core
            .handle(Method::WatchRegistry, deadline, work)
            .await
            .map(Response::new)
    }

    async fn explain(
        &self,
        request: Request<proto::ExplainRequest>,
    ) -> Result<Response<proto::Explanation>, Status> {
        let deadline = client_deadline(&request);
        let core = &self.core;
        let work = async {
            let (explanation, outcome) = governance::explain(core, request.into_inner()).await?;
            Ok(Answer::new(explanation, outcome))
        };
        core.handle(Method::Explain, deadline, work)
            .await
            .map(Response::new)
    }
}

/// A snapshot with its pending timelock changes, built on a blocking thread (it walks the whole
/// view); also every timelock change of its block, for watchers.
async fn snapshot_of(
    registry: Arc<dyn Registry>,
    source: String,
    only: Vec<[u8; 20]>,
) -> Result<(proto::RegistrySnapshot, Vec<PendingChange>), Status> {
    tokio::task::spawn_blocking(move || {
        let (snapshot, changes) = governance::snapshot_with_changes(registry.as_ref())?;
        let mut proto = convert::snapshot_to_proto(snapshot, &source, &only);
        let pending = changes
            .as_ref()
            .map(|changes| governance::pending_of(changes, &only))
            .map_err(Clone::clone);
        (proto.pending, proto.pending_error) = governance::pending_fields(pending);
        Ok((proto, changes.unwrap_or_default()))
    })
    .await
    .map_err(|e| Status::internal(format!("snapshot task failed: {e}")))?
}

/// One WatchRegistry stream: forwards the registry's changes until the client leaves, the server
/// shuts down, or the client falls so far behind that changes were lost.
struct Watch {
    registry: Arc<dyn Registry>,
    source: String,
    changes: broadcast::Receiver<RegistryChange>,
    sender: mpsc::Sender<Result<proto::RegistryEvent, Status>>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// The timelock changes the client knows of (from its snapshot, then from events).
    timelock: governance::TimelockSeen,
}

impl Watch {
    async fn run(mut self, send_snapshot: bool) {
        // After an `Unavailable`, the next advance is preceded by a snapshot: the client was told
        // to distrust what it had.
        let mut unavailable = false;
        if send_snapshot && !self.send_snapshot(&mut unavailable).await {
            return;
        }
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            let change = tokio::select! {
                _ = self.shutdown.changed() => return,
                _ = self.sender.closed() => return,
                change = self.changes.recv() => change,
            };
            let delivered = match change {
                Ok(RegistryChange::Rebuilt { .. }) => self.send_snapshot(&mut unavailable).await,
                // A source retrying a broken file or node repeats itself; say it once.
                Ok(RegistryChange::Unavailable { .. }) if unavailable => true,
                Ok(RegistryChange::Unavailable { reason }) => {
                    unavailable = true;
                    self.send_change(RegistryChange::Unavailable { reason })
                        .await
                }
                Ok(advance @ RegistryChange::Advanced { .. }) if unavailable => {
                    self.send_snapshot(&mut unavailable).await && self.send_change(advance).await
                }
                Ok(advance @ RegistryChange::Advanced { .. }) => {
                    self.send_timelock_changes().await && self.send_change(advance).await
                }
                Ok(change) => self.send_change(change).await,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let status = Status::aborted(format!(
                        "this watcher fell {missed} changes behind; reconnect and take a snapshot"
                    ));
                    let _ = self.sender.send(Err(status)).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if !delivered {
                return;
            }
        }
    }

    /// Sends the current view (or, if it cannot answer, why). Returns whether the client is
    /// still there.
    async fn send_snapshot(&mut self, unavailable: &mut bool) -> bool {
        use proto::registry_event::Event;
        let event =
            match snapshot_of(Arc::clone(&self.registry), self.source.clone(), Vec::new()).await {
                Ok((snapshot, changes)) => {
                    *unavailable = false;
                    self.timelock.reset(&changes);
                    Event::Snapshot(snapshot)
                }
                Err(status) => {
                    *unavailable = true;
                    Event::Unavailable(proto::Unavailable {
                        reason: status.message().to_owned(),
                    })
                }
            };
        let event = proto::RegistryEvent { event: Some(event) };
        self.sender.send(Ok(event)).await.is_ok()
    }

    /// The timelock changes new since the client last heard (before the block's advance).
    async fn send_timelock_changes(&mut self) -> bool {
        let changes = governance::current_changes(self.registry.as_ref());
        for event in self.timelock.events(&changes) {
            if self.sender.send(Ok(event)).await.is_err() {
                return false;
            }
        }
        true
    }

    async fn send_change(&self, change: RegistryChange) -> bool {
        match convert::change_to_event(change) {
            Some(event) => self.sender.send(Ok(event)).await.is_ok(),
            None => true,
        }
    }
}

/// The client's deadline from the `grpc-timeout` header (at most 8 digits and a unit).
fn client_deadline<T>(request: &Request<T>) -> Option<Duration> {
    let text = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    parse_grpc_timeout(text)
}

fn parse_grpc_timeout(text: &str) -> Option<Duration> {
    let split = text.len().checked_sub(1)?;
    let (digits, unit) = (text.get(..split)?, text.get(split..)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value.checked_mul(3600)?),
        "M" => Duration::from_secs(value.checked_mul(60)?),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_per_the_spec() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("100u"), Some(Duration::from_micros(100)));
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
        assert_eq!(parse_grpc_timeout("é"), None);
    }
}
