//! The registration workflow through the `tee-verifier` binary, on a real chain: `propose` a
//! batch (Transaction Builder file, MultiSend calldata, calls JSON) through a timelock; the tests
//! execute exactly that through a real Safe 1.4.1 (EIP-712 signatures, MultiSendCallOnly);
//! `registry pending` shows it waiting with its ETA, then ready; `executeBatch` runs it; `check`
//! allows the boot; a cancelled operation leaves the pending changes. Then `explain`, on real
//! views, for every hint kind the chain can produce.

use crate::governance::{builder_calls, governed, Governed, MIN_DELAY};
use crate::support::anvil::{self, transact, Anvil, Dstack, DstackApp, DstackKms};
use crate::support::cli::{cli, json};
use crate::support::safe::{advance_time, owner};

use alloy::hex::{decode as parse_hex, decode_to_array, encode_prefixed as hex};
use alloy::primitives::{keccak256, Address, Bytes, B256, U256};
use alloy::providers::Provider;
use alloy::sol_types::SolCall;
use tee_verifier::governance::abi::ITimelockController;
use tee_verifier::governance::safe::{Operation, SafeTransaction};
use tee_verifier::governance::tx_builder::verify_checksum;
use tee_verifier::governance::Call;

/// `--rpc-url … --kms-contract …` at the head.
fn chain_source(node: &Anvil, kms: Address) -> Vec<String> {
    vec![
        "--rpc-url".into(),
        node.url(),
        "--kms-contract".into(),
        hex(kms),
        "--confirmations".into(),
        "0".into(),
    ]
}

