//! The view stays the contract across upgrades and chain changes: a KMS upgraded to code with
//! other logic is asked on chain from that block on, code identities ignore a contract's own
//! address, an app upgraded before the KMS named its implementation is judged again once it is
//! named, and a node serving another chain is reported as a chain change, not as a reorg.

use crate::registry_follow::{boot, setup, time_until, word};
use crate::support::anvil::{self, artifact_bytecode, mine, transact, Anvil, DstackApp, DstackKms};
use crate::support::fault_proxy::{Fault, FaultProxy};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{keccak256, Address, B256};
use alloy::providers::{Provider, RootProvider};
use tee_verifier::registry::chain::{code_identity, ChainConfig, ChainRegistry, Finality};
use tee_verifier::registry::{Evaluation, Lookup, Registry, RegistryChange};

fn config(node: &Anvil, kms: Address) -> ChainConfig {
    let mut config = ChainConfig::new(node.url(), kms.0 .0);
    config.confirmations = 0;
    config.max_staleness = Duration::from_secs(60);
    config
}

/// `upgradeToAndCall(to, "")` on the UUPS proxy `proxy` (the KMS or an app), as its owner.
async fn upgrade(provider: &RootProvider, proxy: Address, to: Address) {
    transact(
        provider,
        proxy,
        DstackApp::upgradeToAndCallCall {
            newImplementation: to,
            data: Default::default(),
        },
    )
    .await;
}

async fn identity_of(node: &Anvil, address: Address) -> B256 {
    let code = node.provider().get_code_at(address).await.unwrap();
    code_identity(&code, address)
}

#[tokio::test]
async fn a_kms_upgraded_to_other_logic_is_asked_on_chain_from_that_block_on() {
    let s = setup().await;
    let provider = s.node.provider();
    let registry = ChainRegistry::connect(config(&s.node, s.dstack.kms), None)
        .await
        .unwrap();
    let status = registry.status().unwrap().kms_code.unwrap();
    assert!(
        status.trusted,
        "the code the KMS runs at the first build is trusted"
    );

    // An OS image the KMS has not allowed: DstackKms refuses it, from the view.
    let unlisted = boot(s.app, word("unlisted os"), s.compose);
    let decision = registry.decide_app(&unlisted).await.unwrap();
    assert_eq!(
        (
            decision.allowed,
            decision.reason.as_str(),
            decision.evaluated_by
        ),
        (false, "OS image is not allowed", Evaluation::View)
    );

    let reordered = anvil::deploy(&provider, &artifact_bytecode("ReorderedDstackKms"), &[]).await;
    upgrade(&provider, s.dstack.kms, reordered).await;
    registry.poll().await.unwrap();

    let status = registry.status().unwrap().kms_code.unwrap();
    assert!(!status.trusted);
    assert_eq!(
        status.identity,
        Some(identity_of(&s.node, reordered).await.0)
    );
    // The new code skips the OS image check: the answer is the contract's, not DstackKms's.
    let decision = registry.decide_app(&unlisted).await.unwrap();
    assert_eq!(
        (decision.allowed, decision.evaluated_by),
        (true, Evaluation::Contract),
        "{decision:?}"
    );
    let kms = registry.decide_kms(&unlisted).await.unwrap();
    assert_eq!(kms.evaluated_by, Evaluation::Contract);
    assert_eq!(kms.reason, "OS image is not allowed");
    let lookup = registry.lookup(&Lookup::OsImageHash(s.os.0)).unwrap_err();
    assert_eq!(lookup.kind().as_str(), "unknown_kms_code");

    // Upgrading back to DstackKms's code makes the view answer again.
    let original = anvil::deploy(&provider, &artifact_bytecode("DstackKms"), &[]).await;
    upgrade(&provider, s.dstack.kms, original).await;
    registry.poll().await.unwrap();
    assert!(registry.status().unwrap().kms_code.unwrap().trusted);
    let decision = registry.decide_app(&unlisted).await.unwrap();
    assert_eq!(decision.evaluated_by, Evaluation::View);
}

#[tokio::test]
async fn a_configured_kms_code_identity_stays_trusted_across_the_upgrade() {
    let s = setup().await;
    let provider = s.node.provider();
    let reordered = anvil::deploy(&provider, &artifact_bytecode("ReorderedDstackKms"), &[]).await;
    let mut config = config(&s.node, s.dstack.kms);
    config.kms_code_identities = vec![identity_of(&s.node, reordered).await.0];
    let registry = ChainRegistry::connect(config, None).await.unwrap();
    upgrade(&provider, s.dstack.kms, reordered).await;
    registry.poll().await.unwrap();
    assert!(registry.status().unwrap().kms_code.unwrap().trusted);
}

