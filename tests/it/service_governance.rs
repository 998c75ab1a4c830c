//! The governance side of the gRPC API on a real chain (a KMS and an app owned by a
//! TimelockController whose proposer is a Safe): `GetRegistry` and `CheckMeasurement` carry the
//! pending changes with their ETA, `WatchRegistry` streams them as they are scheduled, become
//! ready, execute or are cancelled, and `Explain` gives the decision, the checks and hints.

use crate::governance::{governed, Governed, MIN_DELAY};
use crate::support::safe::{advance_time, owner};
use crate::support::service::{eventually, Service};
use tonic_health::pb::health_check_response::ServingStatus;

use alloy::hex::encode_prefixed as hex;
use alloy::primitives::keccak256;
use alloy::providers::Provider;
use std::time::Duration;
use tee_verifier::service::proto::{
    self, check_measurement_request::Measurement, registry_event::Event, PendingState,
};

fn serve(g: &Governed) -> Service {
    crate::service_chain::serve_kms(&g.node, g.kms, &[])
}

/// The timelock events of the stream up to (and with) the next `block_advanced`.
async fn timelock_events_until_advance(
    watch: &mut tonic::Streaming<proto::RegistryEvent>,
) -> Vec<proto::PendingChange> {
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), watch.message())
            .await
            .expect("an event in time")
            .expect("stream")
            .expect("open");
        match event.event {
            Some(Event::Timelock(change)) => seen.push(change),
            Some(Event::BlockAdvanced(_)) if !seen.is_empty() => return seen,
            _ => {}
        }
    }
}

