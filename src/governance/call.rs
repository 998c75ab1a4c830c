//! The allowlist's add/remove calls on DstackKms and DstackApp: their calldata (through the
//! registry's `sol!` bindings), their decoding, the registry entry each one changes, and their
//! `{"to","value","data","function","args"}` JSON.

use alloy::sol_types::SolCall;
use serde::Serialize;

use super::{Call, GovernanceError};
use crate::encoding::to_0x_hex;
use crate::registry::abi::{IDstackApp, IDstackKms};
use crate::registry::view::{Address, Bytes32};
use crate::registry::Entry;

/// Which contract a function lives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Contract {
    /// The DstackKms proxy.
    Kms,
    /// A DstackApp.
    App,
}

/// One onlyOwner add/remove function of DstackKms or DstackApp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Function {
    /// `DstackKms.addOsImageHash(bytes32)`.
    AddOsImageHash,
    /// `DstackKms.removeOsImageHash(bytes32)`.
    RemoveOsImageHash,
    /// `DstackKms.addKmsAggregatedMr(bytes32)`.
    AddKmsAggregatedMr,
    /// `DstackKms.removeKmsAggregatedMr(bytes32)`.
    RemoveKmsAggregatedMr,
    /// `DstackKms.addKmsDevice(bytes32)`.
    AddKmsDevice,
    /// `DstackKms.removeKmsDevice(bytes32)`.
    RemoveKmsDevice,
    /// `DstackApp.addComposeHash(bytes32)`.
    AddComposeHash,
    /// `DstackApp.removeComposeHash(bytes32)`.
    RemoveComposeHash,
    /// `DstackApp.addDevice(bytes32)`.
    AddDevice,
    /// `DstackApp.removeDevice(bytes32)`.
    RemoveDevice,
}

impl Function {
    /// Every function, KMS ones first.
    pub const ALL: [Function; 10] = [
        Function::AddOsImageHash,
        Function::RemoveOsImageHash,
        Function::AddKmsAggregatedMr,
        Function::RemoveKmsAggregatedMr,
        Function::AddKmsDevice,
        Function::RemoveKmsDevice,
        Function::AddComposeHash,
        Function::RemoveComposeHash,
        Function::AddDevice,
        Function::RemoveDevice,
    ];

