//! The `check` / `registry` / `verify --registry` contract on a registry file: JSON shapes,
//! reason strings, exit codes (0 allowed/registered, 1 denied/absent, 2 error).

use crate::support::cli;
use crate::support::samples;

use cli::{cli, json};

use serde_json::Value;

const APP: &str = "0x3763bc34552cf3a27ff71ad5f7a90471562a1a2d";
const COMPOSE: &str = "0x3763bc34552cf3a27ff71ad5f7a90471562a1a2df552dfc1998cba2d60da27e7";
const OS_IMAGE: &str = "0x14ad42d0270b444eaeb53918a5a94d9b17eec7a817cd336173b17c5327541c67";
const DEVICE: &str = "0xea0ba482106a22ecb76b59b95fed32b5cc3a81534b27ee01a25a10a87cca7d03";

fn registry_file(dir: &tempfile::TempDir, allow_any_device: bool) -> String {
    let path = dir.path().join("registry.toml");
    std::fs::write(
        &path,
        format!(
            "block = 42\ngateway_app_id = \"\"\nos_images = [\"{OS_IMAGE}\"]\n\
             kms_aggregated_mrs = []\nkms_device_ids = []\n\
             [[apps]]\napp_id = \"{APP}\"\ncompose_hashes = [\"{COMPOSE}\"]\n\
             device_ids = [\"{DEVICE}\"]\nallow_any_device = {allow_any_device}\n\
             require_tcb_up_to_date = false\ncode = \"known\"\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn check_answers_like_the_contract_with_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry_file(&dir, false);
    let check = |extra: &[&str]| {
        let mut args = vec!["check", "--json", "--registry", &registry];
        args.extend_from_slice(extra);
        cli(&args)
    };
    let allowed = check(&[
        "--app-id",
        APP,
        "--compose-hash",
        COMPOSE,
        "--os-image-hash",
        OS_IMAGE,
        "--device-id",
        DEVICE,
    ]);
    assert_eq!(allowed.status.code(), Some(0));
    assert_eq!(
        json(&allowed),
        serde_json::json!({"allowed": true, "reason": "", "block": 42})
    );

    // Hex without 0x, upper case, is the same boot info.
    let upper = APP.trim_start_matches("0x").to_uppercase();
    let same = check(&[
        "--app-id",
        &upper,
        "--compose-hash",
        COMPOSE,
        "--os-image-hash",
        OS_IMAGE,
        "--device-id",
        DEVICE,
    ]);
    assert_eq!(same.status.code(), Some(0));

    let denied = check(&[
        "--app-id",
        APP,
        "--compose-hash",
        COMPOSE,
        "--device-id",
        DEVICE,
    ]);
    assert_eq!(denied.status.code(), Some(1));
    assert_eq!(json(&denied)["reason"], "OS image is not allowed");
    let unregistered = check(&["--app-id", "0x01"]);
    assert_eq!(json(&unregistered)["reason"], "App not registered");

    assert_eq!(check(&["--app-id", "0xzz"]).status.code(), Some(2));
    assert_eq!(
        cli(&["check", "--registry", "/nonexistent.toml"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        cli(&["check", "--app-id", APP]).status.code(),
        Some(2),
        "a source is required"
    );
}

#[test]
fn registry_lookup_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry_file(&dir, true);
    let lookup = |extra: &[&str]| {
        let mut args = vec!["registry", "lookup", "--json", "--registry", &registry];
        args.extend_from_slice(extra);
        cli(&args)
    };
    let hit = lookup(&["--os-image-hash", OS_IMAGE]);
    assert_eq!(hit.status.code(), Some(0));
    assert_eq!(
        json(&hit),
        serde_json::json!({"registered": true, "block": 42})
    );
    let miss = lookup(&["--app-id", APP, "--compose-hash", OS_IMAGE]);
    assert_eq!(miss.status.code(), Some(1));
    assert_eq!(json(&miss)["registered"], false);
    assert_eq!(
        lookup(&["--compose-hash", COMPOSE]).status.code(),
        Some(2),
        "compose hash needs its app"
    );
    assert_eq!(
        lookup(&[]).status.code(),
        Some(2),
        "one measurement is required"
    );

    let show = cli(&["registry", "show", "--json", "--registry", &registry]);
    assert_eq!(show.status.code(), Some(0));
    assert_eq!(json(&show)["block"], 42);
    // Without --json the view prints as a registry file that reads back the same.
    let toml = cli(&["registry", "show", "--registry", &registry]);
    let copy = dir.path().join("copy.toml");
    std::fs::write(&copy, &toml.stdout).unwrap();
    let again = cli(&[
        "registry",
        "show",
        "--json",
        "--registry",
        copy.to_str().unwrap(),
    ]);
    assert_eq!(json(&again), json(&show));
}

#[test]
fn verify_with_a_source_authorizes_the_verified_boot_info() {
    let samples = samples::samples_dir();
    let dir = tempfile::tempdir().unwrap();
    // A plain Nitro document has no dstack boot info: verified, but nothing to authorize.
    let nitro = samples.join("nitro/signal_test_cose_sign1_02.cbor");
    let out = cli(&[
        "verify",
        "--json",
        "--now",
        "1705431295",
        "--registry",
        &registry_file(&dir, true),
        nitro.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["verified"], true);
    assert_eq!(json(&out)["authorization"]["allowed"], false);

    let report = samples.join("dstack/dstack-verifier-quote-report.json");
    let collateral = samples.join("tdx/dcap-qvl_fmspc90c06f_collateral.json");
    let verify = |registry: &str, extra: &[&str]| {
        let mut args = vec![
            "verify",
            "--json",
            "--now",
            "1771459200",
            "--collateral",
            collateral.to_str().unwrap(),
            "--registry",
            registry,
        ];
        args.extend_from_slice(extra);
        args.push(report.to_str().unwrap());
        cli(&args)
    };
    let allowing = registry_file(&dir, true);
    // The TDX os_image_hash is the host's vm_config claim: never authorized by default.
    let out = verify(&allowing, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["verified"], true);
    assert_eq!(json(&out)["authorization"]["allowed"], false);
    assert_eq!(json(&out)["authorization"]["block"], Value::Null);

    let out = verify(&allowing, &["--accept-os-image-claim"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        json(&out)["authorization"],
        serde_json::json!({"allowed": true, "reason": "", "block": 42})
    );

    let empty = dir.path().join("empty.toml");
    std::fs::write(
        &empty,
        "block = 0\ngateway_app_id = \"\"\nos_images = []\nkms_aggregated_mrs = []\n\
         kms_device_ids = []\napps = []\n",
    )
    .unwrap();
    let out = verify(empty.to_str().unwrap(), &["--accept-os-image-claim"]);
    assert_eq!(out.status.code(), Some(1), "verified but not allowed");
    assert_eq!(json(&out)["verified"], true);
    assert_eq!(json(&out)["authorization"]["reason"], "App not registered");

    // An empty file is not an empty registry: it is refused (exit 2).
    std::fs::write(&empty, "").unwrap();
    let out = verify(empty.to_str().unwrap(), &["--accept-os-image-claim"]);
    assert_eq!(out.status.code(), Some(2));
}
