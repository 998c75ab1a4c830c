//! Locates the real samples (`../shared/samples`) for conformance tests.
//!
//! `$TEE_VERIFIER_SAMPLES` names the folder; unset, `../shared/samples` beside the checkout is used.
//! Either must exist: a test that needs the real samples fails without them, it is never skipped.

// Each test crate includes this file and uses what it needs of it.
#![allow(dead_code)]

use std::path::PathBuf;

/// The samples folder; panics when neither location has it.
pub(crate) fn samples_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TEE_VERIFIER_SAMPLES") {
        let dir = PathBuf::from(dir);
        let dir = if dir.is_absolute() {
            dir
        } else {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir)
        };
        assert!(
            dir.join("expected.json").is_file(),
            "TEE_VERIFIER_SAMPLES={} has no expected.json",
            dir.display()
        );
        return dir;
    }
    let default = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/samples");
    // Never skipped: a checkout without the samples fails the tests that need them.
    assert!(
        default.join("expected.json").is_file(),
        "real samples not found: set TEE_VERIFIER_SAMPLES or provide ../shared/samples"
    );
    default
}

/// The entries of `expected.json`.
pub(crate) fn expected_entries(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("expected.json")).expect("read expected.json");
    serde_json::from_str(&text).expect("parse expected.json")
}