    /// The Solidity signature, e.g. `addOsImageHash(bytes32)`.
    pub fn signature(self) -> &'static str {
        match self {
            Function::AddOsImageHash => IDstackKms::addOsImageHashCall::SIGNATURE,
            Function::RemoveOsImageHash => IDstackKms::removeOsImageHashCall::SIGNATURE,
            Function::AddKmsAggregatedMr => IDstackKms::addKmsAggregatedMrCall::SIGNATURE,
            Function::RemoveKmsAggregatedMr => IDstackKms::removeKmsAggregatedMrCall::SIGNATURE,
            Function::AddKmsDevice => IDstackKms::addKmsDeviceCall::SIGNATURE,
            Function::RemoveKmsDevice => IDstackKms::removeKmsDeviceCall::SIGNATURE,
            Function::AddComposeHash => IDstackApp::addComposeHashCall::SIGNATURE,
            Function::RemoveComposeHash => IDstackApp::removeComposeHashCall::SIGNATURE,
            Function::AddDevice => IDstackApp::addDeviceCall::SIGNATURE,
            Function::RemoveDevice => IDstackApp::removeDeviceCall::SIGNATURE,
        }
    }

    /// The function name, e.g. `addOsImageHash`.
    pub fn name(self) -> &'static str {
        let signature = self.signature();
        signature.split('(').next().unwrap_or(signature)
    }

    /// The 4-byte selector that starts its calldata.
    pub fn selector(self) -> [u8; 4] {
        match self {
            Function::AddOsImageHash => IDstackKms::addOsImageHashCall::SELECTOR,
            Function::RemoveOsImageHash => IDstackKms::removeOsImageHashCall::SELECTOR,
            Function::AddKmsAggregatedMr => IDstackKms::addKmsAggregatedMrCall::SELECTOR,
            Function::RemoveKmsAggregatedMr => IDstackKms::removeKmsAggregatedMrCall::SELECTOR,
            Function::AddKmsDevice => IDstackKms::addKmsDeviceCall::SELECTOR,
            Function::RemoveKmsDevice => IDstackKms::removeKmsDeviceCall::SELECTOR,
            Function::AddComposeHash => IDstackApp::addComposeHashCall::SELECTOR,
            Function::RemoveComposeHash => IDstackApp::removeComposeHashCall::SELECTOR,
            Function::AddDevice => IDstackApp::addDeviceCall::SELECTOR,
            Function::RemoveDevice => IDstackApp::removeDeviceCall::SELECTOR,
        }
    }

    /// The function a selector belongs to, if it is one of these.
    pub fn from_selector(selector: [u8; 4]) -> Option<Function> {
        Function::ALL.into_iter().find(|f| f.selector() == selector)
    }

    /// The parameter's name in the contract's ABI (the Transaction Builder keys values by it).
    pub fn parameter(self) -> &'static str {
        match self {
            Function::AddOsImageHash | Function::RemoveOsImageHash => "osImageHash",
            Function::AddKmsAggregatedMr | Function::RemoveKmsAggregatedMr => "mrAggregated",
            Function::AddKmsDevice
            | Function::RemoveKmsDevice
            | Function::AddDevice
            | Function::RemoveDevice => "deviceId",
            Function::AddComposeHash | Function::RemoveComposeHash => "composeHash",
        }
    }

    /// The contract the function lives on.
    pub fn contract(self) -> Contract {
        match self {
            Function::AddComposeHash
            | Function::RemoveComposeHash
            | Function::AddDevice
            | Function::RemoveDevice => Contract::App,
            _ => Contract::Kms,
        }
    }

    /// Whether the call adds (rather than removes) its value.
    pub fn adds(self) -> bool {
        matches!(
            self,
            Function::AddOsImageHash
                | Function::AddKmsAggregatedMr
                | Function::AddKmsDevice
                | Function::AddComposeHash
                | Function::AddDevice
        )
    }

    /// The public getter that tells whether a value is on this function's list, as `cast call`
    /// spells it (e.g. `allowedOsImages(bytes32)(bool)`).
    pub fn getter(self) -> &'static str {
        match self {
            Function::AddOsImageHash | Function::RemoveOsImageHash => {
                "allowedOsImages(bytes32)(bool)"
            }
            Function::AddKmsAggregatedMr | Function::RemoveKmsAggregatedMr => {
                "kmsAllowedAggregatedMrs(bytes32)(bool)"
            }
            Function::AddKmsDevice | Function::RemoveKmsDevice => {
                "kmsAllowedDeviceIds(bytes32)(bool)"
            }
            Function::AddComposeHash | Function::RemoveComposeHash => {
                "allowedComposeHashes(bytes32)(bool)"
            }
            Function::AddDevice | Function::RemoveDevice => "allowedDeviceIds(bytes32)(bool)",
        }
    }

    /// What the value is, for messages ("os image hash").
    pub fn value_name(self) -> &'static str {
        match self {
            Function::AddOsImageHash | Function::RemoveOsImageHash => "os image hash",
            Function::AddKmsAggregatedMr | Function::RemoveKmsAggregatedMr => "KMS aggregated MR",
            Function::AddKmsDevice | Function::RemoveKmsDevice => "KMS device id",
            Function::AddComposeHash | Function::RemoveComposeHash => "compose hash",
            Function::AddDevice | Function::RemoveDevice => "device id",
        }
    }
}

/// One add/remove call: `contract.function(value)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AllowlistCall {
    /// The DstackKms proxy, or the DstackApp for app functions.
    pub contract: Address,
    /// The function called.
    pub function: Function,
    /// Its one `bytes32` argument.
    pub value: Bytes32,
}

/// A call as `--format calls` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CallJson {
    /// The target, 0x-hex.
    pub to: String,
    /// Wei, as a decimal string (always "0": none of these functions is payable).
    pub value: String,
    /// The calldata, 0x-hex.
    pub data: String,
    /// The function's name (`addOsImageHash`).
    pub function: &'static str,
    /// Its arguments, 0x-hex.
    pub args: Vec<String>,
}

impl AllowlistCall {
    /// `contract.function(value)` with `value` as typed by a user: exactly 32 bytes of hex,
    /// neither zero nor the debug-enclave image hash (see [`super::value`]).
    pub fn parse(
        contract: Address,
        function: Function,
        value: &str,
    ) -> Result<AllowlistCall, GovernanceError> {
        Ok(AllowlistCall {
            contract,
            function,
            value: super::value::parse_measurement(function.value_name(), value)?,
        })
    }

    /// The calldata: selector, then the value.
    pub fn calldata(&self) -> Vec<u8> {
        let mut data = self.function.selector().to_vec();
        data.extend_from_slice(&self.value);
        data
    }

    /// The call as a raw transaction (value 0).
    pub fn call(&self) -> Call {
        Call::new(self.contract, self.calldata())
    }

