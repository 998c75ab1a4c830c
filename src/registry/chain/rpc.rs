//! The JSON-RPC calls the chain source makes, with errors mapped to `RegistryError` and a revert
//! told apart from a failure (a revert is the contract's answer; a failure is no answer). Reads
//! at a block hash require it to be canonical (EIP-1898 `requireCanonical`): state of a block
//! reorged out between polls is an error, never an answer.

use std::time::Duration;

use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::{Filter, Log, TransactionRequest};
use alloy::transports::http::reqwest;
use alloy::transports::{RpcError, TransportErrorKind};

use crate::registry::RegistryError;

/// A contract call's outcome.
pub(crate) enum CallOutcome {
    Returned(Bytes),
    Reverted(String),
}

#[derive(Clone, Debug)]
pub(crate) struct Rpc {
    provider: RootProvider,
}

fn rpc_error(call: &'static str, error: RpcError<TransportErrorKind>) -> RegistryError {
    RegistryError::Rpc {
        call,
        message: error.to_string(),
    }
}

/// Why a page of logs came back without logs.
pub(crate) enum LogsError {
    /// The provider refuses the page as too large: split it.
    PageTooLarge(String),
    /// Anything else.
    Failed(RegistryError),
}

/// The spellings providers use to refuse a log query as too large (geth, erigon, Alchemy,
/// Infura, QuickNode, Ankr, publicnode and others): too many results, too wide a block range,
/// or too big a response.
fn is_page_too_large(error: &RpcError<TransportErrorKind>) -> bool {
    let Some(payload) = error.as_error_resp() else {
        return false;
    };
    let message = payload.message.to_ascii_lowercase();
    [
        "too many",
        "more than",
        "limit",
        "exceed",
        "block range",
        "range is too",
        "too large",
        "response size",
        "query timeout",
    ]
    .iter()
    .any(|spelling| message.contains(spelling))
}

fn is_revert(error: &RpcError<TransportErrorKind>) -> bool {
    error
        .as_error_resp()
        .is_some_and(|payload| payload.message.to_ascii_lowercase().contains("revert"))
}

impl Rpc {
    pub(crate) fn connect(url: &str, request_timeout: Duration) -> Result<Self, RegistryError> {
        let url: reqwest::Url = url
            .parse()
            .map_err(|e| RegistryError::InvalidConfig(format!("rpc_url {url:?}: {e}")))?;
        let client = reqwest::Client::builder()
            .timeout(request_timeout)
            .build()
            .map_err(|e| RegistryError::InvalidConfig(format!("http client: {e}")))?;
        let provider = RootProvider::new(RpcClient::new_http_with_client(client, url));
        Ok(Rpc { provider })
    }

    pub(crate) async fn chain_id(&self) -> Result<u64, RegistryError> {
        self.provider
            .get_chain_id()
            .await
            .map_err(|e| rpc_error("eth_chainId", e))
    }

    pub(crate) async fn block_number(&self) -> Result<u64, RegistryError> {
        self.provider
            .get_block_number()
            .await
            .map_err(|e| rpc_error("eth_blockNumber", e))
    }

    /// The number of the node's `safe` or `finalized` block.
    pub(crate) async fn tagged_block_number(
        &self,
        finality: super::Finality,
    ) -> Result<u64, RegistryError> {
        let tag = match finality {
            super::Finality::Safe => BlockNumberOrTag::Safe,
            super::Finality::Finalized => BlockNumberOrTag::Finalized,
        };
        let header = self
            .provider
            .get_header_by_number(tag)
            .await
            .map_err(|e| rpc_error("eth_getBlockByNumber", e))?;
        header.map(|h| h.number).ok_or_else(|| RegistryError::Rpc {
            call: "eth_getBlockByNumber",
            message: format!("the node has no {} block", finality.as_str()),
        })
    }

    /// The hash of block `number`, or `None` if the node has no such block.
    pub(crate) async fn block_hash(&self, number: u64) -> Result<Option<B256>, RegistryError> {
        let header = self
            .provider
            .get_header_by_number(number.into())
            .await
            .map_err(|e| rpc_error("eth_getBlockByNumber", e))?;
        Ok(header.map(|h| h.hash))
    }

    /// The timestamp of block `hash`.
    pub(crate) async fn block_timestamp(&self, hash: B256) -> Result<u64, RegistryError> {
        let header = self
            .provider
            .get_header_by_hash(hash)
            .await
            .map_err(|e| rpc_error("eth_getBlockByHash", e))?;
        header
            .map(|h| h.timestamp)
            .ok_or_else(|| RegistryError::Rpc {
                call: "eth_getBlockByHash",
                message: format!("block {hash} not found"),
            })
    }

    /// `eth_getLogs`; a page the provider refuses as too large (too many results, too wide a
    /// range, a response over its size limit) is told apart so that it can be split.
    pub(crate) async fn logs(&self, filter: &Filter) -> Result<Vec<Log>, LogsError> {
        self.provider.get_logs(filter).await.map_err(|error| {
            if is_page_too_large(&error) {
                LogsError::PageTooLarge(error.to_string())
            } else {
                LogsError::Failed(rpc_error("eth_getLogs", error))
            }
        })
    }

    pub(crate) async fn call(
        &self,
        to: Address,
        input: Vec<u8>,
        at: B256,
    ) -> Result<CallOutcome, RegistryError> {
        let request = TransactionRequest::default()
            .to(to)
            .input(Bytes::from(input).into());
        match self
            .provider
            .call(request)
            .block(BlockId::hash_canonical(at))
            .await
        {
            Ok(bytes) => Ok(CallOutcome::Returned(bytes)),
            Err(e) if is_revert(&e) => Ok(CallOutcome::Reverted(e.to_string())),
            Err(e) => Err(rpc_error("eth_call", e)),
        }
    }

    /// The [code identity](super::identity::code_identity) of the code at `address`, or `None`
    /// when there is no code.
    pub(crate) async fn code_identity(
        &self,
        address: Address,
        at: B256,
    ) -> Result<Option<B256>, RegistryError> {
        let code = self
            .provider
            .get_code_at(address)
            .block_id(BlockId::hash_canonical(at))
            .await
            .map_err(|e| rpc_error("eth_getCode", e))?;
        Ok((!code.is_empty()).then(|| super::identity::code_identity(&code, address)))
    }

    pub(crate) async fn storage(
        &self,
        address: Address,
        slot: B256,
        at: B256,
    ) -> Result<B256, RegistryError> {
        let value = self
            .provider
            .get_storage_at(address, U256::from_be_bytes(slot.0))
            .block_id(BlockId::hash_canonical(at))
            .await
            .map_err(|e| rpc_error("eth_getStorageAt", e))?;
        Ok(B256::from(value))
    }
}
