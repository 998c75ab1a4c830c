//! The ABI of the governance contracts: OpenZeppelin's TimelockController (v5; the same
//! signatures since v4.x), Safe 1.4.1's MultiSendCallOnly, and the EIP-712 `SafeTx` struct Safe
//! signs.

use alloy::sol;

sol! {
    /// OpenZeppelin TimelockController (contracts/governance/TimelockController.sol).
    interface ITimelockController {
        function schedule(address target, uint256 value, bytes data, bytes32 predecessor, bytes32 salt, uint256 delay) external;
        function scheduleBatch(address[] targets, uint256[] values, bytes[] payloads, bytes32 predecessor, bytes32 salt, uint256 delay) external;
        function execute(address target, uint256 value, bytes payload, bytes32 predecessor, bytes32 salt) external payable;
        function executeBatch(address[] targets, uint256[] values, bytes[] payloads, bytes32 predecessor, bytes32 salt) external payable;
        function cancel(bytes32 id) external;
        function hashOperation(address target, uint256 value, bytes data, bytes32 predecessor, bytes32 salt) external pure returns (bytes32);
        function hashOperationBatch(address[] targets, uint256[] values, bytes[] payloads, bytes32 predecessor, bytes32 salt) external pure returns (bytes32);
        /// 0: unset, 1: done, else the unix time the operation becomes ready.
        function getTimestamp(bytes32 id) external view returns (uint256);
        function getMinDelay() external view returns (uint256);

        event CallScheduled(bytes32 indexed id, uint256 indexed index, address target, uint256 value, bytes data, bytes32 predecessor, uint256 delay);
        event CallExecuted(bytes32 indexed id, uint256 indexed index, address target, uint256 value, bytes data);
        /// Emitted beside CallScheduled when the salt is not zero.
        event CallSalt(bytes32 indexed id, bytes32 salt);
        event Cancelled(bytes32 indexed id);
        event MinDelayChange(uint256 oldDuration, uint256 newDuration);
    }

    /// Safe's MultiSendCallOnly (contracts/libraries/MultiSendCallOnly.sol).
    interface IMultiSend {
        function multiSend(bytes transactions) external payable;
    }

    /// The struct a Safe owner signs (EIP-712, Safe ≥ 1.3.0).
    struct SafeTx {
        address to;
        uint256 value;
        bytes data;
        uint8 operation;
        uint256 safeTxGas;
        uint256 baseGas;
        uint256 gasPrice;
        address gasToken;
        address refundReceiver;
        uint256 nonce;
    }
}

/// `TimelockController.getTimestamp` of an executed operation.
pub const DONE_TIMESTAMP: u64 = 1;
