//! The chain source behind a fault-injecting proxy (`support::fault_proxy`) between it and
//! anvil: every fault makes answers unavailable within `max_staleness` (never an answer from a
//! view that could not be confirmed), a fault in the middle of a build or an advance never leaves
//! a partial view answering, and the view recovers when the proxy heals.

use crate::registry_follow::{allowed, boot, setup, time_until, word, Setup};
use crate::support::anvil::{self, mine, transact, DstackApp};
use crate::support::fault_proxy::{Fault, FaultProxy};

use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use tee_verifier::registry::chain::{ChainConfig, ChainRegistry};
use tee_verifier::registry::{Decision, Registry, RegistryError};

/// How late past `max_staleness` an unavailable answer may come (the test's own polling and
/// scheduling on a loaded machine).
const SCHEDULING_MARGIN: Duration = Duration::from_millis(150);

fn config(proxy: &FaultProxy, kms: Address, max_staleness: Duration) -> ChainConfig {
    let mut config = ChainConfig::new(proxy.url(), kms.0 .0);
    config.confirmations = 0;
    config.poll_interval = Duration::from_millis(100);
    config.max_staleness = max_staleness;
    config.request_timeout = Duration::from_millis(300);
    config
}

fn unavailable(answer: &Result<Decision, RegistryError>) -> bool {
    answer
        .as_ref()
        .is_err_and(|error| error.kind().as_str() == "unavailable")
}

fn denied_with(reason: &'static str) -> impl Fn(&Result<Decision, RegistryError>) -> bool {
    move |answer| {
        answer
            .as_ref()
            .is_ok_and(|d| !d.allowed && d.reason == reason)
    }
}

async fn set_compose(s: &Setup, app: Address, compose: B256, allowed: bool) {
    let provider = s.node.provider();
    if allowed {
        transact(
            &provider,
            app,
            DstackApp::addComposeHashCall {
                composeHash: compose,
            },
        )
        .await;
    } else {
        transact(
            &provider,
            app,
            DstackApp::removeComposeHashCall {
                composeHash: compose,
            },
        )
        .await;
    }
}

