//! Differential test: random registry states on a real anvil node; the view's decision must
//! equal the contracts' `isAppAllowed` / `isKmsAllowed` at the same block, reason included.

use crate::support::anvil;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use alloy::eips::BlockId;
use alloy::primitives::{keccak256, Address, Bytes, B256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use anvil::{transact, Anvil, DstackApp, DstackKms};
use std::sync::{Arc, Mutex};
use tee_verifier::boot_info::BootInfo;
use tee_verifier::governance::explain::{explain_app, explain_kms, Context};
use tee_verifier::registry::abi::{AppBootInfo, IDstackKms};

use tee_verifier::registry::chain::{
    code_identity, ChainConfig, ChainRegistry, PollOutcome, ProgressFn, SyncProgress, SyncStage,
};
use tee_verifier::registry::{Evaluation, Registry, RegistryError};

/// SplitMix64: a tiny seeded generator, so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn word(&mut self) -> B256 {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        B256::from(out)
    }
}

fn value(tag: &str, i: usize) -> B256 {
    keccak256(format!("{tag}-{i}"))
}

struct Pools {
    os_images: Vec<B256>,
    compose_hashes: Vec<B256>,
    devices: Vec<B256>,
    mrs: Vec<B256>,
}

/// Apps whose owner functions can be driven (DstackApp-like storage behind a proxy).
#[derive(Clone, Copy)]
struct DrivenApp {
    address: Address,
    legacy: bool,
}

#[derive(Default)]
struct Tally {
    cases: usize,
    mismatches: Vec<String>,
    by_reason: BTreeMap<String, usize>,
    evaluated_by_view: usize,
    evaluated_by_contract: usize,
    /// Decisions `explain` explained, its answer the contract's.
    explained: usize,
}

async fn contract_decision(
    provider: &RootProvider,
    kms: Address,
    input: Vec<u8>,
    block: u64,
) -> Result<(bool, String), String> {
    let request = TransactionRequest::default()
        .to(kms)
        .input(Bytes::from(input).into());
    match provider.call(request).block(BlockId::number(block)).await {
        Ok(bytes) => {
            let ret = IDstackKms::isAppAllowedCall::abi_decode_returns(&bytes)
                .map_err(|e| e.to_string())?;
            Ok((ret.isAllowed, ret.reason))
        }
        Err(e) => Err(format!("revert: {e}")),
    }
}

fn random_boot(rng: &mut Rng, pools: &Pools, app_ids: &[Address]) -> BootInfo {
    let pick32 = |rng: &mut Rng, pool: &[B256], hit: u64| -> [u8; 32] {
        if rng.chance(hit) {
            rng.pick(pool).0
        } else {
            rng.word().0
        }
    };
    let app_id = if rng.chance(92) {
        rng.pick(app_ids).0 .0
    } else {
        rng.word().0[..20].try_into().unwrap()
    };
    let tcb_status = [
        "UpToDate",
        "UpToDate",
        "UpToDate",
        "OutOfDate",
        "",
        "uptodate",
        "UpToDate ",
    ][rng.below(7)]
    .to_owned();
    let advisory_count = [0, 0, 1, 2, 4][rng.below(5)];
    BootInfo {
        app_id,
        compose_hash: pick32(rng, &pools.compose_hashes, 85),
        instance_id: rng.word().0[..20].try_into().unwrap(),
        device_id: pick32(rng, &pools.devices, 85),
        mr_aggregated: pick32(rng, &pools.mrs, 80),
        mr_system: rng.word().0,
        os_image_hash: pick32(rng, &pools.os_images, 90),
        tcb_status,
        advisory_ids: (0..advisory_count)
            .map(|i| format!("INTEL-SA-{i:05}"))
            .collect(),
    }
}

/// The view under test and the node it follows.
struct Subject<'a> {
    registry: &'a ChainRegistry,
    provider: &'a RootProvider,
    kms: Address,
}

