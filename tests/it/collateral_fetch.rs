//! The collateral fetchers against a PCS/PCCS-compatible server on 127.0.0.1
//! (`support/pcs.rs`): real samples verify through it exactly as with inline collateral, every
//! injected fault gives its kind, and the cache's counted behaviour (no second fetch, single
//! flight, refresh ahead of expiry, never past nextUpdate, restart from disk) is observed in the
//! server's request log. Then the CA fetcher: only allowlisted URLs are ever requested.

use crate::support::pcs;
use crate::support::samples;
use crate::support::tdx as tdx_support;

use pcs::{
    Fault, Flavor, PcsServer, Route, PCCS_ROOT_CA_CRL_PATH, PCK_CRL_PATH, PCS_ROOT_CA_CRL_PATH,
    QE_IDENTITY_PATH, TCB_PATH,
};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use tdx_support::{date, Built, Keys, Spec, DAY, NOW};
use tee_verifier::collateral::{
    ca_issuers_urls, crl_distribution_points, CaConfig, CaFetcher, CollateralConfig,
    CollateralError, CollateralFetcher, FetchedCollateral, HttpLimits, IntelService, ItemKind,
    PckCa, QuoteTarget, TcbUpdate, UrlAllowlist, RESULT_INVALID, RESULT_OK,
};
use tee_verifier::tdx::{Collateral, TdxPolicy, TdxVerifier};
use tee_verifier::CacheCounts;

const DAYS: u64 = 86_400;

/// Short bounds so that fault tests end quickly; two attempts, so a retry is observable.
fn limits() -> HttpLimits {
    HttpLimits {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(3),
        attempts: 2,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
        per_host_requests: 4,
    }
}

fn config(server: &PcsServer, flavor: Flavor, root_der: &[u8]) -> CollateralConfig {
    CollateralConfig {
        base_url: server.base_url(),
        service: Some(match flavor {
            Flavor::Pcs => IntelService::Pcs,
            Flavor::Pccs => IntelService::Pccs,
        }),
        // The PCS's root CA CRL lives on Intel's CRL host; here, on the test server.
        root_ca_crl_url: (flavor == Flavor::Pcs).then(|| server.root_ca_crl_url()),
        trust_anchor_der: root_der.to_vec(),
        http: limits(),
        ..CollateralConfig::default()
    }
}

fn fetcher(config: CollateralConfig) -> CollateralFetcher {
    let verifier = TdxVerifier::with_root_der(&config.trust_anchor_der);
    CollateralFetcher::new(config, verifier).unwrap()
}

fn policy() -> TdxPolicy {
    TdxPolicy::default()
}

/// The requests an empty cache makes for one quote.
fn first_fetch_paths(flavor: Flavor) -> [&'static str; 4] {
    let root = match flavor {
        Flavor::Pcs => PCS_ROOT_CA_CRL_PATH,
        Flavor::Pccs => PCCS_ROOT_CA_CRL_PATH,
    };
    [TCB_PATH, QE_IDENTITY_PATH, PCK_CRL_PATH, root]
}

fn assert_each_requested(server: &PcsServer, flavor: Flavor, times: usize) {
    for path in first_fetch_paths(flavor) {
        assert_eq!(server.count(path), times, "{path}: {:?}", server.requests());
    }
    assert_eq!(
        server.requests().len(),
        4 * times,
        "{:?}",
        server.requests()
    );
}

// --- real samples ---------------------------------------------------------------------------

struct Case {
    file: String,
    quote: Vec<u8>,
    collateral: Value,
    now: u64,
}

fn sample_cases(dir: &Path) -> Vec<Case> {
    let entries = samples::expected_entries(dir);
    let cases: Vec<Case> = tdx_support::tdx_entries(&entries)
        .into_iter()
        .filter(|e| e["collateral"].is_string())
        .map(|e| Case {
            file: e["file"].as_str().unwrap().to_owned(),
            quote: tdx_support::sample_quote(dir, e),
            collateral: serde_json::from_slice(
                &std::fs::read(dir.join(e["collateral"].as_str().unwrap())).unwrap(),
            )
            .unwrap(),
            now: e["now"].as_u64().unwrap(),
        })
        .collect();
    assert!(
        cases.len() >= 2,
        "expected.json lists the TDX samples with collateral"
    );
    cases
}

