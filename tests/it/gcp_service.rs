//! `tee-verifier serve` completing a GCP AK chain the CA bundle lacks: the intermediate fetched by
//! the AK certificate's AIA caIssuers URL and the root's CRL by the intermediate's CRL
//! distribution point, from the committed fixture PKI (`fixtures/gcp/`), then verified as a
//! bundle's would be. The certificates name Google's private-CA content host; a plain HTTP server
//! on 127.0.0.1 answers for it as the service's HTTP proxy (`http_proxy`), so the certificates'
//! own URLs are requested unchanged and the allowlist judges those.

use crate::support::pcs::{Flavor, PcsServer};
use crate::support::samples;
use crate::support::service::Service;

use serde_json::Value;
use std::path::{Path, PathBuf};
use tee_verifier::service::proto::{self, verify_request::Evidence};
use tonic::Code;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

/// Where the fixture AK certificate's AIA caIssuers URL points (the intermediate).
const INTERMEDIATE_PATH: &str = "/test/intermediate/ca.crt";
/// Where the fixture intermediate's CRL distribution point points (the root's CRL).
const ROOT_CRL_PATH: &str = "/test/root/crl.crl";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/gcp")
}

fn fixture_path(name: &str) -> String {
    fixtures().join(name).to_str().expect("path").to_owned()
}

fn manifest() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).expect("manifest"))
        .expect("json")
}

/// The fixture RSA attestation with its TDX collateral inline (only the AK chain is fetched).
fn request() -> proto::VerifyRequest {
    let collateral = std::fs::read_to_string(
        samples::samples_dir().join(manifest()["tdx_collateral"].as_str().expect("collateral")),
    )
    .expect("collateral");
    proto::VerifyRequest {
        evidence: Some(Evidence::DstackAttestation(proto::DstackAttestation {
            attestation: std::fs::read(fixtures().join("attestation_rsa_v1.msgpack"))
                .expect("fixture"),
            collateral: Some(collateral),
        })),
        ..Default::default()
    }
}

/// The intermediate and the root's CRL of a fixture CA bundle.
fn intermediate_and_root_crl(bundle: &str) -> (Vec<u8>, Vec<u8>) {
    let text = std::fs::read(fixtures().join(bundle)).expect("bundle");
    let blocks: Vec<_> = x509_parser::pem::Pem::iter_from_buffer(&text)
        .map(|block| block.expect("PEM"))
        .collect();
    let intermediate = blocks
        .iter()
        .find(|block| block.label == "CERTIFICATE")
        .expect("an intermediate")
        .contents
        .clone();
    let (_, parsed) = X509Certificate::from_der(&intermediate).expect("intermediate");
    let root_name = parsed.issuer().as_raw().to_vec();
    let root_crl = blocks
        .iter()
        .filter(|block| block.label == "X509 CRL")
        .find(|block| {
            CertificateRevocationList::from_der(&block.contents)
                .is_ok_and(|(_, crl)| crl.tbs_cert_list.issuer.as_raw() == root_name)
        })
        .expect("the root's CRL")
        .contents
        .clone();
    (intermediate, root_crl)
}

/// A server holding the intermediate and root CRL of `bundle` at the fixture PKI's paths.
async fn ca_server(bundle: &str) -> PcsServer {
    let server = PcsServer::start(Flavor::Pcs).await;
    let (intermediate, root_crl) = intermediate_and_root_crl(bundle);
    server.serve_file(INTERMEDIATE_PATH, intermediate);
    server.serve_file(ROOT_CRL_PATH, root_crl);
    server
}

/// The service pinned to the fixture root, with no CA bundle, reaching the CA host through
/// `proxy`, at the fixtures' `now`.
fn service(proxy: &str, extra: &[&str]) -> Service {
    let now = manifest()["now"].to_string();
    let root = fixture_path("root.der");
    let mut args = vec!["--dangerous-fixed-now", &now, "--gcp-root", &root];
    args.extend_from_slice(extra);
    Service::start_under(&["env", &format!("http_proxy={proxy}")], &args)
}

