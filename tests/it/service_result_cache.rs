//! `serve`'s result cache (`--result-cache-entries`, on by default) end to end: the real dstack
//! quote report with its real collateral, sent twice, is answered the second time from the cache
//! (counted in /metrics); past the collateral's window the same request is the full
//! verification's expired error every time; one changed byte is a miss; 0 turns the cache off.

use crate::support::samples;
use crate::support::service::Service;
use tee_verifier::service::proto::{self, verify_request::Evidence};

const REPORT: &str = "dstack/dstack-verifier-quote-report.json";
/// A day after the sample collateral's TCB Info and QE Identity nextUpdate (2026-03-20).
const PAST_THE_WINDOW: u64 = 1_774_100_000;

fn request(report: &str, collateral: &str) -> proto::VerifyRequest {
    proto::VerifyRequest {
        evidence: Some(Evidence::DstackQuoteReport(proto::DstackQuoteReport {
            json: report.to_owned(),
            collateral: Some(collateral.to_owned()),
        })),
        ..Default::default()
    }
}

/// The `evidence_results` lookups in /metrics: (hits, misses).
async fn result_lookups(server: &Service) -> (u64, u64) {
    let (code, metrics) = server.get("/metrics").await;
    assert_eq!(code, 200);
    let count = |result: &str| {
        let prefix = format!(
            "tee_verifier_cache_lookups_total{{cache=\"evidence_results\",result=\"{result}\"}} "
        );
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
            .parse()
            .unwrap()
    };
    (count("hit"), count("miss"))
}

#[tokio::test]
async fn the_same_evidence_is_answered_from_the_result_cache_within_its_window_only() {
    let dir = samples::samples_dir();
    let entry = samples::expected_entries(&dir)
        .into_iter()
        .find(|entry| entry["file"] == REPORT)
        .expect("sample listed in expected.json");
    let now = entry["now"].as_u64().unwrap();
    let report = std::fs::read_to_string(dir.join(REPORT)).unwrap();
    let collateral =
        std::fs::read_to_string(dir.join(entry["collateral"].as_str().unwrap())).unwrap();

    let server = Service::start(&["--dangerous-fixed-now", &now.to_string()]);
    let mut client = server.client().await;
    let first = client
        .verify(request(&report, &collateral))
        .await
        .unwrap()
        .into_inner();
    assert!(first.verified, "{:?}", first.error);
    let second = client
        .verify(request(&report, &collateral))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first, second,
        "a hit answers exactly what the verification did"
    );
    assert_eq!(result_lookups(&server).await, (1, 1));

    // One more byte (a trailing space after the collateral JSON): a miss, verified in full.
    let changed = client
        .verify(request(&report, &format!("{collateral} ")))
        .await
        .unwrap()
        .into_inner();
    assert!(changed.verified, "{:?}", changed.error);
    assert_eq!(result_lookups(&server).await, (1, 2));
    drop(server);

    // Past the collateral's window: the full verification's error, on every request.
    let late = Service::start(&["--dangerous-fixed-now", &PAST_THE_WINDOW.to_string()]);
    let mut client = late.client().await;
    for _ in 0..2 {
        let response = client
            .verify(request(&report, &collateral))
            .await
            .unwrap()
            .into_inner();
        assert!(!response.verified);
        let error = response.error.expect("an error");
        assert_eq!(error.kind, "collateral_expired", "{}", error.message);
    }
    assert_eq!(result_lookups(&late).await, (0, 2));
    drop(late);

    // Off: every request verified in full, nothing counted.
    let off = Service::start(&[
        "--dangerous-fixed-now",
        &now.to_string(),
        "--result-cache-entries",
        "0",
    ]);
    let mut client = off.client().await;
    for _ in 0..2 {
        let response = client
            .verify(request(&report, &collateral))
            .await
            .unwrap()
            .into_inner();
        assert!(response.verified, "{:?}", response.error);
    }
    assert_eq!(result_lookups(&off).await, (0, 0));
}
