//! Intel collateral for TDX evidence that comes without it: fetched through the collateral
//! room's [`CollateralFetcher`] at the request's own `now`, then verified by the same verifier,
//! on the same path, as inline collateral. Inline collateral always wins.
//!
//! Fail closed: a fetch that fails while nothing valid is cached is UNAVAILABLE (kind
//! `collateral_unavailable`), never an answer and never "verified"; a quote or a fetched set that
//! does not verify is an answer (`verified: false`) with the verifier's own kind.

use super::convert::{with_kind, VerifyJob};
use super::core::{Answer, Clock};
use super::proto;
use crate::collateral::{CollateralError, CollateralFetcher, HttpLimits};
use crate::error::ErrorKind;
use std::time::Duration;
use tonic::Status;

/// How often cached items past their refresh point are refreshed when no request touches them
/// (requests start refreshes of what they use; this covers the quiet hours).
const REFRESH_PERIOD: Duration = Duration::from_secs(60);

/// Gives `job` the collateral its TDX quote needs when it carries none and `fetcher` is set.
///
/// `Ok(None)`: the job is ready to verify (its collateral is inline or fetched, or it needs
/// none, or it does not parse and the verifier will say so). `Ok(Some(answer))`: the quote
/// cannot name its collateral, or the fetched set does not verify with it: a rejection at `now`.
/// `Err`: UNAVAILABLE, the network failed and nothing valid is cached.
pub(super) async fn supply(
    fetcher: Option<&CollateralFetcher>,
    job: &mut VerifyJob,
    now: u64,
) -> Result<Option<Answer<proto::VerifyResponse>>, Status> {
    let Some(fetcher) = fetcher else {
        return Ok(None);
    };
    if job.collateral.is_some() {
        return Ok(None);
    }
    let Ok(Some(quote)) = crate::evidence::tdx_quote(&job.input()) else {
        return Ok(None);
    };
    match fetcher.collateral_for_quote(&quote, now).await {
        Ok(set) => {
            // As JSON, so that the fetched set takes exactly the inline collateral's path.
            job.collateral = Some(set.json().to_vec());
            Ok(None)
        }
        Err(error) => rejection_or_status(&error, now).map(Some),
    }
}

/// A verification failure is an answer (labelled with its kind); an unavailable fetch is a
/// gRPC status.
fn rejection_or_status(
    error: &CollateralError,
    now: u64,
) -> Result<Answer<proto::VerifyResponse>, Status> {
    let kind = error.kind();
    if kind == ErrorKind::CollateralUnavailable {
        tracing::warn!(%error, "no valid collateral cached and the fetch failed");
        return Err(with_kind(
            Status::unavailable(format!("TDX collateral is unavailable: {error}")),
            kind,
        ));
    }
    let response = proto::VerifyResponse {
        verified: false,
        error: Some(proto::VerificationError {
            kind: kind.as_str().to_owned(),
            message: error.to_string(),
        }),
        verified_at: now,
        ..Default::default()
    };
    Ok(Answer::new(response, kind.as_str()))
}

/// The shortest attempt timeout set, however short the request deadline.
const MIN_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(100);

/// `http` with every attempt short enough that all of them, and the backoff between them, end
/// within one request's deadline: an upstream that hangs is then UNAVAILABLE, not a
/// DEADLINE_EXCEEDED that says nothing of why. One share is left for the verification.
pub(super) fn within_deadline(mut http: HttpLimits, request_timeout: Duration) -> HttpLimits {
    let attempts = http.attempts.max(1);
    let mut backoff = Duration::ZERO;
    let mut delay = http.backoff;
    for _ in 1..attempts {
        backoff += delay;
        delay = (delay * 2).min(http.max_backoff);
    }
    let per_attempt =
        (request_timeout.saturating_sub(backoff) / (attempts + 1)).max(MIN_ATTEMPT_TIMEOUT);
    http.request_timeout = http.request_timeout.min(per_attempt);
    http.connect_timeout = http.connect_timeout.min(per_attempt);
    http
}

/// Refreshes due items every [`REFRESH_PERIOD`], at the service's clock, until aborted.
pub(super) async fn refresh_periodically(fetcher: CollateralFetcher, clock: Clock) {
    let mut ticks = tokio::time::interval(REFRESH_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        fetcher.refresh_due(clock.now()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collateral::{FetchError, ItemKind};
    use crate::tdx::TdxError;
    use tonic::Code;

    #[test]
    fn unavailable_is_a_status_and_a_failed_check_is_an_answer() {
        let unavailable = CollateralError::Unavailable {
            item: ItemKind::TcbInfo,
            source: FetchError::Status {
                url: "http://127.0.0.1:1/tdx/certification/v4/tcb".into(),
                status: 503,
            },
        };
        let status = rejection_or_status(&unavailable, 7).err().unwrap();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.metadata().get("tee-verifier-error-kind").unwrap(),
            "collateral_unavailable"
        );
        let forged = CollateralError::Verification(TdxError::Signature("TCB Info"));
        let answer = rejection_or_status(&forged, 7).unwrap();
        assert_eq!(answer.outcome, "signature");
        let response = answer.value;
        assert!(!response.verified && response.attested.is_none());
        assert_eq!(response.verified_at, 7);
        assert_eq!(response.error.unwrap().kind, "signature");
    }

    #[test]
    fn every_attempt_and_backoff_fit_in_the_request_deadline() {
        let defaults = HttpLimits::default();
        let fitted = within_deadline(defaults.clone(), Duration::from_secs(10));
        // 3 attempts, backoff at most 250 ms + 500 ms: (10 s - 0.75 s) / 4 each.
        assert_eq!(fitted.request_timeout, Duration::from_micros(2_312_500));
        assert_eq!(fitted.connect_timeout, fitted.request_timeout);
        assert_eq!(fitted.attempts, defaults.attempts);
        let worst = fitted.request_timeout * fitted.attempts + Duration::from_millis(750);
        assert!(worst < Duration::from_secs(10));
        // A long deadline keeps the configured bounds.
        assert_eq!(
            within_deadline(defaults.clone(), Duration::from_secs(600)),
            defaults
        );
        assert_eq!(
            within_deadline(defaults, Duration::from_millis(10)).request_timeout,
            MIN_ATTEMPT_TIMEOUT
        );
    }
}