fn run(args: &[String]) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cli(&args)
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `registry pending --json` on the chain.
fn pending(g: &Governed) -> serde_json::Value {
    let mut args = vec!["registry".to_owned(), "pending".into(), "--json".into()];
    args.extend(chain_source(&g.node, g.kms));
    let output = run(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    json(&output)
}

fn call_of(value: &serde_json::Value) -> Call {
    Call::new(
        decode_to_array::<_, 20>(value["to"].as_str().unwrap()).unwrap(),
        parse_hex(value["data"].as_str().unwrap()).unwrap(),
    )
}

/// `propose` with the timelock flags, against the chain (so --strict reviews it).
fn propose(g: &Governed, format: &str, salt: &str, values: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = [
        "propose",
        "--strict",
        "--json",
        "--format",
        format,
        "--timelock",
        &hex(g.timelock),
        "--salt",
        &hex(keccak256(salt)),
        "--safe",
        &hex(g.safe.address),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(values.iter().map(|s| s.to_string()));
    args.extend(chain_source(&g.node, g.kms));
    run(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propose_safe_tx_builder_then_pending_ready_executed_and_allowed() {
    // 2-of-3 Safe; owners 0 and 2 sign.
    let g = governed(&[owner(0), owner(1), owner(2)], 2, &[0, 2]).await;
    let provider = g.provider();
    let (os_a, os_b, compose) = (keccak256("os-a"), keccak256("os-b"), keccak256("compose"));
    let values = [
        "--add-os-image".to_owned(),
        hex(os_a),
        "--add-os-image".into(),
        hex(os_b),
        "--app".into(),
        hex(g.app),
        "--add-compose-hash".into(),
        hex(compose),
    ];
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batch.json");

    // The Transaction Builder file (the delay is the timelock's, read from the chain).
    let mut args: Vec<&str> = values.clone();
    let file_arg = file.to_str().unwrap().to_owned();
    args.extend(["-o", &file_arg]);
    let output = propose(&g, "safe-tx-builder", "cli", &args);
    assert!(output.status.success(), "{}", stderr(&output));
    let batch: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(verify_checksum(&batch).unwrap());
    assert_eq!(batch["chainId"], "31337");
    assert_eq!(
        batch["meta"]["createdFromSafeAddress"],
        g.safe.address.to_checksum(None)
    );
    // The same proposal as calls JSON: the operation id, and the executeBatch to send later.
    let calls = propose(&g, "calls", "cli", &values);
    assert!(calls.status.success(), "{}", stderr(&calls));
    let calls = json(&calls);
    let operation_id = calls["timelock"]["operation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(calls["timelock"]["delay"], MIN_DELAY);
    assert_eq!(calls["calls"].as_array().unwrap().len(), 3);

    // operation_id is what the contract's hashOperationBatch gives.
    let targets = vec![g.kms, g.kms, g.app];
    let payloads: Vec<Bytes> = calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Bytes::from(parse_hex(c["data"].as_str().unwrap()).unwrap()))
        .collect();
    let id = g
        .eth_call(
            g.timelock,
            ITimelockController::hashOperationBatchCall {
                targets,
                values: vec![U256::ZERO; 3],
                payloads,
                predecessor: B256::ZERO,
                salt: keccak256("cli"),
            },
        )
        .await;
    assert_eq!(hex(id), operation_id);

    // The Safe runs the file's transactions through MultiSendCallOnly.
    assert_eq!(pending(&g)["pending"], serde_json::json!([]));
    g.run_through_multisend(&builder_calls(&batch)).await;
    let scheduled_block = provider.get_block_number().await.unwrap();
    let eta = g.timestamp_of_block(scheduled_block).await + MIN_DELAY;
    let listed = pending(&g);
    assert_eq!(listed["block"], scheduled_block);
    let changes = listed["pending"].as_array().unwrap();
    assert_eq!(changes.len(), 3, "{listed}");
    for (change, (target, function, value)) in changes.iter().zip([
        (g.kms, "addOsImageHash(bytes32)", os_a),
        (g.kms, "addOsImageHash(bytes32)", os_b),
        (g.app, "addComposeHash(bytes32)", compose),
    ]) {
        assert_eq!(change["operation_id"], operation_id.as_str());
        assert_eq!(change["target"], hex(target));
        assert_eq!(change["function"], function);
        assert_eq!(change["args"], serde_json::json!([hex(value)]));
        assert_eq!(change["eta"], eta);
        assert_eq!(change["state"], "waiting");
    }

    // Proposing it again is refused by --strict: already pending.
    let again = propose(&g, "calls", "again", &values);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("already_pending"),
        "{}",
        stderr(&again)
    );

    // Refused meanwhile; explain says it is pending, with the operation and ETA.
    let boot = [
        "--app-id".to_owned(),
        hex(g.app),
        "--os-image-hash".into(),
        hex(os_a),
        "--compose-hash".into(),
        hex(compose),
        "--tcb-status".into(),
        "UpToDate".into(),
    ];
    let mut explain = vec!["explain".to_owned(), "--json".into()];
    explain.extend(boot.iter().cloned());
    explain.extend(chain_source(&g.node, g.kms));
    let output = run(&explain);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let explanation = json(&output);
    assert_eq!(explanation["reason"], "OS image is not allowed");
    let hint = explanation["hints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["kind"] == "pending" && h["field"] == "osImageHash")
        .unwrap_or_else(|| panic!("{explanation}"));
    assert_eq!(hint["operation_id"], operation_id.as_str());
    assert_eq!(hint["eta"], eta);

    // Ready once the delay has passed; the Safe executes the calls JSON's executeBatch.
    advance_time(&provider, MIN_DELAY).await;
    let listed = pending(&g);
    assert!(listed["pending"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["state"] == "ready"));
    g.run_direct(call_of(&calls["timelock"]["execute"])).await;
    assert_eq!(pending(&g)["pending"], serde_json::json!([]));

    // Registered: check allows the boot.
    let mut check = vec!["check".to_owned(), "--json".into()];
    check.extend(boot.iter().cloned());
    check.extend(chain_source(&g.node, g.kms));
    let output = run(&check);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json(&output)["allowed"], true);
    let output = run(&explain);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json(&output)["allowed"], true);

    // Now the same add is "already registered".
    let again = propose(&g, "calls", "again", &values[..2]);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(stderr(&again).contains("already_registered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propose_multisend_and_calls_formats_and_a_cancelled_operation() {
    let g = governed(&[owner(0)], 1, &[0]).await;
    let provider = g.provider();
    let cancelled = keccak256("cancelled");
    let kept = keccak256("kept");

    // --format multisend: the Safe delegatecalls MultiSendCallOnly with exactly that data.
    let output = propose(&g, "multisend", "m", &["--add-os-image", &hex(cancelled)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let multisend = json(&output);
    assert_eq!(multisend["operation"], 1);
    assert_eq!(
        multisend["to"],
        "0x9641d764fc13c8b624c04430c7356c1c7c8102e2"
    );
    let tx = SafeTransaction {
        to: g.contracts.multi_send.into_array(),
        value: U256::ZERO,
        data: parse_hex(multisend["data"].as_str().unwrap()).unwrap(),
        operation: Operation::DelegateCall,
    };
    g.safe.execute(&provider, &tx, &g.signers).await;
    // A delay below the timelock's minimum would revert: refused.
    let short = propose(
        &g,
        "calls",
        "short",
        &["--add-os-image", &hex(kept), "--delay", "60"],
    );
    assert_eq!(short.status.code(), Some(2));
    assert!(stderr(&short).contains("getMinDelay"), "{}", stderr(&short));

    // --strict sees it pending now.
    let again = propose(&g, "calls", "m2", &["--add-os-image", &hex(cancelled)]);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(again.stdout.is_empty());

    // --format calls: the Safe sends timelock.schedule {to, data} directly.
    let output = propose(&g, "calls", "c", &["--add-os-image", &hex(kept)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let calls = json(&output);
    g.run_direct(call_of(&calls["timelock"]["schedule"])).await;
    let listed = pending(&g);
    let values: Vec<&str> = listed["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["args"][0].as_str().unwrap())
        .collect();
    assert_eq!(values, [hex(cancelled), hex(kept)], "{listed}");

    // Cancel the first (the Safe is a canceller): it leaves the pending changes.
    let cancelled_id = listed["pending"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["args"][0] == hex(cancelled))
        .unwrap()["operation_id"]
        .as_str()
        .unwrap()
        .parse::<B256>()
        .unwrap();
    let cancel = ITimelockController::cancelCall { id: cancelled_id };
    g.run_direct(Call::new(g.timelock.into_array(), cancel.abi_encode()))
        .await;
    let listed = pending(&g);
    let left = listed["pending"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{listed}");
    assert_eq!(left[0]["args"][0], hex(kept));
    assert_eq!(
        left[0]["operation_id"],
        calls["timelock"]["operation_id"].clone()
    );
}

/// A registry file follows no timelock: `registry pending` says so, with no changes.
#[test]
fn a_registry_file_has_no_pending_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    std::fs::write(
        &path,
        "block = 7\ngateway_app_id = \"\"\nos_images = []\nkms_aggregated_mrs = []\nkms_device_ids = []\napps = []\n",
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let output = cli(&["registry", "pending", "--json", "--registry", file]);
    assert!(output.status.success(), "{}", stderr(&output));
    let answer = json(&output);
    assert_eq!(answer["block"], 7);
    assert_eq!(answer["pending"], serde_json::json!([]));
    assert!(answer["note"].as_str().unwrap().contains("no timelock"));
    let output = cli(&["registry", "pending", "--registry", file]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("no pending changes"));
}

/// Values are exactly 32 bytes: never padded; zero and the debug-enclave image refused.
#[test]
fn propose_refuses_values_of_the_wrong_width() {
    let kms = "0x1111111111111111111111111111111111111111";
    let refused = |value: &str| {
        let output = cli(&["propose", "--kms-contract", kms, "--add-os-image", value]);
        assert_eq!(output.status.code(), Some(2), "{value}");
        stderr(&output)
    };
    assert!(refused("0x1234").contains("never padded"));
    assert!(refused(&format!("0x{}", "ab".repeat(33))).contains("exactly 32 bytes"));
    assert!(refused(&format!("0x{}", "00".repeat(32))).contains("zero"));
    let debug = alloy::hex::encode(tee_verifier::nitro::DEBUG_OS_IMAGE_HASH);
    assert!(refused(&debug).contains("debug-mode enclave"));
    // A removal needs no --app; app calls do.
    let output = cli(&[
        "propose",
        "--kms-contract",
        kms,
        "--add-compose-hash",
        &"ab".repeat(32),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let output = cli(&[
        "propose",
        "--kms-contract",
        kms,
        "--add-os-image",
        &format!("0x{}", "AB".repeat(32)),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let calls = json(&output);
    assert_eq!(calls["timelock"], serde_json::Value::Null);
    assert_eq!(calls["calls"][0]["function"], "addOsImageHash(bytes32)");
    assert_eq!(
        calls["calls"][0]["args"][0],
        format!("0x{}", "ab".repeat(32))
    );
}

/// `explain` on real chain states: every hint kind a view can give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_gives_every_hint_kind_on_real_views() {
    let node = Anvil::spawn();
    let provider = node.provider();
    let dstack = Dstack::deploy(&provider).await;
    let kms = dstack.kms;
    let (os, revoked_os, compose, other_compose) = (
        keccak256("os"),
        keccak256("revoked-os"),
        keccak256("compose"),
        keccak256("other-compose"),
    );
    // A short-hex mistake: the registered value is a 4-byte value left-padded.
    let short = B256::left_padding_from(&[0xde, 0xad, 0xbe, 0xef]);
    for value in [os, revoked_os, short] {
        transact(
            &provider,
            kms,
            DstackKms::addOsImageHashCall { osImageHash: value },
        )
        .await;
    }
    // Removed directly by the owner (no timelock): revoked, with the block of the removal.
    let removal = transact(
        &provider,
        kms,
        DstackKms::removeOsImageHashCall {
            osImageHash: revoked_os,
        },
    )
    .await;
    let removal_block = removal.block_number.unwrap();
    let device = keccak256("device");
    // The app requires UpToDate and lists one device; another app allows `other_compose`.
    let app = dstack
        .deploy_app(&provider, true, false, device, compose)
        .await;
    let other = dstack
        .deploy_app(&provider, false, true, B256::ZERO, other_compose)
        .await;
    let _ = other;
    transact(
        &provider,
        app,
        DstackApp::addComposeHashCall {
            composeHash: keccak256("removed-compose"),
        },
    )
    .await;
    transact(
        &provider,
        app,
        DstackApp::removeComposeHashCall {
            composeHash: keccak256("removed-compose"),
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let app_compose = dir.path().join("app-compose.json");
    std::fs::write(
        &app_compose,
        r#"{"docker_compose_file":"services:\n  web:\n    image: nginx:latest\n"}"#,
    )
    .unwrap();

    let explain = |fields: &[(&str, String)], extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["explain".to_owned(), "--json".into()];
        for (flag, value) in fields {
            args.push(format!("--{flag}"));
            args.push(value.clone());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(chain_source(&node, kms));
        let output = run(&args);
        assert!(
            matches!(output.status.code(), Some(0 | 1)),
            "{}",
            stderr(&output)
        );
        json(&output)
    };
    let kinds = |explanation: &serde_json::Value| -> Vec<String> {
        explanation["hints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    let app_id = hex(app);

    // Allowed: every check passes, in the contract's order.
    let allowed = explain(
        &[
            ("app-id", app_id.clone()),
            ("os-image-hash", hex(os)),
            ("compose-hash", hex(compose)),
            ("device-id", hex(device)),
            ("tcb-status", "UpToDate".into()),
        ],
        &[],
    );
    assert_eq!(allowed["allowed"], true, "{allowed}");
    let names: Vec<&str> = allowed["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "app_registered",
            "os_image_allowed",
            "app_deployed",
            "tcb_up_to_date",
            "compose_hash_allowed",
            "device_allowed"
        ]
    );

    // Revoked os image, other app's compose hash, unknown device, stale TCB, and a tagged image.
    let refused = explain(
        &[
            ("app-id", app_id.clone()),
            ("os-image-hash", hex(revoked_os)),
            ("compose-hash", hex(other_compose)),
            ("device-id", hex(keccak256("unknown-device"))),
            ("tcb-status", "OutOfDate".into()),
        ],
        &["--app-compose", app_compose.to_str().unwrap()],
    );
    assert_eq!(refused["allowed"], false);
    assert_eq!(refused["reason"], "OS image is not allowed");
    let got = kinds(&refused);
    for kind in [
        "not_registered",
        "revoked",
        "registered_elsewhere",
        "device_not_allowed",
        "tcb_not_up_to_date",
        "unpinned_image",
        "compose_hash_mismatch",
    ] {
        assert!(got.iter().any(|k| k == kind), "{kind} missing: {refused}");
    }
    let revoked = refused["hints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["kind"] == "revoked")
        .unwrap();
    assert_eq!(revoked["block"], removal_block);
    assert_eq!(revoked["value"], hex(revoked_os));

    // The short value as given, and a value matching a registered one only when padded.
    let widths = explain(
        &[
            ("app-id", app_id.clone()),
            ("os-image-hash", "0xdeadbeef".into()),
        ],
        &[],
    );
    assert!(kinds(&widths).iter().any(|k| k == "hex_width"), "{widths}");
    let shifted = B256::right_padding_from(&[0xde, 0xad, 0xbe, 0xef]);
    let mixup = explain(
        &[("app-id", app_id.clone()), ("os-image-hash", hex(shifted))],
        &[],
    );
    let hint = mixup["hints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["kind"] == "hex_width")
        .unwrap_or_else(|| panic!("{mixup}"));
    assert_eq!(hint["registered"], hex(short));

    // A debug enclave's image; an app the KMS never registered.
    let debug = format!(
        "0x{}",
        alloy::hex::encode(tee_verifier::nitro::DEBUG_OS_IMAGE_HASH)
    );
    let unregistered = explain(
        &[
            ("app-id", hex(anvil::other_account())),
            ("os-image-hash", debug),
        ],
        &[],
    );
    assert_eq!(unregistered["reason"], "App not registered");
    let got = kinds(&unregistered);
    assert!(got.iter().any(|k| k == "debug_image"), "{unregistered}");
    assert!(
        got.iter().any(|k| k == "app_not_registered"),
        "{unregistered}"
    );

    // Readable for people: the decision, the checks and the hints.
    let mut args = vec![
        "explain".to_owned(),
        "--app-id".into(),
        app_id,
        "--os-image-hash".into(),
        hex(revoked_os),
    ];
    args.extend(chain_source(&node, kms));
    let output = run(&args);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("DENIED at block"), "{text}");
    assert!(text.contains("FAIL os_image_allowed"), "{text}");
    assert!(
        text.contains(&format!("revoked: {} was removed", hex(revoked_os))),
        "{text}"
    );
}

/// `measure --app-compose`: sha256 of the exact bytes, and the images pulled by tag.
#[test]
fn measure_app_compose_hashes_the_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app-compose.json");
    let bytes = br#"{"docker_compose_file":"services:\n  app:\n    image: ghcr.io/acme/app:v1\n  db:\n    image: postgres@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"}"#;
    std::fs::write(&path, bytes).unwrap();
    let output = cli(&["measure", "--json", "--app-compose", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let answer = json(&output);
    use sha2::Digest as _;
    assert_eq!(
        answer["compose_hash"],
        format!("0x{}", alloy::hex::encode(sha2::Sha256::digest(bytes)))
    );
    let hints = answer["hints"].as_array().unwrap();
    assert_eq!(hints.len(), 1, "{answer}");
    assert_eq!(hints[0]["kind"], "unpinned_image");
    assert_eq!(hints[0]["image"], "ghcr.io/acme/app:v1");
}

/// `--from-evidence` verifies as `verify` does, then proposes the os image hash (or with
/// `--app`, the compose hash); debug, unbound and unverified evidence is refused.
#[test]
fn propose_from_evidence_verifies_it_first() {
    let dir = crate::support::samples::samples_dir();
    let kms = "0x1111111111111111111111111111111111111111";
    let sample = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let propose = |extra: &[&str]| {
        let mut args = vec!["propose", "--json", "--kms-contract", kms];
        args.extend_from_slice(extra);
        cli(&args)
    };
    let signal = sample("nitro/signal_test_cose_sign1_02.cbor");
    let output = propose(&["--from-evidence", &signal, "--now", "1705431295"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let calls = json(&output);
    assert_eq!(calls["calls"][0]["to"], kms);
    assert_eq!(calls["calls"][0]["function"], "addOsImageHash(bytes32)");
    assert_eq!(
        calls["calls"][0]["args"][0],
        "0xcec7d227e5e653a10ace09338b182f5253570b603943cd260e313060e8ff6700"
    );
    // Not verified (expired at that time): refused, nothing printed.
    let output = propose(&["--from-evidence", &signal, "--now", "1705445695"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(
        stderr(&output).contains("did not verify"),
        "{}",
        stderr(&output)
    );
    // A debug enclave.
    let debug = sample("nitro/evervault_debug-mode-attestation-doc-bytes.cbor");
    let output = propose(&["--from-evidence", &debug, "--now", "1665582606"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("debug_enclave"),
        "{}",
        stderr(&output)
    );

    // dstack TDX: the os image hash is the host's claim, so it is not proposed; the compose
    // hash of the evidence's app is.
    let report = sample("dstack/dstack-verifier-quote-report.json");
    let collateral = sample("tdx/dcap-qvl_fmspc90c06f_collateral.json");
    let tdx = [
        "--from-evidence",
        &report,
        "--collateral",
        &collateral,
        "--now",
        "1771459200",
    ];
    let output = propose(&tdx);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("vm_config claim"),
        "{}",
        stderr(&output)
    );
    let app = "0x3763bc34552cf3a27ff71ad5f7a90471562a1a2d";
    let mut with_app = tdx.to_vec();
    with_app.extend(["--app", app]);
    let output = propose(&with_app);
    assert!(output.status.success(), "{}", stderr(&output));
    let calls = json(&output);
    assert_eq!(calls["calls"][0]["to"], app);
    assert_eq!(calls["calls"][0]["function"], "addComposeHash(bytes32)");
    assert_eq!(
        calls["calls"][0]["args"][0],
        "0x3763bc34552cf3a27ff71ad5f7a90471562a1a2df552dfc1998cba2d60da27e7"
    );
    let mut other_app = tdx.to_vec();
    other_app.extend(["--app", "0x2222222222222222222222222222222222222222"]);
    let output = propose(&other_app);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("not of --app"),
        "{}",
        stderr(&output)
    );

    // explain EVIDENCE_FILE: verified first, then its boot info explained.
    let tmp = tempfile::tempdir().unwrap();
    let registry = tmp.path().join("registry.toml");
    std::fs::write(
        &registry,
        "block = 3\ngateway_app_id = \"\"\nos_images = []\nkms_aggregated_mrs = []\nkms_device_ids = []\napps = []\n",
    )
    .unwrap();
    let registry = registry.to_str().unwrap();
    let explain = |extra: &[&str]| {
        let mut args = vec!["explain", "--json", "--registry", registry];
        args.extend_from_slice(extra);
        args.extend(["--collateral", &collateral, "--now", "1771459200", &report]);
        cli(&args)
    };
    let output = explain(&[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json(&output)["error"]["kind"], "unauthorizable");
    let output = explain(&["--accept-os-image-claim"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let explanation = json(&output);
    assert_eq!(explanation["reason"], "App not registered");
    assert_eq!(explanation["block"], 3);
    assert!(explanation["hints"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["kind"] == "app_not_registered"));
}

/// With a registry file as SOURCE, `propose` warns about changes that change nothing or cannot
/// apply; `--strict` refuses them.
#[test]
fn propose_reviews_against_a_registry_file() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = tmp.path().join("registry.toml");
    let (os, app, compose) = ("11".repeat(32), "22".repeat(20), "33".repeat(32));
    std::fs::write(
        &registry,
        format!(
            "block = 5\ngateway_app_id = \"\"\nos_images = [\"0x{os}\"]\nkms_aggregated_mrs = []\n\
             kms_device_ids = []\n[[apps]]\napp_id = \"0x{app}\"\ncompose_hashes = [\"0x{compose}\"]\n\
             device_ids = []\nallow_any_device = true\nrequire_tcb_up_to_date = false\ncode = \"known\"\n"
        ),
    )
    .unwrap();
    let registry = registry.to_str().unwrap();
    let kms = "0x1111111111111111111111111111111111111111";
    let propose = |extra: &[&str]| {
        let mut args = vec!["propose", "--registry", registry, "--kms-contract", kms];
        args.extend_from_slice(extra);
        cli(&args)
    };
    let unregistered_app = format!("0x{}", "44".repeat(20));
    let changes = [
        "--add-os-image",
        &format!("0x{os}"),
        "--remove-os-image",
        &format!("0x{}", "55".repeat(32)),
        "--app",
        &unregistered_app,
        "--add-compose-hash",
        &format!("0x{compose}"),
    ];
    let output = propose(&changes);
    assert!(output.status.success(), "{}", stderr(&output));
    let warnings = stderr(&output);
    for kind in ["already_registered", "not_registered", "app_not_registered"] {
        assert!(
            warnings.contains(&format!("warning ({kind})")),
            "{warnings}"
        );
    }
    assert_eq!(json(&output)["calls"].as_array().unwrap().len(), 3);
    let mut strict = changes.to_vec();
    strict.push("--strict");
    let output = propose(&strict);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    // A fresh value on the registered app: nothing to say; the cast lines send and check it.
    let fresh = format!("0x{}", "66".repeat(32));
    let output = propose(&[
        "--strict",
        "--format",
        "cast",
        "--app",
        &format!("0x{app}"),
        "--add-compose-hash",
        &fresh,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stderr(&output).contains("warning"), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains(&format!(
        "cast send 0x{app} \"addComposeHash(bytes32)\" {fresh}"
    )));
    assert!(text.contains("allowedComposeHashes(bytes32)(bool)"));
    // --timelock needs a delay when no chain source can read its minimum.
    let output = propose(&["--add-os-image", &fresh, "--timelock", kms]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--delay"), "{}", stderr(&output));
}