#[tokio::test]
async fn two_deployments_of_one_implementation_have_one_identity() {
    let node = Anvil::spawn();
    let provider = node.provider();
    let bytecode = artifact_bytecode("DstackApp");
    let first = anvil::deploy(&provider, &bytecode, &[]).await;
    let second = anvil::deploy(&provider, &bytecode, &[]).await;
    let (code_first, code_second) = (
        provider.get_code_at(first).await.unwrap(),
        provider.get_code_at(second).await.unwrap(),
    );
    // The runtime code embeds its own address (UUPS `__self`): the plain hashes differ...
    assert_ne!(keccak256(&code_first), keccak256(&code_second));
    // ...the identities do not.
    assert_eq!(
        code_identity(&code_first, first),
        code_identity(&code_second, second)
    );
    // Another implementation is another identity.
    let legacy = anvil::deploy(&provider, &artifact_bytecode("LegacyDstackApp"), &[]).await;
    assert_ne!(
        identity_of(&node, legacy).await,
        code_identity(&code_first, first)
    );
}

#[tokio::test]
async fn an_app_implementation_trusted_by_identity_is_decided_locally_in_every_deployment() {
    let s = setup().await;
    let provider = s.node.provider();
    // A second deployment of DstackApp's code, which the KMS never named.
    let copy = anvil::deploy(&provider, &artifact_bytecode("DstackApp"), &[]).await;
    let app = s.dstack.deploy_manual_app(&provider, copy, s.compose).await;
    let info = boot(app, s.os, s.compose);

    let untrusting = ChainRegistry::connect(config(&s.node, s.dstack.kms), None)
        .await
        .unwrap();
    assert_eq!(
        untrusting.decide_app(&info).await.unwrap().evaluated_by,
        Evaluation::Contract
    );

    let mut trusting = config(&s.node, s.dstack.kms);
    // The identity of the KMS's own appImplementation names the copy too.
    trusting.app_code_hashes = vec![identity_of(&s.node, s.dstack.app_implementation).await.0];
    let registry = ChainRegistry::connect(trusting, None).await.unwrap();
    let decision = registry.decide_app(&info).await.unwrap();
    assert_eq!(
        (decision.allowed, decision.evaluated_by),
        (true, Evaluation::View),
        "{decision:?}"
    );
}

#[tokio::test]
async fn an_app_upgraded_before_its_implementation_is_named_moves_to_the_view_once_named() {
    let s = setup().await;
    let provider = s.node.provider();
    let registry = ChainRegistry::connect(config(&s.node, s.dstack.kms), None)
        .await
        .unwrap();
    let info = boot(s.app, s.os, s.compose);
    assert_eq!(
        registry.decide_app(&info).await.unwrap().evaluated_by,
        Evaluation::View
    );

    let next = anvil::deploy(&provider, &artifact_bytecode("DstackApp"), &[]).await;
    upgrade(&provider, s.app, next).await;
    registry.poll().await.unwrap();
    let decision = registry.decide_app(&info).await.unwrap();
    assert_eq!(
        (decision.allowed, decision.evaluated_by),
        (true, Evaluation::Contract),
        "an implementation nobody named is not trusted: {decision:?}"
    );

    transact(
        &provider,
        s.dstack.kms,
        DstackKms::setAppImplementationCall {
            _appImplementation: next,
        },
    )
    .await;
    registry.poll().await.unwrap();
    let decision = registry.decide_app(&info).await.unwrap();
    assert_eq!(
        (decision.allowed, decision.evaluated_by),
        (true, Evaluation::View),
        "named by the KMS, the implementation is trusted: {decision:?}"
    );
}

