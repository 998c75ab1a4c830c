//! The chain source following a live anvil node: propagation of revocations and registrations,
//! reorgs, and failing closed when the node goes away.

use crate::support::anvil;

use std::time::{Duration, Instant};

use alloy::primitives::{keccak256, Address, B256};
use anvil::{mine, transact, Anvil, Dstack, DstackApp, DstackKms};
use tee_verifier::boot_info::BootInfo;
use tee_verifier::registry::chain::{ChainConfig, ChainRegistry};
use tee_verifier::registry::{Entry, Lookup, Registry, RegistryChange, RegistryError};

pub(crate) fn word(tag: &str) -> B256 {
    keccak256(tag)
}

pub(crate) struct Setup {
    pub node: Anvil,
    pub dstack: Dstack,
    pub app: Address,
    pub os: B256,
    pub compose: B256,
}

/// A KMS with one allowed OS image and one factory app allowing one compose hash on any device.
pub(crate) async fn setup() -> Setup {
    let node = Anvil::spawn();
    let provider = node.provider();
    let dstack = Dstack::deploy(&provider).await;
    let (os, compose) = (word("os"), word("compose"));
    transact(
        &provider,
        dstack.kms,
        DstackKms::addOsImageHashCall { osImageHash: os },
    )
    .await;
    let app = dstack
        .deploy_app(&provider, false, true, B256::ZERO, compose)
        .await;
    Setup {
        node,
        dstack,
        app,
        os,
        compose,
    }
}

/// An up-to-date boot of `app` with `os` and `compose` (shared with the governance tests).
pub(crate) fn boot(app: Address, os: B256, compose: B256) -> BootInfo {
    BootInfo {
        app_id: app.0 .0,
        os_image_hash: os.0,
        compose_hash: compose.0,
        tcb_status: "UpToDate".into(),
        ..BootInfo::default()
    }
}

fn config(node: &Anvil, kms: Address, confirmations: u64, poll_ms: u64) -> ChainConfig {
    let mut config = ChainConfig::new(node.url(), kms.0 .0);
    config.confirmations = confirmations;
    config.poll_interval = Duration::from_millis(poll_ms);
    config.max_staleness = Duration::from_secs(30);
    config
}