async fn compare_round(
    subject: &Subject<'_>,
    rng: &mut Rng,
    pools: &Pools,
    app_ids: &[Address],
    cases: usize,
    tally: &mut Tally,
) {
    let Subject {
        registry,
        provider,
        kms,
    } = *subject;
    // What `explain` reads beside the decision: the view, its removals and timelock changes.
    let view = registry.snapshot().unwrap().to_view().unwrap();
    let removals = registry.removals().unwrap();
    let changes = Registry::timelock_changes(registry).unwrap().unwrap();
    let context = Context {
        pending: &changes.changes,
        removals: Some(&removals),
        ..Context::default()
    };
    for _ in 0..cases {
        let boot = random_boot(rng, pools, app_ids);
        let block = registry.block().expect("view ready");
        let call = AppBootInfo::from(&boot);
        // isAppAllowed
        let ours = registry.decide_app(&boot).await;
        let theirs = contract_decision(
            provider,
            kms,
            IDstackKms::isAppAllowedCall {
                bootInfo: call.clone(),
            }
            .abi_encode(),
            block,
        )
        .await;
        tally.cases += 1;
        match (&ours, &theirs) {
            (Ok(decision), Ok((allowed, reason))) => {
                assert_eq!(decision.block, block);
                match decision.evaluated_by {
                    Evaluation::View => tally.evaluated_by_view += 1,
                    Evaluation::Contract => tally.evaluated_by_contract += 1,
                }
                *tally
                    .by_reason
                    .entry(format!("app: {:?}", decision.reason))
                    .or_default() += 1;
                if decision.allowed != *allowed || decision.reason != *reason {
                    tally.mismatches.push(format!(
                        "app {boot:?}: ours {decision:?}, contract ({allowed}, {reason:?})"
                    ));
                }
                // explain gives the contract's answer, and its checks agree with it.
                match explain_app(&view, decision, &boot, &context) {
                    Ok(e) if e.allowed == *allowed && e.reason == *reason => tally.explained += 1,
                    other => tally.mismatches.push(format!(
                        "explain app {boot:?}: {other:?}, contract ({allowed}, {reason:?})"
                    )),
                }
            }
            (Err(RegistryError::ContractReverted(_)), Err(_)) => {
                *tally
                    .by_reason
                    .entry("app: <revert>".to_owned())
                    .or_default() += 1;
            }
            _ => tally
                .mismatches
                .push(format!("app {boot:?}: ours {ours:?}, contract {theirs:?}")),
        }
        // isKmsAllowed
        let ours = registry.decide_kms(&boot).await.expect("kms decision");
        let request = TransactionRequest::default().to(kms).input(
            Bytes::from(IDstackKms::isKmsAllowedCall { bootInfo: call }.abi_encode()).into(),
        );
        let bytes = provider
            .call(request)
            .block(BlockId::number(block))
            .await
            .expect("isKmsAllowed");
        let theirs = IDstackKms::isKmsAllowedCall::abi_decode_returns(&bytes).expect("decode");
        tally.cases += 1;
        *tally
            .by_reason
            .entry(format!("kms: {:?}", ours.reason))
            .or_default() += 1;
        if ours.allowed != theirs.isAllowed || ours.reason != theirs.reason {
            tally.mismatches.push(format!(
                "kms {boot:?}: ours {ours:?}, contract ({}, {:?})",
                theirs.isAllowed, theirs.reason
            ));
        }
        match explain_kms(&view, &ours, &boot, &context) {
            Ok(e) if e.allowed == theirs.isAllowed && e.reason == theirs.reason => {
                tally.explained += 1
            }
            other => tally.mismatches.push(format!(
                "explain kms {boot:?}: {other:?}, contract ({}, {:?})",
                theirs.isAllowed, theirs.reason
            )),
        }
    }
}

