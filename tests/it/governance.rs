//! The governance workflow on a real chain: the project's DstackKms (and a DstackApp) owned by
//! an OpenZeppelin TimelockController whose proposer and executor is a Safe 1.4.1. Proposals
//! built by `tee_verifier::governance` (Transaction Builder file, MultiSend calldata, calls JSON)
//! are executed by the Safe with its owners' EIP-712 signatures; the chain source follows the
//! timelock (pending with its ETA, ready, executed, cancelled) and then registers the values.

use crate::registry_follow::boot;
use crate::support::{anvil, safe};

use alloy::hex::{decode as parse_hex, decode_to_array};
use alloy::primitives::{keccak256, Address, Bytes, B256, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use anvil::{Anvil, Dstack};
use safe::{advance_time, deploy_timelock, owner, transfer_ownership, SafeAccount, SafeContracts};
use tee_verifier::governance::abi::ITimelockController;
use tee_verifier::governance::explain::{explain_app, Context, HintKind};
use tee_verifier::governance::safe::{Operation, SafeTransaction};
use tee_verifier::governance::tx_builder::{verify_checksum, BatchMeta};
use tee_verifier::governance::{
    AllowlistCall, Call, Function, PendingChange, PendingState, Proposal, TimelockPlan,
};
use tee_verifier::registry::chain::{ChainConfig, ChainRegistry};
use tee_verifier::registry::{Lookup, Registry};

pub(crate) const MIN_DELAY: u64 = 3600;

/// A KMS and one app, both owned by a timelock whose proposer and executor is `safe`.
pub(crate) struct Governed {
    pub(crate) node: Anvil,
    pub(crate) contracts: SafeContracts,
    pub(crate) safe: SafeAccount,
    /// Indices of the owners who sign.
    pub(crate) signers: Vec<usize>,
    pub(crate) timelock: Address,
    pub(crate) kms: Address,
    pub(crate) app: Address,
}

pub(crate) async fn governed(owners: &[Address], threshold: u64, signers: &[usize]) -> Governed {
    let node = Anvil::spawn();
    let provider = node.provider();
    let dstack = Dstack::deploy(&provider).await;
    // An app that allows any device and starts with no compose hash.
    let app = dstack
        .deploy_app(&provider, false, true, B256::ZERO, B256::ZERO)
        .await;
    let contracts = SafeContracts::deploy(&provider).await;
    let safe = contracts.create_safe(&provider, owners, threshold, 1).await;
    let timelock = deploy_timelock(&provider, MIN_DELAY, &[safe.address], &[safe.address]).await;
    transfer_ownership(&provider, dstack.kms, timelock).await;
    transfer_ownership(&provider, app, timelock).await;
    Governed {
        node,
        contracts,
        safe,
        signers: signers.to_vec(),
        timelock,
        kms: dstack.kms,
        app,
    }
}

impl Governed {
    pub(crate) fn provider(&self) -> RootProvider {
        self.node.provider()
    }

    pub(crate) fn proposal(&self, calls: Vec<AllowlistCall>, salt: &str) -> Proposal {
        let plan = TimelockPlan {
            timelock: self.timelock.into_array(),
            delay: MIN_DELAY,
            salt: keccak256(salt).0,
            predecessor: [0; 32],
        };
        Proposal::new(self.kms.into_array(), calls, Some(plan)).expect("proposal")
    }

    pub(crate) fn add_os(&self, tag: &str) -> AllowlistCall {
        AllowlistCall {
            contract: self.kms.into_array(),
            function: Function::AddOsImageHash,
            value: keccak256(tag).0,
        }
    }

    pub(crate) fn add_compose(&self, tag: &str) -> AllowlistCall {
        AllowlistCall {
            contract: self.app.into_array(),
            function: Function::AddComposeHash,
            value: keccak256(tag).0,
        }
    }

    /// The Safe runs `calls` through MultiSendCallOnly (delegatecall), as Safe{Wallet} does.
    pub(crate) async fn run_through_multisend(&self, calls: &[Call]) {
        let tx = SafeTransaction::multi_send(calls, self.contracts.multi_send.into_array());
        assert_eq!(tx.operation, Operation::DelegateCall);
        self.safe
            .execute(&self.provider(), &tx, &self.signers)
            .await;
    }

    /// The Safe calls directly.
    pub(crate) async fn run_direct(&self, call: Call) {
        let tx = SafeTransaction::for_calls(&[call], self.contracts.multi_send.into_array());
        assert_eq!(tx.operation, Operation::Call);
        self.safe
            .execute(&self.provider(), &tx, &self.signers)
            .await;
    }

    /// A chain source at the head, following the timelock it finds as the KMS's owner (or the
    /// configured ones).
    pub(crate) async fn registry(&self, timelocks: Vec<Address>) -> ChainRegistry {
        let mut config = ChainConfig::new(self.node.url(), self.kms.into_array());
        config.confirmations = 0;
        config.timelocks = timelocks.iter().map(|t| t.into_array()).collect();
        ChainRegistry::connect(config, None).await.expect("connect")
    }

    pub(crate) async fn eth_call<C: SolCall>(&self, to: Address, call: C) -> C::Return {
        let request = TransactionRequest::default()
            .to(to)
            .input(Bytes::from(call.abi_encode()).into());
        let bytes = self.provider().call(request).await.expect("eth_call");
        C::abi_decode_returns(&bytes).expect("return value")
    }

    pub(crate) async fn timestamp_of_block(&self, number: u64) -> u64 {
        self.provider()
            .get_header_by_number(number.into())
            .await
            .expect("header")
            .expect("block")
            .timestamp
    }
}

/// The calls of a Transaction Builder file, as the app sends them (`data` is set, so it is used
/// as is).
pub(crate) fn builder_calls(file: &serde_json::Value) -> Vec<Call> {
    file["transactions"]
        .as_array()
        .expect("transactions")
        .iter()
        .map(|tx| Call {
            to: decode_to_array::<_, 20>(tx["to"].as_str().unwrap()).unwrap(),
            value: tx["value"].as_str().unwrap().parse().unwrap(),
            data: parse_hex(tx["data"].as_str().unwrap()).unwrap(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_id_is_the_contracts_hash_operation_batch() {
    let g = governed(&[owner(0)], 1, &[0]).await;
    let proposal = g.proposal(
        vec![g.add_os("a"), g.add_os("b"), g.add_compose("c")],
        "salt",
    );
    let op = proposal.timelock().unwrap();
    let targets: Vec<Address> = op.calls.iter().map(|c| Address::from(c.to)).collect();
    let payloads: Vec<Bytes> = op
        .calls
        .iter()
        .map(|c| Bytes::from(c.data.clone()))
        .collect();
    let id = g
        .eth_call(
            g.timelock,
            ITimelockController::hashOperationBatchCall {
                targets: targets.clone(),
                values: vec![U256::ZERO; 3],
                payloads: payloads.clone(),
                predecessor: B256::ZERO,
                salt: keccak256("salt"),
            },
        )
        .await;
    assert_eq!(id.0, op.id());
    // The single-call form hashes with hashOperation.
    let single = tee_verifier::governance::timelock::TimelockOperation {
        calls: op.calls[..1].to_vec(),
        single: true,
        ..op.clone()
    };
    let id = g
        .eth_call(
            g.timelock,
            ITimelockController::hashOperationCall {
                target: targets[0],
                value: U256::ZERO,
                data: payloads[0].clone(),
                predecessor: B256::ZERO,
                salt: keccak256("salt"),
            },
        )
        .await;
    assert_eq!(id.0, single.id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safe_schedules_a_tx_builder_batch_the_view_follows_it_until_registered() {
    // 2-of-3 Safe; owners 1 and 2 sign.
    let g = governed(&[owner(0), owner(1), owner(2)], 2, &[2, 1]).await;
    let provider = g.provider();
    let (os_a, os_b, compose) = (g.add_os("os-a"), g.add_os("os-b"), g.add_compose("compose"));
    let proposal = g.proposal(vec![os_a, os_b, compose], "tx-builder");
    let operation_id = proposal.timelock().unwrap().id();
    let meta = BatchMeta {
        name: "register os-a, os-b and compose".into(),
        description: String::new(),
        chain_id: provider.get_chain_id().await.unwrap(),
        created_at_ms: 1_700_000_000_000,
        safe: Some(g.safe.address.into_array()),
    };
    let file = proposal.tx_builder_file(&meta);
    assert!(verify_checksum(&file).unwrap());
    assert_eq!(file["chainId"], "31337");
    // Through a file, as a user would import it.
    let file: serde_json::Value = serde_json::from_str(&file.to_string()).unwrap();
    let calls = builder_calls(&file);
    assert_eq!(calls, proposal.proposer_calls());

    let registry = g.registry(Vec::new()).await;
    let info = boot(g.app, B256::from(os_a.value), B256::from(compose.value));
    assert_eq!(
        registry.timelocks().unwrap(),
        vec![(g.timelock.into_array(), MIN_DELAY)]
    );
    assert!(registry.pending().unwrap().is_empty());

    g.run_through_multisend(&calls).await;
    let scheduled_block = provider.get_block_number().await.unwrap();
    let eta = g.timestamp_of_block(scheduled_block).await + MIN_DELAY;
    registry.poll().await.unwrap();
    let pending = registry.pending().unwrap();
    assert_eq!(
        pending.iter().map(|c| c.call).collect::<Vec<_>>(),
        vec![os_a, os_b, compose]
    );
    for (index, change) in pending.iter().enumerate() {
        assert_eq!(change.operation_id, operation_id);
        assert_eq!(change.index, u64::try_from(index).unwrap());
        assert_eq!((change.eta, change.state), (eta, PendingState::Waiting));
        assert_eq!(change.scheduled_block, scheduled_block);
    }
    let getter: U256 = g
        .eth_call(
            g.timelock,
            ITimelockController::getTimestampCall {
                id: B256::from(operation_id),
            },
        )
        .await;
    assert_eq!(getter, U256::from(eta));

    // Refused meanwhile, and explain says why: not registered, pending with its ETA.
    let decision = registry.decide_app(&info).await.unwrap();
    assert_eq!(decision.reason, "OS image is not allowed");
    let view = registry.snapshot().unwrap().to_view().unwrap();
    let changes = registry.timelock_changes().unwrap();
    let context = Context {
        pending: &changes,
        ..Context::default()
    };
    let explanation = explain_app(&view, &decision, &info, &context).unwrap();
    let pending_hint = explanation
        .hints
        .iter()
        .find(|h| h.kind == HintKind::Pending && h.field == Some("osImageHash"))
        .expect("pending hint");
    assert_eq!(pending_hint.eta, Some(eta));
    assert_eq!(
        pending_hint.operation_id.as_deref(),
        Some(alloy::hex::encode_prefixed(operation_id).as_str())
    );

    // Ready once the delay has passed; then the Safe executes it.
    advance_time(&provider, MIN_DELAY).await;
    registry.poll().await.unwrap();
    assert!(registry
        .pending()
        .unwrap()
        .iter()
        .all(|c| c.state == PendingState::Ready));
    let execute = proposal.timelock().unwrap().execute();
    g.run_direct(execute).await;
    registry.poll().await.unwrap();

    assert!(registry.pending().unwrap().is_empty());
    let settled = registry.timelock_changes().unwrap();
    assert_eq!(settled.len(), 3);
    assert!(settled.iter().all(|c| c.state == PendingState::Executed));
    let decision = registry.decide_app(&info).await.unwrap();
    assert!(decision.allowed, "{decision:?}");
    let os_b_registered = registry.lookup(&Lookup::OsImageHash(os_b.value)).unwrap();
    assert!(os_b_registered.present);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multisend_and_calls_formats_and_a_cancelled_operation() {
    // 1-of-1 Safe; the timelock is configured as well as found.
    let g = governed(&[owner(0)], 1, &[0]).await;
    let provider = g.provider();
    let registry = g.registry(vec![g.timelock]).await;

    // --format multisend: the Safe transaction's data is the proposal's MultiSend calldata.
    let cancelled = g.proposal(vec![g.add_os("cancelled")], "one");
    let tx = SafeTransaction {
        to: g.contracts.multi_send.into_array(),
        value: U256::ZERO,
        data: cancelled.multisend_calldata(),
        operation: Operation::DelegateCall,
    };
    g.safe.execute(&provider, &tx, &g.signers).await;

    // --format calls: the Safe sends the JSON's timelock.schedule {to, data} directly.
    let executed = g.proposal(vec![g.add_compose("kept"), g.add_os("kept")], "two");
    let json = serde_json::to_value(executed.json()).unwrap();
    let schedule = Call::new(
        decode_to_array::<_, 20>(json["timelock"]["schedule"]["to"].as_str().unwrap()).unwrap(),
        parse_hex(json["timelock"]["schedule"]["data"].as_str().unwrap()).unwrap(),
    );
    g.run_direct(schedule).await;
    registry.poll().await.unwrap();
    let ids = |changes: &[PendingChange]| {
        let mut ids: Vec<[u8; 32]> = changes.iter().map(|c| c.operation_id).collect();
        ids.dedup();
        ids
    };
    let cancelled_id = cancelled.timelock().unwrap().id();
    let executed_id = executed.timelock().unwrap().id();
    assert_eq!(
        ids(&registry.pending().unwrap()),
        vec![cancelled_id, executed_id]
    );

    // The proposer cancels the first.
    g.run_direct(cancelled.timelock().unwrap().cancel()).await;
    registry.poll().await.unwrap();
    assert_eq!(ids(&registry.pending().unwrap()), vec![executed_id]);
    let changes = registry.timelock_changes().unwrap();
    let state_of = |id: [u8; 32]| {
        changes
            .iter()
            .find(|c| c.operation_id == id)
            .map(|c| c.state)
            .unwrap()
    };
    assert_eq!(state_of(cancelled_id), PendingState::Cancelled);
    assert_eq!(state_of(executed_id), PendingState::Waiting);

    // The second executes after the delay, through the JSON's execute {to, data}.
    advance_time(&provider, MIN_DELAY).await;
    let execute = Call::new(
        decode_to_array::<_, 20>(json["timelock"]["execute"]["to"].as_str().unwrap()).unwrap(),
        parse_hex(json["timelock"]["execute"]["data"].as_str().unwrap()).unwrap(),
    );
    g.run_direct(execute).await;
    registry.poll().await.unwrap();
    assert!(registry.pending().unwrap().is_empty());
    let present = |lookup| registry.lookup(&lookup).unwrap().present;
    assert!(present(Lookup::OsImageHash(keccak256("kept").0)));
    assert!(present(Lookup::ComposeHash {
        app_id: g.app.into_array(),
        compose_hash: keccak256("kept").0,
    }));
    assert!(!present(Lookup::OsImageHash(keccak256("cancelled").0)));

    // A rebuilt view tells the same story.
    let rebuilt = g.registry(Vec::new()).await;
    assert_eq!(
        rebuilt.timelock_changes().unwrap(),
        registry.timelock_changes().unwrap()
    );
}
