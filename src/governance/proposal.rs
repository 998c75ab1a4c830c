//! A governance proposal: allowlist calls, optionally wrapped in one timelock `scheduleBatch`
//! (plus its matching `executeBatch`), and every form `propose` prints it in: the calls JSON, a
//! Transaction Builder file, MultiSendCallOnly calldata and `cast` lines.

use std::collections::HashSet;

use serde::Serialize;

use super::call::{AllowlistCall, CallJson, Contract};
use super::multisend;
use super::safe::SafeTransaction;
use super::timelock::TimelockOperation;
use super::tx_builder::{self, BatchMeta, BuilderTransaction, Parameter};
use super::value::check_measurement;
use super::{Call, GovernanceError};
use crate::encoding::to_0x_hex;
use crate::registry::view::{Address, Bytes32};

/// How a proposal goes through a TimelockController.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimelockPlan {
    /// The TimelockController that owns the contracts.
    pub timelock: Address,
    /// Seconds (at least the timelock's `getMinDelay()`, or scheduling reverts).
    pub delay: u64,
    /// Distinguishes operations with the same calls; an id can be scheduled only once.
    pub salt: Bytes32,
    /// An operation that must have executed first (zero: none).
    pub predecessor: Bytes32,
}

/// A checked set of allowlist calls, optionally scheduled through a timelock; built by
/// [`Proposal::new`], printed in each of `propose`'s formats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    calls: Vec<AllowlistCall>,
    timelock: Option<TimelockOperation>,
}

/// `{"to","data"}` of a timelock call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CallTarget {
    /// The timelock, 0x-hex.
    pub to: String,
    /// The calldata, 0x-hex.
    pub data: String,
}

/// The timelock part of `--format calls`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimelockJson {
    /// `hashOperationBatch` of the calls, predecessor and salt.
    pub operation_id: String,
    /// The `scheduleBatch` the proposer sends.
    pub schedule: CallTarget,
    /// The matching `executeBatch`, sent once the delay has passed.
    pub execute: CallTarget,
    /// Seconds between scheduling and execution.
    pub delay: u64,
    /// The operation's salt, 0x-hex.
    pub salt: String,
    /// The operation's predecessor, 0x-hex (zero: none).
    pub predecessor: String,
}

/// `--format calls`: `{"calls":[…],"timelock":null|{…}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProposalJson {
    /// The allowlist calls, in order.
    pub calls: Vec<CallJson>,
    /// Their timelock operation, when proposed through one.
    pub timelock: Option<TimelockJson>,
}

fn target_of(call: &Call) -> CallTarget {
    CallTarget {
        to: to_0x_hex(&call.to),
        data: to_0x_hex(&call.data),
    }
}

impl Proposal {
    /// Checks the calls: at least one; every value a plausible measurement; KMS functions on
    /// `kms` and app functions on another contract; no call twice, and no value both added and
    /// removed on the same list.
    pub fn new(
        kms: Address,
        calls: Vec<AllowlistCall>,
        timelock: Option<TimelockPlan>,
    ) -> Result<Proposal, GovernanceError> {
        if calls.is_empty() {
            return Err(GovernanceError::EmptyProposal);
        }
        let mut seen = HashSet::new();
        let mut entries = HashSet::new();
        for call in &calls {
            check_measurement(call.function.value_name(), &call.value)?;
            let on_kms = call.contract == kms;
            let expected = match call.function.contract() {
                Contract::Kms if !on_kms => Some("the KMS contract"),
                Contract::App if on_kms || call.contract == [0; 20] => Some("an app contract"),
                _ => None,
            };
            if let Some(expected) = expected {
                return Err(GovernanceError::WrongTarget {
                    function: call.function.name(),
                    target: to_0x_hex(&call.contract),
                    expected,
                });
            }
            if !seen.insert(*call) {
                return Err(GovernanceError::DuplicateCall {
                    function: call.function.name(),
                    value: to_0x_hex(&call.value),
                });
            }
            if !entries.insert(call.entry()) {
                return Err(GovernanceError::ConflictingCalls {
                    value: to_0x_hex(&call.value),
                });
            }
        }
        let timelock = timelock.map(|plan| {
            TimelockOperation::batch(
                plan.timelock,
                calls.iter().map(AllowlistCall::call).collect(),
                plan.predecessor,
                plan.salt,
                plan.delay,
            )
        });
        Ok(Proposal { calls, timelock })
    }