    /// Decodes `data` sent to `contract` as the contract's own ABI decoder would: the selector
    /// of one of these functions, then (at least) the 32-byte argument.
    pub fn decode(contract: Address, data: &[u8]) -> Result<AllowlistCall, GovernanceError> {
        let (selector, rest) = data
            .split_first_chunk::<4>()
            .ok_or_else(|| GovernanceError::Undecodable("shorter than a selector".into()))?;
        let function = Function::from_selector(*selector).ok_or_else(|| {
            GovernanceError::Undecodable(format!(
                "selector {} is no allowlist add/remove function",
                to_0x_hex(selector)
            ))
        })?;
        let value = rest.first_chunk::<32>().ok_or_else(|| {
            GovernanceError::Undecodable(format!("{} without its argument", function.name()))
        })?;
        Ok(AllowlistCall {
            contract,
            function,
            value: *value,
        })
    }

    /// The registry entry the call adds or removes.
    pub fn entry(&self) -> Entry {
        let value = self.value;
        let app_id = self.contract;
        match self.function {
            Function::AddOsImageHash | Function::RemoveOsImageHash => Entry::OsImageHash(value),
            Function::AddKmsAggregatedMr | Function::RemoveKmsAggregatedMr => {
                Entry::KmsAggregatedMr(value)
            }
            Function::AddKmsDevice | Function::RemoveKmsDevice => Entry::KmsDeviceId(value),
            Function::AddComposeHash | Function::RemoveComposeHash => Entry::ComposeHash {
                app_id,
                compose_hash: value,
            },
            Function::AddDevice | Function::RemoveDevice => Entry::AppDevice {
                app_id,
                device_id: value,
            },
        }
    }

    /// The call as `--format calls` prints it.
    pub fn json(&self) -> CallJson {
        CallJson {
            to: to_0x_hex(&self.contract),
            value: "0".to_owned(),
            data: to_0x_hex(&self.calldata()),
            function: self.function.signature(),
            args: vec![to_0x_hex(&self.value)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{keccak256, B256};

    #[test]
    fn selectors_are_the_contracts() {
        // docs/dstack.md §1.2–1.3.
        let expected = [
            (Function::AddOsImageHash, "06a3ae96"),
            (Function::RemoveOsImageHash, "9425bac6"),
            (Function::AddKmsAggregatedMr, "3e32d346"),
            (Function::RemoveKmsAggregatedMr, "2adee48d"),
            (Function::AddKmsDevice, "4d5922a1"),
            (Function::RemoveKmsDevice, "9e6f3114"),
            (Function::AddComposeHash, "dfc77223"),
            (Function::RemoveComposeHash, "67b3f22c"),
            (Function::AddDevice, "2a819728"),
            (Function::RemoveDevice, "1d266200"),
        ];
        for (function, selector) in expected {
            assert_eq!(hex::encode(function.selector()), selector, "{function:?}");
            assert_eq!(
                keccak256(function.signature())[..4],
                function.selector(),
                "{function:?}"
            );
            assert_eq!(Function::from_selector(function.selector()), Some(function));
        }
        assert_eq!(Function::AddOsImageHash.name(), "addOsImageHash");
    }

    #[test]
    fn calldata_round_trips_and_matches_the_binding() {
        let value = [7; 32];
        let call = AllowlistCall {
            contract: [1; 20],
            function: Function::AddComposeHash,
            value,
        };
        let binding = IDstackApp::addComposeHashCall {
            composeHash: B256::from(value),
        }
        .abi_encode();
        assert_eq!(call.calldata(), binding);
        assert_eq!(AllowlistCall::decode([1; 20], &binding).unwrap(), call);
        assert_eq!(
            call.entry(),
            Entry::ComposeHash {
                app_id: [1; 20],
                compose_hash: value
            }
        );
        let json = serde_json::to_value(call.json()).unwrap();
        assert_eq!(json["function"], "addComposeHash(bytes32)");
        assert_eq!(json["value"], "0");
        assert_eq!(json["args"][0], to_0x_hex(&value));
        assert_eq!(json["data"], to_0x_hex(&binding));
    }

    #[test]
    fn parsing_a_typed_value_is_strict() {
        let call = AllowlistCall::parse([1; 20], Function::AddDevice, &"AB".repeat(32)).unwrap();
        assert_eq!(call.value, [0xab; 32]);
        let error = AllowlistCall::parse([1; 20], Function::AddDevice, "0xab").unwrap_err();
        assert_eq!(error.kind().as_str(), "hex_width");
        assert!(error.to_string().starts_with("device id"), "{error}");
    }

    #[test]
    fn decoding_refuses_other_calls_and_missing_arguments() {
        let short = [&Function::AddDevice.selector()[..], &[1; 31]].concat();
        for data in [&[0x06, 0xa3][..], &short, &[0xde, 0xad, 0xbe, 0xef, 0, 0]] {
            assert_eq!(
                AllowlistCall::decode([1; 20], data)
                    .unwrap_err()
                    .kind()
                    .as_str(),
                "undecodable_calldata"
            );
        }
    }
}
