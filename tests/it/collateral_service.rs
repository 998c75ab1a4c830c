//! Collateral that fetches itself, end to end: the real `tee-verifier serve` and CLI against the
//! PCS/PCCS-compatible server on 127.0.0.1 (`support/pcs.rs`). A bare TDX quote verifies over
//! gRPC as it does with inline collateral; a fetch failure with nothing cached is UNAVAILABLE
//! (never verified, distinct from a set that does not verify); a restart with
//! `--collateral-cache` verifies with the server stopped; the metrics are on /metrics; and
//! `collateral fetch` writes what `verify --collateral` reads, with the same verdict.

use crate::support::cli::cli;
use crate::support::pcs::{
    Fault, Flavor, PcsServer, Route, PCCS_ROOT_CA_CRL_PATH, PCK_CRL_PATH, QE_IDENTITY_PATH,
    TCB_PATH,
};
use crate::support::samples;
use crate::support::service::Service;
use crate::support::tdx::{tdx_entries, NOW};

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tee_verifier::service::proto::{self, verify_request::Evidence};
use tonic::Code;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/tdx")
        .join(name)
}

fn fixture_collateral() -> String {
    std::fs::read_to_string(fixture("collateral.json")).unwrap()
}

/// A PCCS on 127.0.0.1 serving the generated fixture's collateral.
async fn fixture_pccs() -> PcsServer {
    let server = PcsServer::start(Flavor::Pccs).await;
    server.serve_collateral(&serde_json::from_str(&fixture_collateral()).unwrap());
    server
}

/// `serve` pinned to the fixture's root at the fixture's time, fetching from `pccs_url`.
fn service(pccs_url: &str, extra: &[&str]) -> Service {
    let root = fixture("root_ca.der");
    let now = NOW.to_string();
    let mut args = vec![
        "--intel-root",
        root.to_str().unwrap(),
        "--dangerous-fixed-now",
        &now,
        "--pccs-url",
        pccs_url,
    ];
    args.extend_from_slice(extra);
    Service::start(&args)
}

fn bare_quote(collateral: Option<String>) -> proto::VerifyRequest {
    proto::VerifyRequest {
        evidence: Some(Evidence::Tdx(proto::TdxEvidence {
            quote: std::fs::read(fixture("quote_v4.bin")).unwrap(),
            event_log: String::new(),
            collateral,
            vm_config: None,
        })),
        ..Default::default()
    }
}

async fn verify(service: &Service, request: proto::VerifyRequest) -> proto::VerifyResponse {
    service
        .client()
        .await
        .verify(request)
        .await
        .unwrap_or_else(|status| panic!("{status}; stderr:\n{}", service.stderr()))
        .into_inner()
}

/// Verify of a bare quote must fail closed: UNAVAILABLE with the kind in the metadata.
async fn assert_unavailable(service: &Service) {
    let status = service
        .client()
        .await
        .verify(bare_quote(None))
        .await
        .expect_err("never an answer, never verified");
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    assert_eq!(
        status.metadata().get("tee-verifier-error-kind").unwrap(),
        "collateral_unavailable"
    );
}

const FIRST_FETCH: [&str; 4] = [
    TCB_PATH,
    QE_IDENTITY_PATH,
    PCK_CRL_PATH,
    PCCS_ROOT_CA_CRL_PATH,
];