#[tokio::test]
async fn a_node_below_the_view_is_a_chain_change_not_a_reorg() {
    let s = setup().await;
    let proxy = FaultProxy::start(&s.node.url()).await;
    let mut config = config(&s.node, s.dstack.kms);
    config.rpc_url = proxy.url();
    config.max_staleness = Duration::from_millis(300);
    config.poll_interval = Duration::from_millis(100);
    let registry = ChainRegistry::connect(config, None).await.unwrap();
    proxy.set(Fault::HeadBehind(1_000));
    let error = registry.poll().await.unwrap_err();
    assert_eq!(error.kind().as_str(), "chain_changed", "{error}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let info = boot(s.app, s.os, s.compose);
    let answer = registry.decide_app(&info).await.unwrap_err();
    assert_eq!(answer.kind().as_str(), "unavailable");
    assert!(
        answer
            .to_string()
            .contains("the chain changed under the view"),
        "{answer}"
    );
    // The node catching up is no chain change: the view answers again.
    proxy.heal();
    registry.poll().await.unwrap();
    assert!(registry.decide_app(&info).await.unwrap().allowed);
}

#[tokio::test]
async fn another_genesis_under_the_view_is_reported_as_a_chain_change() {
    let mut s = setup().await;
    let port = s.node.port();
    mine(&s.node.provider(), 5).await;
    let registry = ChainRegistry::connect(config(&s.node, s.dstack.kms), None)
        .await
        .unwrap();
    let mut changes = registry.subscribe();
    s.node.kill();
    // Another chain on the same URL: another genesis (timestamp), the same deployments.
    let replacement = Anvil::spawn_on(port, &["--timestamp", "1000"]);
    let again = setup_on(&replacement).await;
    assert_eq!(again, s.dstack.kms, "deterministic deployment addresses");
    registry.poll().await.unwrap();
    let reason = loop {
        match changes.recv().await.unwrap() {
            RegistryChange::Unavailable { reason } => break reason,
            _ => continue,
        }
    };
    assert!(
        reason.contains("the chain changed under the view: genesis block"),
        "{reason}"
    );
}

/// Deploys the same contracts as `setup` on `node`; returns the KMS address.
async fn setup_on(node: &Anvil) -> Address {
    let provider = node.provider();
    let dstack = anvil::Dstack::deploy(&provider).await;
    transact(
        &provider,
        dstack.kms,
        DstackKms::addOsImageHashCall {
            osImageHash: word("os"),
        },
    )
    .await;
    dstack.kms
}

#[tokio::test]
async fn the_view_can_follow_the_nodes_finalized_block() {
    let s = setup().await;
    let provider = s.node.provider();
    mine(&provider, 80).await;
    let mut config = config(&s.node, s.dstack.kms);
    config.finality = Some(Finality::Finalized);
    let registry = ChainRegistry::connect(config, None).await.unwrap();
    let finalized = provider
        .get_block_by_number(BlockNumberOrTag::Finalized)
        .await
        .unwrap()
        .expect("anvil has a finalized block")
        .header
        .number;
    let head = provider.get_block_number().await.unwrap();
    assert!(finalized < head, "anvil finalizes behind its head");
    assert_eq!(registry.status().unwrap().block, finalized);
    mine(&provider, 3).await;
    registry.poll().await.unwrap();
    assert_eq!(registry.status().unwrap().block, finalized + 3);
}

#[tokio::test]
async fn log_pages_split_when_refused_and_grow_over_quiet_history() {
    let s = setup().await;
    mine(&s.node.provider(), 1_000).await;
    let proxy = FaultProxy::start(&s.node.url()).await;
    let mut config = config(&s.node, s.dstack.kms);
    config.rpc_url = proxy.url();
    config.log_range = 8;
    let registry = ChainRegistry::connect(config.clone(), None).await.unwrap();
    let info = boot(s.app, s.os, s.compose);
    assert!(registry.decide_app(&info).await.unwrap().allowed);
    // ~1,000 quiet blocks from 8-block pages: doubling reaches the head in a handful of pages
    // per stream (the KMS's, the apps' and the timelock lookups), not 125 per stream.
    let quiet = proxy.log_requests();
    assert!(quiet <= 30, "{quiet} eth_getLogs requests");

    // A provider that refuses wide ranges: pages split until it answers, and the view is whole.
    proxy.set(Fault::LogRangeOver(50));
    let before = proxy.log_requests();
    let registry = ChainRegistry::connect(config, None).await.unwrap();
    assert!(registry.decide_app(&info).await.unwrap().allowed);
    let refused = proxy.log_requests() - before;
    assert!(
        refused > quiet,
        "{refused} requests with refusals, {quiet} without"
    );
}

/// A TCP relay to a node that the test can cut: every connection through it is closed and new
/// ones refused until it is restored.
struct Relay {
    url_port: u16,
    cut: Arc<AtomicBool>,
    _task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(upstream_port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url_port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let watch = Arc::clone(&cut);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if watch.load(Ordering::SeqCst) {
                    continue;
                }
                let watch = Arc::clone(&watch);
                tokio::spawn(async move {
                    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", upstream_port)).await
                    else {
                        return;
                    };
                    let relay = tokio::io::copy_bidirectional(&mut client, &mut upstream);
                    let until_cut = async {
                        while !watch.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    };
                    tokio::select! {
                        _ = relay => {}
                        () = until_cut => {}
                    }
                });
            }
        });
        Relay {
            url_port,
            cut,
            _task: task,
        }
    }

    fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.url_port)
    }
}

