//! The allowlist source options (`--registry FILE` / `--rpc-url URL --kms-contract ADDR …`),
//! shared by `serve` and the one-shot commands (`check`, `registry`, `verify` with a source), and
//! opening the source for a one-shot answer, with build progress on stderr.

use super::parse_duration;
use crate::encoding::parse_hex_exact;
use crate::registry::chain::{ChainConfig, ChainRegistry, Finality, ProgressFn, SyncProgress};
use crate::registry::file::FileRegistry;
use crate::registry::Registry;
use crate::service::config::RegistrySource;
use anyhow::{anyhow, bail};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How often a registry file is checked for changes, or the chain polled [default: 2s].
pub(super) const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Where the allowlist comes from: flattened into `serve` and every command that asks it.
#[derive(Args, Clone, Debug, Default)]
pub(super) struct RegistryArgs {
    /// Registry TOML file (the format of fixtures/registry/default.toml), re-read when it changes.
    #[arg(long, env = "TEE_VERIFIER_REGISTRY", value_name = "FILE")]
    pub registry: Option<PathBuf>,

    /// JSON-RPC endpoint of the chain that holds the DstackKms contract.
    #[arg(
        long,
        env = "TEE_VERIFIER_RPC_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub rpc_url: Option<String>,

    /// A WebSocket endpoint (ws:// or wss://) that pushes new heads (eth_subscribe newHeads)
    /// beside an http(s) --rpc-url, so changes apply at once instead of at the next poll; polling
    /// goes on and covers a dropped socket. A ws(s) --rpc-url pushes by itself.
    #[arg(
        long,
        env = "TEE_VERIFIER_WS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub ws_url: Option<String>,

    /// The DstackKms (proxy) contract address; required with --rpc-url.
    #[arg(long, env = "TEE_VERIFIER_KMS_CONTRACT", value_name = "ADDR")]
    pub kms_contract: Option<String>,

    /// The chain id the KMS lives on; a node that reports another chain is refused (answers stay
    /// UNAVAILABLE) [default: any].
    #[arg(long, env = "TEE_VERIFIER_CHAIN_ID", value_name = "ID")]
    pub chain_id: Option<u64>,

    /// Follow the chain this many blocks behind its head, or follow the node's `safe` or
    /// `finalized` block (the consensus layer's view of finality) [default: 6].
    #[arg(
        long,
        env = "TEE_VERIFIER_CONFIRMATIONS",
        value_name = "N|safe|finalized",
        value_parser = parse_confirmations
    )]
    pub confirmations: Option<Confirmations>,

    /// First block to read the contracts' events from (at or before the KMS's deployment) [default: 0].
    #[arg(long, env = "TEE_VERIFIER_FROM_BLOCK", value_name = "N")]
    pub from_block: Option<u64>,

    /// Code identity of an app implementation to trust as DstackApp, besides the KMS's own
    /// appImplementation (repeatable; comma-separated in the environment). The identity is
    /// keccak256 of the runtime code with the contract's own address zeroed (UUPS `__self`), so
    /// every deployment of one bytecode has the same one; `registry code-identity` prints it.
    #[arg(
        long = "app-code-hash",
        env = "TEE_VERIFIER_APP_CODE_HASH",
        value_name = "HEX",
        value_delimiter = ','
    )]
    pub app_code_hashes: Vec<String>,

    /// Code identity of an app proxy to trust as a plain EIP-1967 proxy (repeatable).
    #[arg(
        long = "proxy-code-hash",
        env = "TEE_VERIFIER_PROXY_CODE_HASH",
        value_name = "HEX",
        value_delimiter = ','
    )]
    pub proxy_code_hashes: Vec<String>,

    /// Code identity of a KMS implementation to trust as DstackKms, besides the one the KMS runs
    /// when the view is first built (logged at start). After an upgrade to any other code every
    /// decision is an eth_call and lookups are refused (repeatable).
    #[arg(
        long = "kms-code-hash",
        env = "TEE_VERIFIER_KMS_CODE_HASH",
        value_name = "HEX",
        value_delimiter = ','
    )]
    pub kms_code_hashes: Vec<String>,

    /// Answers turn UNAVAILABLE once the view has not been confirmed current for this long [default: 60s].
    #[arg(long, env = "TEE_VERIFIER_MAX_STALENESS", value_name = "DURATION", value_parser = parse_duration)]
    pub max_staleness: Option<Duration>,

    /// How often to poll the chain for new blocks, or the registry file for changes [default: 2s].
    #[arg(long, env = "TEE_VERIFIER_POLL_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub poll_interval: Option<Duration>,
}

/// How far behind the head the view stays: a depth, or a block tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Confirmations {
    /// Blocks behind the head.
    Depth(u64),
    /// The node's safe or finalized block.
    Tag(Finality),
}

