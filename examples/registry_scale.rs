//! Scale bench of the chain registry on anvil (issue 14): deploys the dstack contracts of
//! `fixtures/contracts` (the KMS behind its proxy, apps from its factory), registers `--apps`
//! apps and `--hashes` compose hashes in total (plus OS images, KMS lists and app devices) spread
//! over `--blocks` blocks, then builds the view with the real chain follower
//! (`ChainRegistry::connect`, what `serve --rpc-url` runs) through a request-counting proxy, and
//! times how long the follower takes to apply one block of 100 changes (pushed by anvil's
//! WebSocket `newHeads`, the `--ws-url` path). Sampled decisions are checked against
//! `eth_call DstackKms.isAppAllowed` at the view's block, before and after that block.
//!
//! ```text
//! npm ci     # anvil and the compiled contracts (once)
//! cargo run --release --example registry_scale -- [--apps 2000] [--hashes 50000] [--blocks 2500]
//! ```
//!
//! A multi-minute run (anvil mines about 200 empty blocks a second); it is not part of the test
//! suite. Exits non-zero if a decision disagrees with the contract.

#[path = "../tests/it/support/anvil.rs"]
mod anvil;
#[path = "../tests/it/support/fault_proxy.rs"]
mod fault_proxy;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alloy::eips::BlockId;
use alloy::primitives::{keccak256, Address, Bytes, B256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use anvil::{deployer, Anvil, Dstack, DstackApp, DstackKms};
use fault_proxy::FaultProxy;
use tee_verifier::boot_info::BootInfo;
use tee_verifier::registry::abi::{AppBootInfo, IDstackKms};
use tee_verifier::registry::chain::{ChainConfig, ChainRegistry};
use tee_verifier::registry::{Registry, RegistryChange};

/// Factory deployments per block.
const APPS_PER_BLOCK: usize = 50;
/// `addComposeHash` / `addDevice` transactions per block.
const ADDS_PER_BLOCK: usize = 200;
/// Changes in the block whose application is timed.
const CHANGES: usize = 100;
/// OS images, KMS device ids and aggregated MRs the KMS allows.
const KMS_ENTRIES: usize = 20;
/// Decisions compared with the contract after the build and after the change block.
const CHECKS: usize = 60;

struct Args {
    apps: usize,
    hashes: usize,
    blocks: u64,
}

fn args() -> Args {
    let mut parsed = Args {
        apps: 2000,
        hashes: 50_000,
        blocks: 2_500,
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let value = words.next().unwrap_or_default();
        let number = || {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("{flag} takes a number, not {value:?}"))
        };
        match flag.as_str() {
            "--apps" => parsed.apps = number() as usize,
            "--hashes" => parsed.hashes = number() as usize,
            "--blocks" => parsed.blocks = number(),
            _ => panic!("usage: registry_scale [--apps N] [--hashes N] [--blocks N]"),
        }
    }
    assert!(
        parsed.apps > 0 && parsed.hashes >= parsed.apps,
        "--hashes must be at least --apps"
    );
    parsed
}

/// SplitMix64, so that runs are reproducible.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// What was put on chain, to pick changes and decisions from.
#[derive(Default)]
struct AppState {
    compose_hashes: Vec<B256>,
    devices: Vec<B256>,
    allow_any_device: bool,
}

/// Sends transactions from the deployer with explicit nonces, gas and fees, many per JSON-RPC
/// batch, to a node that does not mine until told to.
struct Sender {
    provider: RootProvider,
    nonce: u64,
    sent: u64,
}

impl Sender {
    async fn new(provider: RootProvider) -> Sender {
        let nonce = provider
            .get_transaction_count(deployer())
            .await
            .expect("nonce");
        Sender {
            provider,
            nonce,
            sent: 0,
        }
    }