    /// The allowlist calls, in order.
    pub fn calls(&self) -> &[AllowlistCall] {
        &self.calls
    }

    /// The timelock operation wrapping the calls, if any.
    pub fn timelock(&self) -> Option<&TimelockOperation> {
        self.timelock.as_ref()
    }

    /// What the proposer (the Safe, or the owner) sends: the one `scheduleBatch`, or the calls
    /// themselves.
    pub fn proposer_calls(&self) -> Vec<Call> {
        match &self.timelock {
            Some(operation) => vec![operation.schedule()],
            None => self.calls.iter().map(AllowlistCall::call).collect(),
        }
    }

    /// `--format calls`.
    pub fn json(&self) -> ProposalJson {
        ProposalJson {
            calls: self.calls.iter().map(AllowlistCall::json).collect(),
            timelock: self.timelock.as_ref().map(|op| TimelockJson {
                operation_id: to_0x_hex(&op.id()),
                schedule: target_of(&op.schedule()),
                execute: target_of(&op.execute()),
                delay: op.delay,
                salt: to_0x_hex(&op.salt),
                predecessor: to_0x_hex(&op.predecessor),
            }),
        }
    }

    /// `--format multisend`: MultiSendCallOnly calldata of the proposer's calls (for a Safe
    /// transaction to MultiSendCallOnly by delegatecall).
    pub fn multisend_calldata(&self) -> Vec<u8> {
        multisend::calldata(&self.proposer_calls())
    }

    /// The Safe transaction Safe{Wallet} makes of the proposer's calls.
    pub fn safe_transaction(&self, multi_send: Address) -> SafeTransaction {
        SafeTransaction::for_calls(&self.proposer_calls(), multi_send)
    }

    /// `--format safe-tx-builder`: the batch file of the proposer's calls.
    pub fn tx_builder_file(&self, meta: &BatchMeta) -> serde_json::Value {
        let transactions: Vec<BuilderTransaction> = match &self.timelock {
            Some(op) => vec![schedule_batch_transaction(op)],
            None => self
                .calls
                .iter()
                .map(|call| BuilderTransaction {
                    call: call.call(),
                    method: call.function.name(),
                    parameters: vec![Parameter {
                        name: call.function.parameter(),
                        ty: "bytes32",
                    }],
                    arguments: vec![to_0x_hex(&call.value)],
                })
                .collect(),
        };
        tx_builder::batch_file(meta, &transactions)
    }

    /// `--format cast`: shell lines that send the proposal with Foundry's `cast`, then check it
    /// (step 6 of the registration guide). `$ETH_RPC_URL` and the signer options are the
    /// user's.
    pub fn cast_lines(&self) -> Vec<String> {
        let rpc = "--rpc-url \"$ETH_RPC_URL\"";
        let mut lines = Vec::new();
        match &self.timelock {
            None => {
                lines.push("# As the owner of each contract:".to_owned());
                for call in &self.calls {
                    lines.push(format!(
                        "cast send {} \"{}\" {} {rpc}",
                        to_0x_hex(&call.contract),
                        call.function.signature(),
                        to_0x_hex(&call.value)
                    ));
                }
            }
            Some(op) => {
                let timelock = to_0x_hex(&op.timelock);
                let arrays = batch_arguments(op);
                let id = to_0x_hex(&op.id());
                lines.push(format!(
                    "# As a proposer of the timelock: schedule operation {id}"
                ));
                lines.push(format!(
                    "cast send {timelock} \"scheduleBatch(address[],uint256[],bytes[],bytes32,bytes32,uint256)\" {} {} {rpc}",
                    arrays.join(" "),
                    op.delay
                ));
                lines.push("# Ready at this unix time (0: not scheduled, 1: executed):".to_owned());
                lines.push(format!(
                    "cast call {timelock} \"getTimestamp(bytes32)(uint256)\" {id} {rpc}"
                ));
                lines.push("# Once ready, as an executor:".to_owned());
                lines.push(format!(
                    "cast send {timelock} \"executeBatch(address[],uint256[],bytes[],bytes32,bytes32)\" {} {rpc}",
                    arrays.join(" ")
                ));
            }
        }
        lines.push("# Then check each change (expect the value after #):".to_owned());
        for call in &self.calls {
            lines.push(format!(
                "cast call {} \"{}\" {} {rpc}  # {}",
                to_0x_hex(&call.contract),
                call.function.getter(),
                to_0x_hex(&call.value),
                call.function.adds()
            ));
        }
        lines
    }
}