/// For each fault: the compose hash is revoked on chain behind the proxy's back. Until
/// `max_staleness` after the fault began the view may still answer from what it confirmed, then
/// every answer is unavailable until the proxy heals; then the view catches up and denies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_fails_closed_within_max_staleness_and_the_view_recovers() {
    const MAX_STALENESS: Duration = Duration::from_secs(1);
    let s = setup().await;
    let proxy = FaultProxy::start(&s.node.url()).await;
    let registry = ChainRegistry::connect(config(&proxy, s.dstack.kms, MAX_STALENESS), None)
        .await
        .unwrap();
    let _follower = registry.spawn_follower();
    let info = boot(s.app, s.os, s.compose);
    let faults = [
        Fault::Drop,
        Fault::Blackhole,
        Fault::Reset,
        Fault::Status(503),
        Fault::Status(500),
        Fault::Delay(Duration::from_secs(1)),
        Fault::GarbleJson,
        Fault::HeadBehind(1_000),
        // Just behind: after the revoking block, the node's head is the view's block minus one.
        Fault::HeadBehind(2),
    ];
    for fault in faults {
        time_until(&registry, &info, Duration::from_secs(5), allowed).await;
        proxy.set(fault.clone());
        let faulted = Instant::now();
        set_compose(&s, s.app, s.compose, false).await;
        let outage = loop {
            let answer = registry.decide_app(&info).await;
            if unavailable(&answer) {
                break faulted.elapsed();
            }
            assert!(
                faulted.elapsed() <= MAX_STALENESS + SCHEDULING_MARGIN,
                "{fault:?}: still answering {answer:?} after {:?}",
                faulted.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        // Stays closed while the fault lasts.
        let closed_until = Instant::now() + Duration::from_millis(400);
        while Instant::now() < closed_until {
            let answer = registry.decide_app(&info).await;
            assert!(unavailable(&answer), "{fault:?}: {answer:?} while faulted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        proxy.heal();
        let recovery = time_until(
            &registry,
            &info,
            Duration::from_secs(5),
            denied_with("Compose hash not allowed"),
        )
        .await;
        println!("{fault:?}: unavailable after {outage:?}, recovered {recovery:?} after healing");
        set_compose(&s, s.app, s.compose, true).await;
    }
}

/// A node so slow that confirming the view takes longer than `max_staleness`: the view was
/// never confirmed recently enough, so it never answers (staleness counts from when a poll
/// asked, not from when its slow answers arrived).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_slower_than_max_staleness_never_answers() {
    const MAX_STALENESS: Duration = Duration::from_millis(500);
    let s = setup().await;
    let proxy = FaultProxy::start(&s.node.url()).await;
    let mut config = config(&proxy, s.dstack.kms, MAX_STALENESS);
    config.request_timeout = Duration::from_secs(3);
    let registry = ChainRegistry::connect(config, None).await.unwrap();
    let _follower = registry.spawn_follower();
    let info = boot(s.app, s.os, s.compose);
    assert!(registry.decide_app(&info).await.unwrap().allowed);

    // Every answer held 400 ms: a poll (head, then the followed block's hash) takes ≥ 800 ms.
    proxy.set(Fault::Delay(Duration::from_millis(400)));
    let faulted = Instant::now();
    let mut answered_late = Vec::new();
    while faulted.elapsed() < Duration::from_secs(4) {
        let answer = registry.decide_app(&info).await;
        if !unavailable(&answer) && faulted.elapsed() > MAX_STALENESS + SCHEDULING_MARGIN {
            answered_late.push(faulted.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        answered_late.is_empty(),
        "answered from confirmations older than max_staleness at {answered_late:?}"
    );
    proxy.heal();
    time_until(&registry, &info, Duration::from_secs(5), allowed).await;
}

/// The setup's app and two more like it (one compose hash, any device).
async fn three_apps(s: &Setup) -> Vec<Address> {
    let provider = s.node.provider();
    let mut apps = vec![s.app];
    for _ in 0..2 {
        apps.push(
            s.dstack
                .deploy_app(&provider, false, true, B256::ZERO, s.compose)
                .await,
        );
    }
    apps
}

/// Three apps, a reorg of the followed block, and a rebuild cut by a failing request at each
/// point in turn: until a rebuild completes, every answer is unavailable; then all of the new
/// branch is there at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_cut_at_any_request_never_serves_a_partial_view() {
    let s = setup().await;
    let provider = s.node.provider();
    let proxy = FaultProxy::start(&s.node.url()).await;
    let config = config(&proxy, s.dstack.kms, Duration::from_secs(60));
    let apps = three_apps(&s).await;
    // Polled by hand: each poll is one step.
    let registry = ChainRegistry::connect(config, None).await.unwrap();
    let (orphan, canonical) = (word("orphaned compose"), word("canonical compose"));
    let before = anvil::snapshot(&provider).await;
    set_compose(&s, s.app, orphan, true).await;
    registry.poll().await.unwrap();
    assert!(
        registry
            .decide_app(&boot(s.app, s.os, orphan))
            .await
            .unwrap()
            .allowed
    );
    anvil::revert(&provider, before).await;
    set_compose(&s, s.app, canonical, true).await;
    mine(&provider, 2).await;

    let answers = |registry: &ChainRegistry| {
        let registry = registry.clone();
        let apps = apps.clone();
        async move {
            let mut out = Vec::new();
            for app in &apps {
                out.push(registry.decide_app(&boot(*app, s.os, s.compose)).await);
            }
            out.push(registry.decide_app(&boot(s.app, s.os, canonical)).await);
            out.push(registry.decide_app(&boot(s.app, s.os, orphan)).await);
            out
        }
    };
    // Cut after 0, 1, 2… requests. Until the reorg is seen, the old view (whole) answers; once
    // it is seen, nothing answers until a rebuild completes.
    let allowed_each = |seen: &[Result<Decision, RegistryError>]| -> Vec<bool> {
        seen.iter().map(|a| a.as_ref().unwrap().allowed).collect()
    };
    let mut reorg_seen_at = None;
    let mut cuts = 0;
    loop {
        proxy.set_after(cuts, Fault::Status(503));
        if registry.poll().await.is_ok() {
            break;
        }
        let seen = answers(&registry).await;
        if seen.iter().all(unavailable) {
            reorg_seen_at.get_or_insert(cuts);
        } else {
            assert_eq!(reorg_seen_at, None, "cut {cuts}: answering again: {seen:?}");
            assert_eq!(
                allowed_each(&seen),
                [true, true, true, false, true],
                "cut {cuts}"
            );
        }
        cuts += 1;
        assert!(cuts < 200, "the rebuild never completed");
    }
    let reorg_seen_at = reorg_seen_at.expect("the reorg was never seen");
    let seen = answers(&registry).await;
    assert_eq!(
        allowed_each(&seen),
        [true, true, true, true, false],
        "{seen:?}"
    );
    println!(
        "reorg seen after {reorg_seen_at} requests; the rebuild cut at each of its first {} \
         requests: never served",
        cuts - reorg_seen_at
    );
}

/// An advance over blocks that revoke the compose hash of three apps, cut by a failing request
/// at each point in turn: the previous view answers whole (all three allowed) until an advance
/// completes, then all three are denied at once; never a mix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_advance_cut_at_any_request_leaves_the_previous_view_whole() {
    let s = setup().await;
    let proxy = FaultProxy::start(&s.node.url()).await;
    let apps = three_apps(&s).await;
    let registry =
        ChainRegistry::connect(config(&proxy, s.dstack.kms, Duration::from_secs(60)), None)
            .await
            .unwrap();
    for app in &apps {
        set_compose(&s, *app, s.compose, false).await;
    }
    let allowed_each = |registry: &ChainRegistry| {
        let registry = registry.clone();
        let apps = apps.clone();
        async move {
            let mut out = Vec::new();
            for app in &apps {
                out.push(
                    registry
                        .decide_app(&boot(*app, s.os, s.compose))
                        .await
                        .unwrap()
                        .allowed,
                );
            }
            out
        }
    };
    let mut cuts = 0;
    loop {
        proxy.set_after(cuts, Fault::Status(503));
        if registry.poll().await.is_ok() {
            break;
        }
        assert_eq!(allowed_each(&registry).await, [true; 3], "cut {cuts}");
        cuts += 1;
        assert!(cuts < 200, "the advance never completed");
    }
    assert_eq!(allowed_each(&registry).await, [false; 3]);
    println!("advance cut at each of its first {cuts} requests: previous view whole");
}
