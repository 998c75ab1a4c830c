//! `tee-verifier serve` on a chain: the real binary following dstack's contracts on a local anvil
//! node. Real samples are verified and authorized on chain, revocations reach watchers and
//! answers, a dead node turns health NOT_SERVING and answers UNAVAILABLE, and the webhook answers
//! exactly what the contract answers for the same boot infos.

use crate::support::anvil;
use crate::support::samples;
use crate::support::service;

use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use anvil::{transact, Anvil, Dstack, DstackApp, DstackKms};
use serde_json::Value;
use service::{eventually, Service};
use std::time::Duration;
use tee_verifier::boot_info::{BootInfo, BootInfoJson};
use tee_verifier::registry::abi::{AppBootInfo, IDstackKms, EIP1967_IMPLEMENTATION_SLOT};
use tee_verifier::service::proto::{
    self, check_measurement_request::Measurement, registry_event::Event, verify_request::Evidence,
    Authorize, ChangeAction, RegistryList,
};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

const GATEWAY_APP_ID: &str = "gateway.example";

/// Serves the chain's DstackKms, following the head closely so tests see changes fast.
fn serve_chain(anvil: &Anvil, dstack: &Dstack, extra: &[&str]) -> Service {
    serve_kms(anvil, dstack.kms, extra)
}

/// Serves the DstackKms at `kms`, following the head closely.
pub(crate) fn serve_kms(anvil: &Anvil, kms: Address, extra: &[&str]) -> Service {
    let (url, kms) = (anvil.url(), kms.to_string());
    let mut args = vec![
        "--rpc-url",
        &url,
        "--kms-contract",
        &kms,
        "--confirmations",
        "0",
        "--poll-interval",
        "100ms",
        "--max-staleness",
        "1s",
    ];
    args.extend_from_slice(extra);
    Service::start(&args)
}

/// Waits until the service's view is at `block` or later.
async fn wait_for_block(server: &Service, block: u64) {
    let client = server.client().await;
    eventually(
        "the view to reach the block",
        Duration::from_secs(20),
        || {
            let mut client = client.clone();
            async move {
                let request = proto::CheckMeasurementRequest {
                    measurement: Some(Measurement::OsImageHash(String::new())),
                };
                let answer = client.check_measurement(request).await.ok()?.into_inner();
                (answer.block >= block).then_some(())
            }
        },
    )
    .await;
}

async fn head(provider: &RootProvider) -> u64 {
    provider.get_block_number().await.expect("block number")
}

fn b256(hex_text: &str) -> B256 {
    hex_text.parse().expect("bytes32 hex")
}

/// Puts a DstackApp proxy (the KMS's own proxy code, pointing at its appImplementation) at a
/// fixed address, initializes it with `compose_hash` and any device allowed, and registers it:
/// how a real sample's app id becomes a registered app on a test chain.
async fn install_app_at(
    provider: &RootProvider,
    dstack: &Dstack,
    app_id: Address,
    compose_hash: B256,
) {
    let template = dstack
        .deploy_app(provider, false, true, B256::ZERO, B256::ZERO)
        .await;
    let code = provider.get_code_at(template).await.expect("proxy code");
    let _: Value = provider
        .client()
        .request("anvil_setCode", (app_id, code))
        .await
        .expect("anvil_setCode");
    let implementation = B256::left_padding_from(dstack.app_implementation.as_slice());
    let _: Value = provider
        .client()
        .request(
            "anvil_setStorageAt",
            (
                app_id,
                U256::from_be_bytes(EIP1967_IMPLEMENTATION_SLOT.0),
                implementation,
            ),
        )
        .await
        .expect("anvil_setStorageAt");
    let init = DstackApp::initialize_0Call {
        initialOwner: anvil::deployer(),
        _disableUpgrades: false,
        _requireTcbUpToDate: false,
        _allowAnyDevice: true,
        initialDeviceId: B256::ZERO,
        initialComposeHash: compose_hash,
    };
    transact(provider, app_id, init).await;
    transact(
        provider,
        dstack.kms,
        DstackKms::registerAppCall { appId: app_id },
    )
    .await;
}

