//! The JSON-RPC calls the chain source makes, with errors mapped to `RegistryError` and a revert
//! told apart from a failure (a revert is the contract's answer; a failure is no answer). Reads
//! at a block hash require it to be canonical (EIP-1898 `requireCanonical`): state of a block
//! reorged out between polls is an error, never an answer.

use std::future::IntoFuture;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::pubsub::Subscription;
use alloy::rpc::client::{BatchRequest, RpcClient, Waiter};
use alloy::rpc::types::{Filter, Header, Log, TransactionRequest};
use alloy::transports::http::reqwest;
use alloy::transports::ws::WsConnect;
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
    /// Bounds every request: reqwest's timeout covers HTTP, this covers WebSocket too.
    request_timeout: Duration,
}

/// Whether `url` is a WebSocket endpoint (`ws://` or `wss://`).
pub(crate) fn is_websocket(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("ws://") || lower.starts_with("wss://")
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
    /// An HTTP(S) or WebSocket (`ws://`, `wss://`) JSON-RPC client.
    pub(crate) async fn connect(
        url: &str,
        request_timeout: Duration,
    ) -> Result<Self, RegistryError> {
        let client = if is_websocket(url) {
            websocket_client(url, request_timeout, Reconnect::Always).await?
        } else {
            let parsed: reqwest::Url = url
                .parse()
                .map_err(|e| RegistryError::InvalidConfig(format!("rpc_url {url:?}: {e}")))?;
            let http = reqwest::Client::builder()
                .timeout(request_timeout)
                .build()
                .map_err(|e| RegistryError::InvalidConfig(format!("http client: {e}")))?;
            RpcClient::new_http_with_client(http, parsed)
        };
        Ok(Rpc {
            provider: RootProvider::new(client),
            request_timeout,
        })
    }

    /// Awaits one request within the request timeout.
    async fn bounded<T>(
        &self,
        call: &'static str,
        request: impl IntoFuture<Output = Result<T, RpcError<TransportErrorKind>>>,
    ) -> Result<Result<T, RpcError<TransportErrorKind>>, RegistryError> {
        tokio::time::timeout(self.request_timeout, request)
            .await
            .map_err(|_| RegistryError::Rpc {
                call,
                message: format!("no answer within {:?}", self.request_timeout),
            })
    }

    pub(crate) async fn chain_id(&self) -> Result<u64, RegistryError> {
        self.bounded("eth_chainId", self.provider.get_chain_id())
            .await?
            .map_err(|e| rpc_error("eth_chainId", e))
    }

    pub(crate) async fn block_number(&self) -> Result<u64, RegistryError> {
        self.bounded("eth_blockNumber", self.provider.get_block_number())
            .await?
            .map_err(|e| rpc_error("eth_blockNumber", e))
    }

    // Blocks are read with the standard eth_getBlockByNumber/Hash: alloy's header calls try the
    // non-standard eth_getHeaderByNumber first, and some nodes refuse that with an error other
    // than "method not found" (anvil over WebSocket), which defeats alloy's fallback.

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
            .bounded(
                "eth_getBlockByNumber",
                self.provider.get_block_by_number(tag),
            )
            .await?
            .map_err(|e| rpc_error("eth_getBlockByNumber", e))?;
        header
            .map(|block| block.header.number)
            .ok_or_else(|| RegistryError::Rpc {
                call: "eth_getBlockByNumber",
                message: format!("the node has no {} block", finality.as_str()),
            })
    }

    /// The hash of block `number`, or `None` if the node has no such block.
    pub(crate) async fn block_hash(&self, number: u64) -> Result<Option<B256>, RegistryError> {
        let header = self
            .bounded(
                "eth_getBlockByNumber",
                self.provider.get_block_by_number(number.into()),
            )
            .await?
            .map_err(|e| rpc_error("eth_getBlockByNumber", e))?;
        Ok(header.map(|block| block.header.hash))
    }

    /// The timestamp of block `hash`.
    pub(crate) async fn block_timestamp(&self, hash: B256) -> Result<u64, RegistryError> {
        let header = self
            .bounded("eth_getBlockByHash", self.provider.get_block_by_hash(hash))
            .await?
            .map_err(|e| rpc_error("eth_getBlockByHash", e))?;
        header
            .map(|block| block.header.timestamp)
            .ok_or_else(|| RegistryError::Rpc {
                call: "eth_getBlockByHash",
                message: format!("block {hash} not found"),
            })
    }

    /// `eth_getLogs`; a page the provider refuses as too large (too many results, too wide a
    /// range, a response over its size limit) is told apart so that it can be split.
    pub(crate) async fn logs(&self, filter: &Filter) -> Result<Vec<Log>, LogsError> {
        let answer = self
            .bounded("eth_getLogs", self.provider.get_logs(filter))
            .await
            .map_err(LogsError::Failed)?;
        answer.map_err(|error| {
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
        let answer = self
            .bounded(
                "eth_call",
                self.provider
                    .call(request)
                    .block(BlockId::hash_canonical(at)),
            )
            .await?;
        match answer {
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
            .bounded(
                "eth_getCode",
                self.provider
                    .get_code_at(address)
                    .block_id(BlockId::hash_canonical(at)),
            )
            .await?
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
            .bounded(
                "eth_getStorageAt",
                self.provider
                    .get_storage_at(address, U256::from_be_bytes(slot.0))
                    .block_id(BlockId::hash_canonical(at)),
            )
            .await?
            .map_err(|e| rpc_error("eth_getStorageAt", e))?;
        Ok(B256::from(value))
    }
}

/// Reads at one block sent as one JSON-RPC batch (one HTTP request, or one burst of WebSocket
/// frames), so that reading many apps costs a request per batch, not one per read. Each read
/// answers (or fails) on its own once [`ReadBatch::send`] has returned.
pub(crate) struct ReadBatch<'a> {
    batch: BatchRequest<'a>,
    at: BlockId,
    request_timeout: Duration,
}

/// One read of a [`ReadBatch`], answered once the batch is sent.
pub(crate) struct Answer<T> {
    call: &'static str,
    waiter: Waiter<T>,
}

impl Rpc {
    /// An empty batch of reads at block `at` (required canonical, as every read is).
    pub(crate) fn read_batch(&self, at: B256) -> ReadBatch<'_> {
        ReadBatch {
            batch: BatchRequest::new(self.provider.client()),
            at: BlockId::hash_canonical(at),
            request_timeout: self.request_timeout,
        }
    }
}