/// `[targets] [values] [payloads] predecessor salt`, as `cast` and the Transaction Builder take
/// them.
fn batch_arguments(op: &TimelockOperation) -> Vec<String> {
    let list = |items: Vec<String>| format!("[{}]", items.join(","));
    vec![
        list(op.calls.iter().map(|c| to_0x_hex(&c.to)).collect()),
        list(op.calls.iter().map(|c| c.value.to_string()).collect()),
        list(op.calls.iter().map(|c| to_0x_hex(&c.data)).collect()),
        to_0x_hex(&op.predecessor),
        to_0x_hex(&op.salt),
    ]
}

fn schedule_batch_transaction(op: &TimelockOperation) -> BuilderTransaction {
    let parameter = |name, ty| Parameter { name, ty };
    let mut arguments = batch_arguments(op);
    arguments.push(op.delay.to_string());
    BuilderTransaction {
        call: op.schedule(),
        method: "scheduleBatch",
        parameters: vec![
            parameter("targets", "address[]"),
            parameter("values", "uint256[]"),
            parameter("payloads", "bytes[]"),
            parameter("predecessor", "bytes32"),
            parameter("salt", "bytes32"),
            parameter("delay", "uint256"),
        ],
        arguments,
    }
}

#[cfg(test)]
mod tests {
    use super::super::call::Function;
    use super::super::decode::{decode, Decoded};
    use super::*;

    const KMS: Address = [0x11; 20];
    const APP: Address = [0x22; 20];
    const TIMELOCK: Address = [0x33; 20];

    fn call(contract: Address, function: Function, byte: u8) -> AllowlistCall {
        AllowlistCall {
            contract,
            function,
            value: [byte; 32],
        }
    }

    fn plan() -> TimelockPlan {
        TimelockPlan {
            timelock: TIMELOCK,
            delay: 3600,
            salt: [7; 32],
            predecessor: [0; 32],
        }
    }

    fn three_calls() -> Vec<AllowlistCall> {
        vec![
            call(KMS, Function::AddOsImageHash, 1),
            call(KMS, Function::AddOsImageHash, 2),
            call(APP, Function::AddComposeHash, 3),
        ]
    }