#[tokio::test]
async fn verify_authorizes_real_samples_on_chain_and_sees_revocations() {
    let dir = samples::samples_dir();
    let anvil = Anvil::spawn();
    let provider = anvil.provider();
    let dstack = Dstack::deploy(&provider).await;

    // The dstack Nitro sample: app id e3b0…, compose hash = os image hash = sha256(PCR0‖1‖2).
    let nitro_app: Address = "0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4"
        .parse()
        .expect("address");
    let nitro_image = b256("0x1894b0b29e94a9db16e88a2914f0923e52bb16c08bf3bb484df786a147e2eb79");
    install_app_at(&provider, &dstack, nitro_app, nitro_image).await;
    transact(
        &provider,
        dstack.kms,
        DstackKms::addOsImageHashCall {
            osImageHash: nitro_image,
        },
    )
    .await;
    // The dstack TDX quote report sample (its os image hash is the host's vm_config claim).
    let tdx_app: Address = "0x3763bc34552cf3a27ff71ad5f7a90471562a1a2d"
        .parse()
        .expect("address");
    let tdx_compose = b256("0x3763bc34552cf3a27ff71ad5f7a90471562a1a2df552dfc1998cba2d60da27e7");
    let tdx_image = b256("0x14ad42d0270b444eaeb53918a5a94d9b17eec7a817cd336173b17c5327541c67");
    install_app_at(&provider, &dstack, tdx_app, tdx_compose).await;
    transact(
        &provider,
        dstack.kms,
        DstackKms::addOsImageHashCall {
            osImageHash: tdx_image,
        },
    )
    .await;

    let attestation =
        std::fs::read(dir.join("dstack/dstack-nitro-attestation-v0.scale.bin")).expect("sample");
    let nitro_request = proto::VerifyRequest {
        evidence: Some(Evidence::DstackAttestation(proto::DstackAttestation {
            attestation,
            collateral: None,
        })),
        authorize: Authorize::App.into(),
        ..Default::default()
    };
    let report = std::fs::read_to_string(dir.join("dstack/dstack-verifier-quote-report.json"))
        .expect("sample");
    let collateral = std::fs::read_to_string(dir.join("tdx/dcap-qvl_fmspc90c06f_collateral.json"))
        .expect("sample");
    let tdx_request = proto::VerifyRequest {
        evidence: Some(Evidence::DstackQuoteReport(proto::DstackQuoteReport {
            json: report,
            collateral: Some(collateral),
        })),
        authorize: Authorize::App.into(),
        // Its os_image_hash is the host's vm_config claim: authorized only when accepted.
        accept_os_image_claim: true,
        ..Default::default()
    };

    let nitro_server = serve_chain(&anvil, &dstack, &["--dangerous-fixed-now", "1766678659"]);
    let tdx_server = serve_chain(&anvil, &dstack, &["--dangerous-fixed-now", "1771459200"]);
    let setup_block = head(&provider).await;
    wait_for_block(&nitro_server, setup_block).await;
    wait_for_block(&tdx_server, setup_block).await;

    for (server, request) in [(&nitro_server, &nitro_request), (&tdx_server, &tdx_request)] {
        let response = server
            .client()
            .await
            .verify(request.clone())
            .await
            .expect("verify")
            .into_inner();
        assert!(response.verified, "{:?}", response.error);
        let decision = response.authorization.expect("authorization");
        assert!(decision.is_allowed, "{}", decision.reason);
        assert!(decision.block >= setup_block);
    }
    // Without accepting the claim, the unmeasured os_image_hash is never authorized.
    let claim_refused = tdx_server
        .client()
        .await
        .verify(proto::VerifyRequest {
            accept_os_image_claim: false,
            ..tdx_request.clone()
        })
        .await
        .expect("verify")
        .into_inner();
    assert!(claim_refused.verified);
    let decision = claim_refused.authorization.expect("authorization");
    assert!(!decision.is_allowed);
    assert!(
        decision.reason.contains("vm_config claim"),
        "{}",
        decision.reason
    );

    // Revoke each app's compose hash on chain: the same evidence is now denied.
    let receipt = transact(
        &provider,
        nitro_app,
        DstackApp::removeComposeHashCall {
            composeHash: nitro_image,
        },
    )
    .await;
    transact(
        &provider,
        tdx_app,
        DstackApp::removeComposeHashCall {
            composeHash: tdx_compose,
        },
    )
    .await;
    let revoked_block = head(&provider).await;
    assert!(receipt.block_number.expect("mined") <= revoked_block);
    wait_for_block(&nitro_server, revoked_block).await;
    wait_for_block(&tdx_server, revoked_block).await;
    for (server, request) in [(&nitro_server, &nitro_request), (&tdx_server, &tdx_request)] {
        let response = server
            .client()
            .await
            .verify(request.clone())
            .await
            .expect("verify")
            .into_inner();
        assert!(
            response.verified,
            "verification does not depend on the registry"
        );
        let decision = response.authorization.expect("authorization");
        assert_eq!(
            (decision.is_allowed, decision.reason.as_str()),
            (false, "Compose hash not allowed")
        );
        assert!(decision.block >= revoked_block);
    }
}

