//! The `verify` / `measure` command-line contract on real Nitro samples: exit codes, JSON shape,
//! input encodings and stdin.

use crate::support::cli;
use crate::support::samples;

use cli::{cli, json};

use std::io::Write;
use std::process::{Command, Stdio};

const SIGNAL: &str = "nitro/signal_test_cose_sign1_02.cbor";
const SIGNAL_NOW: &str = "1705431295";
const SIGNAL_HASH: &str = "0xcec7d227e5e653a10ace09338b182f5253570b603943cd260e313060e8ff6700";

#[test]
fn verified_document_prints_the_contract_json_and_exits_0() {
    let dir = samples::samples_dir();
    let file = dir.join(SIGNAL);
    let out = cli(&[
        "verify",
        "--json",
        "--now",
        SIGNAL_NOW,
        file.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    assert_eq!(report["verified"], true);
    assert_eq!(report["platform"], "nitro");
    assert_eq!(report["os_image_hash"], SIGNAL_HASH);
    assert_eq!(
        report["module_id"],
        "i-0797243b0383cd168-enc018cffeb5776ccea"
    );
    assert_eq!(report["timestamp_ms"], 1705431295996u64);
    assert!(report["pcrs"]["0"]
        .as_str()
        .unwrap()
        .starts_with("0x67fdc916"));
    assert_eq!(report["nonce"], serde_json::Value::Null);
    assert!(report["user_data"].as_str().unwrap().starts_with("0x0a20"));
}

#[test]
fn rejections_exit_1_with_a_kind() {
    let dir = samples::samples_dir();
    let file = dir.join(SIGNAL);
    let late = (SIGNAL_NOW.parse::<u64>().unwrap() + 4 * 3600).to_string();
    let out = cli(&["verify", "--json", "--now", &late, file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["verified"], false);
    assert_eq!(json(&out)["error"]["kind"], "expired");

    let out = cli(&[
        "verify",
        "--json",
        "--now",
        SIGNAL_NOW,
        "--nonce",
        "00",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["error"]["kind"], "binding_mismatch");

    // A binding a plain Nitro document cannot carry is a usage error, never silently skipped.
    let out = cli(&[
        "verify",
        "--now",
        SIGNAL_NOW,
        "--app-compose",
        file.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("app-compose"));

    let out = cli(&[
        "verify",
        "--now",
        SIGNAL_NOW,
        "--max-age",
        "0",
        file.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the document is 996 ms old, within 0 s of its own second"
    );
}

#[test]
fn usage_and_io_errors_exit_2() {
    assert_eq!(
        cli(&["verify", "/nonexistent/doc.cbor"]).status.code(),
        Some(2)
    );
    assert_eq!(
        cli(&["verify", "--nonce", "xyz", "doc"]).status.code(),
        Some(2)
    );
    assert_eq!(cli(&["measure", "--pcr0", "00"]).status.code(), Some(2));
    assert_eq!(
        cli(&["measure", "--pcr0", "00", "--pcr1", "00", "--pcr2", "00"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(cli(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn base64_and_hex_on_stdin_are_detected() {
    let dir = samples::samples_dir();
    let raw = std::fs::read(dir.join(SIGNAL)).unwrap();
    use base64::Engine as _;
    for text in [
        base64::engine::general_purpose::STANDARD.encode(&raw),
        hex::encode(&raw),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tee-verifier"))
            .args(["verify", "--json", "--now", SIGNAL_NOW, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(json(&out)["os_image_hash"], SIGNAL_HASH);
    }
}

#[test]
fn measure_computes_and_previews_without_verifying() {
    let zero = "00".repeat(48);
    let out = cli(&[
        "measure",
        "--pcr0",
        &zero,
        "--pcr1",
        &zero,
        "--pcr2",
        &"00".repeat(32),
    ]);
    assert_eq!(out.status.code(), Some(2), "PCRs of different banks");
    let out = cli(&[
        "measure", "--json", "--pcr0", &zero, "--pcr1", &zero, "--pcr2", &zero,
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        json(&out)["os_image_hash"],
        "0x81c611f35bff79491538b2f7cf201c7597a661a5c549633541c62bdc8af1613f"
    );
    let dir = samples::samples_dir();
    // Long expired, yet previewable: measure checks nothing and says so.
    let out = cli(&["measure", "--json", dir.join(SIGNAL).to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["verified"], false);
    assert_eq!(json(&out)["os_image_hash"], SIGNAL_HASH);
    let text = cli(&["measure", dir.join(SIGNAL).to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("NOT VERIFIED"));
}
