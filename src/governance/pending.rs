//! Allowlist changes waiting in a TimelockController, as the registry view reports them and
//! `registry pending` prints them: `{"operation_id","target","function","args","eta","state"}`.

use serde::Serialize;

use super::call::AllowlistCall;
use crate::encoding::to_0x_hex;
use crate::registry::view::{Address, Bytes32};

/// Where an operation stands, as of the view's block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingState {
    /// Scheduled; the ETA is after the view block's timestamp.
    Waiting,
    /// Scheduled and executable now.
    Ready,
    /// Executed: the change has happened.
    Executed,
    /// Cancelled: the change will not happen.
    Cancelled,
}

impl PendingState {
    /// The state of a scheduled, not yet executed or cancelled operation at `timestamp`, as
    /// `getOperationState` gives it (ready once the block time reaches the ETA).
    pub fn scheduled_at(eta: u64, timestamp: u64) -> PendingState {
        if eta > timestamp {
            PendingState::Waiting
        } else {
            PendingState::Ready
        }
    }

    /// Waiting or ready: the change has not happened and still may.
    pub fn is_pending(self) -> bool {
        matches!(self, PendingState::Waiting | PendingState::Ready)
    }
}

/// One allowlist call of a timelock operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingChange {
    /// The TimelockController holding the operation.
    pub timelock: Address,
    /// The operation's id (`hashOperation` or `hashOperationBatch`).
    pub operation_id: Bytes32,
    /// The call's index in its operation.
    pub index: u64,
    /// The allowlist call the operation makes.
    pub call: AllowlistCall,
    /// Unix time from which the operation can execute.
    pub eta: u64,
    /// Where the operation stands.
    pub state: PendingState,
    /// The block that scheduled it.
    pub scheduled_block: u64,
    /// The block that executed or cancelled it.
    pub settled_block: Option<u64>,
}

/// A pending change as `registry pending` prints it; addresses and values are 0x-hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PendingJson {
    /// The operation's id.
    pub operation_id: String,
    /// The TimelockController.
    pub timelock: String,
    /// The contract the call changes.
    pub target: String,
    /// The function's signature (`addOsImageHash(bytes32)`).
    pub function: &'static str,
    /// Its arguments.
    pub args: Vec<String>,
    /// Unix time from which the operation can execute.
    pub eta: u64,
    /// Where the operation stands.
    pub state: PendingState,
}

impl PendingChange {
    /// The change as `registry pending` prints it.
    pub fn json(&self) -> PendingJson {
        PendingJson {
            operation_id: to_0x_hex(&self.operation_id),
            timelock: to_0x_hex(&self.timelock),
            target: to_0x_hex(&self.call.contract),
            function: self.call.function.signature(),
            args: vec![to_0x_hex(&self.call.value)],
            eta: self.eta,
            state: self.state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::call::Function;
    use super::*;

    #[test]
    fn ready_from_the_eta_on() {
        assert_eq!(PendingState::scheduled_at(100, 99), PendingState::Waiting);
        assert_eq!(PendingState::scheduled_at(100, 100), PendingState::Ready);
        assert!(PendingState::Ready.is_pending());
        assert!(!PendingState::Cancelled.is_pending());
        let change = PendingChange {
            timelock: [3; 20],
            operation_id: [1; 32],
            index: 0,
            call: AllowlistCall {
                contract: [2; 20],
                function: Function::AddOsImageHash,
                value: [4; 32],
            },
            eta: 100,
            state: PendingState::Waiting,
            scheduled_block: 7,
            settled_block: None,
        };
        let json = serde_json::to_value(change.json()).unwrap();
        assert_eq!(json["state"], "waiting");
        assert_eq!(json["function"], "addOsImageHash(bytes32)");
        assert_eq!(json["target"], to_0x_hex(&[2; 20]));
        assert_eq!(json["eta"], 100);
    }
}
