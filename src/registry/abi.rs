//! The on-chain ABI the registry reads: the `AppBootInfo` tuple, the two decision calls, the
//! getters and the events of DstackKms / DstackApp, and the EIP-1967 implementation slot; and the
//! allowlist's add/remove calls, which `governance` proposes and decodes.

use alloy::primitives::{b256, Address, B256};
use alloy::sol;

use crate::boot_info::BootInfo;

sol! {
    /// `IAppAuth.AppBootInfo`; field order = ABI tuple order.
    #[derive(Debug, PartialEq, Eq)]
    struct AppBootInfo {
        address appId;
        bytes32 composeHash;
        address instanceId;
        bytes32 deviceId;
        bytes32 mrAggregated;
        bytes32 mrSystem;
        bytes32 osImageHash;
        string tcbStatus;
        string[] advisoryIds;
    }

    /// The calls and events of DstackKms that the registry uses.
    interface IDstackKms {
        function isAppAllowed(AppBootInfo bootInfo) external view returns (bool isAllowed, string reason);
        function isKmsAllowed(AppBootInfo bootInfo) external view returns (bool isAllowed, string reason);
        function gatewayAppId() external view returns (string);
        function appImplementation() external view returns (address);
        function owner() external view returns (address);

        // The allowlist's add/remove calls (onlyOwner), which governance proposes.
        function addOsImageHash(bytes32 osImageHash) external;
        function removeOsImageHash(bytes32 osImageHash) external;
        function addKmsAggregatedMr(bytes32 mrAggregated) external;
        function removeKmsAggregatedMr(bytes32 mrAggregated) external;
        function addKmsDevice(bytes32 deviceId) external;
        function removeKmsDevice(bytes32 deviceId) external;

        event AppRegistered(address appId);
        event AppDeployedViaFactory(address indexed appId, address indexed deployer);
        event OsImageHashAdded(bytes32 osImageHash);
        event OsImageHashRemoved(bytes32 osImageHash);
        event KmsAggregatedMrAdded(bytes32 mrAggregated);
        event KmsAggregatedMrRemoved(bytes32 mrAggregated);
        event KmsDeviceAdded(bytes32 deviceId);
        event KmsDeviceRemoved(bytes32 deviceId);
        event GatewayAppIdSet(string gatewayAppId);
        event AppImplementationSet(address implementation);
    }

    /// The getters and events of DstackApp that the registry uses.
    interface IDstackApp {
        function allowAnyDevice() external view returns (bool);
        function requireTcbUpToDate() external view returns (bool);

        function addComposeHash(bytes32 composeHash) external;
        function removeComposeHash(bytes32 composeHash) external;
        function addDevice(bytes32 deviceId) external;
        function removeDevice(bytes32 deviceId) external;

        event ComposeHashAdded(bytes32 composeHash);
        event ComposeHashRemoved(bytes32 composeHash);
        event DeviceAdded(bytes32 deviceId);
        event DeviceRemoved(bytes32 deviceId);
        event AllowAnyDeviceSet(bool allowAny);
        event RequireTcbUpToDateSet(bool requireUpToDate);
        event UpgradesDisabled();
        /// EIP-1967, emitted by the proxy on every implementation change.
        event Upgraded(address indexed implementation);
    }
}

/// `keccak256("eip1967.proxy.implementation") - 1`.
pub const EIP1967_IMPLEMENTATION_SLOT: B256 =
    b256!("360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc");

impl From<&BootInfo> for AppBootInfo {
    fn from(info: &BootInfo) -> Self {
        AppBootInfo {
            appId: Address::from(info.app_id),
            composeHash: B256::from(info.compose_hash),
            instanceId: Address::from(info.instance_id),
            deviceId: B256::from(info.device_id),
            mrAggregated: B256::from(info.mr_aggregated),
            mrSystem: B256::from(info.mr_system),
            osImageHash: B256::from(info.os_image_hash),
            tcbStatus: info.tcb_status.clone(),
            advisoryIds: info.advisory_ids.clone(),
        }
    }
}