#[tokio::test]
async fn real_samples_verify_through_pcs_and_pccs_as_with_inline_collateral() {
    let dir = samples::samples_dir();
    for case in sample_cases(&dir) {
        for flavor in [Flavor::Pcs, Flavor::Pccs] {
            let server = PcsServer::start(flavor).await;
            server.serve_collateral(&case.collateral);
            let config = config(&server, flavor, tee_verifier::tdx::INTEL_SGX_ROOT_CA_DER);
            let fetcher = fetcher(config);
            let fetched = fetcher
                .collateral_for_quote(&case.quote, case.now)
                .await
                .unwrap_or_else(|e| panic!("{} via {flavor:?}: {e}", case.file));

            // Byte for byte what the sample holds: every field, hence the same digest.
            let inline =
                Collateral::from_json(&serde_json::to_vec(&case.collateral).unwrap()).unwrap();
            assert_eq!(fetched.collateral(), &inline, "{}", case.file);
            assert_eq!(
                Collateral::from_json(fetched.json()).unwrap(),
                inline,
                "the JSON is the same set"
            );
            let verify = |collateral: &Collateral| {
                TdxVerifier::new().verify(&case.quote, collateral, case.now, &policy())
            };
            let with_inline = verify(&inline).unwrap();
            assert_eq!(verify(fetched.collateral()).unwrap(), with_inline);
            assert_eq!(with_inline.tcb_status.as_str(), "UpToDate");

            // The real URL shapes of the API.
            assert_each_requested(&server, flavor, 1);
            let requests = server.requests();
            let query = |path: &str| {
                requests
                    .iter()
                    .find(|r| r.path == path)
                    .unwrap()
                    .query
                    .clone()
            };
            let fmspc = hex::encode_upper(with_inline.fmspc);
            assert_eq!(query(TCB_PATH), format!("fmspc={fmspc}&update=standard"));
            assert_eq!(query(QE_IDENTITY_PATH), "update=standard");
            assert_eq!(query(PCK_CRL_PATH), "ca=platform&encoding=der");
            assert_eq!(
                fetched.target(),
                QuoteTarget {
                    fmspc: with_inline.fmspc,
                    ca: PckCa::Platform
                }
            );
        }
    }
}

#[tokio::test]
async fn the_generated_fixture_verifies_through_the_server_with_early_updates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tdx");
    let root = std::fs::read(dir.join("root_ca.der")).unwrap();
    let collateral: Value =
        serde_json::from_slice(&std::fs::read(dir.join("collateral.json")).unwrap()).unwrap();
    let quote = std::fs::read(dir.join("quote_v4.bin")).unwrap();
    let server = PcsServer::start(Flavor::Pccs).await;
    server.serve_collateral(&collateral);
    let fetcher = fetcher(CollateralConfig {
        update: TcbUpdate::Early,
        ..config(&server, Flavor::Pccs, &root)
    });
    let fetched = fetcher.collateral_for_quote(&quote, NOW).await.unwrap();
    let verified = TdxVerifier::with_root_der(&root)
        .verify(&quote, fetched.collateral(), NOW, &policy())
        .unwrap();
    assert_eq!(verified.tcb_status.as_str(), "UpToDate");
    let requests = server.requests();
    assert!(requests
        .iter()
        .any(|r| r.path == TCB_PATH && r.query == "fmspc=90C06F000000&update=early"));
    assert!(requests
        .iter()
        .any(|r| r.path == QE_IDENTITY_PATH && r.query == "update=early"));
}

// --- a generated PKI, for faults and the cache ---------------------------------------------------

/// A test PKI served by a fresh server, and a fetcher pointed at it.
struct Rig {
    keys: Keys,
    built: Built,
    server: PcsServer,
    flavor: Flavor,
}

impl Rig {
    async fn new(flavor: Flavor) -> Rig {
        let keys = Keys::generate();
        let built = Spec::default().build(&keys);
        let server = PcsServer::start(flavor).await;
        server.serve_collateral(&built.collateral);
        Rig {
            keys,
            built,
            server,
            flavor,
        }
    }

    fn config(&self) -> CollateralConfig {
        config(&self.server, self.flavor, &self.built.root_der)
    }

    fn fetcher(&self) -> CollateralFetcher {
        fetcher(self.config())
    }

    fn verify(&self, collateral: &Collateral, now: u64) {
        TdxVerifier::with_root_der(&self.built.root_der)
            .verify(&self.built.quote, collateral, now, &policy())
            .unwrap();
    }

    /// Another quote of the same platform (same PCK chain, other REPORTDATA).
    fn other_quote(&self) -> Vec<u8> {
        let mut spec = Spec::default();
        spec.td.report_data = [0x17; 64];
        spec.quote(&self.keys, &self.built.pck_chain)
    }

