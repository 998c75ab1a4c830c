//! The service's settings, resolved: listen addresses, where the registry view comes from,
//! request limits, trust roots, logging. `tee-verifier serve` builds a [`Config`] from its flags,
//! environment and file (`crate::cli`); a program embedding the service builds one directly.

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
    #[default]
    Text,
    Json,
}

/// Where the registry view comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistrySource {
    /// The registry file built into the binary.
    Embedded,
    File {
        path: PathBuf,
        poll_interval: Duration,
    },
    Chain(ChainConfig),
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
    pub max_request_bytes: usize,
    pub max_concurrency: usize,
    pub verify_workers: usize,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
}

/// Root certificates to pin instead of the built-in ones (DER).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustRoots {
    pub nitro_der: Option<Vec<u8>>,
    pub intel_der: Option<Vec<u8>>,
}

/// Everything the service needs (the CLI resolves it from flags, environment, file and defaults).
#[derive(Clone, Debug)]
pub struct Config {
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub registry: RegistrySource,
    pub limits: Limits,
    pub trust_roots: TrustRoots,
    pub log_format: LogFormat,
    pub log_filter: String,
    /// FOR TESTS ONLY: verify evidence as of this unix time instead of the clock (archived samples
    /// verify; expired evidence would be accepted). Logged as a warning at start.
    pub dangerous_fixed_now: Option<u64>,
}

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
