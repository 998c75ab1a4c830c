//! The compiled fixture contracts are current, and their ABI matches dstack's (docs/dstack.md §1)
//! and the registry's own `sol!` bindings.

use std::path::PathBuf;
use std::process::Command;

use alloy::primitives::keccak256;
use alloy::sol_types::{SolCall, SolEvent};
use tee_verifier::registry::abi::{IDstackApp, IDstackKms};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn artifacts_are_up_to_date() {
    assert!(
        root().join("node_modules/solc/package.json").is_file(),
        "solc not installed: run `npm ci` at the repository root"
    );
    let output = Command::new("node")
        .arg(root().join("fixtures/contracts/build.mjs"))
        .arg("--check")
        .output()
        .expect("node (needed to compile the fixture contracts) is not installed");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Canonical signatures of an artifact's ABI entries of one type.
fn signatures(contract: &str, kind: &str) -> Vec<String> {
    let path = root()
        .join("fixtures/contracts/artifacts")
        .join(format!("{contract}.json"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    fn canonical(param: &serde_json::Value) -> String {
        let ty = param["type"].as_str().unwrap();
        match ty.strip_prefix("tuple") {
            Some(suffix) => {
                let parts: Vec<String> = param["components"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(canonical)
                    .collect();
                format!("({}){suffix}", parts.join(","))
            }
            None => ty.to_owned(),
        }
    }
    json["abi"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["type"] == kind)
        .map(|entry| {
            let inputs: Vec<String> = entry["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(canonical)
                .collect();
            format!("{}({})", entry["name"].as_str().unwrap(), inputs.join(","))
        })
        .collect()
}

fn selector(signature: &str) -> String {
    hex::encode(&keccak256(signature)[..4])
}

#[test]
fn abi_matches_dstack_selectors_and_topics() {
    let kms_functions: Vec<String> = signatures("DstackKms", "function")
        .iter()
        .map(|s| selector(s))
        .collect();
    // Selectors listed in docs/dstack.md §1.1–1.2.
    for expected in [
        "485cc955", "01ffc9a7", "7d025352", "3971db27", "17a1d80f", "9cb9c31f", "8618169d",
        "3e32d346", "2adee48d", "4d5922a1", "9e6f3114", "06a3ae96", "9425bac6", "e067ec9d",
        "1e079198", "09177063", "95f51931", "a6c4cce9", "f6fe4f40", "13eb9770", "9a4e1d18",
        "25a992da", "8da5cb5b",
    ] {
        assert!(
            kms_functions.contains(&expected.to_owned()),
            "DstackKms lacks selector {expected}"
        );
    }
    let app_functions: Vec<String> = signatures("DstackApp", "function")
        .iter()
        .map(|s| selector(s))
        .collect();
    for expected in [
        "187515ca", "9ed28193", "dfc77223", "67b3f22c", "7c4beeb8", "6e4c7422", "2a819728",
        "1d266200", "ec669036", "54fd4d50", "1e079198", "2f6622e5", "3440a16a", "bf8b211b",
        "0aa58c83",
    ] {
        assert!(
            app_functions.contains(&expected.to_owned()),
            "DstackApp lacks selector {expected}"
        );
    }
    assert_eq!(
        hex::encode(IDstackKms::isAppAllowedCall::SELECTOR),
        "1e079198"
    );
    assert_eq!(
        hex::encode(IDstackKms::isKmsAllowedCall::SELECTOR),
        "e067ec9d"
    );

    let kms_events: Vec<String> = signatures("DstackKms", "event");
    let app_events: Vec<String> = signatures("DstackApp", "event");
    let topic = |s: &String| keccak256(s.as_bytes());
    for (hash, name) in [
        (IDstackKms::AppRegistered::SIGNATURE_HASH, "AppRegistered"),
        (
            IDstackKms::AppDeployedViaFactory::SIGNATURE_HASH,
            "AppDeployedViaFactory",
        ),
        (
            IDstackKms::OsImageHashAdded::SIGNATURE_HASH,
            "OsImageHashAdded",
        ),
        (
            IDstackKms::OsImageHashRemoved::SIGNATURE_HASH,
            "OsImageHashRemoved",
        ),
        (
            IDstackKms::KmsAggregatedMrAdded::SIGNATURE_HASH,
            "KmsAggregatedMrAdded",
        ),
        (
            IDstackKms::KmsAggregatedMrRemoved::SIGNATURE_HASH,
            "KmsAggregatedMrRemoved",
        ),
        (IDstackKms::KmsDeviceAdded::SIGNATURE_HASH, "KmsDeviceAdded"),
        (
            IDstackKms::KmsDeviceRemoved::SIGNATURE_HASH,
            "KmsDeviceRemoved",
        ),
        (
            IDstackKms::GatewayAppIdSet::SIGNATURE_HASH,
            "GatewayAppIdSet",
        ),
        (
            IDstackKms::AppImplementationSet::SIGNATURE_HASH,
            "AppImplementationSet",
        ),
    ] {
        assert!(
            kms_events.iter().any(|s| topic(s) == hash),
            "DstackKms artifact lacks {name}"
        );
    }
    for (hash, name) in [
        (
            IDstackApp::ComposeHashAdded::SIGNATURE_HASH,
            "ComposeHashAdded",
        ),
        (
            IDstackApp::ComposeHashRemoved::SIGNATURE_HASH,
            "ComposeHashRemoved",
        ),
        (IDstackApp::DeviceAdded::SIGNATURE_HASH, "DeviceAdded"),
        (IDstackApp::DeviceRemoved::SIGNATURE_HASH, "DeviceRemoved"),
        (
            IDstackApp::AllowAnyDeviceSet::SIGNATURE_HASH,
            "AllowAnyDeviceSet",
        ),
        (
            IDstackApp::RequireTcbUpToDateSet::SIGNATURE_HASH,
            "RequireTcbUpToDateSet",
        ),
        (
            IDstackApp::UpgradesDisabled::SIGNATURE_HASH,
            "UpgradesDisabled",
        ),
        (IDstackApp::Upgraded::SIGNATURE_HASH, "Upgraded"),
    ] {
        assert!(
            app_events.iter().any(|s| topic(s) == hash),
            "DstackApp artifact lacks {name}"
        );
    }
    // Full topic hashes from docs/dstack.md §1.2–1.3.
    for (hash, expected) in [
        (
            IDstackKms::AppRegistered::SIGNATURE_HASH,
            "0d540ad8f39e07d19909687352b9fa017405d93c91a6760981fbae9cf28bfef7",
        ),
        (
            IDstackKms::OsImageHashAdded::SIGNATURE_HASH,
            "4911843506849c85a5ca6e6e2c01eed2d3ab86baba619517a2aad9d5ab2aeff2",
        ),
        (
            IDstackKms::OsImageHashRemoved::SIGNATURE_HASH,
            "99b3cee95daf3138d0c982299cd0264f5b7a61aa629b42b92f3ec8966aa7f6fe",
        ),
        (
            IDstackKms::KmsAggregatedMrAdded::SIGNATURE_HASH,
            "68615a0b92795750b3d180ff73429e1291d225e449eee954a567b91104fd9837",
        ),
        (
            IDstackKms::KmsAggregatedMrRemoved::SIGNATURE_HASH,
            "54cd662e41eec7ddf0f32f034b2533e481b471dd3ea978222d609ec8fffb1bb0",
        ),
        (
            IDstackKms::KmsDeviceAdded::SIGNATURE_HASH,
            "f2b290637b1193e12eb38ab32b986303639b1687cc2cd1e25f993e6eae2f4041",
        ),
        (
            IDstackKms::KmsDeviceRemoved::SIGNATURE_HASH,
            "1a9888a45e3df8b7e6bb3090747d598d2a0d78e61388161a90799f54df8f4434",
        ),
        (
            IDstackApp::ComposeHashAdded::SIGNATURE_HASH,
            "fecb34306dd9d8b785b54d65489d06afc8822a0893ddacedff40c50a4942d0af",
        ),
        (
            IDstackApp::ComposeHashRemoved::SIGNATURE_HASH,
            "755b79bd4b0eeab344d032284a99003b2ddc018b646752ac72d681593a6e8947",
        ),
        (
            IDstackApp::DeviceAdded::SIGNATURE_HASH,
            "67fc71ab96fe3fa3c6f78e9a00e635d591b7333ce611c0380bc577aac702243b",
        ),
        (
            IDstackApp::DeviceRemoved::SIGNATURE_HASH,
            "e0862975ac517b0478d308012afabc4bc37c23874a18144d7f2dfb852ff95c2c",
        ),
        (
            IDstackApp::AllowAnyDeviceSet::SIGNATURE_HASH,
            "bb2cdb6c7b362202d40373f87bc4788301cca658f91711ac1662e1ad2cba4a20",
        ),
        (
            IDstackApp::RequireTcbUpToDateSet::SIGNATURE_HASH,
            "afae60561b2481a349b45b3a47357f70eef6ae67e5b6e1749d74de7f19a25aa1",
        ),
        (
            IDstackApp::UpgradesDisabled::SIGNATURE_HASH,
            "0e5daa943fcd7e7182d0e893d180695c2ea9f6f1b4a1c5432faf14cf17b774e8",
        ),
    ] {
        assert_eq!(hex::encode(hash), expected);
    }
}
