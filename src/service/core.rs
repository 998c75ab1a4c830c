//! What gRPC and HTTP handlers share: the verifier, the registry, the clock, the limits and the
//! metrics, and the one way a request is admitted, timed and bounded.

use super::collateral;
use super::config::Limits;
use super::convert::{self, VerifyJob};
use super::gcp_ca;
use super::metrics::{Method, Metrics};
use super::monitor::RegistryStatus;
use super::proto;
use crate::boot_info::BootInfo;
use crate::collateral::{CaFetcher, CollateralFetcher};
use crate::evidence::{EvidenceVerifier, Platform, Unauthorizable, Verified};
use crate::registry::{Decision, Evaluation, Registry, RegistryError};
use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tonic::Status;

/// Where `now` comes from: the wall clock, or (tests only) a pinned instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Clock {
    System,
    /// Every verification as of this instant, however old: only for tests of fixed evidence,
    /// never for a service that decides anything.
    DangerousFixed(u64),
}

impl Clock {
    pub(super) fn now(self) -> u64 {
        match self {
            Clock::DangerousFixed(now) => now,
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs()),
        }
    }
}

/// The registry, once its source has been opened (a chain source takes a while to build), or
/// why it never will be.
#[derive(Default)]
pub(super) struct RegistrySlot {
    registry: OnceLock<Arc<dyn Registry>>,
    failure: OnceLock<String>,
}

impl RegistrySlot {
    pub(super) fn get(&self) -> Result<&Arc<dyn Registry>, RegistryError> {
        self.registry.get().ok_or_else(|| {
            RegistryError::Unavailable(match self.failure.get() {
                Some(failure) => failure.clone(),
                None => "the registry view is still being built".to_owned(),
            })
        })
    }

    /// Installs the registry; the first one wins.
    pub(super) fn install(&self, registry: Arc<dyn Registry>) {
        let _ = self.registry.set(registry);
    }

    /// Records why the source can never be opened (answers stay unavailable, with this reason).
    pub(super) fn fail(&self, reason: String) {
        let _ = self.failure.set(reason);
    }
}

/// A successful answer and its outcome label for metrics.
pub(super) struct Answer<T> {
    pub value: T,
    pub outcome: &'static str,
}

impl<T> Answer<T> {
    pub(super) fn new(value: T, outcome: &'static str) -> Self {
        Answer { value, outcome }
    }
}

pub(super) struct Core {
    verifier: EvidenceVerifier,
    pub registry: RegistrySlot,
    clock: Clock,
    pub limits: Limits,
    /// Requests being handled (gRPC and webhook); more wait within their deadline.
    admission: Semaphore,
    /// CPU-bound verifications running on blocking threads.
    verify_slots: Arc<Semaphore>,
    pub metrics: Metrics,
    /// Flips to `true` once shutdown begins; ends registry watch streams.
    pub shutdown: watch::Receiver<bool>,
    /// How the registry source is named on the wire.
    pub source: String,
    /// Whether the view can answer, as the monitor last saw it.
    pub status: watch::Sender<RegistryStatus>,
    /// Fetches Intel collateral for TDX evidence that comes without it (`None`: never).
    collateral: Option<CollateralFetcher>,
    /// Fetches CA certificates and CRLs named by certificates (GCP AK chains), from allowlisted
    /// URLs only (`None`: never).
    ca_fetcher: Option<CaFetcher>,
}

impl Core {
    pub(super) fn new(
        verifier: EvidenceVerifier,
        clock: Clock,
        limits: Limits,
        shutdown: watch::Receiver<bool>,
        source: String,
    ) -> Self {
        Core {
            verifier,
            registry: RegistrySlot::default(),
            clock,
            admission: Semaphore::new(limits.max_concurrency),
            verify_slots: Arc::new(Semaphore::new(limits.verify_workers)),
            limits,
            metrics: Metrics::default(),
            shutdown,
            source,
            status: watch::Sender::new(RegistryStatus::default()),
            collateral: None,
            ca_fetcher: None,
        }
    }