impl ReadBatch<'_> {
    /// `eth_getCode` of `address`.
    pub(crate) fn code(&mut self, address: Address) -> Result<Answer<Bytes>, RegistryError> {
        let call = "eth_getCode";
        let waiter = self
            .batch
            .add_call(call, &(address, self.at))
            .map_err(|e| rpc_error(call, e))?;
        Ok(Answer { call, waiter })
    }

    /// `eth_getStorageAt` of `slot` of `address`.
    pub(crate) fn storage(
        &mut self,
        address: Address,
        slot: B256,
    ) -> Result<Answer<U256>, RegistryError> {
        let call = "eth_getStorageAt";
        let waiter = self
            .batch
            .add_call(call, &(address, U256::from_be_bytes(slot.0), self.at))
            .map_err(|e| rpc_error(call, e))?;
        Ok(Answer { call, waiter })
    }

    /// `eth_call` of `input` on `to`.
    pub(crate) fn call(
        &mut self,
        to: Address,
        input: Vec<u8>,
    ) -> Result<Answer<Bytes>, RegistryError> {
        let request = TransactionRequest::default()
            .to(to)
            .input(Bytes::from(input).into());
        let call = "eth_call";
        let waiter = self
            .batch
            .add_call(call, &(request, self.at))
            .map_err(|e| rpc_error(call, e))?;
        Ok(Answer { call, waiter })
    }

    /// Sends the batch within the request timeout; its answers are then ready.
    pub(crate) async fn send(self) -> Result<(), RegistryError> {
        tokio::time::timeout(self.request_timeout, self.batch.send())
            .await
            .map_err(|_| RegistryError::Rpc {
                call: "batch",
                message: format!("no answer within {:?}", self.request_timeout),
            })?
            .map_err(|e| rpc_error("batch", e))
    }
}