    /// Queues `calls` (target, input, gas) in the pool.
    async fn queue(&mut self, calls: &[(Address, Vec<u8>, u64)]) {
        for chunk in calls.chunks(500) {
            let mut batch = alloy::rpc::client::BatchRequest::new(self.provider.client());
            let mut waiters = Vec::with_capacity(chunk.len());
            for (to, input, gas) in chunk {
                let request = TransactionRequest::default()
                    .from(deployer())
                    .to(*to)
                    .input(Bytes::from(input.clone()).into())
                    .nonce(self.nonce)
                    .gas_limit(*gas)
                    .max_fee_per_gas(1_000_000_000_000)
                    .max_priority_fee_per_gas(0);
                self.nonce += 1;
                waiters.push(
                    batch
                        .add_call::<_, B256>("eth_sendTransaction", &(request,))
                        .expect("serialize"),
                );
            }
            batch.send().await.expect("eth_sendTransaction batch");
            for waiter in waiters {
                waiter.await.expect("eth_sendTransaction");
            }
            self.sent += chunk.len() as u64;
        }
    }

    /// Mines one block with everything queued; checks every transaction succeeded and returns
    /// the block's receipts' logs.
    async fn mine(&mut self) -> Vec<alloy::rpc::types::Log> {
        let _: serde_json::Value = self
            .provider
            .client()
            .request("evm_mine", ())
            .await
            .expect("evm_mine");
        let receipts = self
            .provider
            .get_block_receipts(BlockId::latest())
            .await
            .expect("eth_getBlockReceipts")
            .expect("receipts of the mined block");
        assert_eq!(
            receipts.len() as u64,
            self.sent,
            "the block holds every queued transaction"
        );
        self.sent = 0;
        let mut logs = Vec::new();
        for receipt in receipts {
            assert!(receipt.status(), "{} reverted", receipt.transaction_hash);
            logs.extend(receipt.inner.logs().iter().cloned());
        }
        logs
    }
}

/// Gas for a call: its estimate at the head, doubled (each transaction of a block is estimated
/// before the block is mined).
async fn gas_for(provider: &RootProvider, to: Address, input: Vec<u8>) -> u64 {
    let request = TransactionRequest::default()
        .from(deployer())
        .to(to)
        .input(Bytes::from(input).into());
    provider
        .estimate_gas(request)
        .await
        .expect("eth_estimateGas")
        * 2
}

async fn empty_blocks(provider: &RootProvider, count: u64) {
    if count > 0 {
        anvil::mine(provider, count).await;
    }
}

/// `VmRSS` and `VmHWM` of this process, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn word(tag: &str, n: usize) -> B256 {
    keccak256(format!("{tag}/{n}"))
}

/// Compares `registry.decide_app` with `isAppAllowed` at the view's block for `boots`.
async fn check_decisions(
    registry: &ChainRegistry,
    provider: &RootProvider,
    kms: Address,
    boots: &[BootInfo],
) -> (usize, usize) {
    let block = registry.block().expect("view ready");
    let mut allowed = 0;
    for boot in boots {
        let ours = registry.decide_app(boot).await.expect("decision");
        let call = IDstackKms::isAppAllowedCall {
            bootInfo: AppBootInfo::from(boot),
        };
        let request = TransactionRequest::default()
            .to(kms)
            .input(Bytes::from(call.abi_encode()).into());
        let answer = provider
            .call(request)
            .block(BlockId::number(block))
            .await
            .expect("isAppAllowed");
        let theirs = IDstackKms::isAppAllowedCall::abi_decode_returns(&answer).expect("decode");
        assert_eq!(
            (ours.allowed, ours.reason.as_str()),
            (theirs.isAllowed, theirs.reason.as_str()),
            "view and contract disagree on {boot:?} at block {block}"
        );
        allowed += usize::from(ours.allowed);
    }
    (boots.len(), allowed)
}

fn boot(app: Address, compose: B256, device: B256, os: B256) -> BootInfo {
    BootInfo {
        app_id: app.0 .0,
        compose_hash: compose.0,
        device_id: device.0,
        os_image_hash: os.0,
        tcb_status: "UpToDate".into(),
        ..BootInfo::default()
    }
}