    /// Serves TCB Info and QE Identity re-signed with `edit` applied (same signer, so the
    /// chains served stay valid).
    fn serve_resigned(&self, edit: impl FnOnce(&mut Spec)) {
        let mut spec = Spec::default();
        edit(&mut spec);
        let resigned = spec.build(&self.keys).collateral;
        let text = |field: &str| resigned[field].as_str().unwrap().to_owned();
        self.server.serve_tcb_info(
            "90C06F000000",
            &text("tcb_info"),
            &text("tcb_info_signature"),
        );
        self.server
            .serve_qe_identity(&text("qe_identity"), &text("qe_identity_signature"));
    }

    async fn fetch(&self, fetcher: &CollateralFetcher, now: u64) -> FetchedCollateral {
        fetcher
            .collateral_for_quote(&self.built.quote, now)
            .await
            .unwrap()
    }

    async fn kind(&self, fetcher: &CollateralFetcher, now: u64) -> &'static str {
        match fetcher.collateral_for_quote(&self.built.quote, now).await {
            Ok(_) => "ok",
            Err(err) => {
                eprintln!("{}: {err}", err.kind());
                err.kind().as_str()
            }
        }
    }
}

fn route_of(path: &str) -> Option<Route> {
    match path {
        TCB_PATH => Some(Route::TcbInfo),
        QE_IDENTITY_PATH => Some(Route::QeIdentity),
        PCK_CRL_PATH => Some(Route::PckCrl),
        PCCS_ROOT_CA_CRL_PATH | PCS_ROOT_CA_CRL_PATH => Some(Route::RootCaCrl),
        _ => None,
    }
}