async fn verify(service: &Service) -> Result<proto::VerifyResponse, tonic::Status> {
    service
        .client()
        .await
        .verify(request())
        .await
        .map(tonic::Response::into_inner)
}

async fn rejection_kind(service: &Service) -> String {
    let response = verify(service).await.expect("an answer");
    assert!(!response.verified);
    response.error.expect("an error").kind
}

/// The intermediate fetched by AIA and the root's CRL by CRL DP verify the chain; a second
/// request is served from the fetcher's cache.
#[tokio::test]
async fn gcp_service_fetches_the_ak_chain_by_aia_and_crl_dp_then_caches_it() {
    let server = ca_server("ca_bundle.pem").await;
    let service = service(&server.base_url(), &[]);
    for _ in 0..2 {
        let response = verify(&service).await.expect("an answer");
        assert!(response.verified, "{:?}", response.error);
        assert_eq!(
            response.attested.expect("attested").platform,
            proto::Platform::GcpTdx as i32
        );
    }
    assert_eq!(
        server.count(INTERMEDIATE_PATH),
        1,
        "{:?}",
        server.requests()
    );
    assert_eq!(server.count(ROOT_CRL_PATH), 1, "{:?}", server.requests());
    assert_eq!(server.requests().len(), 2);
    let (_, metrics) = service.get("/metrics").await;
    assert!(
        metrics
            .contains("tee_verifier_collateral_fetches_total{item=\"ca_issuer\",result=\"ok\"} 1"),
        "{metrics}"
    );
}

/// What the bundle supplies is not fetched.
#[tokio::test]
async fn gcp_service_fetches_nothing_the_bundle_supplies() {
    let server = ca_server("ca_bundle.pem").await;
    let bundle = fixture_path("ca_bundle.pem");
    let service = service(&server.base_url(), &["--gcp-ca-bundle", &bundle]);
    let response = verify(&service).await.expect("an answer");
    assert!(response.verified, "{:?}", response.error);
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

/// An AIA URL off the allowlist is never requested: the intermediate stays missing, named.
#[tokio::test]
async fn gcp_service_never_requests_an_aia_url_off_the_allowlist() {
    let server = ca_server("ca_bundle.pem").await;
    let service = service(
        &server.base_url(),
        &["--ca-fetch-allow", "http://ca.example/"],
    );
    let response = verify(&service).await.expect("an answer");
    let error = response.error.expect("rejected");
    assert_eq!(error.kind, "collateral_missing");
    assert!(
        error.message.contains("EK/AK CA Intermediate"),
        "{}",
        error.message
    );
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

/// A fetched root CRL that revokes the intermediate is enforced.
#[tokio::test]
async fn gcp_service_enforces_a_fetched_crl_that_revokes() {
    let server = ca_server("ca_bundle_revoked.pem").await;
    let service = service(&server.base_url(), &[]);
    assert_eq!(rejection_kind(&service).await, "revoked");
    assert_eq!(server.count(ROOT_CRL_PATH), 1);
}

/// A fetched CRL past its nextUpdate is refused, not skipped.
#[tokio::test]
async fn gcp_service_refuses_a_stale_fetched_crl() {
    let server = ca_server("ca_bundle_stale_crl.pem").await;
    let service = service(&server.base_url(), &[]);
    assert_eq!(rejection_kind(&service).await, "collateral_expired");
}

/// The CA host unreachable with nothing cached: UNAVAILABLE, never an answer.
#[tokio::test]
async fn gcp_service_is_unavailable_when_the_ca_host_is_down() {
    let server = PcsServer::start(Flavor::Pcs).await;
    let proxy = server.base_url();
    drop(server);
    // The listener closes once its task is aborted.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let service = service(&proxy, &[]);
    let status = verify(&service).await.expect_err("a status");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        status
            .metadata()
            .get("tee-verifier-error-kind")
            .expect("kind"),
        "collateral_unavailable"
    );
}
