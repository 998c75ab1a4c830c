//! Locates the real samples (`../shared/samples`) for conformance tests.
//!
//! `$TEE_VERIFIER_SAMPLES` names the folder; when it is set the folder must exist (CI sets it, so
//! CI always runs the real samples). Unset, `../shared/samples` beside the checkout is used if present;
//! otherwise the caller is told to skip, loudly.

// Each test crate includes this file and uses what it needs of it.
#![allow(dead_code)]

use std::path::PathBuf;

/// The samples folder, or `None` (after saying so on stderr) when neither location exists.
pub(crate) fn samples_dir() -> Option<PathBuf> {
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
        return Some(dir);
    }
    let default = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/samples");
    if default.join("expected.json").is_file() {
        Some(default)
    } else {
        eprintln!(
            "real samples not found (set TEE_VERIFIER_SAMPLES or provide ../shared/samples): conformance skipped"
        );
        None
    }
}

/// The entries of `expected.json`.
pub(crate) fn expected_entries(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("expected.json")).expect("read expected.json");
    serde_json::from_str(&text).expect("parse expected.json")
}
