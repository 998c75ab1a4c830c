//! The service's settings, resolved: listen addresses, where the registry view comes from,
//! request limits, trust roots, logging. `tee-verifier serve` builds a [`Config`] from its flags,
//! environment and file (`crate::cli`); a program embedding the service builds one directly.

use crate::collateral::{CollateralConfig, UrlAllowlist};
use crate::registry::chain::ChainConfig;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How the service logs (to stderr).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the registry view comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistrySource {
    /// The registry file built into the binary.
    Embedded,
    /// A registry TOML file, re-read when it changes.
    File {
        /// The file.
        path: PathBuf,
        /// How often its modification time and length are checked.
        poll_interval: Duration,
    },
    /// A DstackKms contract followed through JSON-RPC (boxed: it is most of the enum's size).
    Chain(Box<ChainConfig>),
}

impl RegistrySource {
    /// How the source is named in `RegistryHead.source` and logs (no credentials: the RPC URL is
    /// reduced to its scheme and host).
    pub fn describe(&self) -> String {
        match self {
            RegistrySource::Embedded => "embedded".to_owned(),
            RegistrySource::File { path, .. } => format!("file:{}", path.display()),
            RegistrySource::Chain(chain) => format!(
                "chain:{}:{}",
                redact_url(&chain.rpc_url),
                crate::encoding::to_0x_hex(&chain.kms_contract)
            ),
        }
    }
}

/// Request limits, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest gRPC message that carries evidence (`Verify`), in bytes.
    pub max_request_bytes: usize,
    /// Largest message of every other kind, in bytes: a webhook body, a boot info RPC
    /// (`IsAppAllowed`, `IsKmsAllowed`), a lookup, health, reflection.
    pub max_boot_info_bytes: usize,
    /// Requests handled at once; more wait for a slot within their deadline.
    pub max_concurrency: usize,
    /// Verifications run at once (CPU-bound; large evidence runs on blocking threads).
    pub verify_workers: usize,
    /// Per-request deadline; a shorter client deadline (grpc-timeout) wins.
    pub request_timeout: Duration,
    /// How long shutdown waits for in-flight requests before exiting anyway.
    pub shutdown_grace: Duration,
}

/// How connections are held, on both listeners. A connection that is not answering a request
/// is idle; idle connections are the ones closed to make room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once, per listener. At the limit (or when the process runs out of
    /// file descriptors) the longest-idle connection is closed for each new one; when none is
    /// idle, accepting waits for a connection to end.
    pub max_connections: usize,
    /// How long a new connection may take to send its first request's headers.
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Interval of HTTP/2 keepalive PINGs.
    pub keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
    /// HTTP/2 streams (requests) open at once on one connection.
    pub max_concurrent_streams: u32,
}

/// Root certificates to pin instead of the built-in ones (DER).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustRoots {
    /// AWS Nitro root to pin instead of `AWS_NitroEnclaves_Root-G1`.
    pub nitro_der: Option<Vec<u8>>,
    /// Intel SGX root to pin instead of [`crate::tdx::INTEL_SGX_ROOT_CA_DER`].
    pub intel_der: Option<Vec<u8>>,
    /// Google vTPM root to pin instead of [`crate::dstack::gcp_ak::GOOGLE_EKAK_CA_ROOT_DER`].
    pub gcp_der: Option<Vec<u8>>,
    /// The intermediates and CRLs GCP AK chains are built from (`--gcp-ca-bundle`).
    pub gcp_ca: crate::dstack::gcp_ak::GcpCaBundle,
}

/// Everything the service needs (the CLI resolves it from flags, environment, file and defaults).
#[derive(Clone, Debug)]
pub struct Config {
    /// Address of the gRPC listener (port 0 picks a free one).
    pub grpc_listen: SocketAddr,
    /// Address of the HTTP listener (the KMS webhook `/bootAuth/app` and `/bootAuth/kms`, health,
    /// metrics).
    pub http_listen: SocketAddr,
    /// Where the registry view comes from.
    pub registry: RegistrySource,
    /// Request limits.
    pub limits: Limits,
    /// Connection limits and timeouts.
    pub connections: ConnectionLimits,
    /// Roots to pin instead of the built-in ones.
    pub trust_roots: TrustRoots,
    /// Log line format.
    pub log_format: LogFormat,
    /// Which logs to print, in tracing's `EnvFilter` syntax (e.g. `info`).
    pub log_filter: String,
    /// How Intel collateral is fetched for TDX evidence that comes without it (inline collateral
    /// always wins); `None` never fetches, and such evidence is rejected as `collateral_missing`.
    /// Its `trust_anchor_der` is replaced by the service's Intel root.
    pub collateral_fetch: Option<CollateralConfig>,
    /// URL prefixes that CA certificates and CRLs named by certificates (AIA caIssuers, CRL
    /// distribution points) may be fetched from; every other URL is refused unrequested.
    pub ca_fetch_allow: UrlAllowlist,
    /// FOR TESTS ONLY: verify evidence as of this unix time instead of the clock (archived samples
    /// verify; expired evidence would be accepted). Logged as a warning at start.
    pub dangerous_fixed_now: Option<u64>,
    /// Bind TDX-lite OS images to the hardware unless a request says otherwise (dstack's default).
    pub allow_tdx_lite: bool,
    /// Verified results kept for byte-identical requests, within [`RESULT_CACHE_MAX_BYTES`]
    /// (`EvidenceVerifier::with_result_cache`); 0: off.
    pub result_cache_entries: usize,
}

/// The result cache's byte budget (its inputs plus 4 KiB per result).
pub const RESULT_CACHE_MAX_BYTES: usize = 64 << 20;

/// `scheme://host[:port]` of a URL: RPC URLs often carry an API key in their path or userinfo.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if scheme.is_empty() {
        host.to_owned()
    } else {
        format!("{scheme}://{host}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_urls_lose_credentials_when_described() {
        assert_eq!(
            redact_url("https://k:s@rpc.example/v3/KEY?x=1"),
            "https://rpc.example"
        );
        assert_eq!(redact_url("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
    }
}