/// One random owner action on the KMS or a driven app.
async fn random_action(
    rng: &mut Rng,
    provider: &RootProvider,
    kms: Address,
    pools: &Pools,
    apps: &[DrivenApp],
) {
    let pick = |rng: &mut Rng, pool: &[B256]| rng.pick(pool);
    match rng.below(10) {
        0 => {
            let v = pick(rng, &pools.os_images);
            if rng.chance(60) {
                transact(
                    provider,
                    kms,
                    DstackKms::addOsImageHashCall { osImageHash: v },
                )
                .await
            } else {
                transact(
                    provider,
                    kms,
                    DstackKms::removeOsImageHashCall { osImageHash: v },
                )
                .await
            };
        }
        1 => {
            let v = pick(rng, &pools.mrs);
            if rng.chance(60) {
                transact(
                    provider,
                    kms,
                    DstackKms::addKmsAggregatedMrCall { mrAggregated: v },
                )
                .await
            } else {
                transact(
                    provider,
                    kms,
                    DstackKms::removeKmsAggregatedMrCall { mrAggregated: v },
                )
                .await
            };
        }
        2 => {
            let v = pick(rng, &pools.devices);
            if rng.chance(60) {
                transact(provider, kms, DstackKms::addKmsDeviceCall { deviceId: v }).await
            } else {
                transact(
                    provider,
                    kms,
                    DstackKms::removeKmsDeviceCall { deviceId: v },
                )
                .await
            };
        }
        3..=5 => {
            let app = rng.pick(apps).address;
            let v = pick(rng, &pools.compose_hashes);
            if rng.chance(60) {
                transact(
                    provider,
                    app,
                    DstackApp::addComposeHashCall { composeHash: v },
                )
                .await
            } else {
                transact(
                    provider,
                    app,
                    DstackApp::removeComposeHashCall { composeHash: v },
                )
                .await
            };
        }
        6 | 7 => {
            let app = rng.pick(apps).address;
            let v = pick(rng, &pools.devices);
            if rng.chance(60) {
                transact(provider, app, DstackApp::addDeviceCall { deviceId: v }).await
            } else {
                transact(provider, app, DstackApp::removeDeviceCall { deviceId: v }).await
            };
        }
        8 => {
            let app = rng.pick(apps).address;
            transact(
                provider,
                app,
                DstackApp::setAllowAnyDeviceCall {
                    allowAny: rng.chance(50),
                },
            )
            .await;
        }
        _ => {
            let app = rng.pick(apps);
            if !app.legacy {
                transact(
                    provider,
                    app.address,
                    DstackApp::setRequireTcbUpToDateCall {
                        requireUpToDate: rng.chance(50),
                    },
                )
                .await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_decisions_equal_the_contracts() {
    let started = Instant::now();
    let node = Anvil::spawn();
    let provider = node.provider();
    let dstack = anvil::Dstack::deploy(&provider).await;
    let kms = dstack.kms;
    let mut rng = Rng(0x005e_edd5_7ac4_2026);
    let pools = Pools {
        os_images: (0..4).map(|i| value("os", i)).collect(),
        compose_hashes: (0..6).map(|i| value("compose", i)).collect(),
        devices: (0..4).map(|i| value("device", i)).collect(),
        mrs: (0..3).map(|i| value("mr", i)).collect(),
    };
    transact(
        &provider,
        kms,
        DstackKms::setGatewayAppIdCall {
            appId: "gateway-app".into(),
        },
    )
    .await;
    for os in &pools.os_images[..2] {
        transact(
            &provider,
            kms,
            DstackKms::addOsImageHashCall { osImageHash: *os },
        )
        .await;
    }

    // Apps of every kind.
    let mut driven = Vec::new();
    for i in 0..4 {
        let app = dstack
            .deploy_app(
                &provider,
                rng.chance(50),
                rng.chance(50),
                if rng.chance(50) {
                    pools.devices[i % 4]
                } else {
                    B256::ZERO
                },
                pools.compose_hashes[i],
            )
            .await;
        driven.push(DrivenApp {
            address: app,
            legacy: false,
        });
    }
    let v1 = dstack
        .deploy_app_v1(&provider, false, pools.devices[0], pools.compose_hashes[1])
        .await;
    driven.push(DrivenApp {
        address: v1,
        legacy: false,
    });
    let legacy = dstack
        .deploy_manual_app(
            &provider,
            dstack.legacy_implementation,
            pools.compose_hashes[2],
        )
        .await;
    driven.push(DrivenApp {
        address: legacy,
        legacy: true,
    });
    let manual = dstack
        .deploy_manual_app(
            &provider,
            dstack.app_implementation,
            pools.compose_hashes[3],
        )
        .await;
    driven.push(DrivenApp {
        address: manual,
        legacy: false,
    });
    let custom = dstack
        .deploy_manual_app(
            &provider,
            dstack.custom_implementation,
            pools.compose_hashes[0],
        )
        .await;
    driven.push(DrivenApp {
        address: custom,
        legacy: false,
    });
    // A factory app that goes through unknown code and back, writing storage silently meanwhile.
    let tainted = dstack
        .deploy_app(&provider, false, true, B256::ZERO, pools.compose_hashes[0])
        .await;
    transact(
        &provider,
        tainted,
        DstackApp::upgradeToAndCallCall {
            newImplementation: dstack.custom_implementation,
            data: Default::default(),
        },
    )
    .await;
    transact(
        &provider,
        tainted,
        DstackApp::sneakyAddComposeHashCall {
            composeHash: pools.compose_hashes[5],
        },
    )
    .await;
    transact(
        &provider,
        tainted,
        DstackApp::upgradeToAndCallCall {
            newImplementation: dstack.app_implementation,
            data: Default::default(),
        },
    )
    .await;
    driven.push(DrivenApp {
        address: tainted,
        legacy: false,
    });
    // Registered but nothing deployed there; deployed but never registered.
    let eoa = anvil::other_account();
    transact(&provider, kms, DstackKms::registerAppCall { appId: eoa }).await;
    let unregistered = anvil::deploy_proxy(
        &provider,
        dstack.app_implementation,
        DstackApp::initialize_0Call {
            initialOwner: anvil::deployer(),
            _disableUpgrades: false,
            _requireTcbUpToDate: false,
            _allowAnyDevice: true,
            initialDeviceId: B256::ZERO,
            initialComposeHash: pools.compose_hashes[0],
        }
        .abi_encode(),
    )
    .await;

    let mut app_ids: Vec<Address> = driven.iter().map(|a| a.address).collect();
    app_ids.extend([eoa, unregistered]);

    let legacy_code_hash = code_identity(
        &provider
            .get_code_at(dstack.legacy_implementation)
            .await
            .unwrap(),
        dstack.legacy_implementation,
    );
    let mut config = ChainConfig::new(node.url(), kms.0 .0);
    config.confirmations = 0;
    config.log_range = 7; // many small ranges: exercises chunking
    config.app_code_hashes = vec![legacy_code_hash.0];
    config.max_staleness = Duration::from_secs(600);
    let registry = ChainRegistry::connect(config.clone(), None)
        .await
        .expect("connect");

    let subject = Subject {
        registry: &registry,
        provider: &provider,
        kms,
    };
    let mut tally = Tally::default();
    const ROUNDS: usize = 8;
    const CASES_PER_ROUND: usize = 600;
    for round in 0..ROUNDS {
        compare_round(
            &subject,
            &mut rng,
            &pools,
            &app_ids,
            CASES_PER_ROUND,
            &mut tally,
        )
        .await;
        for _ in 0..25 {
            random_action(&mut rng, &provider, kms, &pools, &driven).await;
        }
        if round == ROUNDS / 2 {
            // A late app registered by hand, and registration of the proxy deployed at the start
            // (its earlier events come from the backfill).
            let late = dstack
                .deploy_manual_app(
                    &provider,
                    dstack.app_implementation,
                    pools.compose_hashes[4],
                )
                .await;
            driven.push(DrivenApp {
                address: late,
                legacy: false,
            });
            app_ids.push(late);
            transact(
                &provider,
                kms,
                DstackKms::registerAppCall {
                    appId: unregistered,
                },
            )
            .await;
        }
        let outcome = registry.poll().await.expect("poll");
        assert!(
            matches!(outcome, PollOutcome::Advanced { .. }),
            "{outcome:?}"
        );
    }
    compare_round(
        &subject,
        &mut rng,
        &pools,
        &app_ids,
        CASES_PER_ROUND,
        &mut tally,
    )
    .await;

    // The incrementally followed view equals one built from scratch at the same block.
    // It reports progress per log range and app batch, ending each stage complete.
    let reports = Arc::new(Mutex::new(Vec::<SyncProgress>::new()));
    let sink = reports.clone();
    let progress: ProgressFn = Arc::new(move |p| sink.lock().unwrap().push(p));
    let rebuilt = ChainRegistry::connect(config, Some(progress))
        .await
        .expect("rebuild");
    assert_eq!(rebuilt.block(), registry.block());
    assert_eq!(rebuilt.snapshot().unwrap(), registry.snapshot().unwrap());
    // Removal blocks (the `revoked` hint) are the same followed or rebuilt.
    assert_eq!(rebuilt.removals().unwrap(), registry.removals().unwrap());
    let reports = reports.lock().unwrap();
    for stage in [
        SyncStage::KmsEvents,
        SyncStage::AppEvents,
        SyncStage::AppState,
    ] {
        let of_stage: Vec<&SyncProgress> = reports.iter().filter(|p| p.stage == stage).collect();
        // Log stages come in several pages (from log_range 7, doubling over quiet ones); app
        // state in one batch here.
        assert!(!of_stage.is_empty(), "{stage:?} never reported");
        assert!(
            stage == SyncStage::AppState || of_stage.len() > 2,
            "{stage:?}: {of_stage:?}"
        );
        let last = of_stage.last().unwrap();
        assert_eq!(last.done, last.total, "{stage:?} did not finish");
        assert!(of_stage.windows(2).all(|w| w[0].done < w[1].done));
    }

    println!(
        "{} cases ({} explained) in {:.1} s: {} app decisions from the view, {} from the contract; reasons {:#?}",
        tally.cases,
        tally.explained,
        started.elapsed().as_secs_f64(),
        tally.evaluated_by_view,
        tally.evaluated_by_contract,
        tally.by_reason
    );
    assert!(
        tally.mismatches.is_empty(),
        "{} mismatches, first: {:#?}",
        tally.mismatches.len(),
        &tally.mismatches[..tally.mismatches.len().min(5)]
    );
    assert!(tally.cases >= 10_000);
    // Every answered decision was explained, as the contract answered it (a revert is no
    // decision to explain).
    let reverts = tally.by_reason.get("app: <revert>").copied().unwrap_or(0);
    assert_eq!(tally.explained, tally.cases - reverts);
    assert!(tally.evaluated_by_view > tally.evaluated_by_contract);
    for reason in [
        "App not registered",
        "OS image is not allowed",
        "App not deployed or invalid address",
        "TCB status is not up to date",
        "Compose hash not allowed",
        "Device not allowed",
        "",
    ] {
        assert!(
            tally.by_reason.contains_key(&format!("app: {reason:?}")),
            "reason {reason:?} never produced"
        );
    }
    for reason in [
        "TCB status is not up to date",
        "OS image is not allowed",
        "Aggregated MR not allowed",
        "KMS is not allowed to boot on this device",
        "",
    ] {
        assert!(
            tally.by_reason.contains_key(&format!("kms: {reason:?}")),
            "kms reason {reason:?} never produced"
        );
    }
    assert!(tally.by_reason.contains_key("app: <revert>"));
    // The snapshot classifies the apps as expected.
    let snapshot = registry.snapshot().unwrap();
    let code_of = |address: Address| {
        snapshot
            .apps
            .iter()
            .find(|a| a.app_id.0 == address.0 .0)
            .map(|a| a.code)
    };
    use tee_verifier::registry::view::AppCode;
    assert_eq!(code_of(legacy), Some(AppCode::Known));
    assert_eq!(code_of(manual), Some(AppCode::Known));
    assert_eq!(code_of(custom), Some(AppCode::Unknown));
    assert_eq!(code_of(tainted), Some(AppCode::Unknown));
    assert_eq!(code_of(eoa), Some(AppCode::Absent));
    assert_eq!(code_of(unregistered), Some(AppCode::Known));
}
