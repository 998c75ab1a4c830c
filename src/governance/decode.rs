//! Governance calldata read back into what it does: an allowlist call, a timelock schedule,
//! execute or cancel (with their inner calls), or a MultiSendCallOnly batch of those (a Safe
//! transaction made by Safe{Wallet}). Recognised by selector, one level of nesting each: a
//! timelock cannot usefully schedule a MultiSend (its calls would come from MultiSend, not the
//! owner), so calls inside a schedule are only decoded as allowlist calls.

use alloy::sol_types::SolCall;

use super::abi::ITimelockController;
use super::call::AllowlistCall;
use super::timelock::TimelockOperation;
use super::{multisend, Call};
use crate::registry::view::{Address, Bytes32};

/// What a piece of governance calldata does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// An add/remove call on DstackKms or DstackApp.
    Allowlist(AllowlistCall),
    /// `schedule` / `scheduleBatch`, with each scheduled call decoded.
    Schedule {
        /// The operation scheduled (its id follows from it).
        operation: TimelockOperation,
        /// Its calls, each decoded as an allowlist call or left as [`Decoded::Other`].
        calls: Vec<Decoded>,
    },
    /// `execute` / `executeBatch` of the operation with this id.
    Execute {
        /// The TimelockController called.
        timelock: Address,
        /// The operation's id.
        id: Bytes32,
    },
    /// `cancel` of the operation with this id.
    Cancel {
        /// The TimelockController called.
        timelock: Address,
        /// The operation's id.
        id: Bytes32,
    },
    /// `multiSend`, with each entry decoded.
    MultiSend(Vec<Decoded>),
    /// Anything else (another function, or malformed calldata).
    Other(Call),
}

/// Decodes `data` sent to `to`.
pub fn decode(to: Address, data: &[u8]) -> Decoded {
    decode_at(to, data, true)
}

fn decode_at(to: Address, data: &[u8], outermost: bool) -> Decoded {
    if let Ok(call) = AllowlistCall::decode(to, data) {
        return Decoded::Allowlist(call);
    }
    if !outermost {
        return Decoded::Other(Call::new(to, data.to_vec()));
    }
    if let Some(operation) = TimelockOperation::decode_schedule(to, data) {
        let calls = operation
            .calls
            .iter()
            .map(|call| decode_at(call.to, &call.data, false))
            .collect();
        return Decoded::Schedule { operation, calls };
    }
    if let Some(operation) = TimelockOperation::decode_execute(to, data) {
        return Decoded::Execute {
            timelock: to,
            id: operation.id(),
        };
    }
    if let Ok(call) = ITimelockController::cancelCall::abi_decode_validate(data) {
        return Decoded::Cancel {
            timelock: to,
            id: call.id.0,
        };
    }
    if let Ok(calls) = multisend::decode(data) {
        return Decoded::MultiSend(
            calls
                .iter()
                .map(|call| match decode_at(call.to, &call.data, true) {
                    // A MultiSend inside a MultiSend entry is just a call.
                    Decoded::MultiSend(_) => Decoded::Other(call.clone()),
                    decoded => decoded,
                })
                .collect(),
        );
    }
    Decoded::Other(Call::new(to, data.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::super::call::Function;
    use super::super::safe::SafeTransaction;
    use super::*;

    fn add(contract: Address, byte: u8) -> AllowlistCall {
        AllowlistCall {
            contract,
            function: Function::AddOsImageHash,
            value: [byte; 32],
        }
    }

    #[test]
    fn a_safe_multisend_of_a_schedule_batch_decodes_to_its_calls() {
        let op = TimelockOperation::batch(
            [9; 20],
            vec![
                add([1; 20], 1).call(),
                Call::new([2; 20], vec![0xf2, 0xfd, 0xe3, 0x8b]),
            ],
            [0; 32],
            [1; 32],
            60,
        );
        let safe_tx = SafeTransaction::multi_send(&[op.schedule(), op.execute()], [5; 20]);
        let Decoded::MultiSend(entries) = decode(safe_tx.to, &safe_tx.data) else {
            panic!("not a multisend");
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0],
            Decoded::Schedule {
                operation: op.clone(),
                calls: vec![
                    Decoded::Allowlist(add([1; 20], 1)),
                    Decoded::Other(Call::new([2; 20], vec![0xf2, 0xfd, 0xe3, 0x8b]))
                ],
            }
        );
        assert_eq!(
            entries[1],
            Decoded::Execute {
                timelock: [9; 20],
                id: op.id()
            }
        );
        assert_eq!(
            decode([9; 20], &op.cancel().data),
            Decoded::Cancel {
                timelock: [9; 20],
                id: op.id()
            }
        );
    }

    #[test]
    fn single_schedule_and_execute_keep_their_ids() {
        let op = TimelockOperation {
            single: true,
            ..TimelockOperation::batch([9; 20], vec![add([1; 20], 2).call()], [0; 32], [0; 32], 5)
        };
        let Decoded::Schedule { operation, .. } = decode([9; 20], &op.schedule().data) else {
            panic!("not a schedule");
        };
        assert!(operation.single);
        assert_eq!(operation.id(), op.id());
        assert_eq!(
            decode([9; 20], &op.execute().data),
            Decoded::Execute {
                timelock: [9; 20],
                id: op.id()
            }
        );
    }

    #[test]
    fn nested_multisends_and_schedules_are_not_followed() {
        let inner = multisend::calldata(&[add([1; 20], 3).call()]);
        let outer = multisend::calldata(&[Call::new([5; 20], inner.clone())]);
        assert_eq!(
            decode([5; 20], &outer),
            Decoded::MultiSend(vec![Decoded::Other(Call::new([5; 20], inner))])
        );
        assert_eq!(
            decode([1; 20], &[1, 2, 3]),
            Decoded::Other(Call::new([1; 20], vec![1, 2, 3]))
        );
    }
}
