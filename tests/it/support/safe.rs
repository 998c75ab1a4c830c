//! Governance contracts on anvil: Safe 1.4.1 (singleton, proxy factory, MultiSendCallOnly) and
//! OpenZeppelin's TimelockController, from `fixtures/contracts/artifacts` (compiled from their npm
//! packages, see fixtures/contracts/build.mjs). Safes are created through the factory with
//! anvil's accounts as owners, and execute transactions signed by those owners with EIP-712.

use alloy::primitives::{keccak256, Address, Bytes, B256, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::sol;
use alloy::sol_types::{SolCall, SolConstructor};
use tee_verifier::governance::safe::SafeTransaction;

use super::anvil::{artifact_bytecode, deploy, deployer, send, transact};

/// anvil's default accounts 0-2 and their well-known private keys. anvil signs typed data
/// only for account 0; the others sign with their keys here.
pub(crate) const OWNERS: [(&str, &str); 3] = [
    (
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    ),
    (
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    ),
    (
        "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
        "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    ),
];

pub(crate) fn owner(index: usize) -> Address {
    OWNERS[index].0.parse().expect("address")
}

/// An EIP-712 signature (r ‖ s ‖ v, v = 27 or 28) of `hash` by owner `index`'s key, after
/// checking the key is that owner's.
fn sign_with_key(index: usize, hash: B256) -> Vec<u8> {
    let key = k256::ecdsa::SigningKey::from_slice(&alloy::hex::decode(OWNERS[index].1).unwrap())
        .expect("private key");
    let public = key.verifying_key().to_encoded_point(false);
    let address = Address::from_slice(&keccak256(&public.as_bytes()[1..])[12..]);
    assert_eq!(address, owner(index), "key of owner {index}");
    let (signature, recovery) = key.sign_prehash_recoverable(&hash.0).expect("sign");
    let mut out = signature.to_bytes().to_vec();
    out.push(27 + recovery.to_byte());
    out
}

sol! {
    interface ISafe {
        function setup(address[] _owners, uint256 _threshold, address to, bytes data, address fallbackHandler, address paymentToken, uint256 payment, address paymentReceiver) external;
        function execTransaction(address to, uint256 value, bytes data, uint8 operation, uint256 safeTxGas, uint256 baseGas, uint256 gasPrice, address gasToken, address refundReceiver, bytes signatures) external payable returns (bool success);
        function nonce() external view returns (uint256);
        function getTransactionHash(address to, uint256 value, bytes data, uint8 operation, uint256 safeTxGas, uint256 baseGas, uint256 gasPrice, address gasToken, address refundReceiver, uint256 _nonce) external view returns (bytes32);
        function getThreshold() external view returns (uint256);
        event ExecutionSuccess(bytes32 indexed txHash, uint256 payment);
    }

    interface ISafeProxyFactory {
        function createProxyWithNonce(address _singleton, bytes initializer, uint256 saltNonce) external returns (address proxy);
        event ProxyCreation(address indexed proxy, address singleton);
    }

    contract TimelockController {
        constructor(uint256 minDelay, address[] proposers, address[] executors, address admin);
    }

    /// Single-step ownership of the fixture contracts (fixtures/contracts/src/ERC1967.sol).
    interface IOwned {
        function owner() external view returns (address);
        function transferOwnership(address newOwner) external;
    }
}

/// The Safe 1.4.1 contracts deployed on one node.
pub(crate) struct SafeContracts {
    pub(crate) singleton: Address,
    pub(crate) factory: Address,
    pub(crate) multi_send: Address,
}

impl SafeContracts {
    pub(crate) async fn deploy(provider: &RootProvider) -> SafeContracts {
        SafeContracts {
            singleton: deploy(provider, &artifact_bytecode("Safe"), &[]).await,
            factory: deploy(provider, &artifact_bytecode("SafeProxyFactory"), &[]).await,
            multi_send: deploy(provider, &artifact_bytecode("MultiSendCallOnly"), &[]).await,
        }
    }

    /// A Safe proxy owned by `owners` with `threshold`, created through the factory.
    pub(crate) async fn create_safe(
        &self,
        provider: &RootProvider,
        owners: &[Address],
        threshold: u64,
        salt_nonce: u64,
    ) -> SafeAccount {
        let setup = ISafe::setupCall {
            _owners: owners.to_vec(),
            _threshold: U256::from(threshold),
            to: Address::ZERO,
            data: Bytes::new(),
            fallbackHandler: Address::ZERO,
            paymentToken: Address::ZERO,
            payment: U256::ZERO,
            paymentReceiver: Address::ZERO,
        };
        let create = ISafeProxyFactory::createProxyWithNonceCall {
            _singleton: self.singleton,
            initializer: setup.abi_encode().into(),
            saltNonce: U256::from(salt_nonce),
        };
        let receipt = transact(provider, self.factory, create).await;
        let address = receipt
            .inner
            .logs()
            .iter()
            .find_map(|log| log.log_decode::<ISafeProxyFactory::ProxyCreation>().ok())
            .map(|event| event.inner.data.proxy)
            .expect("ProxyCreation in receipt");
        let safe = SafeAccount {
            address,
            owners: owners.to_vec(),
        };
        let threshold_read: U256 = safe.read(provider, ISafe::getThresholdCall {}).await;
        assert_eq!(threshold_read, U256::from(threshold));
        safe
    }
}

/// A deployed Safe and its owners.
pub(crate) struct SafeAccount {
    pub(crate) address: Address,
    pub(crate) owners: Vec<Address>,
}

impl SafeAccount {
    async fn read<C: SolCall>(&self, provider: &RootProvider, call: C) -> C::Return {
        let request = TransactionRequest::default()
            .to(self.address)
            .input(Bytes::from(call.abi_encode()).into());
        let bytes = provider.call(request).await.expect("eth_call on the Safe");
        C::abi_decode_returns(&bytes).expect("Safe return value")
    }

    /// The EIP-712 hash of `tx` at the Safe's current nonce, computed locally by
    /// `SafeTransaction::hash` and checked against the Safe's own `getTransactionHash`.
    pub(crate) async fn transaction_hash(
        &self,
        provider: &RootProvider,
        tx: &SafeTransaction,
    ) -> B256 {
        let nonce: U256 = self.read(provider, ISafe::nonceCall {}).await;
        let chain_id = provider.get_chain_id().await.expect("chain id");
        let local = B256::from(tx.hash(chain_id, self.address.into_array(), nonce));
        let onchain: B256 = self
            .read(
                provider,
                ISafe::getTransactionHashCall {
                    to: Address::from(tx.to),
                    value: tx.value,
                    data: Bytes::from(tx.data.clone()),
                    operation: tx.operation as u8,
                    safeTxGas: U256::ZERO,
                    baseGas: U256::ZERO,
                    gasPrice: U256::ZERO,
                    gasToken: Address::ZERO,
                    refundReceiver: Address::ZERO,
                    _nonce: nonce,
                },
            )
            .await;
        assert_eq!(
            local, onchain,
            "local Safe tx hash differs from getTransactionHash"
        );
        local
    }

    /// Executes `tx` with EIP-712 signatures of `signers` (indices into [`OWNERS`]; sorted by
    /// address as Safe requires), submitted by the deployer account. Owner 0 signs through
    /// anvil's `eth_signTypedData_v4` (as a wallet signs the typed data), the others with their
    /// keys over the hash. Panics if the Safe (or the call it makes) reverts.
    pub(crate) async fn execute(
        &self,
        provider: &RootProvider,
        tx: &SafeTransaction,
        signers: &[usize],
    ) -> TransactionReceipt {
        let nonce: U256 = self.read(provider, ISafe::nonceCall {}).await;
        let hash = self.transaction_hash(provider, tx).await;
        let chain_id = provider.get_chain_id().await.expect("chain id");
        let mut signers = signers.to_vec();
        signers.sort_by_key(|index| owner(*index));
        let mut signatures = Vec::new();
        for index in signers {
            assert!(
                self.owners.contains(&owner(index)),
                "owner {index} is no owner"
            );
            let signature = if index == 0 {
                let typed = typed_data(chain_id, self.address, tx, nonce);
                let signature: Bytes = provider
                    .client()
                    .request("eth_signTypedData_v4", (owner(0), typed))
                    .await
                    .expect("eth_signTypedData_v4");
                signature.to_vec()
            } else {
                sign_with_key(index, hash)
            };
            assert_eq!(signature.len(), 65);
            signatures.extend_from_slice(&signature);
        }
        let call = ISafe::execTransactionCall {
            to: Address::from(tx.to),
            value: tx.value,
            data: Bytes::from(tx.data.clone()),
            operation: tx.operation as u8,
            safeTxGas: U256::ZERO,
            baseGas: U256::ZERO,
            gasPrice: U256::ZERO,
            gasToken: Address::ZERO,
            refundReceiver: Address::ZERO,
            signatures: Bytes::from(signatures),
        };
        let receipt = send(provider, deployer(), Some(self.address), call.abi_encode()).await;
        let succeeded = receipt
            .inner
            .logs()
            .iter()
            .filter_map(|log| log.log_decode::<ISafe::ExecutionSuccess>().ok())
            .any(|event| event.inner.data.txHash == hash);
        assert!(succeeded, "no ExecutionSuccess for {hash}");
        receipt
    }
}

/// The EIP-712 typed data of a Safe transaction, as Safe{Wallet} asks a wallet to sign it.
fn typed_data(
    chain_id: u64,
    safe: Address,
    tx: &SafeTransaction,
    nonce: U256,
) -> serde_json::Value {
    let field = |name: &str, ty: &str| serde_json::json!({ "name": name, "type": ty });
    serde_json::json!({
        "types": {
            "EIP712Domain": [field("chainId", "uint256"), field("verifyingContract", "address")],
            "SafeTx": [
                field("to", "address"), field("value", "uint256"), field("data", "bytes"),
                field("operation", "uint8"), field("safeTxGas", "uint256"),
                field("baseGas", "uint256"), field("gasPrice", "uint256"),
                field("gasToken", "address"), field("refundReceiver", "address"),
                field("nonce", "uint256"),
            ],
        },
        "primaryType": "SafeTx",
        "domain": { "chainId": chain_id, "verifyingContract": safe.to_string() },
        "message": {
            "to": Address::from(tx.to).to_string(),
            "value": tx.value.to_string(),
            "data": alloy::hex::encode_prefixed(&tx.data),
            "operation": tx.operation as u8,
            "safeTxGas": "0", "baseGas": "0", "gasPrice": "0",
            "gasToken": Address::ZERO.to_string(),
            "refundReceiver": Address::ZERO.to_string(),
            "nonce": nonce.to_string(),
        },
    })
}

/// A TimelockController with `proposers` (who also cancel) and `executors`, administered by
/// itself only.
pub(crate) async fn deploy_timelock(
    provider: &RootProvider,
    min_delay: u64,
    proposers: &[Address],
    executors: &[Address],
) -> Address {
    let args = TimelockController::constructorCall {
        minDelay: U256::from(min_delay),
        proposers: proposers.to_vec(),
        executors: executors.to_vec(),
        admin: Address::ZERO,
    }
    .abi_encode();
    deploy(provider, &artifact_bytecode("TimelockController"), &args).await
}

/// Hands a fixture contract (KMS or app) to `new_owner`.
pub(crate) async fn transfer_ownership(
    provider: &RootProvider,
    contract: Address,
    new_owner: Address,
) {
    transact(
        provider,
        contract,
        IOwned::transferOwnershipCall {
            newOwner: new_owner,
        },
    )
    .await;
    let request = TransactionRequest::default()
        .to(contract)
        .input(Bytes::from(IOwned::ownerCall {}.abi_encode()).into());
    let bytes = provider.call(request).await.expect("owner()");
    assert_eq!(
        IOwned::ownerCall::abi_decode_returns(&bytes).expect("owner"),
        new_owner
    );
}

/// Advances the node's clock by `seconds` and mines a block at the new time.
pub(crate) async fn advance_time(provider: &RootProvider, seconds: u64) {
    let _: serde_json::Value = provider
        .client()
        .request("evm_increaseTime", (U256::from(seconds),))
        .await
        .expect("evm_increaseTime");
    super::anvil::mine(provider, 1).await;
}
