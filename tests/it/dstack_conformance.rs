//! The dstack entries of the real samples' `expected.json`: event-log replay against the quote's
//! RTMRs, app info, measurements and boot info exactly as dstack's KMS derives them. New entries of
//! the same kinds are picked up without code changes.

use crate::support::samples;

use serde_json::Value;
use std::path::Path;
use tee_verifier::dstack::{
    nitro_identity, runtime_event_digest, tdx_identity, DstackError, DstackIdentity, Evidence,
    MrMode, NitroEnclave, RuntimeEventVersion, TdRegisters, TdxTcb,
};

const DSTACK_KINDS: [&str; 2] = ["dstack-quote-report", "dstack-attestation-v0"];

fn hex_of(entry: &Value, key: &str) -> Option<Vec<u8>> {
    entry
        .get(key)
        .and_then(Value::as_str)
        .map(|text| hex::decode(text).expect("expected.json hex"))
}

fn read(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn tdx_tcb(entry: &Value) -> TdxTcb {
    TdxTcb {
        ppid: hex_of(entry, "ppid").unwrap_or_default(),
        tcb_status: entry
            .get("tcb_status")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        advisory_ids: entry
            .get("advisory_ids")
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Every value an entry lists must come out of the identity.
fn check_listed_values(file: &str, entry: &Value, identity: &DstackIdentity) {
    let info = &identity.boot_info;
    let listed: [(&str, Vec<u8>); 8] = [
        ("app_id", info.app_id.to_vec()),
        ("compose_hash", info.compose_hash.to_vec()),
        ("instance_id", info.instance_id.to_vec()),
        ("mr_system", info.mr_system.to_vec()),
        ("mr_aggregated", info.mr_aggregated.to_vec()),
        ("device_id", info.device_id.to_vec()),
        ("os_image_hash", info.os_image_hash.to_vec()),
        ("os_image_hash_claimed", info.os_image_hash.to_vec()),
    ];
    for (key, actual) in listed {
        if let Some(expected) = hex_of(entry, key) {
            assert_eq!(hex::encode(actual), hex::encode(expected), "{file}: {key}");
        }
    }
    if let Some(key_provider) = entry.get("key_provider").and_then(Value::as_str) {
        assert_eq!(
            identity.app_info.key_provider_info,
            key_provider.as_bytes(),
            "{file}: key_provider"
        );
        let parsed = identity
            .app_info
            .key_provider()
            .unwrap()
            .expect("key provider");
        assert!(
            key_provider.contains(&parsed.name) && key_provider.contains(&parsed.id),
            "{file}"
        );
    }
    if let Some(status) = entry.get("tcb_status").and_then(Value::as_str) {
        assert_eq!(info.tcb_status, status, "{file}: tcb_status");
    }
    if entry.get("os_image_hash_claimed").is_some() {
        assert!(
            !identity.os_image_hash_bound,
            "{file}: a vm_config os_image_hash is only a claim"
        );
    }
}

fn check_tdx_report(dir: &Path, file: &str, entry: &Value, bytes: &[u8]) {
    let Evidence::Tdx(evidence) = Evidence::parse(bytes).unwrap_or_else(|e| panic!("{file}: {e}"))
    else {
        panic!("{file}: not TDX evidence")
    };
    let quote =
        tee_verifier::tdx::Quote::parse(&evidence.quote).unwrap_or_else(|e| panic!("{file}: {e}"));
    let registers = TdRegisters::from(&quote.body);
    let identity = tdx_identity(&registers, &evidence, tdx_tcb(entry), MrMode::Runtime)
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(
        identity.replay.expect("replay").checked,
        [true; 4],
        "{file}: all four RTMRs replayed"
    );
    check_listed_values(file, entry, &identity);
    if let Some(rtmr3) = hex_of(entry, "rtmr3") {
        assert_eq!(
            evidence.event_log.replay()[3].to_vec(),
            rtmr3,
            "{file}: rtmr3"
        );
    }
    if let Some(report_data) = hex_of(entry, "report_data") {
        assert_eq!(
            registers.report_data.to_vec(),
            report_data,
            "{file}: report_data"
        );
    }
    if let Some(claimed) = evidence.report_data {
        assert_eq!(
            claimed, registers.report_data,
            "{file}: the report's report_data is the quote's"
        );
    }
    if let Some(compose_file) = entry.get("app_compose").and_then(Value::as_str) {
        let compose = read(dir, compose_file);
        identity
            .app_info
            .check_app_compose(&compose)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut reserialized = compose.clone();
        reserialized.push(b'\n');
        let err = identity
            .app_info
            .check_app_compose(&reserialized)
            .unwrap_err();
        assert_eq!(err.kind().as_str(), "binding_mismatch", "{file}");
    }
    check_tampering_is_caught(file, bytes, &registers);
}

/// The report with its event log edited by `edit`.
fn with_edited_log(bytes: &[u8], edit: impl FnOnce(&mut Vec<Value>)) -> Vec<u8> {
    let mut report: Value = serde_json::from_slice(bytes).unwrap();
    let log_text = report["event_log"].as_str().expect("event_log string");
    let mut log: Vec<Value> = serde_json::from_str(log_text).unwrap();
    edit(&mut log);
    report["event_log"] = Value::String(serde_json::to_string(&log).unwrap());
    report.to_string().into_bytes()
}

fn event_named<'a>(log: &'a mut [Value], name: &str) -> &'a mut Value {
    log.iter_mut()
        .find(|event| event["event"] == name)
        .unwrap_or_else(|| panic!("no {name} event"))
}

/// A changed RTMR3 payload breaks the replay; relabelling `system-ready` as a boot event (whose
/// given digest would still replay) is refused outright.
fn check_tampering_is_caught(file: &str, bytes: &[u8], registers: &TdRegisters) {
    let tampered = with_edited_log(bytes, |log| {
        let compose = event_named(log, "compose-hash");
        compose["event_payload"] = Value::String("00".repeat(32));
        compose["digest"] = Value::String(String::new());
    });
    let Evidence::Tdx(tampered) = Evidence::parse(&tampered).unwrap() else {
        panic!("{file}: not TDX evidence")
    };
    let err = tdx_identity(registers, &tampered, TdxTcb::default(), MrMode::Runtime).unwrap_err();
    assert!(
        matches!(err, DstackError::RtmrMismatch { register: 3, .. }),
        "{file}: {err}"
    );
    assert_eq!(err.kind().as_str(), "event_log_mismatch");

    let relabelled = with_edited_log(bytes, |log| {
        let ready = event_named(log, "system-ready");
        let digest = runtime_event_digest(RuntimeEventVersion::V1, "system-ready", b"");
        ready["event_type"] = Value::from(4);
        ready["digest"] = Value::String(hex::encode(digest));
    });
    let err = Evidence::parse(&relabelled).unwrap_err();
    assert!(
        matches!(err, DstackError::InvalidEvent { .. }),
        "{file}: {err}"
    );
}

fn check_nitro_attestation(file: &str, entry: &Value, bytes: &[u8]) {
    let Evidence::Nitro(evidence) =
        Evidence::parse(bytes).unwrap_or_else(|e| panic!("{file}: {e}"))
    else {
        panic!("{file}: not Nitro evidence")
    };
    let document = tee_verifier::nitro::parse_document(&evidence.document)
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let enclave = NitroEnclave::from(&document);
    let identity = nitro_identity(&enclave, &evidence).unwrap_or_else(|e| panic!("{file}: {e}"));
    check_listed_values(file, entry, &identity);
    let info = &identity.boot_info;
    assert!(identity.os_image_hash_bound);
    for value in [info.compose_hash, info.mr_system, info.mr_aggregated] {
        assert_eq!(
            value, info.os_image_hash,
            "{file}: Nitro identities are the image hash"
        );
    }
    assert_eq!(info.tcb_status, "", "{file}");
    assert_eq!(
        hex::encode(info.device_id),
        "de7d1b721a1e0632b7cf04edf5032c8ecffa9f9a08492152b926f1a5a7e765d7",
        "{file}: sha256(\"i\"), upstream's quirk"
    );
    if let Some(report_data) = hex_of(entry, "report_data") {
        assert_eq!(
            evidence.report_data.to_vec(),
            report_data,
            "{file}: report_data"
        );
    }
    // Every truncation of the real attestation, and one byte too many, is malformed.
    for len in 0..bytes.len() {
        let err = Evidence::parse(&bytes[..len]).unwrap_err();
        assert_eq!(
            err.kind().as_str(),
            "malformed",
            "{file}: prefix of {len} bytes: {err}"
        );
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert_eq!(
        Evidence::parse(&longer).unwrap_err().kind().as_str(),
        "malformed",
        "{file}"
    );
    // The same attestation spelled as dstack-verifier's `{"attestation": hex}` request.
    let json = serde_json::json!({ "attestation": hex::encode(bytes) }).to_string();
    assert_eq!(
        Evidence::parse(json.as_bytes()).unwrap(),
        Evidence::Nitro(evidence)
    );
}

#[test]
fn dstack_samples_match_expected_values() {
    let dir = samples::samples_dir();
    let mut checked = 0;
    for entry in samples::expected_entries(&dir) {
        let kind = entry["kind"].as_str().unwrap_or_default();
        let expect = entry["expect"].as_str().unwrap_or_default();
        if !DSTACK_KINDS.contains(&kind) || !["valid", "replay-only"].contains(&expect) {
            continue;
        }
        let file = entry["file"].as_str().expect("file");
        let bytes = read(&dir, file);
        match kind {
            "dstack-quote-report" => check_tdx_report(&dir, file, &entry, &bytes),
            _ => match entry.get("platform").and_then(Value::as_str) {
                Some("nitro") => check_nitro_attestation(file, &entry, &bytes),
                other => panic!("{file}: no check for platform {other:?}"),
            },
        }
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} dstack samples checked");
}
