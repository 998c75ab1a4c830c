//! `tee-verifier serve` end to end without a chain: the real binary on ephemeral ports, a real
//! tonic client and a real HTTP client, registry files for the allowlist. Real samples are
//! verified at their own time (the hidden test-only `--dangerous-fixed-now`).

use crate::support::samples;
use crate::support::service;

use base64::Engine as _;
use serde_json::Value;
use service::{eventually, run_cli, write_file, Service, SERVICE_NAME, ZERO_BOOT_INFO};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tee_verifier::service::proto::{
    self, check_measurement_request::Measurement, registry_event::Event, verify_request::Evidence,
    Authorize,
};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// The dstack Nitro attestation sample's identity (expected.json, dstack.md §3.5).
const NITRO_APP_ID: &str = "0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4";
const NITRO_OS_IMAGE: &str = "0x1894b0b29e94a9db16e88a2914f0923e52bb16c08bf3bb484df786a147e2eb79";
const NITRO_DEVICE: &str = "0xde7d1b721a1e0632b7cf04edf5032c8ecffa9f9a08492152b926f1a5a7e765d7";
const NITRO_NOW: &str = "1766678659";

/// A registry file that lets the dstack Nitro sample's app boot.
fn nitro_registry(compose_hashes: &str) -> String {
    format!(
        "block = 7\ngateway_app_id = \"gateway-under-test\"\nos_images = [\"{NITRO_OS_IMAGE}\"]\n\
         kms_aggregated_mrs = [\"0x{mr}\"]\nkms_device_ids = [\"{NITRO_DEVICE}\"]\n\n\
         [[apps]]\napp_id = \"{NITRO_APP_ID}\"\ncompose_hashes = [{compose_hashes}]\ndevice_ids = []\n\
         allow_any_device = true\nrequire_tcb_up_to_date = false\ncode = \"known\"\n",
        mr = "22".repeat(32)
    )
}

/// Replaces a file the way deployments do, by renaming a complete one over it: `std::fs::write`
/// truncates first, and a poll that reads the empty file in between sees an empty registry.
fn replace_file(path: &str, text: &str) {
    let staged = format!("{path}.new");
    std::fs::write(&staged, text).expect("write the new file");
    std::fs::rename(&staged, path).expect("rename it over the old one");
}

fn read_sample(dir: &Path, entry: &Value) -> Vec<u8> {
    let file = entry["file"].as_str().expect("file");
    let bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    if entry["format"] == "base64" {
        let text = String::from_utf8(bytes).expect("base64 text");
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .expect("base64")
    } else {
        bytes
    }
}

/// The Verify request for a sample, by its kind in expected.json.
fn request_for(dir: &Path, entry: &Value) -> proto::VerifyRequest {
    let bytes = read_sample(dir, entry);
    let collateral = entry["collateral"].as_str().map(|file| {
        std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
    });
    let evidence = match entry["kind"].as_str().expect("kind") {
        "nitro" => Evidence::NitroDocument(bytes),
        "tdx-quote" => Evidence::Tdx(proto::TdxEvidence {
            quote: bytes,
            event_log: String::new(),
            collateral,
            vm_config: None,
        }),
        "dstack-attestation-v0" => Evidence::DstackAttestation(proto::DstackAttestation {
            attestation: bytes,
            collateral,
        }),
        "dstack-quote-report" => Evidence::DstackQuoteReport(proto::DstackQuoteReport {
            json: String::from_utf8(bytes).expect("utf-8 report"),
            collateral,
        }),
        other => panic!("unknown sample kind {other}"),
    };
    proto::VerifyRequest {
        evidence: Some(evidence),
        ..Default::default()
    }
}

fn hex0x(entry: &Value, key: &str) -> Option<String> {
    entry[key].as_str().map(|hex| format!("0x{hex}"))
}

