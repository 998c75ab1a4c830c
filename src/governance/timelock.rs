//! An OpenZeppelin TimelockController operation: the `scheduleBatch` a proposer sends, the
//! matching `executeBatch`, and the operation id, computed locally exactly as the contract's
//! `hashOperationBatch` (or `hashOperation`, for an operation scheduled with `schedule`).

use alloy::primitives::{keccak256, Address as AlloyAddress, Bytes, B256, U256};
use alloy::sol_types::{SolCall, SolValue};

use super::abi::ITimelockController;
use super::Call;
use crate::registry::view::{Address, Bytes32};

/// One timelock operation: calls, predecessor (zero: none), salt and delay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelockOperation {
    /// The TimelockController.
    pub timelock: Address,
    /// The calls the operation executes, in order.
    pub calls: Vec<Call>,
    /// An operation that must have executed first (zero: none).
    pub predecessor: Bytes32,
    /// Distinguishes operations with the same calls.
    pub salt: Bytes32,
    /// Seconds; the contract refuses less than its `getMinDelay()`.
    pub delay: u64,
    /// Scheduled with `schedule` (one call, id = `hashOperation`) rather than `scheduleBatch`.
    pub single: bool,
}

struct Columns {
    targets: Vec<AlloyAddress>,
    values: Vec<U256>,
    payloads: Vec<Bytes>,
}

impl TimelockOperation {
    /// A batch (`scheduleBatch`/`executeBatch`): what proposals use, so one id covers every call.
    pub fn batch(
        timelock: Address,
        calls: Vec<Call>,
        predecessor: Bytes32,
        salt: Bytes32,
        delay: u64,
    ) -> Self {
        TimelockOperation {
            timelock,
            calls,
            predecessor,
            salt,
            delay,
            single: false,
        }
    }

    fn columns(&self) -> Columns {
        Columns {
            targets: self
                .calls
                .iter()
                .map(|c| AlloyAddress::from(c.to))
                .collect(),
            values: self.calls.iter().map(|c| c.value).collect(),
            payloads: self
                .calls
                .iter()
                .map(|c| Bytes::from(c.data.clone()))
                .collect(),
        }
    }

    /// The single call of a `schedule`d operation.
    fn only_call(&self) -> Option<&Call> {
        match (self.single, self.calls.as_slice()) {
            (true, [call]) => Some(call),
            _ => None,
        }
    }

    /// The operation id: `keccak256(abi.encode(targets, values, payloads, predecessor, salt))`
    /// (`hashOperationBatch`), or `keccak256(abi.encode(target, value, data, predecessor,
    /// salt))` (`hashOperation`) for a single call.
    pub fn id(&self) -> Bytes32 {
        let (predecessor, salt) = (B256::from(self.predecessor), B256::from(self.salt));
        let encoded = match self.only_call() {
            Some(call) => (
                AlloyAddress::from(call.to),
                call.value,
                Bytes::from(call.data.clone()),
                predecessor,
                salt,
            )
                .abi_encode_params(),
            None => {
                let c = self.columns();
                (c.targets, c.values, c.payloads, predecessor, salt).abi_encode_params()
            }
        };
        keccak256(encoded).0
    }

    /// The proposer's call: `schedule` or `scheduleBatch` on the timelock.
    pub fn schedule(&self) -> Call {
        let (predecessor, salt) = (B256::from(self.predecessor), B256::from(self.salt));
        let delay = U256::from(self.delay);
        let data = match self.only_call() {
            Some(call) => ITimelockController::scheduleCall {
                target: AlloyAddress::from(call.to),
                value: call.value,
                data: Bytes::from(call.data.clone()),
                predecessor,
                salt,
                delay,
            }
            .abi_encode(),
            None => {
                let c = self.columns();
                ITimelockController::scheduleBatchCall {
                    targets: c.targets,
                    values: c.values,
                    payloads: c.payloads,
                    predecessor,
                    salt,
                    delay,
                }
                .abi_encode()
            }
        };
        Call::new(self.timelock, data)
    }

    /// The executor's call once the delay has passed: `execute` or `executeBatch`.
    pub fn execute(&self) -> Call {
        let (predecessor, salt) = (B256::from(self.predecessor), B256::from(self.salt));
        let data = match self.only_call() {
            Some(call) => ITimelockController::executeCall {
                target: AlloyAddress::from(call.to),
                value: call.value,
                payload: Bytes::from(call.data.clone()),
                predecessor,
                salt,
            }
            .abi_encode(),
            None => {
                let c = self.columns();
                ITimelockController::executeBatchCall {
                    targets: c.targets,
                    values: c.values,
                    payloads: c.payloads,
                    predecessor,
                    salt,
                }
                .abi_encode()
            }
        };
        Call::new(self.timelock, data)
    }

    /// A canceller's call: `cancel(id)`.
    pub fn cancel(&self) -> Call {
        let data = ITimelockController::cancelCall {
            id: B256::from(self.id()),
        }
        .abi_encode();
        Call::new(self.timelock, data)
    }