/// `--confirmations`: a block count, `safe` or `finalized`.
pub(super) fn parse_confirmations(text: &str) -> Result<Confirmations, String> {
    match text {
        "safe" => Ok(Confirmations::Tag(Finality::Safe)),
        "finalized" => Ok(Confirmations::Tag(Finality::Finalized)),
        depth => depth.parse().map(Confirmations::Depth).map_err(|_| {
            format!("{depth:?} is neither a block count nor \"safe\" or \"finalized\"")
        }),
    }
}

/// The source the registry options select.
pub(super) fn registry_source(args: RegistryArgs) -> anyhow::Result<RegistrySource> {
    let poll_interval = args.poll_interval.unwrap_or(DEFAULT_POLL_INTERVAL);
    match (args.registry, args.rpc_url) {
        (Some(_), Some(_)) => bail!("--registry and --rpc-url are two sources: choose one"),
        (Some(path), None) => {
            if args.kms_contract.is_some() || args.chain_id.is_some() || args.ws_url.is_some() {
                bail!(
                    "--kms-contract, --chain-id and --ws-url belong to --rpc-url, not to --registry"
                );
            }
            Ok(RegistrySource::File {
                path,
                poll_interval,
            })
        }
        (None, Some(rpc_url)) => {
            let contract = args
                .kms_contract
                .ok_or_else(|| anyhow!("--rpc-url needs --kms-contract ADDR"))?;
            let mut chain =
                ChainConfig::new(rpc_url, fixed_hex::<20>("--kms-contract", &contract)?);
            chain.chain_id = args.chain_id;
            chain.ws_url = args.ws_url;
            match args.confirmations {
                Some(Confirmations::Depth(depth)) => chain.confirmations = depth,
                Some(Confirmations::Tag(finality)) => chain.finality = Some(finality),
                None => {}
            }
            if let Some(from_block) = args.from_block {
                chain.from_block = from_block;
            }
            if let Some(max_staleness) = args.max_staleness {
                chain.max_staleness = max_staleness;
            }
            chain.poll_interval = poll_interval;
            chain.app_code_hashes = args
                .app_code_hashes
                .iter()
                .map(|hash| fixed_hex::<32>("--app-code-hash", hash))
                .collect::<anyhow::Result<_>>()?;
            chain.proxy_code_hashes = args
                .proxy_code_hashes
                .iter()
                .map(|hash| fixed_hex::<32>("--proxy-code-hash", hash))
                .collect::<anyhow::Result<_>>()?;
            chain.kms_code_identities = args
                .kms_code_hashes
                .iter()
                .map(|hash| fixed_hex::<32>("--kms-code-hash", hash))
                .collect::<anyhow::Result<_>>()?;
            Ok(RegistrySource::Chain(Box::new(chain)))
        }
        (None, None) => {
            if args.kms_contract.is_some() || args.chain_id.is_some() || args.ws_url.is_some() {
                bail!("--kms-contract, --chain-id and --ws-url need --rpc-url URL");
            }
            Ok(RegistrySource::Embedded)
        }
    }
}

/// Exact-width hex (an address or hash given by an operator: a short value is a typo).
fn fixed_hex<const N: usize>(what: &str, text: &str) -> anyhow::Result<[u8; N]> {
    parse_hex_exact(text).map_err(|e| anyhow!("{what}: {e}"))
}

/// An opened registry, with the runtime its chain requests (if any) run on.
pub(super) struct OpenRegistry {
    pub registry: Arc<dyn Registry>,
    pub runtime: tokio::runtime::Runtime,
}

/// Whether the options name a source (flags or `TEE_VERIFIER_*` variables).
pub(super) fn is_configured(args: &RegistryArgs) -> bool {
    args.registry.is_some() || args.rpc_url.is_some()
}

/// Opens the source the options name. Errors are usage or availability errors (exit 2).
pub(super) fn open(args: &RegistryArgs) -> anyhow::Result<OpenRegistry> {
    use anyhow::Context as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let registry: Arc<dyn Registry> = match registry_source(args.clone())? {
        // One-shot answers name their source: the embedded default (empty) would only deny.
        RegistrySource::Embedded => anyhow::bail!(
            "name a registry source: --registry FILE, or --rpc-url URL --kms-contract ADDR"
        ),
        RegistrySource::File { path, .. } => Arc::new(
            FileRegistry::open(&path).with_context(|| format!("opening {}", path.display()))?,
        ),
        RegistrySource::Chain(config) => {
            let progress: ProgressFn = Arc::new(|p: SyncProgress| {
                eprint!(
                    "\rbuilding the registry view: {:?} {}/{} (target block {})   ",
                    p.stage, p.done, p.total, p.target_block
                );
            });
            let registry = runtime
                .block_on(ChainRegistry::connect(*config, Some(progress)))
                .context("building the registry view from the chain")?;
            eprintln!();
            Arc::new(registry)
        }
    };
    Ok(OpenRegistry { registry, runtime })
}