    /// The same core with collateral fetchers, sharing the clock the verification uses.
    pub(super) fn with_fetchers(
        mut self,
        collateral: Option<CollateralFetcher>,
        ca_fetcher: Option<CaFetcher>,
    ) -> Self {
        self.collateral = collateral;
        self.ca_fetcher = ca_fetcher;
        self
    }

    /// Runs one request: admitted under the concurrency limit, bounded by the request deadline
    /// (the shorter of ours and the client's), timed and counted.
    pub(super) async fn handle<T>(
        &self,
        method: Method,
        client_deadline: Option<Duration>,
        work: impl Future<Output = Result<Answer<T>, Status>>,
    ) -> Result<T, Status> {
        let timer = self.metrics.start(method);
        let deadline = client_deadline.map_or(self.limits.request_timeout, |client| {
            client.min(self.limits.request_timeout)
        });
        let admitted = async {
            let _permit = self
                .admission
                .acquire()
                .await
                .map_err(|_| Status::unavailable("the server is shutting down"))?;
            work.await
        };
        let result = match tokio::time::timeout(deadline, admitted).await {
            Ok(result) => result,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer within {} ms",
                deadline.as_millis()
            ))),
        };
        match result {
            Ok(answer) => {
                timer.finish(answer.outcome);
                Ok(answer.value)
            }
            Err(status) => {
                timer.finish(convert::code_name(status.code()));
                Err(status)
            }
        }
    }

    /// Verifies (inline or on a blocking thread, see [`runs_inline`]; at most `verify_workers`
    /// at once), then authorizes.
    pub(super) async fn verify(
        &self,
        request: proto::VerifyRequest,
    ) -> Result<Answer<proto::VerifyResponse>, Status> {
        let mut job = VerifyJob::try_from(request)?;
        // One instant for the collateral cache's expiry and for the verification.
        let now = self.clock.now();
        if let Some(rejection) = collateral::supply(self.collateral.as_ref(), &mut job, now).await?
        {
            return Ok(rejection);
        }
        let verifier =
            match gcp_ca::supply(self.ca_fetcher.as_ref(), &self.verifier, &job, now).await? {
                Some(bundle) => Cow::Owned(self.verifier.with_gcp_bundle(bundle)),
                None => Cow::Borrowed(&self.verifier),
            };
        let permit = Arc::clone(&self.verify_slots)
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("the server is shutting down"))?;
        let (job, result) = if runs_inline(&job) {
            let result = verifier.verify(&job.input(), now, &job.expectations);
            drop(permit);
            (job, result)
        } else {
            let verifier = verifier.into_owned();
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let result = verifier.verify(&job.input(), now, &job.expectations);
                (job, result)
            })
            .await
            .map_err(|e| Status::internal(format!("verification task failed: {e}")))?
        };

        let verified = match result {
            Ok(verified) => verified,
            Err(error) => {
                let response = proto::VerifyResponse {
                    verified: false,
                    error: Some(convert::verification_error(&error)),
                    verified_at: now,
                    ..Default::default()
                };
                return Ok(Answer::new(response, error.kind().as_str()));
            }
        };
        if !convert::matches_declared_kind(job.kind, &verified) {
            return Err(Status::invalid_argument(format!(
                "evidence given as {} is {}",
                job.kind.field_name(),
                describe(&verified)
            )));
        }
        let attested = convert::attested(&verified, job.include_report_json);
        let (authorization, outcome) = match job.authorize {
            proto::Authorize::None => (None, "verified"),
            authorize => {
                let decision = match verified.authorizable_boot_info(job.accept_os_image_claim) {
                    Ok(boot_info) => match authorize {
                        proto::Authorize::Kms => self.decide_kms(boot_info).await?,
                        _ => self.decide_app(boot_info).await?,
                    },
                    Err(Unauthorizable::NoBootInfo) => {
                        return Err(Status::invalid_argument(
                            "authorize needs dstack evidence that carries a boot info (an app \
                             id): a dstack attestation, quote report, or TDX quote with its event log",
                        ))
                    }
                    // Verified, but nothing measured to authorize: a denial, at no block.
                    Err(refusal @ Unauthorizable::UnmeasuredOsImage) => Decision {
                        allowed: false,
                        reason: refusal.to_string(),
                        block: 0,
                        gateway_app_id: String::new(),
                        evaluated_by: Evaluation::View,
                    },
                };
                let outcome = convert::decision_outcome(&decision);
                (Some(convert::decision_to_proto(decision)), outcome)
            }
        };
        let response = proto::VerifyResponse {
            verified: true,
            error: None,
            verified_at: now,
            attested: Some(attested),
            authorization,
        };
        Ok(Answer::new(response, outcome))
    }

    /// `GET /metrics`: the service's counters, the verifier's cache counts, and the collateral
    /// fetchers' counters and entries at the service's clock.
    pub(super) fn render_metrics(&self) -> String {
        let now = self.clock.now();
        let collateral: Vec<_> = [
            self.collateral.as_ref().map(|fetcher| fetcher.metrics(now)),
            self.ca_fetcher.as_ref().map(|fetcher| fetcher.metrics(now)),
        ]
        .into_iter()
        .flatten()
        .collect();
        self.metrics
            .render(&self.verifier.cache_stats(), &collateral)
    }

    /// `DstackKms.isAppAllowed`, from the view (or the contract, for app code the view cannot
    /// evaluate).
    pub(super) async fn decide_app(&self, boot_info: &BootInfo) -> Result<Decision, Status> {
        let registry = self.registry.get().map_err(convert::registry_status)?;
        let decision = registry
            .decide_app(boot_info)
            .await
            .map_err(convert::registry_status)?;
        self.metrics
            .decision_source(decision.evaluated_by == Evaluation::View);
        Ok(decision)
    }

    /// `DstackKms.isKmsAllowed`, from the view (or the contract, when the KMS runs code the view
    /// does not know).
    pub(super) async fn decide_kms(&self, boot_info: &BootInfo) -> Result<Decision, Status> {
        let registry = self.registry.get().map_err(convert::registry_status)?;
        let decision = registry
            .decide_kms(boot_info)
            .await
            .map_err(convert::registry_status)?;
        self.metrics
            .decision_source(decision.evaluated_by == Evaluation::View);
        Ok(decision)
    }
}