impl Answer<Bytes> {
    /// The [code identity](super::identity::code_identity) of the code read (an
    /// [`ReadBatch::code`] answer) at `address`; `None` when there is no code.
    pub(crate) async fn code_identity(
        self,
        address: Address,
    ) -> Result<Option<B256>, RegistryError> {
        let code = self.waiter.await.map_err(|e| rpc_error(self.call, e))?;
        Ok((!code.is_empty()).then(|| super::identity::code_identity(&code, address)))
    }

    /// What an [`ReadBatch::call`] returned, a revert told apart from a failure.
    pub(crate) async fn outcome(self) -> Result<CallOutcome, RegistryError> {
        match self.waiter.await {
            Ok(bytes) => Ok(CallOutcome::Returned(bytes)),
            Err(e) if is_revert(&e) => Ok(CallOutcome::Reverted(e.to_string())),
            Err(e) => Err(rpc_error(self.call, e)),
        }
    }
}

impl Answer<U256> {
    /// The storage word read.
    pub(crate) async fn word(self) -> Result<B256, RegistryError> {
        let value = self.waiter.await.map_err(|e| rpc_error(self.call, e))?;
        Ok(B256::from(value))
    }
}

/// What a WebSocket client does when its socket drops.
enum Reconnect {
    /// Reconnects every second, for as long as it takes (the requests client; each request is
    /// bounded by the request timeout meanwhile).
    Always,
    /// Gives up, so that the loss is seen (the head subscription, which polling backs up).
    Never,
}

/// A WebSocket JSON-RPC client, connected within `timeout`.
async fn websocket_client(
    url: &str,
    timeout: Duration,
    reconnect: Reconnect,
) -> Result<RpcClient, RegistryError> {
    let connect = match reconnect {
        Reconnect::Always => WsConnect::new(url)
            .with_max_retries(u32::MAX)
            .with_retry_interval(Duration::from_secs(1)),
        Reconnect::Never => WsConnect::new(url).with_max_retries(0),
    };
    match tokio::time::timeout(timeout, RpcClient::builder().ws(connect)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(rpc_error("websocket connect", error)),
        Err(_) => Err(RegistryError::Rpc {
            call: "websocket connect",
            message: format!("no connection within {timeout:?}"),
        }),
    }
}

/// New chain heads pushed by `eth_subscribe("newHeads")` over a WebSocket.
pub(crate) struct Heads {
    subscription: Subscription<Header>,
    /// Keeps the connection the subscription lives on.
    _provider: RootProvider,
}

impl Heads {
    /// Connects to `url` (ws:// or wss://) and subscribes, within `timeout`.
    pub(crate) async fn subscribe(url: &str, timeout: Duration) -> Result<Heads, RegistryError> {
        let provider = RootProvider::new(websocket_client(url, timeout, Reconnect::Never).await?);
        let subscription = match tokio::time::timeout(timeout, provider.subscribe_blocks()).await {
            Ok(Ok(subscription)) => subscription,
            Ok(Err(error)) => return Err(rpc_error("eth_subscribe", error)),
            Err(_) => {
                return Err(RegistryError::Rpc {
                    call: "eth_subscribe",
                    message: format!("no answer within {timeout:?}"),
                })
            }
        };
        Ok(Heads {
            subscription,
            _provider: provider,
        })
    }

    /// Waits for the next head; `false` once the socket is gone.
    pub(crate) async fn next(&mut self) -> bool {
        loop {
            match self.subscription.recv().await {
                Ok(_) => return true,
                // Missed heads need no replay: the poll reads everything up to the newest.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return false,
            }
        }
    }
}