#[tokio::test]
async fn watchers_see_revocations_and_a_dead_node_fails_closed() {
    let mut anvil = Anvil::spawn();
    let provider = anvil.provider();
    let dstack = Dstack::deploy(&provider).await;
    let compose = b256(&format!("0x{}", "c1".repeat(32)));
    let device = b256(&format!("0x{}", "d1".repeat(32)));
    let image = b256(&format!("0x{}", "0a".repeat(32)));
    let app = dstack
        .deploy_app(&provider, false, false, device, compose)
        .await;
    transact(
        &provider,
        dstack.kms,
        DstackKms::addOsImageHashCall { osImageHash: image },
    )
    .await;
    transact(
        &provider,
        dstack.kms,
        DstackKms::setGatewayAppIdCall {
            appId: GATEWAY_APP_ID.into(),
        },
    )
    .await;

    let server = serve_chain(&anvil, &dstack, &[]);
    server
        .wait_health(ServingStatus::Serving, Duration::from_secs(20))
        .await;
    wait_for_block(&server, head(&provider).await).await;
    let mut client = server.client().await;
    let (mut watch, snapshot) = server.watch_from_snapshot().await;
    let app_hex = to_0x_hex(app.as_slice());
    let listed = snapshot
        .apps
        .iter()
        .find(|a| a.app_id == app_hex)
        .expect("the app in the snapshot");
    assert_eq!(listed.compose_hashes, vec![compose.to_string()]);
    assert_eq!(snapshot.gateway_app_id, GATEWAY_APP_ID);
    assert_eq!(
        snapshot.head.expect("head").source,
        format!("chain:{}:{}", anvil.url(), to_0x_hex(dstack.kms.as_slice()))
    );

    let boot = proto::BootInfo {
        app_id: app_hex.clone(),
        compose_hash: compose.to_string(),
        device_id: device.to_string(),
        os_image_hash: image.to_string(),
        ..Default::default()
    };
    let decision = client
        .is_app_allowed(proto::IsAppAllowedRequest {
            boot_info: Some(boot.clone()),
        })
        .await
        .expect("decide")
        .into_inner();
    assert!(decision.is_allowed, "{}", decision.reason);
    assert_eq!(decision.gateway_app_id, GATEWAY_APP_ID);

    // Revoke on chain: the stream reports the removal, then the block that carried it.
    let receipt = transact(
        &provider,
        app,
        DstackApp::removeComposeHashCall {
            composeHash: compose,
        },
    )
    .await;
    let block = receipt.block_number.expect("mined");
    let mut saw_removal = false;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), watch.message())
            .await
            .expect("an event in time")
            .expect("stream")
            .expect("event");
        match event.event {
            Some(Event::Change(change)) => {
                if change.action() == ChangeAction::Removed
                    && change.list() == RegistryList::AppComposeHash
                {
                    assert_eq!(change.app_id, app_hex);
                    assert_eq!(change.value, compose.to_string());
                    saw_removal = true;
                }
            }
            Some(Event::BlockAdvanced(advanced)) if advanced.block >= block => break,
            Some(Event::BlockAdvanced(_)) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert!(saw_removal, "the removal comes before its block's advance");
    let decision = client
        .is_app_allowed(proto::IsAppAllowedRequest {
            boot_info: Some(boot.clone()),
        })
        .await
        .expect("decide")
        .into_inner();
    assert_eq!(
        (decision.is_allowed, decision.reason.as_str()),
        (false, "Compose hash not allowed")
    );
    assert!(decision.block >= block);
    let registered = client
        .check_measurement(proto::CheckMeasurementRequest {
            measurement: Some(Measurement::AppComposeHash(proto::AppComposeHash {
                app_id: app_hex.clone(),
                compose_hash: compose.to_string(),
            })),
        })
        .await
        .expect("check")
        .into_inner();
    assert!(!registered.registered);

    // The node dies: within max_staleness, health says NOT_SERVING and nothing is answered.
    anvil.kill();
    server
        .wait_health(ServingStatus::NotServing, Duration::from_secs(15))
        .await;
    let status = client
        .is_app_allowed(proto::IsAppAllowedRequest {
            boot_info: Some(boot.clone()),
        })
        .await
        .expect_err("unavailable");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let status = client
        .is_kms_allowed(proto::IsKmsAllowedRequest {
            boot_info: Some(boot.clone()),
        })
        .await
        .expect_err("unavailable");
    assert_eq!(status.code(), Code::Unavailable);
    let status = client
        .check_measurement(proto::CheckMeasurementRequest {
            measurement: Some(Measurement::OsImageHash(image.to_string())),
        })
        .await
        .expect_err("unavailable");
    assert_eq!(status.code(), Code::Unavailable);
    let (code, answer) = server
        .post_json(
            "/bootAuth/app",
            &format!(
                r#"{{"appId":"{app_hex}","composeHash":"{compose}","instanceId":"","deviceId":"","mrAggregated":"","osImageHash":""}}"#
            ),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(answer["isAllowed"], false);
    assert_eq!(answer["reason"], "authorization backend unavailable");
    let (code, _) = server.get("/healthz").await;
    assert_eq!(code, 503);
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains("tee_verifier_registry_available 0"),
        "{metrics}"
    );
}