/// Evidence up to this size is verified on the async worker that received it. Its cost is
/// bounded by the size (a warm Nitro document ≈ 0.3 ms, a cold one or a dstack TDX quote with its
/// event log and collateral ≈ 1–2 ms), and handing it to a blocking thread costs two thread
/// wake-ups: measured ≈ 100 µs of server CPU per Verify on 2 cores, a third of a warm Nitro
/// verification. Larger inputs (big event logs) go to the blocking pool so that one of them
/// cannot stall the other requests on its worker.
const INLINE_VERIFY_MAX_BYTES: usize = 64 << 10;

fn runs_inline(job: &VerifyJob) -> bool {
    job.input_len() <= INLINE_VERIFY_MAX_BYTES
}

/// What the verified evidence was, for a mismatch message.
fn describe(verified: &Verified) -> &'static str {
    match (verified.platform(), verified.dstack().is_some()) {
        (Platform::Nitro, false) => "a bare Nitro document",
        (Platform::Nitro, true) => "a dstack Nitro attestation",
        (Platform::Tdx, false) => "a bare TDX quote",
        (Platform::Tdx, true) => "dstack TDX evidence",
        (Platform::GcpTdx, _) => "a dstack GCP TDX attestation",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use tonic::Code;

    fn core(max_concurrency: usize, request_timeout: Duration) -> Core {
        let limits = Limits {
            max_request_bytes: 1024,
            max_boot_info_bytes: 1024,
            max_concurrency,
            verify_workers: 1,
            request_timeout,
            shutdown_grace: Duration::from_secs(1),
        };
        let (_, shutdown) = watch::channel(false);
        Core::new(
            EvidenceVerifier::default(),
            Clock::DangerousFixed(1),
            limits,
            shutdown,
            "test".into(),
        )
    }

    #[tokio::test]
    async fn slow_requests_end_at_the_deadline() {
        let core = core(4, Duration::from_millis(20));
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(Answer::new((), "ok"))
        };
        let status = core.handle(Method::Verify, None, slow).await.unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(core
            .render_metrics()
            .contains("{method=\"Verify\",outcome=\"deadline_exceeded\"} 1"));
    }

    #[tokio::test]
    async fn a_shorter_client_deadline_wins() {
        let core = core(4, Duration::from_secs(30));
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(Answer::new((), "ok"))
        };
        let started = std::time::Instant::now();
        let status = core
            .handle(Method::Verify, Some(Duration::from_millis(20)), slow)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn requests_beyond_the_concurrency_limit_wait_within_their_deadline() {
        let core = Arc::new(core(1, Duration::from_millis(50)));
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        let holder = {
            let core = Arc::clone(&core);
            tokio::spawn(async move {
                let work = async {
                    let _ = held.await;
                    Ok(Answer::new((), "ok"))
                };
                core.handle(Method::CheckMeasurement, Some(Duration::from_secs(5)), work)
                    .await
            })
        };
        tokio::task::yield_now().await;
        let waiting = core
            .handle(Method::CheckMeasurement, None, async {
                Ok(Answer::new((), "ok"))
            })
            .await
            .unwrap_err();
        assert_eq!(
            waiting.code(),
            Code::DeadlineExceeded,
            "no slot within the deadline"
        );
        let _ = release.send(());
        assert!(holder.await.unwrap().is_ok());
        let admitted = core
            .handle(Method::CheckMeasurement, None, async {
                Ok(Answer::new(7, "ok"))
            })
            .await;
        assert_eq!(admitted.unwrap(), 7, "the slot is free again");
    }

    fn nitro_request(document: Vec<u8>) -> proto::VerifyRequest {
        proto::VerifyRequest {
            evidence: Some(proto::verify_request::Evidence::NitroDocument(document)),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn small_evidence_verifies_inline_and_large_on_a_blocking_thread_with_one_answer() {
        let core = core(4, Duration::from_secs(5));
        let mut kinds = Vec::new();
        for size in [64, INLINE_VERIFY_MAX_BYTES + 1] {
            let request = nitro_request(vec![0xa5; size]);
            let job = VerifyJob::try_from(request.clone()).unwrap();
            assert_eq!(runs_inline(&job), size <= INLINE_VERIFY_MAX_BYTES);
            let answer = core.verify(request).await.expect("an answer, not a status");
            assert!(!answer.value.verified);
            kinds.push(answer.value.error.expect("error").kind);
        }
        assert_eq!(kinds[0], kinds[1], "the same rejection on either path");
    }

    #[test]
    fn every_input_counts_towards_the_inline_bound() {
        let request = proto::VerifyRequest {
            evidence: Some(proto::verify_request::Evidence::Tdx(proto::TdxEvidence {
                quote: vec![0; 1000],
                event_log: "e".repeat(INLINE_VERIFY_MAX_BYTES / 2),
                collateral: Some("c".repeat(INLINE_VERIFY_MAX_BYTES / 2)),
                vm_config: Some("{}".to_owned()),
            })),
            app_compose: Some(vec![0; 10]),
            ..Default::default()
        };
        let job = VerifyJob::try_from(request).unwrap();
        assert_eq!(job.input_len(), 1000 + INLINE_VERIFY_MAX_BYTES + 2 + 10);
        assert!(!runs_inline(&job));
    }

    #[test]
    fn a_fixed_clock_never_moves_and_the_system_clock_does() {
        assert_eq!(Clock::DangerousFixed(1_705_431_295).now(), 1_705_431_295);
        assert!(Clock::System.now() > 1_700_000_000);
    }

    #[test]
    fn an_empty_registry_slot_is_unavailable_and_says_why() {
        let slot = RegistrySlot::default();
        let error = slot.get().err().expect("nothing installed");
        assert_eq!(error.kind(), ErrorKind::Unavailable);
        assert!(error.to_string().contains("still being built"), "{error}");
        slot.fail("the chain source is misconfigured: wrong chain".to_owned());
        let error = slot.get().err().expect("nothing installed");
        assert_eq!(error.kind(), ErrorKind::Unavailable);
        assert!(error.to_string().contains("wrong chain"), "{error}");
    }
}
