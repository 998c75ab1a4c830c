//! The committed generated fixtures (`fixtures/tdx/`, from `cargo run --example tdx_fixtures`)
//! verify as their manifest says, and the whole window logic holds around their `now`.

use std::path::PathBuf;
use tee_verifier::tdx::{Collateral, TdxPolicy, TdxVerifier};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/tdx")
}

#[test]
fn fixtures_verify_as_documented() {
    let dir = fixtures();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let root = std::fs::read(dir.join(manifest["root"].as_str().unwrap())).unwrap();
    let collateral = std::fs::read(dir.join(manifest["collateral"].as_str().unwrap())).unwrap();
    let collateral = Collateral::from_json(&collateral).unwrap();
    let verifier = TdxVerifier::with_root_der(&root);
    let quotes = manifest["quotes"].as_array().unwrap();
    assert!(quotes.len() >= 8);
    for entry in quotes {
        let file = entry["file"].as_str().unwrap();
        let quote = std::fs::read(dir.join(file)).unwrap();
        let now = entry["now"].as_u64().unwrap();
        let result = verifier.verify(&quote, &collateral, now, &TdxPolicy::default());
        match entry["expect"].as_str().unwrap() {
            "valid" => {
                let verified = result.unwrap_or_else(|e| panic!("{file}: {e}"));
                assert_eq!(verified.tcb_status.as_str(), entry["tcb_status"], "{file}");
                assert_eq!(
                    serde_json::json!(verified.advisory_ids),
                    entry["advisory_ids"],
                    "{file}"
                );
            }
            _ => {
                let err = result.err().unwrap_or_else(|| panic!("{file} verified"));
                assert_eq!(err.kind().as_str(), entry["reject_kind"], "{file}: {err}");
            }
        }
        // The real Intel root does not vouch for the test PKI.
        let err = TdxVerifier::new()
            .verify(&quote, &collateral, now, &TdxPolicy::default())
            .unwrap_err();
        assert_eq!(err.kind().as_str(), "untrusted_root", "{file}");
    }
}