/// Boots to check: registered compose hashes (on a listed device when the app needs one),
/// unknown compose hashes, and unlisted devices.
fn sample_boots(
    rng: &mut Rng,
    apps: &[Address],
    state: &HashMap<Address, AppState>,
    os: B256,
) -> Vec<BootInfo> {
    (0..CHECKS)
        .map(|n| {
            let app = apps[rng.below(apps.len())];
            let s = &state[&app];
            let device = if s.devices.is_empty() || n % 6 == 5 {
                word("unlisted-device", n)
            } else {
                s.devices[rng.below(s.devices.len())]
            };
            let compose = if s.compose_hashes.is_empty() || n % 4 == 3 {
                word("unknown-compose", n)
            } else {
                s.compose_hashes[rng.below(s.compose_hashes.len())]
            };
            boot(app, compose, device, os)
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let mut rng = Rng(14);
    let node = Anvil::spawn_on(0, &["--gas-limit", "100000000"]);
    let provider = node.provider();
    let setup = Instant::now();
    let dstack = Dstack::deploy(&provider).await;
    let kms = dstack.kms;
    let _: serde_json::Value = provider
        .client()
        .request("evm_setAutomine", (false,))
        .await
        .expect("evm_setAutomine");
    let mut sender = Sender::new(provider.clone()).await;

    // Blocks with transactions, and the empty blocks between them.
    let device_adds = args.apps / 2 * 2;
    let active_blocks = 1
        + args.apps.div_ceil(APPS_PER_BLOCK)
        + (args.hashes - args.apps + device_adds).div_ceil(ADDS_PER_BLOCK);
    let gap = args
        .blocks
        .saturating_sub(provider.get_block_number().await.expect("head") + active_blocks as u64)
        / active_blocks as u64;

    // The KMS's lists.
    let os = word("os", 0);
    let kms_gas = gas_for(
        &provider,
        kms,
        DstackKms::addOsImageHashCall { osImageHash: os }.abi_encode(),
    )
    .await;
    let mut calls = Vec::new();
    for n in 0..KMS_ENTRIES {
        calls.push((
            kms,
            DstackKms::addOsImageHashCall {
                osImageHash: word("os", n),
            }
            .abi_encode(),
            kms_gas,
        ));
        calls.push((
            kms,
            DstackKms::addKmsDeviceCall {
                deviceId: word("kms-device", n),
            }
            .abi_encode(),
            kms_gas,
        ));
        calls.push((
            kms,
            DstackKms::addKmsAggregatedMrCall {
                mrAggregated: word("kms-mr", n),
            }
            .abi_encode(),
            kms_gas,
        ));
    }
    sender.queue(&calls).await;
    sender.mine().await;
    empty_blocks(&provider, gap).await;

    // Apps from the factory: every other one allows any device, the rest one initial device.
    let deploy_call = |n: usize| DstackKms::deployAndRegisterApp_0Call {
        initialOwner: deployer(),
        disableUpgrades: false,
        requireTcbUpToDate: n.is_multiple_of(3),
        allowAnyDevice: n.is_multiple_of(2),
        initialDeviceId: if n.is_multiple_of(2) {
            B256::ZERO
        } else {
            word("device", n)
        },
        initialComposeHash: word("compose", n),
    };
    let deploy_gas = gas_for(&provider, kms, deploy_call(1).abi_encode()).await;
    let mut apps = Vec::with_capacity(args.apps);
    let mut state: HashMap<Address, AppState> = HashMap::new();
    for first in (0..args.apps).step_by(APPS_PER_BLOCK) {
        let block: Vec<usize> = (first..(first + APPS_PER_BLOCK).min(args.apps)).collect();
        let calls: Vec<_> = block
            .iter()
            .map(|n| (kms, deploy_call(*n).abi_encode(), deploy_gas))
            .collect();
        sender.queue(&calls).await;
        let logs = sender.mine().await;
        let deployed: Vec<Address> = logs
            .iter()
            .filter_map(|log| log.log_decode::<DstackKms::AppDeployedViaFactory>().ok())
            .map(|event| event.inner.data.appId)
            .collect();
        assert_eq!(deployed.len(), block.len(), "one app per deployment");
        for (n, app) in block.iter().zip(deployed) {
            let call = deploy_call(*n);
            state.insert(
                app,
                AppState {
                    compose_hashes: vec![call.initialComposeHash],
                    devices: if call.allowAnyDevice {
                        Vec::new()
                    } else {
                        vec![call.initialDeviceId]
                    },
                    allow_any_device: call.allowAnyDevice,
                },
            );
            apps.push(app);
        }
        empty_blocks(&provider, gap).await;
    }

    // Compose hashes (skewed: half go to the busiest tenth of the apps) and devices.
    let add_compose_gas = gas_for(
        &provider,
        apps[0],
        DstackApp::addComposeHashCall {
            composeHash: word("probe", 0),
        }
        .abi_encode(),
    )
    .await;
    let mut adds = Vec::new();
    for n in 0..args.hashes - args.apps {
        let app = if n.is_multiple_of(2) {
            apps[rng.below(apps.len().div_ceil(10))]
        } else {
            apps[rng.below(apps.len())]
        };
        let hash = word("compose-added", n);
        state.get_mut(&app).expect("app").compose_hashes.push(hash);
        let input = DstackApp::addComposeHashCall { composeHash: hash }.abi_encode();
        adds.push((app, input, add_compose_gas));
    }
    let device_apps: Vec<Address> = apps
        .iter()
        .filter(|app| !state[*app].allow_any_device)
        .copied()
        .collect();
    for n in 0..device_adds {
        let app = device_apps[n % device_apps.len()];
        let device = word("device-added", n);
        state.get_mut(&app).expect("app").devices.push(device);
        let input = DstackApp::addDeviceCall { deviceId: device }.abi_encode();
        adds.push((app, input, add_compose_gas));
    }
    // Interleave devices with compose hashes, as operators would.
    for n in 0..adds.len() {
        let other = rng.below(adds.len());
        adds.swap(n, other);
    }
    for block in adds.chunks(ADDS_PER_BLOCK) {
        sender.queue(block).await;
        sender.mine().await;
        empty_blocks(&provider, gap).await;
    }
    let head = provider.get_block_number().await.expect("head");
    empty_blocks(&provider, args.blocks.saturating_sub(head)).await;
    let head = provider.get_block_number().await.expect("head");
    let compose_total: usize = state.values().map(|s| s.compose_hashes.len()).sum();
    let device_total: usize = state.values().map(|s| s.devices.len()).sum();
    println!(
        "chain: {} apps, {compose_total} compose hashes, {device_total} app devices, {} KMS \
         entries, {active_blocks} blocks with transactions, head {head} ({:.0} s to set up)",
        apps.len(),
        3 * KMS_ENTRIES,
        setup.elapsed().as_secs_f64()
    );

    // The build, through the counting proxy (HTTP); anvil's WebSocket pushes new heads.
    let proxy = FaultProxy::start(&node.url()).await;
    let mut config = ChainConfig::new(proxy.url(), kms.0 .0);
    config.confirmations = 0;
    config.ws_url = Some(format!("ws://127.0.0.1:{}", node.port()));
    config.poll_interval = Duration::from_secs(2);
    config.max_staleness = Duration::from_secs(600);
    config.request_timeout = Duration::from_secs(120);
    let (rss_before, _) = memory();
    let started = Instant::now();
    let registry = ChainRegistry::connect(config, None)
        .await
        .expect("build the view");
    let build = started.elapsed();
    let (rss_after, hwm_after) = memory();
    let (requests, calls, log_requests) = (proxy.requests(), proxy.calls(), proxy.log_requests());
    let snapshot = registry.snapshot().expect("snapshot");
    let viewed_hashes: usize = snapshot.apps.iter().map(|a| a.compose_hashes.len()).sum();
    assert_eq!(snapshot.block, head, "the view is at the head");
    assert_eq!(snapshot.apps.len(), apps.len(), "every app in the view");
    assert_eq!(
        viewed_hashes, compose_total,
        "every compose hash in the view"
    );
    drop(snapshot);
    let blocks_k = (head + 1) as f64 / 1000.0;
    let app_batches = apps.len().div_ceil(100) as f64;
    println!(
        "build: {:.2} s; {requests} HTTP requests ({log_requests} eth_getLogs, {} other), \
         {calls} JSON-RPC calls; {:.2} requests per 1,000 blocks; target 2 x {blocks_k:.1} + \
         O({app_batches}) = {:.0} + {app_batches}k: measured k = {:.2}",
        build.as_secs_f64(),
        requests - log_requests,
        requests as f64 / blocks_k,
        2.0 * blocks_k,
        (requests as f64 - 2.0 * blocks_k) / app_batches,
    );
    println!(
        "memory: VmRSS {rss_before:.1} MiB before the build, {rss_after:.1} MiB after \
         (+{:.1} MiB); VmHWM {hwm_after:.1} MiB (includes the setup above)",
        rss_after - rss_before
    );
    let boots = sample_boots(&mut rng, &apps, &state, os);
    let (checked, allowed) = check_decisions(&registry, &provider, kms, &boots).await;
    println!("checked {checked} decisions against isAppAllowed ({allowed} allowed): all equal");

    // One block of 100 changes across apps: compose hashes and devices added and removed.
    let follower = registry.spawn_follower();
    // Let the follower subscribe to newHeads before the block is mined.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut changes = registry.subscribe();
    let mut change_calls = Vec::new();
    for n in 0..CHANGES {
        let app = apps[(n * 7919) % apps.len()];
        let s = state.get_mut(&app).expect("app");
        let input = match n % 10 {
            0..=3 => {
                let hash = word("compose-late", n);
                s.compose_hashes.push(hash);
                DstackApp::addComposeHashCall { composeHash: hash }.abi_encode()
            }
            4..=6 if s.compose_hashes.len() > 1 => DstackApp::removeComposeHashCall {
                composeHash: s.compose_hashes.remove(0),
            }
            .abi_encode(),
            7 | 8 => {
                let device = word("device-late", n);
                s.devices.push(device);
                DstackApp::addDeviceCall { deviceId: device }.abi_encode()
            }
            _ if !s.devices.is_empty() => DstackApp::removeDeviceCall {
                deviceId: s.devices.remove(0),
            }
            .abi_encode(),
            _ => {
                let hash = word("compose-late", n);
                s.compose_hashes.push(hash);
                DstackApp::addComposeHashCall { composeHash: hash }.abi_encode()
            }
        };
        change_calls.push((app, input, add_compose_gas));
    }
    sender.queue(&change_calls).await;
    let before = (proxy.requests(), proxy.calls());
    let _: serde_json::Value = provider
        .client()
        .request("evm_mine", ())
        .await
        .expect("evm_mine");
    let mined_at = Instant::now();
    let changed_block = head + 1;
    let mut entries = 0;
    let applied = loop {
        match tokio::time::timeout(Duration::from_secs(30), changes.recv()).await {
            Ok(Ok(RegistryChange::Advanced { block })) if block >= changed_block => {
                break mined_at.elapsed();
            }
            Ok(Ok(RegistryChange::Added(_) | RegistryChange::Removed(_))) => entries += 1,
            Ok(Ok(_)) => {}
            other => panic!("no Advanced for block {changed_block}: {other:?}"),
        }
    };
    let receipts = provider
        .get_block_receipts(BlockId::number(changed_block))
        .await
        .expect("eth_getBlockReceipts")
        .expect("receipts");
    assert_eq!(receipts.len(), CHANGES, "every change in one block");
    assert!(
        receipts.iter().all(|r| r.status()),
        "every change succeeded"
    );
    println!(
        "100-change block: applied {:.1} ms after evm_mine returned; {entries} entry changes; \
         {} HTTP requests, {} calls; newHeads pushed over WebSocket",
        applied.as_secs_f64() * 1e3,
        proxy.requests() - before.0,
        proxy.calls() - before.1,
    );
    let boots = sample_boots(&mut rng, &apps, &state, os);
    let (checked, allowed) = check_decisions(&registry, &provider, kms, &boots).await;
    println!("checked {checked} decisions against isAppAllowed ({allowed} allowed): all equal");
    drop(follower);
}