/// A PEM chain from another root, for the issuer chain headers.
fn foreign_chain() -> String {
    let other = Spec::default().build(&Keys::generate());
    other.collateral["tcb_info_issuer_chain"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn each_fault_gives_its_kind() {
    let foreign = foreign_chain();
    let other_fmspc = {
        let mut spec = Spec::default();
        spec.tcb_info["fmspc"] = "00606A000000".into();
        let collateral = spec.build(&Keys::generate()).collateral;
        let text = |field: &str| collateral[field].as_str().unwrap().to_owned();
        format!(
            r#"{{"tcbInfo":{},"signature":"{}"}}"#,
            text("tcb_info"),
            text("tcb_info_signature")
        )
        .into_bytes()
    };
    // (route, fault, kind, result label of the fetch)
    let cases: Vec<(Route, Fault, &str, &str)> = vec![
        (
            Route::TcbInfo,
            Fault::NotFound,
            "collateral_unavailable",
            "not_found",
        ),
        (
            Route::QeIdentity,
            Fault::ServerError,
            "collateral_unavailable",
            "http_status",
        ),
        (
            Route::PckCrl,
            Fault::Delay(Duration::from_secs(5)),
            "collateral_unavailable",
            "timeout",
        ),
        (
            Route::RootCaCrl,
            Fault::Truncate,
            "collateral_unavailable",
            "transport",
        ),
        (
            Route::TcbInfo,
            Fault::Truncate,
            "collateral_unavailable",
            "transport",
        ),
        (
            Route::TcbInfo,
            Fault::BadSignature,
            "signature",
            RESULT_INVALID,
        ),
        (
            Route::QeIdentity,
            Fault::BadSignature,
            "signature",
            RESULT_INVALID,
        ),
        (
            Route::TcbInfo,
            Fault::Chain(foreign.clone()),
            "untrusted_root",
            RESULT_INVALID,
        ),
        (
            Route::QeIdentity,
            Fault::Chain(foreign),
            "untrusted_root",
            RESULT_INVALID,
        ),
        (
            Route::PckCrl,
            Fault::NoChain,
            "collateral_unavailable",
            "malformed",
        ),
        (
            Route::TcbInfo,
            Fault::Body(b"<html>".to_vec()),
            "collateral_unavailable",
            "malformed",
        ),
        (
            Route::RootCaCrl,
            Fault::Body(b"30zz".to_vec()),
            "collateral_unavailable",
            "malformed",
        ),
        // A genuine TCB Info, of another platform.
        (
            Route::TcbInfo,
            Fault::Body(other_fmspc),
            "collateral_invalid",
            RESULT_INVALID,
        ),
    ];
    for (route, fault, kind, result) in cases {
        let rig = Rig::new(Flavor::Pccs).await;
        rig.server.fault(route, fault.clone());
        let fetcher = fetcher(CollateralConfig {
            http: HttpLimits {
                request_timeout: Duration::from_millis(300),
                ..limits()
            },
            ..rig.config()
        });
        assert_eq!(rig.kind(&fetcher, NOW).await, kind, "{route:?} {fault:?}");
        let item = match route {
            Route::TcbInfo => ItemKind::TcbInfo,
            Route::QeIdentity => ItemKind::QeIdentity,
            Route::PckCrl => ItemKind::PckCrl,
            _ => ItemKind::RootCaCrl,
        };
        let metrics = fetcher.metrics(NOW);
        assert_eq!(
            metrics.fetches_of(item, result),
            1,
            "{route:?} {fault:?}: one fetch (retries inside it): {metrics:?}"
        );
        let requests = rig.server.requests();
        let sent = requests
            .iter()
            .filter(|r| route_of(&r.path) == Some(route))
            .count();
        let transient = matches!(result, "http_status" | "timeout" | "transport");
        assert_eq!(
            sent,
            if transient { 2 } else { 1 },
            "{route:?} {fault:?}: {requests:?}"
        );
        // Nothing of a failed set is cached: once the fault is gone, the next request fetches
        // and verifies.
        assert!(metrics.entries.is_empty(), "{metrics:?}");
        rig.server.clear_faults();
        assert_eq!(rig.kind(&fetcher, NOW).await, "ok");
    }
}

#[tokio::test]
async fn a_transient_failure_is_retried_with_backoff() {
    let rig = Rig::new(Flavor::Pcs).await;
    rig.server
        .fault_times(Route::TcbInfo, Fault::ServerError, 1);
    let fetcher = rig.fetcher();
    let fetched = rig.fetch(&fetcher, NOW).await;
    rig.verify(fetched.collateral(), NOW);
    assert_eq!(rig.server.count(TCB_PATH), 2);
    let metrics = fetcher.metrics(NOW);
    assert_eq!(metrics.fetches_of(ItemKind::TcbInfo, RESULT_OK), 1);
    assert_eq!(metrics.fetches_of(ItemKind::TcbInfo, "http_status"), 0);
}

#[tokio::test]
async fn expired_collateral_is_a_verification_failure() {
    let rig = Rig::new(Flavor::Pcs).await;
    let fetcher = rig.fetcher();
    // The served documents end at NOW + 29 days, the CRLs at NOW + 30 days.
    assert_eq!(
        rig.kind(&fetcher, NOW + 31 * DAYS).await,
        "collateral_expired"
    );
    assert_eq!(
        rig.kind(&fetcher, NOW - 2 * DAYS).await,
        "collateral_not_yet_valid"
    );
    assert!(fetcher.metrics(NOW).entries.is_empty());
}

#[tokio::test]
async fn a_quote_that_fails_on_its_own_still_gets_its_collateral_cached() {
    let rig = Rig::new(Flavor::Pccs).await;
    let fetcher = rig.fetcher();
    let mut tampered = rig.built.quote.clone();
    tampered[tdx_support::V4_HEADER_LEN + 200] ^= 1; // inside the signed TD report
    let fetched = fetcher.collateral_for_quote(&tampered, NOW).await.unwrap();
    let err = TdxVerifier::with_root_der(&rig.built.root_der)
        .verify(&tampered, fetched.collateral(), NOW, &policy())
        .unwrap_err();
    assert_eq!(err.kind().as_str(), "signature");
    // The collateral verified: the genuine quote needs no fetch.
    rig.fetch(&fetcher, NOW).await;
    assert_each_requested(&rig.server, Flavor::Pccs, 1);
}

#[tokio::test]
async fn a_revoked_platform_gets_its_collateral_and_its_verdict() {
    let keys = Keys::generate();
    let mut spec = Spec::default();
    spec.pck_crl.revoked.push(spec.pck_leaf.serial);
    let built = spec.build(&keys);
    let server = PcsServer::start(Flavor::Pccs).await;
    server.serve_collateral(&built.collateral);
    let fetcher = fetcher(config(&server, Flavor::Pccs, &built.root_der));
    for now in [NOW, NOW + 60] {
        let fetched = fetcher
            .collateral_for_quote(&built.quote, now)
            .await
            .unwrap();
        let err = TdxVerifier::with_root_der(&built.root_der)
            .verify(&built.quote, fetched.collateral(), now, &policy())
            .unwrap_err();
        assert_eq!(err.kind().as_str(), "revoked", "{err}");
    }
    // The PCK CRL that revokes the platform is genuine: cached, not fetched per quote.
    assert_each_requested(&server, Flavor::Pccs, 1);
}

#[tokio::test]
async fn quotes_that_name_no_collateral_fetch_nothing() {
    let rig = Rig::new(Flavor::Pccs).await;
    let fetcher = rig.fetcher();
    let foreign = Spec::default().build(&Keys::generate());
    let err = fetcher
        .collateral_for_quote(&foreign.quote, NOW)
        .await
        .unwrap_err();
    assert_eq!(err.kind().as_str(), "untrusted_root");
    assert!(matches!(err, CollateralError::Quote(_)));
    // A forged chain ending in the right root: its FMSPC never reaches the server.
    let forged_chain = [
        foreign.pck_chain[0].clone(),
        foreign.pck_chain[1].clone(),
        rig.built.root_der.clone(),
    ];
    let forged = Spec::default().quote(&Keys::generate(), &forged_chain);
    let err = fetcher
        .collateral_for_quote(&forged, NOW)
        .await
        .unwrap_err();
    assert_eq!(err.kind().as_str(), "signature", "{err}");
    // A PCK certificate that has ended.
    let err = fetcher
        .collateral_for_quote(&rig.built.quote, NOW + 400 * DAYS)
        .await
        .unwrap_err();
    assert_eq!(err.kind().as_str(), "expired", "{err}");
    let err = fetcher
        .collateral_for_quote(&rig.built.quote[..200], NOW)
        .await
        .unwrap_err();
    assert_eq!(err.kind().as_str(), "malformed");
    let no_chain = Spec {
        cert_data_type: 3,
        ..Spec::default()
    };
    let quote = no_chain.quote(&rig.keys, &rig.built.pck_chain);
    let err = fetcher.collateral_for_quote(&quote, NOW).await.unwrap_err();
    assert_eq!(err.kind().as_str(), "collateral_missing");
    assert!(rig.server.requests().is_empty());
}

#[tokio::test]
async fn the_second_request_for_an_fmspc_makes_no_request() {
    let rig = Rig::new(Flavor::Pcs).await;
    let fetcher = rig.fetcher();
    let first = rig.fetch(&fetcher, NOW).await;
    rig.verify(first.collateral(), NOW);
    assert_each_requested(&rig.server, Flavor::Pcs, 1);

    let again = rig.fetch(&fetcher, NOW + 3600).await;
    let other = fetcher
        .collateral_for_quote(&rig.other_quote(), NOW + 7200)
        .await
        .unwrap();
    assert_each_requested(&rig.server, Flavor::Pcs, 1);
    assert_eq!(again.collateral().digest(), first.collateral().digest());
    assert_eq!(other.collateral().digest(), first.collateral().digest());

    let metrics = fetcher.metrics(NOW + 7200);
    for item in ItemKind::INTEL {
        assert_eq!(metrics.lookups_of(item), CacheCounts { hits: 2, misses: 1 });
        assert_eq!(metrics.fetches_of(item, RESULT_OK), 1);
    }
    let tcb = metrics
        .entries
        .iter()
        .find(|e| e.item == ItemKind::TcbInfo)
        .unwrap();
    assert_eq!(tcb.key, "90C06F000000");
    assert_eq!(tcb.age_seconds, 7200);
    assert_eq!(tcb.seconds_until_next_update, 29 * 86_400 - 7200);
    assert!(tcb.verified);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_under_200_concurrent_requests() {
    let rig = Rig::new(Flavor::Pccs).await;
    // Hold the first responses back so that every request arrives while they are in flight.
    rig.server
        .fault_all(Fault::Delay(Duration::from_millis(300)));
    let fetcher = rig.fetcher();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (fetcher, quote) = (fetcher.clone(), rig.built.quote.clone());
            tokio::spawn(async move { fetcher.collateral_for_quote(&quote, NOW).await })
        })
        .collect();
    let mut digests = std::collections::HashSet::new();
    for task in tasks {
        let fetched = task.await.unwrap().unwrap();
        digests.insert(*fetched.collateral().digest());
    }
    assert_eq!(digests.len(), 1);
    assert_each_requested(&rig.server, Flavor::Pccs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_one_host_are_limited() {
    for (limit, most) in [(1, 1), (4, 4)] {
        let rig = Rig::new(Flavor::Pccs).await;
        rig.server
            .fault_all(Fault::Delay(Duration::from_millis(300)));
        let fetcher = fetcher(CollateralConfig {
            http: HttpLimits {
                per_host_requests: limit,
                ..limits()
            },
            ..rig.config()
        });
        rig.fetch(&fetcher, NOW).await;
        // The four items are asked for at once; at most `limit` reach the server together.
        assert_eq!(rig.server.most_in_flight(), most, "limit {limit}");
    }
}

#[tokio::test]
async fn refresh_ahead_of_expiry_in_the_background() {
    let rig = Rig::new(Flavor::Pccs).await;
    let fetcher = rig.fetcher();
    rig.fetch(&fetcher, NOW).await;
    assert_each_requested(&rig.server, Flavor::Pccs, 1);

    // Before 80 % of any window (the documents' 29 days from the fetch): nothing to refresh.
    rig.fetch(&fetcher, NOW + 23 * DAYS).await;
    fetcher.refreshes_settled().await;
    assert_each_requested(&rig.server, Flavor::Pccs, 1);

    // Past 80 % of every window: served from the cache at once, refreshed behind.
    let later = NOW + 25 * DAYS;
    rig.fetch(&fetcher, later).await;
    fetcher.refreshes_settled().await;
    assert_each_requested(&rig.server, Flavor::Pccs, 2);
    let metrics = fetcher.metrics(later);
    assert!(
        metrics.entries.iter().all(|e| e.age_seconds == 0),
        "{metrics:?}"
    );
    for item in ItemKind::INTEL {
        assert_eq!(metrics.lookups_of(item).hits, 2, "{item}");
        assert_eq!(metrics.fetches_of(item, RESULT_OK), 2, "{item}");
    }

    // One refresh per due time, however many requests see it due.
    for _ in 0..5 {
        rig.fetch(&fetcher, later + 10).await;
    }
    fetcher.refreshes_settled().await;
    assert_each_requested(&rig.server, Flavor::Pccs, 2);

    // The scheduled refresh (for quiet hours) refreshes what is due without a request.
    let due = later + 4 * DAYS;
    fetcher.refresh_due(due).await;
    assert_each_requested(&rig.server, Flavor::Pccs, 3);
}

#[tokio::test]
async fn a_valid_cached_entry_survives_transient_failures() {
    let rig = Rig::new(Flavor::Pcs).await;
    let fetcher = rig.fetcher();
    rig.fetch(&fetcher, NOW).await;
    rig.server.fault_all(Fault::ServerError);
    // Due for refresh, which fails: the cached set is served, and still verifies.
    let due = NOW + 25 * DAYS;
    let served = rig.fetch(&fetcher, due).await;
    fetcher.refreshes_settled().await;
    rig.verify(served.collateral(), due);
    let metrics = fetcher.metrics(due);
    assert_eq!(metrics.fetches_of(ItemKind::TcbInfo, "http_status"), 1);
    // A refresh that does not verify keeps the entries too.
    rig.server.clear_faults();
    rig.server.fault(Route::TcbInfo, Fault::BadSignature);
    let retry = due + 3600;
    rig.fetch(&fetcher, retry).await;
    fetcher.refreshes_settled().await;
    assert_eq!(
        fetcher
            .metrics(retry)
            .fetches_of(ItemKind::TcbInfo, RESULT_INVALID),
        1
    );
    rig.fetch(&fetcher, retry + 1).await;

    // Once the entries end, the failure shows.
    rig.server.fault(Route::TcbInfo, Fault::ServerError);
    assert_eq!(
        rig.kind(&fetcher, NOW + 29 * DAYS + 1).await,
        "collateral_unavailable"
    );
}

#[tokio::test]
async fn an_entry_is_never_served_past_its_next_update() {
    let rig = Rig::new(Flavor::Pcs).await;
    let fetcher = rig.fetcher();
    rig.fetch(&fetcher, NOW).await;
    // The TCB Info and QE Identity end at NOW + 29 days; the server still has only those.
    let past = NOW + 29 * DAYS + 1;
    assert_eq!(rig.kind(&fetcher, past).await, "collateral_expired");
    assert_eq!(rig.server.count(TCB_PATH), 2);
    assert_eq!(rig.server.count(QE_IDENTITY_PATH), 2);
    assert_eq!(
        rig.server.count(PCK_CRL_PATH),
        1,
        "the CRLs are valid until NOW + 30 days"
    );

    // New documents upstream: fetched, verified, served.
    rig.serve_resigned(|spec| {
        spec.tcb_info["nextUpdate"] = date(60 * DAY).into();
        spec.qe_identity["nextUpdate"] = date(60 * DAY).into();
    });
    let fresh = rig.fetch(&fetcher, past).await;
    rig.verify(fresh.collateral(), past);
    assert_eq!(
        fresh.valid_until(),
        NOW + 30 * DAYS,
        "the CRLs end first now"
    );
    assert_eq!(rig.server.count(TCB_PATH), 3);
}

#[tokio::test]
async fn a_restart_with_the_cache_directory_verifies_with_the_server_stopped() {
    let rig = Rig::new(Flavor::Pccs).await;
    let dir = tempfile::tempdir().unwrap();
    let with_dir = || CollateralConfig {
        cache_dir: Some(dir.path().join("collateral")),
        ..rig.config()
    };
    rig.fetch(&fetcher(with_dir()), NOW).await;
    assert_each_requested(&rig.server, Flavor::Pccs, 1);
    rig.server.stop();

    let restarted = fetcher(with_dir());
    let loaded = restarted.metrics(NOW);
    assert_eq!(loaded.entries.len(), 4);
    assert!(
        loaded.entries.iter().all(|e| !e.verified),
        "candidates until verified"
    );
    let later = NOW + 3600;
    let fetched = rig.fetch(&restarted, later).await;
    rig.verify(fetched.collateral(), later);
    assert!(restarted.metrics(later).entries.iter().all(|e| e.verified));
    assert_each_requested(&rig.server, Flavor::Pccs, 1);
}

#[tokio::test]
async fn a_tampered_cache_directory_is_refetched() {
    let rig = Rig::new(Flavor::Pccs).await;
    let dir = tempfile::tempdir().unwrap();
    let with_dir = || CollateralConfig {
        cache_dir: Some(dir.path().to_owned()),
        ..rig.config()
    };
    rig.fetch(&fetcher(with_dir()), NOW).await;
    // Rewrite the stored TCB Info with another document of the same shape, unsigned.
    let file = dir.path().join("tcb_info-90C06F000000-standard.json");
    let mut record: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let body = String::from_utf8(hex::decode(record["body_hex"].as_str().unwrap()).unwrap())
        .unwrap()
        .replace("UpToDate", "OutOfDate");
    record["body_hex"] = hex::encode(body).into();
    std::fs::write(&file, serde_json::to_vec(&record).unwrap()).unwrap();

    let restarted = fetcher(with_dir());
    let fetched = rig.fetch(&restarted, NOW + 60).await;
    rig.verify(fetched.collateral(), NOW + 60);
    // The disk set failed verification, so all of it came from the network again.
    assert_each_requested(&rig.server, Flavor::Pccs, 2);
}

#[tokio::test]
async fn unverified_json_for_a_target_without_a_quote() {
    let rig = Rig::new(Flavor::Pcs).await;
    let fetcher = rig.fetcher();
    let target = QuoteTarget {
        fmspc: tdx_support::FMSPC,
        ca: PckCa::Platform,
    };
    let json = fetcher.unverified_json(target, NOW).await.unwrap();
    let collateral = Collateral::from_json(&json).unwrap();
    rig.verify(&collateral, NOW);
    // Not cached: a quote's request fetches (and verifies) again.
    assert!(fetcher.metrics(NOW).entries.is_empty());
    rig.fetch(&fetcher, NOW).await;
    assert_each_requested(&rig.server, Flavor::Pcs, 2);
}

// --- CA certificates and CRLs by URL ------------------------------------------------------------

fn pem_der(path: &Path) -> Vec<u8> {
    let text = std::fs::read(path).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text).unwrap();
    pem.contents
}

/// 2024-05-11, inside the sample CRL's week.
const CRL_NOW: u64 = 1_715_400_000;

#[tokio::test]
async fn the_real_ak_certificates_point_inside_the_default_allowlist() {
    let dir = samples::samples_dir();
    let allow = UrlAllowlist::google_private_ca();
    let leaf = pem_der(&dir.join("gcp/salrashid_akcert.pem"));
    let intermediate = pem_der(&dir.join("gcp/salrashid_ak_intermediate.pem"));
    let issuers = ca_issuers_urls(&leaf);
    assert_eq!(issuers.len(), 1);
    assert!(
        issuers[0].starts_with("http://privateca-content-"),
        "{issuers:?}"
    );
    assert!(issuers[0].ends_with("/ca.crt"));
    let crls = crl_distribution_points(&intermediate);
    assert_eq!(crls.len(), 1);
    assert!(crls[0].ends_with("/crl.crl"), "{crls:?}");
    for url in issuers
        .iter()
        .chain(&crls)
        .chain(&ca_issuers_urls(&intermediate))
    {
        assert!(allow.allows_str(url), "{url}");
    }
    assert!(
        crl_distribution_points(&leaf).is_empty(),
        "the AK leaf names no CRL"
    );
}

#[tokio::test]
async fn ca_fetching_follows_only_the_allowlist() {
    let dir = samples::samples_dir();
    let server = PcsServer::start(Flavor::Pcs).await;
    let intermediate = pem_der(&dir.join("gcp/salrashid_ak_intermediate.pem"));
    let crl = std::fs::read(dir.join("gcp/salrashid_intermediate.crl")).unwrap();
    server.serve_file("/ca/ca.crt", intermediate.clone());
    server.serve_file(
        "/ca/ca.pem",
        std::fs::read(dir.join("gcp/salrashid_ak_intermediate.pem")).unwrap(),
    );
    server.serve_file("/ca/crl.crl", crl.clone());
    server.serve_file("/ca/huge.crl", vec![0x30; 2 * 1024 * 1024]);
    server.serve_file("/elsewhere/ca.crt", intermediate.clone());
    server.redirect("/ca/moved.crt", &server.url("/ca/ca.crt"));
    server.redirect("/ca/away.crt", &server.url("/elsewhere/ca.crt"));
    let fetcher = CaFetcher::new(CaConfig {
        allow: UrlAllowlist::new(&[server.url("/ca/")]).unwrap(),
        http: limits(),
    })
    .unwrap();

    // Cached by URL: the second request is not sent.
    for _ in 0..2 {
        let der = fetcher
            .issuer_certificate(&server.url("/ca/ca.crt"), CRL_NOW)
            .await
            .unwrap();
        assert_eq!(*der, intermediate);
    }
    assert_eq!(server.count("/ca/ca.crt"), 1);
    let pem = fetcher
        .issuer_certificate(&server.url("/ca/ca.pem"), CRL_NOW)
        .await
        .unwrap();
    assert_eq!(*pem, intermediate, "PEM on the wire, DER out");
    // A redirect to another allowlisted URL is followed.
    let moved = fetcher
        .issuer_certificate(&server.url("/ca/moved.crt"), CRL_NOW)
        .await
        .unwrap();
    assert_eq!(*moved, intermediate);
    assert_eq!(server.count("/ca/ca.crt"), 2);

    // The CRL is cached until its nextUpdate (2024-05-14), then fetched again.
    for now in [CRL_NOW, CRL_NOW + 3600] {
        assert_eq!(
            *fetcher.crl(&server.url("/ca/crl.crl"), now).await.unwrap(),
            crl
        );
    }
    assert_eq!(server.count("/ca/crl.crl"), 1);
    let stale = CRL_NOW + 7 * 86_400;
    assert_eq!(
        *fetcher
            .crl(&server.url("/ca/crl.crl"), stale)
            .await
            .unwrap(),
        crl
    );
    assert_eq!(server.count("/ca/crl.crl"), 2);

    // Refused before any request: another path, another port, another host.
    for url in [
        server.url("/elsewhere/ca.crt"),
        server.url("/ca/../elsewhere/ca.crt"),
        "http://127.0.0.2:1/ca/ca.crt".to_owned(),
        "http://privateca-content-x.storage.googleapis.com/ca.crt".to_owned(),
    ] {
        let err = fetcher.issuer_certificate(&url, CRL_NOW).await.unwrap_err();
        assert_eq!(err.kind().as_str(), "url_not_allowed", "{url}");
    }
    // A redirect out of the allowlist is not followed.
    let err = fetcher
        .issuer_certificate(&server.url("/ca/away.crt"), CRL_NOW)
        .await
        .unwrap_err();
    assert_eq!(err.kind().as_str(), "collateral_unavailable");
    assert!(err.to_string().contains("not followed"), "{err}");
    assert_eq!(
        server.count("/elsewhere/ca.crt"),
        0,
        "{:?}",
        server.requests()
    );

    // Responses are capped.
    let err = fetcher
        .crl(&server.url("/ca/huge.crl"), CRL_NOW)
        .await
        .unwrap_err();
    assert_eq!(err.kind().as_str(), "collateral_unavailable");
    assert!(err.to_string().contains("more than"), "{err}");

    let metrics = fetcher.metrics(CRL_NOW);
    assert_eq!(metrics.fetches_of(ItemKind::CaIssuer, RESULT_OK), 3);
    assert_eq!(
        metrics.fetches_of(ItemKind::CaIssuer, "redirect_refused"),
        1
    );
    assert_eq!(metrics.fetches_of(ItemKind::CaCrl, "too_large"), 1);
    assert_eq!(metrics.lookups_of(ItemKind::CaIssuer).hits, 1);
}
