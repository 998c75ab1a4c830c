//! The `verify` / `measure` contract on the real TDX and dstack samples, black-box through the
//! binary: every value `expected.json` lists must come out under the CLI's field names.

use crate::support::cli;
use crate::support::samples;

use cli::{cli, json};

use serde_json::Value;
use std::path::Path;

/// The fields of an expected.json entry that the CLI reports, as (CLI field, expected hex/text).
fn expected_fields(entry: &Value) -> Vec<(&'static str, String)> {
    let hex_fields = [
        ("app_id", "app_id"),
        ("compose_hash", "compose_hash"),
        ("instance_id", "instance_id"),
        ("mr_system", "mr_system"),
        ("mr_aggregated", "mr_aggregated"),
        ("device_id", "device_id"),
        ("ppid", "ppid"),
        ("rtmr3", "rtmr3"),
        ("os_image_hash", "os_image_hash_claimed"),
        ("os_image_hash", "os_image_hash"),
        ("report_data", "report_data"),
    ];
    let mut fields: Vec<(&'static str, String)> = hex_fields
        .iter()
        .filter_map(|(cli, key)| entry[*key].as_str().map(|v| (*cli, format!("0x{v}"))))
        .collect();
    if let Some(text) = entry["key_provider"].as_str() {
        fields.push(("key_provider", text.to_owned()));
    }
    if let Some(status) = entry["tcb_status"].as_str() {
        fields.push(("tcb_status", status.to_owned()));
    }
    fields
}

fn assert_fields(report: &Value, entry: &Value, verified: bool) {
    let file = entry["file"].as_str().unwrap();
    assert_eq!(report["verified"], verified, "{file}: {report}");
    for (field, expected) in expected_fields(entry) {
        assert_eq!(
            report[field].as_str(),
            Some(expected.as_str()),
            "{file}: {field}"
        );
    }
    if let Some(advisories) = entry.get("advisory_ids") {
        assert_eq!(&report["advisory_ids"], advisories, "{file}");
    }
}

fn path(dir: &Path, relative: &str) -> String {
    dir.join(relative).to_str().unwrap().to_owned()
}

#[test]
fn tdx_and_dstack_samples_verify_or_preview_with_their_expected_values() {
    let dir = samples::samples_dir();
    let entries = samples::expected_entries(&dir);
    let mut checked = 0;
    for entry in entries.iter().filter(|e| e["kind"] != "nitro") {
        let file = path(&dir, entry["file"].as_str().unwrap());
        match entry["expect"].as_str().unwrap() {
            "valid" => {
                let now = entry["now"].as_u64().unwrap().to_string();
                let mut args = vec!["verify", "--json", "--now", &now];
                let collateral = entry["collateral"].as_str().map(|c| path(&dir, c));
                if let Some(collateral) = &collateral {
                    args.extend(["--collateral", collateral]);
                }
                args.push(&file);
                let out = cli(&args);
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{file}: {}",
                    String::from_utf8_lossy(&out.stdout)
                );
                let report = json(&out);
                assert_fields(&report, entry, true);
                if let Some(platform) = entry["platform"].as_str() {
                    assert_eq!(report["platform"], platform);
                }
            }
            "replay-only" => {
                let out = cli(&["measure", "--json", &file]);
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{file}: {}",
                    String::from_utf8_lossy(&out.stdout)
                );
                assert_fields(&json(&out), entry, false);
            }
            other => panic!("{file}: unexpected expectation {other}"),
        }
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} TDX/dstack samples checked");
}

#[test]
fn tdx_rejections_carry_their_kind() {
    let dir = samples::samples_dir();
    let report = path(&dir, "dstack/dstack-verifier-quote-report.json");
    let collateral = path(&dir, "tdx/dcap-qvl_fmspc90c06f_collateral.json");
    let kind = |args: &[&str]| {
        let out = cli(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        json(&out)["error"]["kind"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        kind(&["verify", "--json", "--now", "1771459200", &report]),
        "collateral_missing"
    );
    assert_eq!(
        kind(&[
            "verify",
            "--json",
            "--now",
            "1771459200",
            "--collateral",
            &collateral,
            "--report-data",
            "99",
            &report
        ]),
        "binding_mismatch"
    );
    let compose = path(&dir, "dstack/dstack-examples-rtmr3-app-compose.json");
    assert_eq!(
        kind(&[
            "verify",
            "--json",
            "--now",
            "1771459200",
            "--collateral",
            &collateral,
            "--app-compose",
            &compose,
            &report
        ]),
        "binding_mismatch"
    );
    // Nitro-only bindings on a TDX quote are usage errors, not skipped checks.
    for flag in [
        ["--nonce", "00"],
        ["--user-data", "00"],
        ["--public-key", "00"],
        ["--max-age", "60"],
    ] {
        let mut args = vec!["verify", "--now", "1771459200", "--collateral", &collateral];
        args.extend(flag);
        args.push(&report);
        assert_eq!(cli(&args).status.code(), Some(2), "{flag:?}");
    }
    // The collateral's windows: TCB info not yet valid, then expired.
    let quote = path(&dir, "tdx/dcap-qvl_tdx_quote.bin");
    let quote_collateral = path(&dir, "tdx/dcap-qvl_tdx_quote_collateral.json");
    assert_eq!(
        kind(&[
            "verify",
            "--json",
            "--now",
            "1745216000",
            "--collateral",
            &quote_collateral,
            &quote
        ]),
        "collateral_not_yet_valid"
    );
    assert_eq!(
        kind(&[
            "verify",
            "--json",
            "--now",
            "1755584000",
            "--collateral",
            &quote_collateral,
            &quote
        ]),
        "collateral_expired"
    );
}