fn explain_request(g: &Governed, os: [u8; 32], compose: [u8; 32]) -> proto::ExplainRequest {
    proto::ExplainRequest {
        boot_info: Some(proto::BootInfo {
            app_id: hex(g.app),
            os_image_hash: hex(os),
            compose_hash: hex(compose),
            tcb_status: "UpToDate".into(),
            ..Default::default()
        }),
        kms: false,
        app_compose: None,
        evidence: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_changes_reach_get_registry_check_measurement_watch_and_explain() {
    let g = governed(&[owner(0)], 1, &[0]).await;
    let provider = g.provider();
    let server = serve(&g);
    server
        .wait_health(ServingStatus::Serving, Duration::from_secs(30))
        .await;
    let mut client = server.client().await;
    let (mut watch, snapshot) = server.watch_from_snapshot().await;
    assert!(snapshot.pending.is_empty());

    let (os, compose) = (g.add_os("svc-os"), g.add_compose("svc-compose"));
    let proposal = g.proposal(vec![os, compose], "svc");
    let operation_id = hex(proposal.timelock().unwrap().id());
    g.run_through_multisend(&proposal.proposer_calls()).await;
    let block = provider.get_block_number().await.unwrap();
    let eta = g.timestamp_of_block(block).await + MIN_DELAY;

    // Streamed as scheduled (waiting), before the block's advance.
    let scheduled = timelock_events_until_advance(&mut watch).await;
    assert_eq!(scheduled.len(), 2, "{scheduled:?}");
    for change in &scheduled {
        assert_eq!(change.operation_id, operation_id);
        assert_eq!(change.eta, eta);
        assert_eq!(change.state, PendingState::Waiting as i32);
    }
    assert_eq!(scheduled[0].function, "addOsImageHash(bytes32)");
    assert_eq!(scheduled[1].target, hex(g.app));

    // GetRegistry: the pending changes, of the snapshot's block.
    let snapshot = client
        .get_registry(proto::GetRegistryRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(snapshot.pending, scheduled);
    // Limited to other apps: the app's compose hash change is left out, the KMS's kept.
    let other = client
        .get_registry(proto::GetRegistryRequest {
            app_ids: vec![hex([0x42; 20])],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(other.pending, scheduled[..1]);

    // CheckMeasurement: not registered yet, with its pending add and ETA.
    let answer = client
        .check_measurement(proto::CheckMeasurementRequest {
            measurement: Some(Measurement::OsImageHash(hex(os.value))),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.registered);
    assert_eq!(answer.pending, scheduled[..1]);
    let answer = client
        .check_measurement(proto::CheckMeasurementRequest {
            measurement: Some(Measurement::AppComposeHash(proto::AppComposeHash {
                app_id: hex(g.app),
                compose_hash: hex(compose.value),
            })),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.pending, scheduled[1..]);

    // Explain: refused, and why: not registered, pending until the ETA.
    let explanation = client
        .explain(explain_request(&g, os.value, compose.value))
        .await
        .unwrap()
        .into_inner();
    let decision = explanation.decision.clone().unwrap();
    assert!(!decision.is_allowed);
    assert_eq!(decision.reason, "OS image is not allowed");
    let check = &explanation.checks[1];
    assert_eq!(
        (check.name.as_str(), check.ok, check.reached),
        ("os_image_allowed", false, true)
    );
    let pending_hint = explanation
        .hints
        .iter()
        .find(|h| h.kind == "pending" && h.field == "osImageHash")
        .unwrap_or_else(|| panic!("{explanation:?}"));
    assert_eq!(pending_hint.operation_id, operation_id);
    assert_eq!(pending_hint.eta, Some(eta));
    assert_eq!(pending_hint.state, PendingState::Waiting as i32);
    assert!(explanation.hints.iter().any(|h| h.kind == "not_registered"));
    // The same decision IsAppAllowed gives.
    let direct = client
        .is_app_allowed(proto::IsAppAllowedRequest {
            boot_info: explain_request(&g, os.value, compose.value).boot_info,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(direct, decision);

    // Ready once the delay has passed, then executed.
    advance_time(&provider, MIN_DELAY).await;
    let ready = timelock_events_until_advance(&mut watch).await;
    assert!(ready.iter().all(|c| c.state == PendingState::Ready as i32));
    assert_eq!(ready.len(), 2);
    g.run_direct(proposal.timelock().unwrap().execute()).await;
    let executed = timelock_events_until_advance(&mut watch).await;
    assert_eq!(executed.len(), 2, "{executed:?}");
    assert!(executed
        .iter()
        .all(|c| c.state == PendingState::Executed as i32));
    let explanation = client
        .explain(explain_request(&g, os.value, compose.value))
        .await
        .unwrap()
        .into_inner();
    assert!(explanation.decision.unwrap().is_allowed);
    assert!(explanation.checks.iter().all(|c| c.ok && c.reached));
    let snapshot = client
        .get_registry(proto::GetRegistryRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(snapshot.pending.is_empty());

    // A cancelled operation: streamed as scheduled, then cancelled.
    let doomed = g.proposal(vec![g.add_os("doomed")], "doomed");
    g.run_direct(doomed.timelock().unwrap().schedule()).await;
    let scheduled = timelock_events_until_advance(&mut watch).await;
    assert_eq!(scheduled.len(), 1);
    g.run_direct(doomed.timelock().unwrap().cancel()).await;
    let cancelled = timelock_events_until_advance(&mut watch).await;
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0].state, PendingState::Cancelled as i32);
    assert_eq!(cancelled[0].args, [hex(keccak256("doomed"))]);
    let answer = eventually("the cancel to show", Duration::from_secs(10), || {
        let mut client = client.clone();
        async move {
            let answer = client
                .check_measurement(proto::CheckMeasurementRequest {
                    measurement: Some(Measurement::OsImageHash(hex(keccak256("doomed")))),
                })
                .await
                .ok()?
                .into_inner();
            answer.pending.is_empty().then_some(answer)
        }
    })
    .await;
    assert!(!answer.registered);
}

/// `Explain` with evidence: verified first, as `Verify` does, then its boot info explained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_verifies_evidence_first() {
    let dir = crate::support::samples::samples_dir();
    let node = crate::support::anvil::Anvil::spawn();
    let dstack = crate::support::anvil::Dstack::deploy(&node.provider()).await;
    // The quote report's collateral is current at this time; no PCS to fetch from.
    let server = crate::service_chain::serve_kms(
        &node,
        dstack.kms,
        &[
            "--dangerous-fixed-now",
            "1771459200",
            "--no-collateral-fetch",
        ],
    );
    server
        .wait_health(ServingStatus::Serving, Duration::from_secs(30))
        .await;
    let mut client = server.client().await;
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("sample");
    let evidence = |accept_os_image_claim: bool, collateral: Option<String>| proto::VerifyRequest {
        evidence: Some(proto::verify_request::Evidence::DstackQuoteReport(
            proto::DstackQuoteReport {
                json: read("dstack/dstack-verifier-quote-report.json"),
                collateral,
            },
        )),
        accept_os_image_claim,
        ..Default::default()
    };
    let explain = |evidence: proto::VerifyRequest| proto::ExplainRequest {
        evidence: Some(evidence),
        ..Default::default()
    };
    let collateral = read("tdx/dcap-qvl_fmspc90c06f_collateral.json");

    // Its os image hash is the host's claim: nothing to explain unless accepted.
    let answer = client
        .explain(explain(evidence(false, Some(collateral.clone()))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.rejected.unwrap().kind, "unauthorizable");
    assert!(answer.decision.is_none());
    // Without collateral it does not verify: the verifier's kind.
    let answer = client
        .explain(explain(evidence(true, None)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.rejected.unwrap().kind, "collateral_missing");
    // Accepted: the app is not registered with this KMS, and explain says so.
    let answer = client
        .explain(explain(evidence(true, Some(collateral))))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.rejected.is_none());
    assert_eq!(answer.decision.unwrap().reason, "App not registered");
    assert!(answer.hints.iter().any(|h| h.kind == "app_not_registered"));
    // Both inputs at once is a malformed request.
    let both = proto::ExplainRequest {
        boot_info: Some(proto::BootInfo::default()),
        evidence: Some(proto::VerifyRequest::default()),
        ..Default::default()
    };
    let status = client.explain(both).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}