/// The contract's answer through eth_call at the latest block.
async fn contract_answer(
    provider: &RootProvider,
    kms: Address,
    boot: &BootInfo,
    kms_question: bool,
) -> (bool, String) {
    let tuple = AppBootInfo::from(boot);
    let input = if kms_question {
        IDstackKms::isKmsAllowedCall { bootInfo: tuple }.abi_encode()
    } else {
        IDstackKms::isAppAllowedCall { bootInfo: tuple }.abi_encode()
    };
    let request = TransactionRequest::default()
        .to(kms)
        .input(Bytes::from(input).into());
    let bytes = provider.call(request).await.expect("eth_call");
    if kms_question {
        let answer = IDstackKms::isKmsAllowedCall::abi_decode_returns(&bytes).expect("decode");
        (answer.isAllowed, answer.reason)
    } else {
        let answer = IDstackKms::isAppAllowedCall::abi_decode_returns(&bytes).expect("decode");
        (answer.isAllowed, answer.reason)
    }
}

#[tokio::test]
async fn webhook_answers_exactly_what_the_contract_answers() {
    let anvil = Anvil::spawn();
    let provider = anvil.provider();
    let dstack = Dstack::deploy(&provider).await;
    let word = |byte: u8| B256::repeat_byte(byte);
    let (image, other_image) = (word(0x0a), word(0x0b));
    let (compose, other_compose) = (word(0xc1), word(0xc2));
    let (device, other_device) = (word(0xd1), word(0xd2));
    let (mr, other_mr) = (word(0xa1), word(0xa2));

    transact(
        &provider,
        dstack.kms,
        DstackKms::addOsImageHashCall { osImageHash: image },
    )
    .await;
    transact(
        &provider,
        dstack.kms,
        DstackKms::addKmsAggregatedMrCall { mrAggregated: mr },
    )
    .await;
    transact(
        &provider,
        dstack.kms,
        DstackKms::addKmsDeviceCall { deviceId: device },
    )
    .await;
    transact(
        &provider,
        dstack.kms,
        DstackKms::setGatewayAppIdCall {
            appId: GATEWAY_APP_ID.into(),
        },
    )
    .await;
    // Strict app: TCB must be up to date, one device.
    let strict = dstack
        .deploy_app(&provider, true, false, device, compose)
        .await;
    // Old-style app: any device.
    let open = dstack
        .deploy_app_v1(&provider, true, B256::ZERO, compose)
        .await;
    // Unknown code (decided by eth_call), and a registered address without code.
    let custom = dstack
        .deploy_manual_app(&provider, dstack.custom_implementation, compose)
        .await;
    let empty: Address = Address::repeat_byte(0x77);
    transact(
        &provider,
        dstack.kms,
        DstackKms::registerAppCall { appId: empty },
    )
    .await;
    let unregistered: Address = Address::repeat_byte(0x55);

    let server = serve_chain(&anvil, &dstack, &["--chain-id", "31337"]);
    wait_for_block(&server, head(&provider).await).await;
    let info = eventually("GET / to see the view", Duration::from_secs(10), || async {
        let (code, info) = server.get("/").await;
        (code == 200).then(|| serde_json::from_str::<Value>(&info).expect("json"))
    })
    .await;
    assert_eq!(info["status"], "ok");
    assert_eq!(info["chainId"], 31337);
    assert_eq!(info["kmsContractAddr"], to_0x_hex(dstack.kms.as_slice()));
    let implementation = to_0x_hex(dstack.app_implementation.as_slice());
    assert_eq!(info["appImplementation"], implementation.as_str());
    assert_eq!(info["appAuthImplementation"], implementation.as_str());
    assert_eq!(info["gatewayAppId"], GATEWAY_APP_ID);
    // The KMS's code at the first build is trusted, and GET / names it.
    assert_eq!(info["registry"]["kmsCode"]["trusted"], true);
    assert!(info["registry"]["kmsCode"]["identity"]
        .as_str()
        .is_some_and(|identity| identity.len() == 66));
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains("tee_verifier_registry_kms_code_trusted 1"),
        "{metrics}"
    );

    // A node on another chain than the configured one is never read: unavailable, saying why.
    let elsewhere = serve_chain(&anvil, &dstack, &["--chain-id", "1"]);
    let (code, answer) = elsewhere
        .post_json("/bootAuth/kms", crate::support::service::ZERO_BOOT_INFO)
        .await;
    assert_eq!((code, answer["isAllowed"].as_bool()), (200, Some(false)));
    let reason = eventually(
        "the wrong chain to be reported",
        Duration::from_secs(10),
        || async {
            let (code, info) = elsewhere.get("/").await;
            let info: Value = serde_json::from_str(&info).expect("json");
            let reason = info["registry"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (code == 503 && reason.contains("chain 31337")).then_some(reason)
        },
    )
    .await;
    assert!(reason.contains("not the configured chain 1"), "{reason}");
    assert!(
        elsewhere.stderr().contains("misconfigured"),
        "{}",
        elsewhere.stderr()
    );

    let base = BootInfo {
        app_id: strict.0 .0,
        compose_hash: compose.0,
        instance_id: [0x11; 20],
        device_id: device.0,
        mr_aggregated: mr.0,
        mr_system: [0x22; 32],
        os_image_hash: image.0,
        tcb_status: "UpToDate".into(),
        advisory_ids: vec!["INTEL-SA-00837".into()],
    };
    let mut cases = Vec::new();
    for app in [strict, open, custom, empty, unregistered] {
        for (compose_hash, device_id, os_image_hash, tcb_status, mr_aggregated) in [
            (compose, device, image, "UpToDate", mr),
            (other_compose, device, image, "UpToDate", mr),
            (compose, other_device, image, "UpToDate", mr),
            (compose, device, other_image, "UpToDate", mr),
            (compose, device, image, "OutOfDate", mr),
            (compose, device, image, "", mr),
            (compose, device, image, "UpToDate", other_mr),
        ] {
            cases.push(BootInfo {
                app_id: app.0 .0,
                compose_hash: compose_hash.0,
                device_id: device_id.0,
                os_image_hash: os_image_hash.0,
                tcb_status: tcb_status.into(),
                mr_aggregated: mr_aggregated.0,
                ..base.clone()
            });
        }
    }

    let mut reasons = std::collections::BTreeSet::new();
    for boot in &cases {
        let body = serde_json::to_string(&BootInfoJson::from(boot)).expect("json");
        for (path, kms_question) in [("/bootAuth/app", false), ("/bootAuth/kms", true)] {
            let (code, ours) = server.post_json(path, &body).await;
            assert_eq!(code, 200, "{path}: {ours}");
            let theirs = contract_answer(&provider, dstack.kms, boot, kms_question).await;
            assert_eq!(
                (
                    ours["isAllowed"].as_bool().expect("isAllowed"),
                    ours["reason"].as_str().expect("reason")
                ),
                (theirs.0, theirs.1.as_str()),
                "{path} for {body}"
            );
            assert_eq!(ours["gatewayAppId"], GATEWAY_APP_ID, "{path}");
            reasons.insert(theirs.1);
        }
    }
    // The cases reach every reason of both contracts, and an allow.
    for reason in [
        "",
        "App not registered",
        "OS image is not allowed",
        "App not deployed or invalid address",
        "TCB status is not up to date",
        "Compose hash not allowed",
        "Device not allowed",
        "Aggregated MR not allowed",
        "KMS is not allowed to boot on this device",
    ] {
        assert!(
            reasons.contains(reason),
            "no case reached {reason:?}: {reasons:?}"
        );
    }

    // The KMS's own spellings: no 0x, uppercase, short values left-padded.
    let spelled = format!(
        r#"{{"appId":"{}","composeHash":"{}","instanceId":"","deviceId":"{}","osImageHash":"{}","tcbStatus":"UpToDate","mrAggregated":"{}"}}"#,
        hex::encode(strict.as_slice()).to_uppercase(),
        hex::encode(compose.as_slice()),
        hex::encode(device.as_slice()),
        hex::encode(image.as_slice()),
        hex::encode(mr.as_slice()),
    );
    let (_, ours) = server.post_json("/bootAuth/app", &spelled).await;
    assert_eq!(ours["isAllowed"], true, "{ours}");
}

fn to_0x_hex(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}