#[tokio::test]
async fn verifies_every_real_sample_at_its_time() {
    let dir = samples::samples_dir();
    let mut by_time: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for entry in samples::expected_entries(&dir) {
        if let Some(now) = entry["now"].as_u64() {
            by_time.entry(now).or_default().push(entry);
        }
    }
    let mut checked = 0;
    for (now, entries) in by_time {
        let server = Service::start(&["--dangerous-fixed-now", &now.to_string()]);
        let mut client = server.client().await;
        for entry in entries {
            let file = entry["file"].as_str().unwrap_or_default().to_owned();
            let request = request_for(&dir, &entry);
            let response = client
                .verify(proto::VerifyRequest {
                    include_report_json: true,
                    ..request.clone()
                })
                .await
                .unwrap_or_else(|status| panic!("{file}: {status}"))
                .into_inner();
            assert_eq!(response.verified_at, now, "{file}");
            match entry["expect"].as_str() {
                Some("valid") => {
                    assert!(response.verified, "{file}: {:?}", response.error);
                    let attested = response.attested.expect("attested");
                    let report: Value =
                        serde_json::from_str(&attested.report_json).expect("report json");
                    assert_eq!(report["verified"], true, "{file}");
                    // Without include_report_json: the same typed answer, no JSON.
                    let lean = client
                        .verify(request)
                        .await
                        .unwrap_or_else(|status| panic!("{file}: {status}"))
                        .into_inner()
                        .attested
                        .expect("attested");
                    assert_eq!(
                        lean,
                        proto::Attested {
                            report_json: String::new(),
                            ..attested.clone()
                        },
                        "{file}"
                    );
                    if let Some(hash) = hex0x(&entry, "os_image_hash") {
                        assert_eq!(
                            attested.os_image_hash.as_deref(),
                            Some(hash.as_str()),
                            "{file}"
                        );
                    }
                    if let Some(status) = entry["tcb_status"].as_str() {
                        assert_eq!(
                            attested.tdx.as_ref().expect("tdx").tcb_status,
                            status,
                            "{file}"
                        );
                    }
                    if let Some(app_id) = hex0x(&entry, "app_id") {
                        let dstack = attested.dstack.as_ref().expect("dstack claims");
                        let boot = dstack.boot_info.as_ref().expect("boot info");
                        assert_eq!(boot.app_id, app_id, "{file}");
                        for (key, value) in [
                            ("compose_hash", &boot.compose_hash),
                            ("device_id", &boot.device_id),
                            ("mr_system", &boot.mr_system),
                            ("mr_aggregated", &boot.mr_aggregated),
                        ] {
                            if let Some(expected) = hex0x(&entry, key) {
                                assert_eq!(*value, expected, "{file}: {key}");
                            }
                        }
                    }
                }
                Some("reject") => {
                    assert!(!response.verified, "{file} must be rejected");
                    assert!(response.attested.is_none(), "{file}");
                    let error = response.error.expect("error");
                    let allowed = entry["reject_kind"].as_str().expect("reject_kind");
                    assert!(
                        allowed.split(" or ").any(|kind| kind == error.kind),
                        "{file}: kind {} not in {allowed}",
                        error.kind
                    );
                }
                other => panic!("{file}: unexpected expect {other:?}"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} samples checked");
}

#[tokio::test]
async fn verify_authorizes_the_attested_boot_info() {
    let dir = samples::samples_dir();
    let attestation =
        std::fs::read(dir.join("dstack/dstack-nitro-attestation-v0.scale.bin")).expect("sample");
    let request = |authorize: Authorize| proto::VerifyRequest {
        evidence: Some(Evidence::DstackAttestation(proto::DstackAttestation {
            attestation: attestation.clone(),
            collateral: None,
        })),
        authorize: authorize.into(),
        ..Default::default()
    };
    let files = tempfile::tempdir().expect("tempdir");
    let registry = write_file(
        files.path(),
        "registry.toml",
        &nitro_registry(&format!("\"{NITRO_OS_IMAGE}\"")),
    );

    let server = Service::start(&["--dangerous-fixed-now", NITRO_NOW, "--registry", &registry]);
    let mut client = server.client().await;
    let response = client
        .verify(request(Authorize::App))
        .await
        .expect("verify")
        .into_inner();
    assert!(response.verified, "{:?}", response.error);
    let decision = response.authorization.expect("authorization");
    assert!(decision.is_allowed, "{}", decision.reason);
    assert_eq!(decision.reason, "");
    assert_eq!(decision.block, 7);
    assert_eq!(decision.gateway_app_id, "gateway-under-test");
    // Nitro's TCB status is empty (dstack.md §2), so the KMS check fails first on it.
    let kms = client
        .verify(request(Authorize::Kms))
        .await
        .expect("verify")
        .into_inner();
    assert_eq!(
        kms.authorization.expect("authorization").reason,
        "TCB status is not up to date"
    );
    // No authorization asked: none given.
    let plain = client
        .verify(request(Authorize::None))
        .await
        .expect("verify")
        .into_inner();
    assert!(plain.verified && plain.authorization.is_none());

    // The embedded default allows nothing.
    let default = Service::start(&["--dangerous-fixed-now", NITRO_NOW]);
    let mut client = default.client().await;
    let response = client
        .verify(request(Authorize::App))
        .await
        .expect("verify")
        .into_inner();
    let decision = response.authorization.expect("authorization");
    assert!(!decision.is_allowed);
    assert_eq!(decision.reason, "App not registered");

    // A failed verification is never authorized, whatever was asked.
    // Flip the last byte of the NSM document's signature inside the attestation.
    let document = std::fs::read(dir.join("dstack/nitro_enclave_nsm_doc.cose")).expect("sample");
    let start = attestation
        .windows(document.len())
        .position(|window| window == document.as_slice())
        .expect("the NSM document inside the attestation");
    let mut tampered = attestation.clone();
    tampered[start + document.len() - 1] ^= 1;
    let response = client
        .verify(proto::VerifyRequest {
            evidence: Some(Evidence::DstackAttestation(proto::DstackAttestation {
                attestation: tampered,
                collateral: None,
            })),
            authorize: Authorize::App.into(),
            ..Default::default()
        })
        .await
        .expect("verify")
        .into_inner();
    assert!(!response.verified);
    assert!(response.authorization.is_none());
}

#[tokio::test]
async fn malformed_requests_are_invalid_argument_and_rejections_are_answers() {
    let dir = samples::samples_dir();
    let document = std::fs::read(dir.join("dstack/nitro_enclave_nsm_doc.cose")).expect("sample");
    let server = Service::start(&["--dangerous-fixed-now", NITRO_NOW]);
    let mut client = server.client().await;

    let invalid = |result: Result<tonic::Response<proto::VerifyResponse>, tonic::Status>,
                   what: &str| {
        let status = result.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        status.message().to_owned()
    };
    invalid(
        client.verify(proto::VerifyRequest::default()).await,
        "no evidence",
    );
    invalid(
        client
            .verify(proto::VerifyRequest {
                evidence: Some(Evidence::NitroDocument(document.clone())),
                authorize: 9,
                ..Default::default()
            })
            .await,
        "unknown authorize",
    );
    let message = invalid(
        client
            .verify(proto::VerifyRequest {
                evidence: Some(Evidence::NitroDocument(document.clone())),
                authorize: Authorize::App.into(),
                ..Default::default()
            })
            .await,
        "authorize a bare Nitro document",
    );
    assert!(message.contains("boot info"), "{message}");
    let message = invalid(
        client
            .verify(proto::VerifyRequest {
                evidence: Some(Evidence::Tdx(proto::TdxEvidence {
                    quote: document.clone(),
                    ..Default::default()
                })),
                ..Default::default()
            })
            .await,
        "a Nitro document given as a TDX quote",
    );
    assert!(message.contains("given as tdx"), "{message}");

    // Bad evidence is an answer with a kind, not a transport error.
    let response = client
        .verify(proto::VerifyRequest {
            evidence: Some(Evidence::NitroDocument(vec![0x84, 0x01, 0x02])),
            ..Default::default()
        })
        .await
        .expect("an answer")
        .into_inner();
    assert!(!response.verified);
    assert_eq!(response.error.expect("error").kind, "malformed");
    let response = client
        .verify(proto::VerifyRequest {
            evidence: Some(Evidence::NitroDocument(document.clone())),
            expected_nonce: Some(vec![1, 2, 3]),
            ..Default::default()
        })
        .await
        .expect("an answer")
        .into_inner();
    assert!(!response.verified);
    assert!(!response.error.expect("error").kind.is_empty());

    let status = client
        .is_app_allowed(proto::IsAppAllowedRequest { boot_info: None })
        .await
        .expect_err("no boot info");
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = client
        .is_kms_allowed(proto::IsKmsAllowedRequest {
            boot_info: Some(proto::BootInfo {
                device_id: "0xnothex".into(),
                ..Default::default()
            }),
        })
        .await
        .expect_err("bad hex");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("deviceId"),
        "{}",
        status.message()
    );
    let status = client
        .check_measurement(proto::CheckMeasurementRequest { measurement: None })
        .await
        .expect_err("no measurement");
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = client
        .get_registry(proto::GetRegistryRequest {
            app_ids: vec!["0x".to_owned() + &"1".repeat(41)],
        })
        .await
        .expect_err("bad app id");
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn registry_file_answers_lookups_decisions_and_snapshots() {
    let files = tempfile::tempdir().expect("tempdir");
    let compose = format!("0x{}", "cc".repeat(32));
    let registry = write_file(
        files.path(),
        "registry.toml",
        &nitro_registry(&format!("\"{compose}\"")),
    );
    let server = Service::start(&["--registry", &registry]);
    let mut client = server.client().await;

    let registered = |measurement: Measurement| proto::CheckMeasurementRequest {
        measurement: Some(measurement),
    };
    for (measurement, expected) in [
        (Measurement::OsImageHash(NITRO_OS_IMAGE.into()), true),
        (Measurement::OsImageHash("0x01".into()), false),
        (Measurement::KmsAggregatedMr("22".repeat(32)), true),
        (
            Measurement::KmsDeviceId(NITRO_DEVICE.to_uppercase().replace("0X", "0x")),
            true,
        ),
        (
            Measurement::AppComposeHash(proto::AppComposeHash {
                app_id: NITRO_APP_ID.into(),
                compose_hash: compose.clone(),
            }),
            true,
        ),
        (
            Measurement::AppComposeHash(proto::AppComposeHash {
                app_id: "0x01".into(),
                compose_hash: compose.clone(),
            }),
            false,
        ),
    ] {
        let answer = client
            .check_measurement(registered(measurement.clone()))
            .await
            .expect("check")
            .into_inner();
        assert_eq!(answer.registered, expected, "{measurement:?}");
        assert_eq!(answer.block, 7);
    }

    let boot = |compose_hash: &str| proto::BootInfo {
        app_id: NITRO_APP_ID.trim_start_matches("0x").into(),
        compose_hash: compose_hash.into(),
        os_image_hash: NITRO_OS_IMAGE.into(),
        device_id: NITRO_DEVICE.into(),
        ..Default::default()
    };
    let allowed = client
        .is_app_allowed(proto::IsAppAllowedRequest {
            boot_info: Some(boot(&compose)),
        })
        .await
        .expect("decide")
        .into_inner();
    assert_eq!(
        (allowed.is_allowed, allowed.reason.as_str(), allowed.block),
        (true, "", 7)
    );
    assert_eq!(allowed.gateway_app_id, "gateway-under-test");
    let denied = client
        .is_app_allowed(proto::IsAppAllowedRequest {
            boot_info: Some(boot("0x01")),
        })
        .await
        .expect("decide")
        .into_inner();
    assert_eq!(
        (denied.is_allowed, denied.reason.as_str()),
        (false, "Compose hash not allowed")
    );
    let kms = client
        .is_kms_allowed(proto::IsKmsAllowedRequest {
            boot_info: Some(proto::BootInfo {
                tcb_status: "UpToDate".into(),
                mr_aggregated: "22".repeat(32),
                ..boot(&compose)
            }),
        })
        .await
        .expect("decide")
        .into_inner();
    assert!(kms.is_allowed, "{}", kms.reason);

    let snapshot = client
        .get_registry(proto::GetRegistryRequest::default())
        .await
        .expect("snapshot")
        .into_inner();
    let head = snapshot.head.expect("head");
    assert_eq!(head.block, 7);
    assert_eq!(head.source, format!("file:{registry}"));
    assert_eq!(snapshot.os_image_hashes, vec![NITRO_OS_IMAGE.to_owned()]);
    assert_eq!(snapshot.apps.len(), 1);
    assert_eq!(snapshot.apps[0].app_id, NITRO_APP_ID);
    assert_eq!(snapshot.apps[0].compose_hashes, vec![compose.clone()]);
    assert!(snapshot.apps[0].allow_any_device);
    assert_eq!(snapshot.apps[0].code(), proto::AppCode::Known);
    let filtered = client
        .get_registry(proto::GetRegistryRequest {
            app_ids: vec!["0x01".into()],
        })
        .await
        .expect("snapshot")
        .into_inner();
    assert!(filtered.apps.is_empty());
}

#[tokio::test]
async fn registry_file_changes_reach_watchers_and_a_broken_file_fails_closed() {
    let files = tempfile::tempdir().expect("tempdir");
    let compose = format!("0x{}", "cc".repeat(32));
    let registry = write_file(
        files.path(),
        "registry.toml",
        &nitro_registry(&format!("\"{compose}\"")),
    );
    let server = Service::start(&["--registry", &registry, "--poll-interval", "100ms"]);
    server
        .wait_health(ServingStatus::Serving, Duration::from_secs(10))
        .await;
    let mut client = server.client().await;
    let (mut watch, snapshot) = server.watch_from_snapshot().await;
    assert_eq!(snapshot.apps[0].compose_hashes, vec![compose.clone()]);

    let boot = proto::BootInfo {
        app_id: NITRO_APP_ID.into(),
        compose_hash: compose.clone(),
        os_image_hash: NITRO_OS_IMAGE.into(),
        ..Default::default()
    };
    let ask = |mut client: proto::verifier_client::VerifierClient<tonic::transport::Channel>,
               boot: proto::BootInfo| async move {
        client
            .is_app_allowed(proto::IsAppAllowedRequest {
                boot_info: Some(boot),
            })
            .await
    };
    assert!(
        ask(client.clone(), boot.clone())
            .await
            .expect("decide")
            .into_inner()
            .is_allowed
    );

    // Revoke the compose hash: watchers get the new view, answers change.
    // (A different length guarantees the reloader sees a new stamp even within one mtime tick.)
    replace_file(&registry, &(nitro_registry("") + "\n# revoked\n"));
    let event = watch.message().await.expect("stream").expect("an event");
    let Some(Event::Snapshot(snapshot)) = event.event else {
        panic!("after reload {event:?}")
    };
    assert!(snapshot.apps[0].compose_hashes.is_empty());
    let decision = ask(client.clone(), boot.clone())
        .await
        .expect("decide")
        .into_inner();
    assert_eq!(
        (decision.is_allowed, decision.reason.as_str()),
        (false, "Compose hash not allowed")
    );

    // A broken file: unavailable everywhere, never an old answer.
    replace_file(&registry, "this is = not [a registry");
    let event = watch.message().await.expect("stream").expect("an event");
    let Some(Event::Unavailable(unavailable)) = event.event else {
        panic!("after break {event:?}")
    };
    assert!(!unavailable.reason.is_empty());
    server
        .wait_health(ServingStatus::NotServing, Duration::from_secs(10))
        .await;
    let status = ask(client.clone(), boot.clone())
        .await
        .expect_err("unavailable");
    assert_eq!(status.code(), Code::Unavailable);
    let status = client
        .check_measurement(proto::CheckMeasurementRequest {
            measurement: Some(Measurement::OsImageHash(NITRO_OS_IMAGE.into())),
        })
        .await
        .expect_err("unavailable");
    assert_eq!(status.code(), Code::Unavailable);
    let (code, answer) = server.post_json("/bootAuth/app", ZERO_BOOT_INFO).await;
    assert_eq!(code, 200);
    assert_eq!(answer["isAllowed"], false);
    assert_eq!(answer["reason"], "authorization backend unavailable");
    let (code, _) = server.get("/healthz").await;
    assert_eq!(code, 503);

    // Fixed: a snapshot again, and serving.
    replace_file(&registry, &nitro_registry(&format!("\"{compose}\"")));
    let event = watch.message().await.expect("stream").expect("an event");
    assert!(
        matches!(event.event, Some(Event::Snapshot(_))),
        "after fix {event:?}"
    );
    server
        .wait_health(ServingStatus::Serving, Duration::from_secs(10))
        .await;
    assert!(
        ask(client.clone(), boot)
            .await
            .expect("decide")
            .into_inner()
            .is_allowed
    );
}

#[tokio::test]
async fn health_and_both_reflection_versions_list_every_service() {
    use tokio_stream::StreamExt as _;
    let server = Service::start(&[]);
    server
        .wait_health(ServingStatus::Serving, Duration::from_secs(10))
        .await;

    let expected = ["grpc.health.v1.Health", SERVICE_NAME];
    {
        use tonic_reflection::pb::v1::{
            server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            ServerReflectionRequest,
        };
        let mut reflection = ServerReflectionClient::new(server.channel().await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = reflection
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("v1 reflection")
            .into_inner();
        let response = responses.next().await.expect("a response").expect("ok");
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected {response:?}")
        };
        let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        for name in expected {
            assert!(names.iter().any(|n| n == name), "v1 lists {names:?}");
        }
        // And the API's file descriptor, for grpcurl describe.
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(SERVICE_NAME.into())),
        };
        let mut responses = reflection
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("v1 reflection")
            .into_inner();
        let response = responses.next().await.expect("a response").expect("ok");
        assert!(
            matches!(response.message_response, Some(MessageResponse::FileDescriptorResponse(ref files)) if !files.file_descriptor_proto.is_empty()),
            "{response:?}"
        );
    }
    {
        use tonic_reflection::pb::v1alpha::{
            server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            ServerReflectionRequest,
        };
        let mut reflection = ServerReflectionClient::new(server.channel().await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = reflection
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("v1alpha reflection")
            .into_inner();
        let response = responses.next().await.expect("a response").expect("ok");
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected {response:?}")
        };
        let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        for name in expected {
            assert!(names.iter().any(|n| n == name), "v1alpha lists {names:?}");
        }
    }
}

#[tokio::test]
async fn webhook_speaks_auth_eth_and_metrics_count_it() {
    let files = tempfile::tempdir().expect("tempdir");
    let compose = format!("0x{}", "cc".repeat(32));
    let registry = write_file(
        files.path(),
        "registry.toml",
        &nitro_registry(&format!("\"{compose}\"")),
    );
    let server = Service::start(&["--registry", &registry]);
    server
        .wait_health(ServingStatus::Serving, Duration::from_secs(10))
        .await;

    // As dstack's KMS sends it: hex without 0x, extra fields the contract ignores.
    let body = format!(
        r#"{{"teeVariant":"dstack-nitro-enclave","keyProviderInfo":"","appId":"{}","composeHash":"{}","instanceId":"","deviceId":"{}","mrAggregated":"{}","mrSystem":"{}","osImageHash":"{}","tcbStatus":"","advisoryIds":[]}}"#,
        NITRO_APP_ID.trim_start_matches("0x"),
        compose.trim_start_matches("0x"),
        NITRO_DEVICE.trim_start_matches("0x"),
        NITRO_OS_IMAGE.trim_start_matches("0x"),
        NITRO_OS_IMAGE.trim_start_matches("0x"),
        NITRO_OS_IMAGE.trim_start_matches("0x"),
    );
    let (code, answer) = server.post_json("/bootAuth/app", &body).await;
    assert_eq!(code, 200);
    assert_eq!(
        answer,
        serde_json::json!({"isAllowed": true, "reason": "", "gatewayAppId": "gateway-under-test"})
    );
    let (code, answer) = server.post_json("/bootAuth/kms", &body).await;
    assert_eq!(code, 200);
    assert_eq!(answer["isAllowed"], false);
    assert_eq!(answer["reason"], "TCB status is not up to date");
    // Left-padding: empty values are all zeros, an unregistered app.
    let (code, answer) = server.post_json("/bootAuth/app", ZERO_BOOT_INFO).await;
    assert_eq!(code, 200);
    assert_eq!(answer["reason"], "App not registered");
    // Not a boot info: 400, still denied.
    for bad in [
        "not json".to_owned(),
        ZERO_BOOT_INFO.replace(r#""appId":"""#, r#""appId":"0xzz""#),
        ZERO_BOOT_INFO.replace(r#""appId":"""#, &format!(r#""appId":"{}""#, "1".repeat(41))),
    ] {
        let (code, answer) = server.post_json("/bootAuth/app", &bad).await;
        assert_eq!(code, 400, "{bad}");
        assert_eq!(answer["isAllowed"], false, "{bad}");
    }

    let (code, text) = server.get("/").await;
    assert_eq!(code, 200);
    let info: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(info["status"], "ok");
    assert_eq!(info["gatewayAppId"], "gateway-under-test");
    assert_eq!(info["registry"]["block"], 7);
    // The dstack KMS's GetMeta parses exactly these types; a file source has no contract, node
    // or chain and says so with "" and 0, never null.
    let meta: KmsAuthApiInfo = serde_json::from_str(&text).expect("the KMS's field types");
    assert_eq!(
        (
            meta.status.as_str(),
            meta.kms_contract_addr.as_str(),
            meta.eth_rpc_url.as_str(),
            meta.gateway_app_id.as_str(),
            meta.chain_id,
            meta.app_implementation.as_str()
        ),
        ("ok", "", "", "gateway-under-test", 0, "")
    );
    let (code, health) = server.get("/healthz").await;
    assert_eq!((code, health.contains("\"ok\"")), (200, true), "{health}");

    let (code, metrics) = server.get("/metrics").await;
    assert_eq!(code, 200);
    for line in [
        "tee_verifier_requests_total{method=\"/bootAuth/app\"} 5",
        "tee_verifier_request_outcomes_total{method=\"/bootAuth/app\",outcome=\"allowed\"} 1",
        "tee_verifier_request_outcomes_total{method=\"/bootAuth/app\",outcome=\"denied\"} 1",
        "tee_verifier_request_outcomes_total{method=\"/bootAuth/app\",outcome=\"invalid_argument\"} 3",
        "tee_verifier_request_outcomes_total{method=\"/bootAuth/kms\",outcome=\"denied\"} 1",
        "tee_verifier_registry_available 1",
        "tee_verifier_registry_block 7",
        "tee_verifier_registry_decisions_total{source=\"view\"} 3",
        "tee_verifier_request_duration_seconds_count{method=\"/bootAuth/app\"} 5",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    assert!(metrics.contains("tee_verifier_registry_age_seconds "));
}

#[tokio::test]
async fn request_size_is_bounded_on_both_servers() {
    let dir = samples::samples_dir();
    let document = std::fs::read(dir.join("dstack/nitro_enclave_nsm_doc.cose")).expect("sample");
    let server = Service::start(&[
        "--max-request-bytes",
        "1024",
        "--max-boot-info-bytes",
        "1024",
        "--dangerous-fixed-now",
        NITRO_NOW,
    ]);
    let mut client = server.client().await;
    let status = client
        .verify(proto::VerifyRequest {
            evidence: Some(Evidence::NitroDocument(document)),
            ..Default::default()
        })
        .await
        .expect_err("too large");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let response = reqwest::Client::new()
        .post(server.url("/bootAuth/app"))
        .body(format!(r#"{{"appId":"{}"}}"#, " ".repeat(2000)))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 413);
}

#[tokio::test]
async fn sigterm_ends_watch_streams_and_exits_zero() {
    let mut server = Service::start(&[]);
    server
        .wait_health(ServingStatus::Serving, Duration::from_secs(10))
        .await;
    let (mut watch, _snapshot) = server.watch_from_snapshot().await;
    let status = server.terminate(Duration::from_secs(15));
    assert!(
        status.success(),
        "exit {status:?}; stderr:\n{}",
        server.stderr()
    );
    // The stream ended (cleanly, or with the connection) instead of hanging.
    let end = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("the stream ends on shutdown");
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    assert!(
        server.stderr().contains("shutting down"),
        "{}",
        server.stderr()
    );
}

#[tokio::test]
async fn logs_as_json_when_asked() {
    let server = Service::start(&["--log-format", "json"]);
    server
        .wait_health(ServingStatus::Serving, Duration::from_secs(10))
        .await;
    let line = eventually("a JSON log line", Duration::from_secs(5), || {
        let log = server.stderr();
        async move {
            log.lines()
                .find(|line| line.contains("tee-verifier serving"))
                .map(str::to_owned)
        }
    })
    .await;
    let json: Value = serde_json::from_str(&line).expect("a JSON object per line");
    assert_eq!(json["level"], "INFO");
}

#[test]
fn serve_help_teaches_and_hides_test_flags() {
    let (code, help, _) = run_cli(&["serve", "--help"]);
    assert_eq!(code, 0);
    for needle in [
        "--grpc-listen",
        "--http-listen",
        "--registry",
        "--rpc-url",
        "--kms-contract",
        "--confirmations",
        "--max-request-bytes",
        "--max-concurrency",
        "--request-timeout",
        "--log-format",
        "TEE_VERIFIER_GRPC_LISTEN",
        "127.0.0.1:50051",
        "Examples:",
    ] {
        assert!(
            help.contains(needle),
            "serve --help lacks {needle}:\n{help}"
        );
    }
    assert!(
        !help.contains("fixed-now"),
        "the test-only flag is hidden:\n{help}"
    );
}

#[test]
fn bad_settings_exit_2_before_listening() {
    let (code, _, stderr) = run_cli(&[
        "serve",
        "--rpc-url",
        "http://127.0.0.1:1",
        "--grpc-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--kms-contract"), "{stderr}");
    let (code, _, stderr) = run_cli(&[
        "serve",
        "--registry",
        "/nonexistent/registry.toml",
        "--grpc-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("registry"), "{stderr}");
}

/// The dstack KMS's `AuthApiInfoResponse`: the types its `GetMeta` requires of `GET /`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct KmsAuthApiInfo {
    status: String,
    kms_contract_addr: String,
    #[serde(default)]
    eth_rpc_url: String,
    gateway_app_id: String,
    chain_id: u64,
    app_implementation: String,
}

/// A GCP TDX attestation (the committed fixture) through gRPC `Verify` as a dstack attestation:
/// verified with the pinned test root and CA bundle, and authorized like TDX (its OS image is
/// bound by the vTPM quote, so no `accept_os_image_claim` is needed).
#[tokio::test]
async fn verify_accepts_and_authorizes_a_gcp_attestation() {
    let dir = samples::samples_dir();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/gcp");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("expected.json")).expect("manifest"))
            .expect("json");
    let collateral =
        std::fs::read_to_string(dir.join(manifest["tdx_collateral"].as_str().expect("collateral")))
            .expect("collateral");
    let attestation = std::fs::read(fixtures.join("attestation_rsa_v1.msgpack")).expect("fixture");
    let request = |authorize: Authorize| proto::VerifyRequest {
        evidence: Some(Evidence::DstackAttestation(proto::DstackAttestation {
            attestation: attestation.clone(),
            collateral: Some(collateral.clone()),
        })),
        authorize: authorize.into(),
        include_report_json: true,
        ..Default::default()
    };
    let now = manifest["now"].to_string();
    let path = |name: &str| fixtures.join(name).to_str().expect("path").to_owned();
    // Not fetching: the fixture's AIA names Google's host (tests/it/gcp_service.rs fetches).
    let unpinned = Service::start(&["--dangerous-fixed-now", &now, "--no-collateral-fetch"]);
    let response = unpinned
        .client()
        .await
        .verify(request(Authorize::None))
        .await
        .expect("verify")
        .into_inner();
    assert_eq!(
        response.error.expect("rejected").kind,
        "collateral_missing",
        "no bundle: the intermediate is missing"
    );

    let registry = |os_image: &str| {
        format!(
            "block = 7\ngateway_app_id = \"gateway-under-test\"\nos_images = [\"{os_image}\"]\n\
             kms_aggregated_mrs = []\nkms_device_ids = []\n\n\
             [[apps]]\napp_id = \"0x3763bc34552cf3a27ff71ad5f7a90471562a1a2d\"\n\
             compose_hashes = [\"0x3763bc34552cf3a27ff71ad5f7a90471562a1a2df552dfc1998cba2d60da27e7\"]\n\
             device_ids = []\nallow_any_device = true\nrequire_tcb_up_to_date = true\ncode = \"known\"\n"
        )
    };
    let files = tempfile::tempdir().expect("tempdir");
    let first = Service::start(&[
        "--dangerous-fixed-now",
        &now,
        "--gcp-root",
        &path("root.der"),
        "--gcp-ca-bundle",
        &path("ca_bundle.pem"),
        "--registry",
        &write_file(
            files.path(),
            "none.toml",
            &registry(&format!("0x{}", "00".repeat(32))),
        ),
    ]);
    let response = first
        .client()
        .await
        .verify(request(Authorize::App))
        .await
        .expect("verify")
        .into_inner();
    assert!(response.verified, "{:?}", response.error);
    let attested = response.attested.expect("attested");
    assert_eq!(attested.platform, proto::Platform::GcpTdx as i32);
    assert!(attested.tdx.is_some());
    let report: Value = serde_json::from_str(&attested.report_json).expect("report json");
    assert_eq!(report["platform"], "gcp-tdx");
    assert_eq!(report["os_image_variant"], "gcp");
    assert_eq!(
        report["tpm"]["signature_algorithm"],
        "rsassa-pkcs1v15-sha256"
    );
    let os_image = report["os_image_hash"]
        .as_str()
        .expect("os image")
        .to_owned();
    let decision = response.authorization.expect("authorization");
    assert!(!decision.is_allowed);
    assert_eq!(decision.reason, "OS image is not allowed");

    let allowing = Service::start(&[
        "--dangerous-fixed-now",
        &now,
        "--gcp-root",
        &path("root.der"),
        "--gcp-ca-bundle",
        &path("ca_bundle.pem"),
        "--registry",
        &write_file(files.path(), "gcp.toml", &registry(&os_image)),
    ]);
    let response = allowing
        .client()
        .await
        .verify(request(Authorize::App))
        .await
        .expect("verify")
        .into_inner();
    let decision = response.authorization.expect("authorization");
    assert!(decision.is_allowed, "{}", decision.reason);
}

/// The webhook accepts what dstack's auth-eth accepts and nothing it refuses: a body its request
/// schema refuses is 400 with auth-eth's answer, never `isAllowed:true`.
#[tokio::test]
async fn the_webhook_refuses_what_auth_eth_refuses() {
    let files = tempfile::tempdir().expect("tempdir");
    // An allowlist that allows the all-zero boot: a refused body must not reach it.
    let registry = write_file(
        files.path(),
        "registry.toml",
        &format!(
            "block = 7\ngateway_app_id = \"\"\nos_images = [\"0x{zero}\"]\n\
             kms_aggregated_mrs = []\nkms_device_ids = []\n\n\
             [[apps]]\napp_id = \"0x{app}\"\ncompose_hashes = [\"0x{zero}\"]\n\
             device_ids = []\nallow_any_device = true\nrequire_tcb_up_to_date = false\n\
             code = \"known\"\n",
            zero = "00".repeat(32),
            app = "00".repeat(20),
        ),
    );
    let server = Service::start(&["--registry", &registry]);
    server
        .wait_health(ServingStatus::Serving, Duration::from_secs(10))
        .await;
    let (code, answer) = server.post_json("/bootAuth/app", ZERO_BOOT_INFO).await;
    assert_eq!(
        (code, &answer["isAllowed"]),
        (200, &Value::Bool(true)),
        "{answer}"
    );

    let with = |field: &str, value: &str| {
        ZERO_BOOT_INFO.replace(
            &format!(r#""{field}":"""#),
            &format!(r#""{field}":{value}"#),
        )
    };
    let without = |field: &str| {
        let mut body: serde_json::Map<String, Value> =
            serde_json::from_str(ZERO_BOOT_INFO).unwrap();
        body.remove(field);
        Value::Object(body).to_string()
    };
    let mut refused = vec![
        "{}".to_owned(),
        "[]".to_owned(),
        r#"["","","","","",""]"#.to_owned(),
        with("appId", r#""0X00""#),
        with("appId", r#"" 00""#),
        with("appId", r#""00 ""#),
        with("osImageHash", &format!(r#""0x{}""#, "0".repeat(65))),
        // Stricter than auth-eth, which coerces these to strings:
        with("appId", "null"),
        with("appId", "0"),
        format!(r#"{{"appId":"","appId":"",{}"#, &ZERO_BOOT_INFO[12..]),
    ];
    for field in [
        "appId",
        "composeHash",
        "instanceId",
        "deviceId",
        "mrAggregated",
        "osImageHash",
    ] {
        refused.push(without(field));
    }
    for body in &refused {
        let (code, answer) = server.post_json("/bootAuth/app", body).await;
        assert_eq!(code, 400, "{body}: {answer}");
        assert_eq!(
            answer,
            serde_json::json!({
                "isAllowed": false,
                "reason": "invalid authorization request",
                "gatewayAppId": ""
            }),
            "{body}"
        );
    }

    // Lengths count characters, as auth-eth's do: 100 two-byte characters are not too long.
    let status = "é".repeat(100);
    let body = ZERO_BOOT_INFO.replace(
        '}',
        &format!(
            r#","tcbStatus":"{status}","advisoryIds":["{}"]}}"#,
            "é".repeat(256)
        ),
    );
    let (code, answer) = server.post_json("/bootAuth/app", &body).await;
    assert_eq!(
        (code, &answer["isAllowed"]),
        (200, &Value::Bool(true)),
        "{answer}"
    );
    let too_long = ZERO_BOOT_INFO.replace('}', &format!(r#","tcbStatus":"{}"}}"#, "é".repeat(129)));
    let (code, _) = server.post_json("/bootAuth/app", &too_long).await;
    assert_eq!(code, 400);
}
