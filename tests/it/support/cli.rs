//! Running the `tee-verifier` binary in black-box tests.

// Each test crate includes this file and uses what it needs of it.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs the binary with `args`, with no registry source inherited from the environment.
pub(crate) fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tee-verifier"))
        .args(args)
        .env_remove("TEE_VERIFIER_REGISTRY")
        .env_remove("TEE_VERIFIER_RPC_URL")
        .output()
        .expect("run tee-verifier")
}

/// Its stdout, which must be one JSON object.
pub(crate) fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON object")
}