    /// Decodes a `schedule` or `scheduleBatch` call sent to `timelock`; `None` for anything else
    /// (including a batch whose columns differ in length, which the contract refuses).
    pub fn decode_schedule(timelock: Address, data: &[u8]) -> Option<TimelockOperation> {
        if let Ok(call) = ITimelockController::scheduleCall::abi_decode_validate(data) {
            let calls = vec![Call {
                to: call.target.into_array(),
                value: call.value,
                data: call.data.to_vec(),
            }];
            let delay = u64::try_from(call.delay).ok()?;
            return Some(TimelockOperation {
                single: true,
                ..TimelockOperation::batch(timelock, calls, call.predecessor.0, call.salt.0, delay)
            });
        }
        let call = ITimelockController::scheduleBatchCall::abi_decode_validate(data).ok()?;
        let calls = calls_of(&call.targets, &call.values, &call.payloads)?;
        let delay = u64::try_from(call.delay).ok()?;
        Some(TimelockOperation::batch(
            timelock,
            calls,
            call.predecessor.0,
            call.salt.0,
            delay,
        ))
    }

    /// Decodes an `execute` or `executeBatch` call sent to `timelock` into the operation it
    /// executes (its delay, which execution does not carry, is 0).
    pub fn decode_execute(timelock: Address, data: &[u8]) -> Option<TimelockOperation> {
        if let Ok(call) = ITimelockController::executeCall::abi_decode_validate(data) {
            let calls = vec![Call {
                to: call.target.into_array(),
                value: call.value,
                data: call.payload.to_vec(),
            }];
            return Some(TimelockOperation {
                single: true,
                ..TimelockOperation::batch(timelock, calls, call.predecessor.0, call.salt.0, 0)
            });
        }
        let call = ITimelockController::executeBatchCall::abi_decode_validate(data).ok()?;
        let calls = calls_of(&call.targets, &call.values, &call.payloads)?;
        Some(TimelockOperation::batch(
            timelock,
            calls,
            call.predecessor.0,
            call.salt.0,
            0,
        ))
    }
}

/// A batch's calls from its three columns; `None` if their lengths differ.
fn calls_of(targets: &[AlloyAddress], values: &[U256], payloads: &[Bytes]) -> Option<Vec<Call>> {
    if targets.len() != values.len() || targets.len() != payloads.len() {
        return None;
    }
    let calls = targets
        .iter()
        .zip(values)
        .zip(payloads)
        .map(|((to, value), data)| Call {
            to: to.into_array(),
            value: *value,
            data: data.to_vec(),
        })
        .collect();
    Some(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operation() -> TimelockOperation {
        TimelockOperation::batch(
            [9; 20],
            vec![
                Call::new([1; 20], vec![0xaa, 0xbb]),
                Call::new([2; 20], vec![0xcc]),
            ],
            [0; 32],
            [5; 32],
            86_400,
        )
    }

    #[test]
    fn id_is_keccak_of_the_hash_operation_batch_arguments() {
        let op = operation();
        let c = op.columns();
        // hashOperationBatch's calldata after the selector is exactly abi.encode(...).
        let call = ITimelockController::hashOperationBatchCall {
            targets: c.targets,
            values: c.values,
            payloads: c.payloads,
            predecessor: B256::ZERO,
            salt: B256::repeat_byte(5),
        }
        .abi_encode();
        assert_eq!(op.id(), keccak256(&call[4..]).0);
        let single = TimelockOperation {
            calls: vec![Call::new([1; 20], vec![0xaa])],
            single: true,
            ..op.clone()
        };
        let call = ITimelockController::hashOperationCall {
            target: AlloyAddress::repeat_byte(1),
            value: U256::ZERO,
            data: Bytes::from(vec![0xaa]),
            predecessor: B256::ZERO,
            salt: B256::repeat_byte(5),
        }
        .abi_encode();
        assert_eq!(single.id(), keccak256(&call[4..]).0);
        // A batch of one is a different operation than the same call scheduled alone.
        assert_ne!(
            TimelockOperation {
                single: false,
                ..single.clone()
            }
            .id(),
            single.id()
        );
    }

    #[test]
    fn schedule_and_execute_calldata() {
        let op = operation();
        let schedule = op.schedule();
        assert_eq!(schedule.to, [9; 20]);
        assert_eq!(hex::encode(&schedule.data[..4]), "8f2a0bb0");
        assert_eq!(hex::encode(&op.execute().data[..4]), "e38335e5");
        assert_eq!(hex::encode(&op.cancel().data[..4]), "c4d252f5");
        assert_eq!(
            TimelockOperation::decode_schedule([9; 20], &schedule.data),
            Some(op.clone())
        );
        let single = TimelockOperation {
            calls: vec![Call::new([1; 20], vec![0xaa])],
            single: true,
            ..op
        };
        let schedule = single.schedule();
        assert_eq!(hex::encode(&schedule.data[..4]), "01d5062a");
        assert_eq!(hex::encode(&single.execute().data[..4]), "134008d3");
        assert_eq!(
            TimelockOperation::decode_schedule([9; 20], &schedule.data),
            Some(single)
        );
        assert_eq!(
            TimelockOperation::decode_schedule([9; 20], &[1, 2, 3, 4]),
            None
        );
    }
}
