//! `serve --nitro-root`: a pinned test PKI replaces the built-in AWS root, and only for the
//! server that pins it.

use crate::support::nitro;
use crate::support::service;

use service::{write_file, Service};
use tee_verifier::service::proto::{self, verify_request::Evidence};

#[tokio::test]
async fn a_pinned_test_root_verifies_its_documents_and_only_there() {
    let pki = nitro::TestPki::aws_like();
    let document = nitro::Document::new(&pki).sign(&pki);
    let request = proto::VerifyRequest {
        evidence: Some(Evidence::NitroDocument(document)),
        ..Default::default()
    };
    let now = nitro::NOW.to_string();

    let files = tempfile::tempdir().expect("tempdir");
    let root_path = files.path().join("test-root.der");
    std::fs::write(&root_path, pki.root()).expect("write root");
    // The result cache off: the second verification is to show the chain caches warm.
    let pinned = Service::start(&[
        "--dangerous-fixed-now",
        &now,
        "--nitro-root",
        root_path.to_str().expect("path"),
        "--result-cache-entries",
        "0",
    ]);
    let response = pinned
        .client()
        .await
        .verify(request.clone())
        .await
        .expect("verify")
        .into_inner();
    assert!(response.verified, "{:?}", response.error);
    assert!(
        pinned.stderr().contains("non-default root"),
        "{}",
        pinned.stderr()
    );
    assert!(
        pinned.stderr().contains("FOR TESTS ONLY"),
        "the fixed clock is a warning at start: {}",
        pinned.stderr()
    );
    // Again, warm: the chain's certificates and links come from the caches, and /metrics says so.
    let response = pinned
        .client()
        .await
        .verify(request.clone())
        .await
        .expect("verify")
        .into_inner();
    assert!(response.verified, "{:?}", response.error);
    let (code, metrics) = pinned.get("/metrics").await;
    assert_eq!(code, 200);
    for line in [
        "tee_verifier_cache_lookups_total{cache=\"nitro_x509_certificates\",result=\"hit\"} 5\n",
        "tee_verifier_cache_lookups_total{cache=\"nitro_x509_certificates\",result=\"miss\"} 5\n",
        "tee_verifier_cache_lookups_total{cache=\"nitro_x509_links\",result=\"hit\"} 4\n",
        "tee_verifier_cache_lookups_total{cache=\"nitro_x509_links\",result=\"miss\"} 4\n",
        "tee_verifier_cache_lookups_total{cache=\"tdx_qe\",result=\"hit\"} 0\n",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }

    let default = Service::start(&["--dangerous-fixed-now", &now]);
    let response = default
        .client()
        .await
        .verify(request)
        .await
        .expect("verify")
        .into_inner();
    assert!(!response.verified);
    assert_eq!(response.error.expect("error").kind, "untrusted_root");

    // A file that is not a certificate stops the server before it listens.
    let junk = write_file(files.path(), "junk.der", "not a certificate");
    let (code, _, stderr) = service::run_cli(&[
        "serve",
        "--nitro-root",
        &junk,
        "--grpc-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--nitro-root"), "{stderr}");
}