async fn remove_compose(s: &crate::registry_follow::Setup) {
    transact(
        &s.node.provider(),
        s.app,
        DstackApp::removeComposeHashCall {
            composeHash: s.compose,
        },
    )
    .await;
}

/// Milliseconds from each of `count` removals (one per block) to the first denial, in order.
async fn removal_latencies(
    s: &crate::registry_follow::Setup,
    registry: &ChainRegistry,
    count: usize,
) -> Vec<u128> {
    let provider = s.node.provider();
    let hashes: Vec<B256> = (0..count).map(|i| word(&format!("compose {i}"))).collect();
    for hash in &hashes {
        transact(
            &provider,
            s.app,
            DstackApp::addComposeHashCall { composeHash: *hash },
        )
        .await;
    }
    let mut latencies = Vec::with_capacity(count);
    for hash in hashes {
        let info = boot(s.app, s.os, hash);
        time_until(registry, &info, Duration::from_secs(30), |answer| {
            answer.as_ref().is_ok_and(|d| d.allowed)
        })
        .await;
        transact(
            &provider,
            s.app,
            DstackApp::removeComposeHashCall { composeHash: hash },
        )
        .await;
        let took = time_until(registry, &info, Duration::from_secs(30), |answer| {
            answer.as_ref().is_ok_and(|d| !d.allowed)
        })
        .await;
        latencies.push(took.as_millis());
    }
    latencies
}

fn percentiles(mut latencies: Vec<u128>) -> String {
    latencies.sort_unstable();
    let at = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    format!(
        "p50 {} ms, p99 {} ms, max {} ms",
        at(50),
        at(99),
        latencies[latencies.len() - 1]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_heads_apply_changes_without_waiting_for_a_poll() {
    let s = setup().await;
    let mut config = config(&s.node, s.dstack.kms);
    // A poll far in the future: only the pushed heads can explain prompt answers.
    config.poll_interval = Duration::from_secs(120);
    config.max_staleness = Duration::from_secs(600);
    config.ws_url = Some(format!("ws://127.0.0.1:{}", s.node.port()));
    let registry = ChainRegistry::connect(config, None).await.unwrap();
    let _follower = registry.spawn_follower();
    // The subscription is set up by the follower's first round.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pushed = removal_latencies(&s, &registry, 50).await;
    eprintln!(
        "removal to denial, pushed heads (50 removals): {}",
        percentiles(pushed)
    );

    // The same over polling every 250 ms, for comparison.
    let mut polled = self::config(&s.node, s.dstack.kms);
    polled.poll_interval = Duration::from_millis(250);
    let registry = ChainRegistry::connect(polled, None).await.unwrap();
    let _follower = registry.spawn_follower();
    let polled = removal_latencies(&s, &registry, 20).await;
    eprintln!(
        "removal to denial, 250 ms polls (20 removals): {}",
        percentiles(polled)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_rpc_url_serves_requests_and_pushes_heads() {
    let s = setup().await;
    let mut config = config(&s.node, s.dstack.kms);
    config.rpc_url = format!("ws://127.0.0.1:{}", s.node.port());
    config.poll_interval = Duration::from_secs(120);
    config.max_staleness = Duration::from_secs(600);
    let registry = ChainRegistry::connect(config, None).await.unwrap();
    let _follower = registry.spawn_follower();
    let info = boot(s.app, s.os, s.compose);
    assert!(registry.decide_app(&info).await.unwrap().allowed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    remove_compose(&s).await;
    time_until(&registry, &info, Duration::from_secs(30), |answer| {
        answer.as_ref().is_ok_and(|d| !d.allowed)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_socket_falls_back_to_polling() {
    let s = setup().await;
    let relay = Relay::start(s.node.port()).await;
    let mut config = config(&s.node, s.dstack.kms);
    config.poll_interval = Duration::from_millis(300);
    config.ws_url = Some(relay.ws_url());
    let registry = ChainRegistry::connect(config, None).await.unwrap();
    let _follower = registry.spawn_follower();
    let info = boot(s.app, s.os, s.compose);
    assert!(registry.decide_app(&info).await.unwrap().allowed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.cut.store(true, Ordering::SeqCst);
    remove_compose(&s).await;
    // Seen by the polls alone, and the view stays fresh.
    time_until(&registry, &info, Duration::from_secs(30), |answer| {
        answer.as_ref().is_ok_and(|d| !d.allowed)
    })
    .await;
}