fn assert_fetched_once_each(server: &PcsServer) {
    for path in FIRST_FETCH {
        assert_eq!(server.count(path), 1, "{path}: {:?}", server.requests());
    }
    assert_eq!(server.requests().len(), 4, "{:?}", server.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_verify_of_a_bare_tdx_quote_fetches_and_gives_the_inline_verdict() {
    let pccs = fixture_pccs().await;
    let service = service(&pccs.base_url(), &[]);

    let fetched = verify(&service, bare_quote(None)).await;
    assert!(fetched.verified, "{:?}", fetched.error);
    assert_eq!(fetched.verified_at, NOW);
    assert_fetched_once_each(&pccs);

    let inline = verify(&service, bare_quote(Some(fixture_collateral()))).await;
    assert!(inline.verified, "{:?}", inline.error);
    assert_eq!(
        fetched.attested, inline.attested,
        "the same verdict and claims"
    );
    assert_eq!(
        pccs.requests().len(),
        4,
        "inline collateral fetches nothing"
    );

    // The second verification of the same FMSPC is answered from the cache.
    let again = verify(&service, bare_quote(None)).await;
    assert_eq!(again.attested, inline.attested);
    assert_eq!(pccs.requests().len(), 4, "{:?}", pccs.requests());

    let (status, metrics) = service.get("/metrics").await;
    assert_eq!(status, 200);
    for series in [
        "tee_verifier_collateral_fetches_total{item=\"tcb_info\",result=\"ok\"} 1",
        "tee_verifier_collateral_fetches_total{item=\"root_ca_crl\",result=\"ok\"} 1",
        "tee_verifier_collateral_cache_lookups_total{item=\"tcb_info\",result=\"hit\"} 1",
        "tee_verifier_collateral_cache_lookups_total{item=\"tcb_info\",result=\"miss\"} 1",
        // The clock is pinned: fetched "now", so no age.
        "tee_verifier_collateral_age_seconds{item=\"tcb_info\",key=\"90C06F000000\"} 0",
        "tee_verifier_collateral_age_seconds{item=\"pck_crl\",key=\"platform\"} 0",
        "tee_verifier_collateral_seconds_until_next_update{item=\"qe_identity\",key=\"\"} ",
        "tee_verifier_collateral_cache_lookups_total{item=\"ca_issuer\",result=\"miss\"} 0",
    ] {
        assert!(metrics.contains(series), "{series} not in:\n{metrics}");
    }
    let left: u64 = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(
                "tee_verifier_collateral_seconds_until_next_update{item=\"tcb_info\",key=\"90C06F000000\"} ",
            )
        })
        .expect("the TCB Info entry")
        .parse()
        .unwrap();
    assert!(left > 0, "the entry is still valid at the pinned time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_when_the_server_is_down_and_nothing_is_cached() {
    let pccs = fixture_pccs().await;
    let url = pccs.base_url();
    pccs.stop();
    drop(pccs);
    let service = service(&url, &[]);
    assert_unavailable(&service).await;
    // Inline collateral needs no server.
    let inline = verify(&service, bare_quote(Some(fixture_collateral()))).await;
    assert!(inline.verified, "{:?}", inline.error);
    let (_, metrics) = service.get("/metrics").await;
    assert!(
        metrics.contains(
            "tee_verifier_collateral_fetches_total{item=\"tcb_info\",result=\"transport\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("{method=\"Verify\",outcome=\"unavailable\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_is_unavailable_within_the_request_deadline() {
    let pccs = fixture_pccs().await;
    pccs.fault(Route::TcbInfo, Fault::Delay(Duration::from_secs(60)));
    let service = service(&pccs.base_url(), &["--request-timeout", "6s"]);
    // Every attempt is bounded so that all of them end before the deadline.
    assert_unavailable(&service).await;
    assert_eq!(
        pccs.count(TCB_PATH),
        3,
        "three attempts: {:?}",
        pccs.requests()
    );
    let (_, metrics) = service.get("/metrics").await;
    assert!(
        metrics.contains(
            "tee_verifier_collateral_fetches_total{item=\"tcb_info\",result=\"timeout\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_collateral_that_does_not_verify_is_a_rejection_not_unavailable() {
    let pccs = fixture_pccs().await;
    pccs.fault(Route::TcbInfo, Fault::BadSignature);
    let service = service(&pccs.base_url(), &[]);
    let response = verify(&service, bare_quote(None)).await;
    assert!(!response.verified && response.attested.is_none());
    assert_eq!(response.error.expect("error").kind, "signature");
    assert_eq!(response.verified_at, NOW);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fetching_a_bare_quote_is_collateral_missing() {
    let pccs = fixture_pccs().await;
    let root = fixture("root_ca.der");
    let now = NOW.to_string();
    let service = Service::start(&[
        "--intel-root",
        root.to_str().unwrap(),
        "--dangerous-fixed-now",
        &now,
        "--no-collateral-fetch",
    ]);
    let response = verify(&service, bare_quote(None)).await;
    assert!(!response.verified);
    assert_eq!(response.error.expect("error").kind, "collateral_missing");
    assert!(pccs.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_collateral_cache_verifies_with_the_server_stopped() {
    let pccs = fixture_pccs().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("collateral");
    let cache_arg = ["--collateral-cache", cache.to_str().unwrap()];
    let mut first = service(&pccs.base_url(), &cache_arg);
    let before = verify(&first, bare_quote(None)).await;
    assert!(before.verified, "{:?}", before.error);
    assert_fetched_once_each(&pccs);
    assert!(first.terminate(Duration::from_secs(10)).success());
    let files = std::fs::read_dir(&cache).unwrap().count();
    assert_eq!(files, 4, "one file per item");

    let url = pccs.base_url();
    pccs.stop();
    drop(pccs);
    let second = service(&url, &cache_arg);
    let after = verify(&second, bare_quote(None)).await;
    assert!(
        after.verified,
        "{:?}; stderr:\n{}",
        after.error,
        second.stderr()
    );
    assert_eq!(after.attested, before.attested);
}

// --- the CLI, with a real sample under Intel's root ---------------------------------------------

struct Sample {
    quote: String,
    collateral: String,
    now: String,
}

fn real_sample(dir: &Path) -> Sample {
    let entries = samples::expected_entries(dir);
    let entry = tdx_entries(&entries)
        .into_iter()
        .find(|e| e["kind"] == "tdx-quote" && e["collateral"].is_string())
        .expect("a raw TDX quote sample with collateral");
    let path = |key: &str| {
        dir.join(entry[key].as_str().unwrap())
            .to_str()
            .unwrap()
            .to_owned()
    };
    Sample {
        quote: path("file"),
        collateral: path("collateral"),
        now: entry["now"].as_u64().unwrap().to_string(),
    }
}

fn stdout_json(args: &[&str]) -> (i32, Value, String) {
    let output = cli(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let code = output.status.code().unwrap_or(-1);
    let value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}; stderr:\n{stderr}"));
    (code, value, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collateral_fetch_writes_what_verify_reads_offline_with_the_same_verdict() {
    let dir = samples::samples_dir();
    let sample = real_sample(&dir);
    let pccs = PcsServer::start(Flavor::Pccs).await;
    let served: Value =
        serde_json::from_str(&std::fs::read_to_string(&sample.collateral).unwrap()).unwrap();
    pccs.serve_collateral(&served);
    let url = pccs.base_url();
    let out = tempfile::tempdir().unwrap();
    let from_quote = out.path().join("from-quote.json");
    let from_fmspc = out.path().join("from-fmspc.json");

    let verify_offline = |collateral: &str| {
        let (code, report, stderr) = stdout_json(&[
            "verify",
            "--json",
            "--now",
            &sample.now,
            "--collateral",
            collateral,
            &sample.quote,
        ]);
        assert_eq!(code, 0, "{report}; {stderr}");
        report
    };
    let inline = verify_offline(&sample.collateral);
    assert_eq!(inline["verified"], true);

    // From the quote: verified with it before it is written.
    let (code, summary, stderr) = tokio::task::block_in_place(|| {
        stdout_json(&[
            "collateral",
            "fetch",
            "--json",
            "--pccs-url",
            &url,
            "--now",
            &sample.now,
            "-o",
            from_quote.to_str().unwrap(),
            &sample.quote,
        ])
    });
    assert_eq!(code, 0, "{summary}; {stderr}");
    assert_eq!(summary["verified"], true);
    assert_eq!(summary["ca"], "platform");
    assert!(summary["valid_until"].as_u64().unwrap() > sample.now.parse().unwrap());
    assert!(stderr.contains("fetching the collateral of"), "{stderr}");
    let written: Value = serde_json::from_slice(&std::fs::read(&from_quote).unwrap()).unwrap();
    for signed in ["tcb_info", "qe_identity", "pck_crl", "root_ca_crl"] {
        assert_eq!(
            written[signed], served[signed],
            "{signed}: the bytes as served"
        );
    }
    assert_eq!(verify_offline(from_quote.to_str().unwrap()), inline);

    // From the FMSPC and CA alone: written unverified, verified when read.
    let fmspc = summary["fmspc"].as_str().unwrap().to_owned();
    let output = tokio::task::block_in_place(|| {
        cli(&[
            "collateral",
            "fetch",
            "--pccs-url",
            &url,
            "--now",
            &sample.now,
            "--fmspc",
            &fmspc,
            "--ca",
            "platform",
        ])
    });
    assert!(output.status.success(), "{output:?}");
    std::fs::write(&from_fmspc, &output.stdout).unwrap();
    assert_eq!(verify_offline(from_fmspc.to_str().unwrap()), inline);

    // verify --pccs-url fetches as the service does.
    let (code, fetched, stderr) = tokio::task::block_in_place(|| {
        stdout_json(&[
            "verify",
            "--json",
            "--now",
            &sample.now,
            "--pccs-url",
            &url,
            &sample.quote,
        ])
    });
    assert_eq!(code, 0, "{fetched}; {stderr}");
    assert_eq!(fetched, inline);

    // With the server gone, it is an availability error (exit 2), never a verdict.
    pccs.stop();
    drop(pccs);
    let output = cli(&[
        "verify",
        "--json",
        "--now",
        &sample.now,
        "--pccs-url",
        &url,
        &sample.quote,
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("collateral_unavailable"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn collateral_fetch_needs_a_quote_or_an_fmspc_and_a_ca() {
    let none = cli(&["collateral", "fetch"]);
    assert_eq!(none.status.code(), Some(2));
    let no_ca = cli(&["collateral", "fetch", "--fmspc", "90C06F000000"]);
    assert_eq!(no_ca.status.code(), Some(2));
    let help = cli(&["collateral", "fetch", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "QuoteCollateralV3",
        "--pccs-url",
        "--fmspc",
        "verify --collateral",
    ] {
        assert!(text.contains(needle), "{needle} not in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collateral_fetch_of_a_quote_under_another_root_is_rejected_unrequested() {
    let pccs = fixture_pccs().await;
    let quote = fixture("quote_v4.bin");
    let now = NOW.to_string();
    let url = pccs.base_url();
    let (code, rejection, _) = tokio::task::block_in_place(|| {
        stdout_json(&[
            "collateral",
            "fetch",
            "--json",
            "--now",
            &now,
            "--pccs-url",
            &url,
            quote.to_str().unwrap(),
        ])
    });
    // The CLI pins Intel's root; the fixture's PCK chain is under a test root.
    assert_eq!(code, 1, "{rejection}");
    assert_eq!(rejection["verified"], false);
    assert_eq!(rejection["error"]["kind"], "untrusted_root");
    assert!(pccs.requests().is_empty(), "{:?}", pccs.requests());
}
