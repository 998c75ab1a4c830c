//! A Safe transaction: what Safe{Wallet} builds for a batch (one call as is, several through
//! MultiSendCallOnly by delegatecall) and the EIP-712 hash its owners sign, so signers can check
//! the hash their wallet shows.

use alloy::primitives::{Address as AlloyAddress, Bytes, U256};
use alloy::sol_types::{eip712_domain, SolStruct};

use super::abi::SafeTx;
use super::{multisend, Call};
use crate::registry::view::{Address, Bytes32};

/// `Enum.Operation` of Safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Operation {
    /// A plain call.
    Call = 0,
    /// A delegatecall (how a Safe runs MultiSend).
    DelegateCall = 1,
}

/// The transaction a Safe executes (`execTransaction`'s first four fields; gas fields are zero).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafeTransaction {
    /// The call's target (MultiSendCallOnly for a batch).
    pub to: Address,
    /// Wei sent.
    pub value: U256,
    /// The calldata.
    pub data: Vec<u8>,
    /// Call or delegatecall.
    pub operation: Operation,
}

impl SafeTransaction {
    /// The transaction Safe{Wallet} proposes for `calls`: a single call directly, several as
    /// `multiSend` on `multi_send` (MultiSendCallOnly), by delegatecall.
    pub fn for_calls(calls: &[Call], multi_send: Address) -> SafeTransaction {
        match calls {
            [call] => SafeTransaction {
                to: call.to,
                value: call.value,
                data: call.data.clone(),
                operation: Operation::Call,
            },
            _ => SafeTransaction::multi_send(calls, multi_send),
        }
    }

    /// `calls` through MultiSendCallOnly, even a single one.
    pub fn multi_send(calls: &[Call], multi_send: Address) -> SafeTransaction {
        SafeTransaction {
            to: multi_send,
            value: U256::ZERO,
            data: multisend::calldata(calls),
            operation: Operation::DelegateCall,
        }
    }

    /// The EIP-712 hash (`getTransactionHash`) the owners of `safe` sign, for nonce `nonce`, with
    /// no gas refund (safeTxGas, baseGas, gasPrice zero; no gas token or refund receiver), as
    /// Safe{Wallet} proposes it on Safe ≥ 1.3.0.
    pub fn hash(&self, chain_id: u64, safe: Address, nonce: U256) -> Bytes32 {
        let domain = eip712_domain! {
            chain_id: chain_id,
            verifying_contract: AlloyAddress::from(safe),
        };
        SafeTx {
            to: AlloyAddress::from(self.to),
            value: self.value,
            data: Bytes::from(self.data.clone()),
            operation: self.operation as u8,
            safeTxGas: U256::ZERO,
            baseGas: U256::ZERO,
            gasPrice: U256::ZERO,
            gasToken: AlloyAddress::ZERO,
            refundReceiver: AlloyAddress::ZERO,
            nonce,
        }
        .eip712_signing_hash(&domain)
        .0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::keccak256;

    #[test]
    fn type_hashes_are_safes() {
        // Safe 1.4.1's SAFE_TX_TYPEHASH and DOMAIN_SEPARATOR_TYPEHASH constants.
        let tx = SafeTx {
            to: AlloyAddress::ZERO,
            value: U256::ZERO,
            data: Bytes::new(),
            operation: 0,
            safeTxGas: U256::ZERO,
            baseGas: U256::ZERO,
            gasPrice: U256::ZERO,
            gasToken: AlloyAddress::ZERO,
            refundReceiver: AlloyAddress::ZERO,
            nonce: U256::ZERO,
        };
        assert_eq!(
            hex::encode(tx.eip712_type_hash()),
            "bb8310d486368db6bd6f849402fdd73ad53d316b5a4b2644ad6efe0f941286d8"
        );
        assert_eq!(
            hex::encode(keccak256(
                "EIP712Domain(uint256 chainId,address verifyingContract)"
            )),
            "47e79534a245952e8b16893a336b85a3d9ea9fa8c573f3d803afb92a79469218"
        );
    }

    #[test]
    fn one_call_goes_direct_several_through_multisend() {
        let one = [Call::new([1; 20], vec![1])];
        let direct = SafeTransaction::for_calls(&one, [7; 20]);
        assert_eq!((direct.to, direct.operation), ([1; 20], Operation::Call));
        let two = [one[0].clone(), Call::new([2; 20], vec![2])];
        let batched = SafeTransaction::for_calls(&two, [7; 20]);
        assert_eq!(
            (batched.to, batched.operation),
            ([7; 20], Operation::DelegateCall)
        );
        assert_eq!(multisend::decode(&batched.data).unwrap(), two);
        // The hash commits to the chain, the Safe and the nonce.
        let hash = batched.hash(1, [3; 20], U256::ZERO);
        assert_ne!(hash, batched.hash(2, [3; 20], U256::ZERO));
        assert_ne!(hash, batched.hash(1, [4; 20], U256::ZERO));
        assert_ne!(hash, batched.hash(1, [3; 20], U256::from(1)));
    }
}