    #[test]
    fn calls_json_without_and_with_timelock() {
        let direct = Proposal::new(KMS, three_calls(), None).unwrap();
        let json = serde_json::to_value(direct.json()).unwrap();
        assert_eq!(json["timelock"], serde_json::Value::Null);
        assert_eq!(json["calls"].as_array().unwrap().len(), 3);
        assert_eq!(json["calls"][2]["to"], to_0x_hex(&APP));
        assert_eq!(direct.proposer_calls().len(), 3);

        let timelocked = Proposal::new(KMS, three_calls(), Some(plan())).unwrap();
        let json = serde_json::to_value(timelocked.json()).unwrap();
        let op = timelocked.timelock().unwrap();
        assert_eq!(json["timelock"]["operation_id"], to_0x_hex(&op.id()));
        assert_eq!(json["timelock"]["schedule"]["to"], to_0x_hex(&TIMELOCK));
        assert_eq!(json["timelock"]["delay"], 3600);
        assert_eq!(json["timelock"]["salt"], to_0x_hex(&[7; 32]));
        let proposer = timelocked.proposer_calls();
        assert_eq!(proposer, vec![op.schedule()]);
        // The schedule decodes back into the three calls.
        match decode(TIMELOCK, &proposer[0].data) {
            Decoded::Schedule { operation, calls } => {
                assert_eq!(operation.id(), op.id());
                assert_eq!(calls.len(), 3);
                assert!(matches!(calls[2], Decoded::Allowlist(c) if c == three_calls()[2]));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_bad_proposals() {
        let kind = |calls: Vec<AllowlistCall>| {
            Proposal::new(KMS, calls, None).unwrap_err().kind().as_str()
        };
        assert_eq!(kind(vec![]), "empty_proposal");
        assert_eq!(
            kind(vec![call(KMS, Function::AddOsImageHash, 0)]),
            "zero_value"
        );
        assert_eq!(
            kind(vec![call(APP, Function::AddOsImageHash, 1)]),
            "wrong_target"
        );
        assert_eq!(
            kind(vec![call(KMS, Function::AddComposeHash, 1)]),
            "wrong_target"
        );
        assert_eq!(
            kind(vec![
                call(KMS, Function::AddKmsDevice, 1),
                call(KMS, Function::AddKmsDevice, 1)
            ]),
            "duplicate_call"
        );
        assert_eq!(
            kind(vec![
                call(APP, Function::AddDevice, 1),
                call(APP, Function::RemoveDevice, 1)
            ]),
            "conflicting_calls"
        );
        // The same value on different lists is two changes.
        assert!(Proposal::new(
            KMS,
            vec![
                call(KMS, Function::AddKmsDevice, 1),
                call(APP, Function::AddDevice, 1)
            ],
            None
        )
        .is_ok());
    }

    #[test]
    fn tx_builder_file_carries_the_schedule_batch() {
        let proposal = Proposal::new(KMS, three_calls(), Some(plan())).unwrap();
        let meta = BatchMeta {
            name: "register".into(),
            description: String::new(),
            chain_id: 31337,
            created_at_ms: 1,
            safe: None,
        };
        let file = proposal.tx_builder_file(&meta);
        assert!(tx_builder::verify_checksum(&file).unwrap());
        let txs = file["transactions"].as_array().unwrap();
        assert_eq!(txs.len(), 1);
        let schedule = proposal.timelock().unwrap().schedule();
        assert_eq!(txs[0]["data"], to_0x_hex(&schedule.data));
        assert_eq!(txs[0]["contractMethod"]["name"], "scheduleBatch");
        assert_eq!(txs[0]["contractInputsValues"]["delay"], "3600");
        assert_eq!(txs[0]["contractInputsValues"]["values"], "[0,0,0]");
        let direct = Proposal::new(KMS, three_calls(), None).unwrap();
        let file = direct.tx_builder_file(&meta);
        assert_eq!(file["transactions"].as_array().unwrap().len(), 3);
        assert_eq!(
            file["transactions"][2]["contractInputsValues"]["composeHash"],
            to_0x_hex(&[3; 32])
        );
    }

    #[test]
    fn multisend_and_cast_forms() {
        let proposal = Proposal::new(KMS, three_calls(), Some(plan())).unwrap();
        let calls = multisend::decode(&proposal.multisend_calldata()).unwrap();
        assert_eq!(calls, proposal.proposer_calls());
        let lines = proposal.cast_lines();
        assert!(lines.iter().any(|l| l.starts_with(&format!(
            "cast send {} \"scheduleBatch(",
            to_0x_hex(&TIMELOCK)
        ))));
        assert!(lines.iter().any(|l| l.contains("executeBatch(")));
        assert!(lines.iter().any(|l| l.starts_with(&format!(
            "cast call {} \"allowedComposeHashes(bytes32)(bool)\" {}",
            to_0x_hex(&APP),
            to_0x_hex(&[3; 32])
        )) && l.ends_with("# true")));
        let removal =
            Proposal::new(KMS, vec![call(KMS, Function::RemoveOsImageHash, 4)], None).unwrap();
        let lines = removal.cast_lines();
        assert!(lines.iter().any(|l| l.starts_with(&format!(
            "cast send {} \"removeOsImageHash(bytes32)\"",
            to_0x_hex(&KMS)
        ))));
        assert!(lines.last().unwrap().ends_with("# false"));
    }
}