/// Polls `decide_app` until `done` holds; returns the time it took.
pub(crate) async fn time_until(
    registry: &ChainRegistry,
    info: &BootInfo,
    limit: Duration,
    done: impl Fn(&Result<tee_verifier::registry::Decision, RegistryError>) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let answer = registry.decide_app(info).await;
        if done(&answer) {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "still {answer:?} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) fn allowed(answer: &Result<tee_verifier::registry::Decision, RegistryError>) -> bool {
    answer.as_ref().is_ok_and(|d| d.allowed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_and_registrations_propagate_within_one_poll() {
    const POLL: Duration = Duration::from_millis(250);
    // One poll interval, plus what one poll costs against a local node.
    const BOUND: Duration = Duration::from_millis(250 + 250);
    let s = setup().await;
    let provider = s.node.provider();
    mine(&provider, 1).await;
    let registry = ChainRegistry::connect(config(&s.node, s.dstack.kms, 1, 250), None)
        .await
        .unwrap();
    let _follower = registry.spawn_follower();
    let mut changes = registry.subscribe();
    let info = boot(s.app, s.os, s.compose);
    let decision = registry.decide_app(&info).await.unwrap();
    assert!(decision.allowed, "{decision:?}");

    // removeComposeHash: mined, then confirmed by one more block.
    transact(
        &provider,
        s.app,
        DstackApp::removeComposeHashCall {
            composeHash: s.compose,
        },
    )
    .await;
    assert!(
        registry.decide_app(&info).await.unwrap().allowed,
        "unconfirmed removal must not apply yet"
    );
    mine(&provider, 1).await;
    let compose_latency = time_until(&registry, &info, POLL * 8, |a| {
        a.as_ref().is_ok_and(|d| !d.allowed)
    })
    .await;
    let denied = registry.decide_app(&info).await.unwrap();
    assert_eq!(denied.reason, "Compose hash not allowed");

    // removeOsImageHash.
    transact(
        &provider,
        s.app,
        DstackApp::addComposeHashCall {
            composeHash: s.compose,
        },
    )
    .await;
    mine(&provider, 1).await;
    time_until(&registry, &info, POLL * 8, allowed).await;
    transact(
        &provider,
        s.dstack.kms,
        DstackKms::removeOsImageHashCall { osImageHash: s.os },
    )
    .await;
    mine(&provider, 1).await;
    let os_latency = time_until(&registry, &info, POLL * 8, |a| {
        a.as_ref().is_ok_and(|d| !d.allowed)
    })
    .await;
    assert_eq!(
        registry.decide_app(&info).await.unwrap().reason,
        "OS image is not allowed"
    );
    assert!(
        !registry
            .lookup(&Lookup::OsImageHash(s.os.0))
            .unwrap()
            .present
    );

    // Registration of a new app.
    transact(
        &provider,
        s.dstack.kms,
        DstackKms::addOsImageHashCall { osImageHash: s.os },
    )
    .await;
    let new_app = s
        .dstack
        .deploy_app(&provider, false, true, B256::ZERO, s.compose)
        .await;
    mine(&provider, 1).await;
    let registration_latency = time_until(
        &registry,
        &boot(new_app, s.os, s.compose),
        POLL * 8,
        allowed,
    )
    .await;

    println!(
        "propagation after confirmation: compose-hash removal {compose_latency:?}, os-image removal {os_latency:?}, registration {registration_latency:?} (poll {POLL:?})"
    );
    for latency in [compose_latency, os_latency, registration_latency] {
        assert!(latency <= BOUND, "{latency:?} > {BOUND:?}");
    }
    // Subscribers heard the removals, in order, each before its block's Advanced.
    let mut heard = Vec::new();
    while let Ok(change) = changes.try_recv() {
        heard.push(change);
    }
    let removed_compose = RegistryChange::Removed(Entry::ComposeHash {
        app_id: s.app.0 .0,
        compose_hash: s.compose.0,
    });
    let removed_os = RegistryChange::Removed(Entry::OsImageHash(s.os.0));
    let position = |change: &RegistryChange| {
        heard
            .iter()
            .position(|c| c == change)
            .unwrap_or_else(|| panic!("{change:?} not heard in {heard:?}"))
    };
    assert!(position(&removed_compose) < position(&removed_os));
    assert!(matches!(
        heard.get(position(&removed_os) + 1),
        Some(RegistryChange::Advanced { .. })
    ));
    assert!(heard.contains(&RegistryChange::Added(Entry::App(new_app.0 .0))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorg_of_the_followed_block_rebuilds_the_view() {
    let s = setup().await;
    let provider = s.node.provider();
    let registry = ChainRegistry::connect(config(&s.node, s.dstack.kms, 0, 100), None)
        .await
        .unwrap();
    let _follower = registry.spawn_follower();
    let mut changes = registry.subscribe();
    let (orphan, canonical) = (word("orphaned compose"), word("canonical compose"));

    let before = anvil::snapshot(&provider).await;
    transact(
        &provider,
        s.app,
        DstackApp::addComposeHashCall {
            composeHash: orphan,
        },
    )
    .await;
    time_until(
        &registry,
        &boot(s.app, s.os, orphan),
        Duration::from_secs(5),
        allowed,
    )
    .await;
    let orphaned_block = registry.block().unwrap();

    // The block holding addComposeHash(orphan) is replaced by other blocks at the same heights.
    anvil::revert(&provider, before).await;
    transact(
        &provider,
        s.app,
        DstackApp::addComposeHashCall {
            composeHash: canonical,
        },
    )
    .await;
    mine(&provider, 2).await;

    time_until(
        &registry,
        &boot(s.app, s.os, canonical),
        Duration::from_secs(5),
        allowed,
    )
    .await;
    let decision = registry
        .decide_app(&boot(s.app, s.os, orphan))
        .await
        .unwrap();
    assert!(
        !decision.allowed,
        "orphaned compose hash still allowed: {decision:?}"
    );
    assert!(decision.block > orphaned_block);
    let mut rebuilt = false;
    while let Ok(change) = changes.try_recv() {
        rebuilt |= matches!(change, RegistryChange::Rebuilt { .. });
    }
    assert!(rebuilt, "no Rebuilt change announced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_turn_unavailable_when_the_node_dies_and_recover_after_restart() {
    let mut s = setup().await;
    let provider = s.node.provider();
    let mut config = config(&s.node, s.dstack.kms, 0, 100);
    config.max_staleness = Duration::from_secs(1);
    config.request_timeout = Duration::from_millis(500);
    let registry = ChainRegistry::connect(config.clone(), None).await.unwrap();
    let _follower = registry.spawn_follower();
    let info = boot(s.app, s.os, s.compose);
    assert!(registry.decide_app(&info).await.unwrap().allowed);

    let state = anvil::dump_state(&provider).await;
    let port = s.node.port();
    s.node.kill();
    let killed = Instant::now();
    let outage = time_until(&registry, &info, Duration::from_secs(10), |a| {
        a.as_ref()
            .is_err_and(|e| e.kind().as_str() == "unavailable")
    })
    .await;
    let kms_answer = registry.decide_kms(&info).await.unwrap_err();
    assert_eq!(kms_answer.kind().as_str(), "unavailable");
    assert_eq!(
        registry
            .lookup(&Lookup::OsImageHash(s.os.0))
            .unwrap_err()
            .kind()
            .as_str(),
        "unavailable"
    );
    assert!(registry.last_error().is_some());
    // Never later than max_staleness after the last successful poll (≤ one poll before the kill).
    assert!(
        outage <= config.max_staleness + Duration::from_millis(300),
        "unavailable only after {outage:?}"
    );
    assert!(
        outage >= config.max_staleness - config.poll_interval - Duration::from_millis(50),
        "unavailable too early: {outage:?}"
    );

    // Same port, state restored.
    let restarted = Anvil::spawn_on(port, &[]);
    anvil::load_state(&restarted.provider(), state).await;
    let recovery = time_until(&registry, &info, Duration::from_secs(10), allowed).await;
    println!("node killed: unavailable after {outage:?} (max_staleness {:?}); recovered {recovery:?} after restart; total {:?}", config.max_staleness, killed.elapsed());
    assert!(recovery < Duration::from_secs(3));
    s.node = restarted;
}
