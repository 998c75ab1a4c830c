//! `tee-verifier serve`'s command line: flags, `TEE_VERIFIER_*` environment variables and an
//! optional TOML file, merged into the service's [`Config`].
//!
//! One rule names every setting: the flag `--foo-bar` is `TEE_VERIFIER_FOO_BAR` in the environment
//! and `foo_bar` in the file. Precedence: flag, then environment, then file, then the built-in
//! default. The registry source is taken as a unit: if the flags or the environment name any
//! source setting, the file's source settings are ignored (a file's `rpc_url` never pairs with a
//! flag's `--kms-contract`).

use super::collateral::{resolve_serve, CollateralFileKeys, ServeCollateralArgs};
use super::gcp::GcpArgs;
use super::parse_duration;
use super::source::{parse_confirmations, registry_source, Confirmations, RegistryArgs};
use crate::service::config::{Config, ConnectionLimits, Limits, LogFormat, TrustRoots};
use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Serve the gRPC API (tee_verifier.v1.Verifier, health, reflection) and, over HTTP, dstack's
/// KMS auth webhook, /metrics and /healthz, answering from a cached view of the registry.
#[derive(Args, Clone, Debug, Default)]
#[command(after_long_help = SERVE_HELP)]
pub(super) struct ServeArgs {
    /// TOML file with any of the settings below (keys are the flag names with '_' for '-').
    #[arg(long, env = "TEE_VERIFIER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// gRPC listen address [default: 127.0.0.1:50051].
    #[arg(long, env = "TEE_VERIFIER_GRPC_LISTEN", value_name = "ADDR")]
    pub grpc_listen: Option<SocketAddr>,

    /// HTTP listen address (webhook, /metrics, /healthz) [default: 127.0.0.1:8000].
    #[arg(long, env = "TEE_VERIFIER_HTTP_LISTEN", value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,

    #[command(flatten)]
    pub registry: RegistryArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub connections: ConnectionArgs,

    /// Pin this root certificate (PEM or DER) for Nitro documents instead of the built-in AWS
    /// Nitro Enclaves Root G1.
    #[arg(long, env = "TEE_VERIFIER_NITRO_ROOT", value_name = "FILE")]
    pub nitro_root: Option<PathBuf>,

    /// Pin this root certificate (PEM or DER) for TDX collateral and PCK chains instead of the
    /// built-in Intel SGX Root CA.
    #[arg(long, env = "TEE_VERIFIER_INTEL_ROOT", value_name = "FILE")]
    pub intel_root: Option<PathBuf>,

    #[command(flatten, next_help_heading = "Google Cloud (dstack-gcp-tdx)")]
    pub gcp: GcpArgs,

    /// Log lines as text or as JSON objects (to stderr) [default: text].
    #[arg(
        long,
        env = "TEE_VERIFIER_LOG_FORMAT",
        value_enum,
        value_name = "FORMAT"
    )]
    pub log_format: Option<LogFormat>,

    /// Which logs to print, in tracing's EnvFilter syntax [default: info].
    #[arg(long, env = "TEE_VERIFIER_LOG_FILTER", value_name = "FILTER")]
    pub log_filter: Option<String>,

    /// FOR TESTS ONLY: verify evidence as of this unix time instead of the clock, so archived
    /// samples verify. Never in production: expired evidence would be accepted. Hidden from
    /// --help, and logged as a warning at start.
    #[arg(
        long,
        env = "TEE_VERIFIER_DANGEROUS_FIXED_NOW",
        hide = true,
        value_name = "UNIX_SECONDS"
    )]
    pub dangerous_fixed_now: Option<u64>,

    /// Bind TDX-lite OS images to the hardware (vm_config's checksum file and measurement
    /// recomputed into MRTD and RTMR0-2), as dstack's KMS does [default: true]. false: a lite
    /// attestation still verifies, but its os_image_hash stays an unbound claim. A request's
    /// allow_tdx_lite overrides it.
    #[arg(long, env = "TEE_VERIFIER_ALLOW_TDX_LITE", value_name = "BOOL")]
    pub allow_tdx_lite: Option<bool>,

    /// Verified results kept for byte-identical requests (a KMS sees the same RA-TLS certificate
    /// on every key request of a CVM): evidence, companions and expectations must match to the
    /// byte, and a hit is still refused outside the validity window of everything it relied on,
    /// judged at the request's time. At most 64 MiB in all; 0 turns it off [default: 1024].
    #[arg(long, env = "TEE_VERIFIER_RESULT_CACHE_ENTRIES", value_name = "N")]
    pub result_cache_entries: Option<usize>,

    // Last: the heading applies to every argument after it.
    #[command(flatten, next_help_heading = "TDX collateral")]
    pub collateral: ServeCollateralArgs,
}

/// The teaching part of `serve --help` (after the options, so it shows whatever the subcommand's
/// own summary line says).
const SERVE_HELP: &str = "\
With no arguments, serve listens on 127.0.0.1 (gRPC :50051, HTTP :8000) and answers from the
registry file built into the binary (empty allowlists: every boot is denied).

Every flag --foo-bar can also be set as TEE_VERIFIER_FOO_BAR in the environment or as foo_bar in
the --config TOML file; a flag beats the environment, which beats the file. Durations are written
as humantime reads them: 500ms, 10s, 1.5s, 2m, 1h 30m, 1d (a bare number is seconds).

Registry sources (pick one; the built-in file is the default):
  --registry FILE                     a registry TOML file, re-read when it changes
  --rpc-url URL --kms-contract ADDR   a DstackKms contract, followed through JSON-RPC
Trust roots default to the built-in AWS Nitro Enclaves Root G1 and Intel SGX Root CA (pinned by
their SHA-256); --nitro-root and --intel-root pin others (test PKIs).

While the view is stale (max-staleness) or still building, gRPC health is NOT_SERVING, gRPC
answers are UNAVAILABLE and the webhook answers isAllowed:false (fail closed).

TDX collateral: a quote sent without collateral gets it from Intel's PCS (or --pccs-url, e.g.
your PCCS), cached in memory per (FMSPC, PCK CA) for the TCB info and PCK CRL, once for the QE
identity and the root CA CRL, each until its nextUpdate (judged at the time the quote is
verified), refreshed in the background ahead of it, and with --collateral-cache DIR also on disk.
Fetched collateral is verified exactly as inline collateral, which always wins. If a fetch fails
and nothing valid is cached, Verify answers UNAVAILABLE (kind collateral_unavailable), never
verified; while a valid entry is cached, a failed refresh only logs a warning.
--no-collateral-fetch turns fetching off (TDX evidence must then carry its collateral).

Once listening, serve prints one line to stdout, `listening grpc=ADDR http=ADDR`, with the bound
addresses (useful with port 0). SIGTERM or SIGINT stop accepting, finish in-flight requests (up
to --shutdown-grace), and exit 0.

Examples:
  tee-verifier serve
  tee-verifier serve --registry allowlist.toml --http-listen 0.0.0.0:8000
  tee-verifier serve --rpc-url http://127.0.0.1:8545 --kms-contract 0x... --confirmations 2
  tee-verifier serve --pccs-url https://pccs.internal:8081 --collateral-cache /var/cache/tee-verifier
  TEE_VERIFIER_LOG_FORMAT=json tee-verifier serve --config /etc/tee-verifier.toml
  grpcurl -plaintext 127.0.0.1:50051 list
  curl -s 127.0.0.1:8000/bootAuth/app -d '{\"appId\":\"0x...\",\"composeHash\":\"0x...\"}'";

/// Bounds on what one request may cost.
#[derive(Args, Clone, Debug, Default)]
pub(super) struct LimitArgs {
    /// Largest Verify message (evidence) accepted [default: 16777216].
    #[arg(long, env = "TEE_VERIFIER_MAX_REQUEST_BYTES", value_name = "BYTES")]
    pub max_request_bytes: Option<usize>,

    /// Largest webhook body and largest message of every gRPC method but Verify (boot info RPCs,
    /// lookups, health) [default: 65536].
    #[arg(long, env = "TEE_VERIFIER_MAX_BOOT_INFO_BYTES", value_name = "BYTES")]
    pub max_boot_info_bytes: Option<usize>,

    /// Requests handled at once; more wait for a slot within their deadline [default: 1024].
    #[arg(long, env = "TEE_VERIFIER_MAX_CONCURRENCY", value_name = "N")]
    pub max_concurrency: Option<usize>,

    /// Verifications run at once (CPU-bound: evidence up to 64 KiB is verified on the async
    /// workers, larger evidence on blocking threads) [default: number of CPUs].
    #[arg(long, env = "TEE_VERIFIER_VERIFY_WORKERS", value_name = "N")]
    pub verify_workers: Option<usize>,

    /// Per-request deadline; a shorter gRPC client deadline (grpc-timeout) wins [default: 10s].
    #[arg(long, env = "TEE_VERIFIER_REQUEST_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub request_timeout: Option<Duration>,

    /// How long shutdown waits for in-flight requests before exiting anyway [default: 10s].
    #[arg(long, env = "TEE_VERIFIER_SHUTDOWN_GRACE", value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_grace: Option<Duration>,
}

/// How connections are held, on both listeners.
#[derive(Args, Clone, Debug, Default)]
pub(super) struct ConnectionArgs {
    /// Connections open at once per listener; at the limit, or out of file descriptors, the
    /// longest-idle connection is closed to make room [default: 512].
    #[arg(long, env = "TEE_VERIFIER_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// How long a new connection may take to send its first request's headers [default: 10s].
    #[arg(long, env = "TEE_VERIFIER_HEADER_READ_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub header_read_timeout: Option<Duration>,

    /// How long a connection may stay open with no request in flight [default: 60s].
    #[arg(long, env = "TEE_VERIFIER_IDLE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,

    /// Interval of HTTP/2 keepalive PINGs [default: 30s].
    #[arg(long, env = "TEE_VERIFIER_KEEPALIVE_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub keepalive_interval: Option<Duration>,

    /// How long a keepalive PING may go unanswered before the connection is closed [default: 10s].
    #[arg(long, env = "TEE_VERIFIER_KEEPALIVE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub keepalive_timeout: Option<Duration>,

    /// HTTP/2 streams (requests) open at once on one connection [default: 128].
    #[arg(long, env = "TEE_VERIFIER_MAX_CONCURRENT_STREAMS", value_name = "N")]
    pub max_concurrent_streams: Option<u32>,
}

/// The keys of the `--config` file: the flag names with '_' for '-'.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    grpc_listen: Option<SocketAddr>,
    http_listen: Option<SocketAddr>,
    registry: Option<PathBuf>,
    rpc_url: Option<String>,
    ws_url: Option<String>,
    kms_contract: Option<String>,
    chain_id: Option<u64>,
    confirmations: Option<FileConfirmations>,
    from_block: Option<u64>,
    #[serde(default)]
    app_code_hash: Vec<String>,
    #[serde(default)]
    proxy_code_hash: Vec<String>,
    #[serde(default)]
    kms_code_hash: Vec<String>,
    max_staleness: Option<String>,
    poll_interval: Option<String>,
    max_request_bytes: Option<usize>,
    max_boot_info_bytes: Option<usize>,
    max_connections: Option<usize>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    keepalive_interval: Option<String>,
    keepalive_timeout: Option<String>,
    max_concurrent_streams: Option<u32>,
    max_concurrency: Option<usize>,
    verify_workers: Option<usize>,
    request_timeout: Option<String>,
    shutdown_grace: Option<String>,
    log_format: Option<LogFormat>,
    log_filter: Option<String>,
    nitro_root: Option<PathBuf>,
    intel_root: Option<PathBuf>,
    gcp_root: Option<PathBuf>,
    gcp_ca_bundle: Option<PathBuf>,
    gcp_require_crl: Option<bool>,
    dangerous_fixed_now: Option<u64>,
    pccs_url: Option<String>,
    #[serde(default)]
    no_collateral_fetch: bool,
    collateral_update: Option<String>,
    collateral_cache: Option<PathBuf>,
    collateral_refresh_before: Option<String>,
    root_ca_crl_url: Option<String>,
    #[serde(default)]
    ca_fetch_allow: Vec<String>,
    allow_tdx_lite: Option<bool>,
    result_cache_entries: Option<usize>,
}

/// `confirmations` in the config file: a number, or "safe" / "finalized".
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileConfirmations {
    Depth(u64),
    Tag(String),
}

impl FileConfirmations {
    fn parse(&self) -> Result<Confirmations, String> {
        match self {
            FileConfirmations::Depth(depth) => Ok(Confirmations::Depth(*depth)),
            FileConfirmations::Tag(tag) => parse_confirmations(tag),
        }
    }
}

/// Largest `--config` file read.
const MAX_CONFIG_FILE_BYTES: u64 = 1 << 20;

const DEFAULT_GRPC_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    50051,
));
const DEFAULT_HTTP_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8000,
));
const DEFAULT_MAX_REQUEST_BYTES: usize = 16 << 20;
/// A boot info's JSON is a few hundred bytes; 128 advisory IDs of 256 bytes fit in 64 KiB.
const DEFAULT_MAX_BOOT_INFO_BYTES: usize = 64 << 10;
const DEFAULT_MAX_CONNECTIONS: usize = 512;
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 128;
const DEFAULT_MAX_CONCURRENCY: usize = 1024;
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const DEFAULT_RESULT_CACHE_ENTRIES: usize = 1024;

/// `tee-verifier serve`: resolves the settings, then serves until SIGTERM or SIGINT.
pub(super) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    crate::service::run(resolve(args)?)
}

/// Merges the layers into the service's settings. Errors are usage errors (exit 2).
fn resolve(args: ServeArgs) -> anyhow::Result<Config> {
    let (file, file_dir) = match &args.config {
        Some(path) => (
            read_config_file(path)?,
            path.parent().map(Path::to_path_buf),
        ),
        None => (FileConfig::default(), None),
    };
    // Paths in the file are relative to the file.
    let from_file = |path: PathBuf| match &file_dir {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path,
    };
    let file_duration = |key: &str, value: &Option<String>| -> anyhow::Result<Option<Duration>> {
        value
            .as_deref()
            .map(|text| parse_duration(text).map_err(|e| anyhow!("{key} in the config file: {e}")))
            .transpose()
    };

    let cli_names_source = args.registry.registry.is_some()
        || args.registry.rpc_url.is_some()
        || args.registry.kms_contract.is_some();
    let source_args = if cli_names_source {
        args.registry.clone()
    } else {
        RegistryArgs {
            registry: file.registry.clone().map(from_file),
            rpc_url: file.rpc_url.clone(),
            ws_url: args.registry.ws_url.clone().or_else(|| file.ws_url.clone()),
            kms_contract: file.kms_contract.clone(),
            chain_id: args.registry.chain_id.or(file.chain_id),
            confirmations: match args.registry.confirmations {
                Some(confirmations) => Some(confirmations),
                None => file
                    .confirmations
                    .as_ref()
                    .map(FileConfirmations::parse)
                    .transpose()
                    .map_err(|e| anyhow!("confirmations in the config file: {e}"))?,
            },
            from_block: args.registry.from_block.or(file.from_block),
            app_code_hashes: if args.registry.app_code_hashes.is_empty() {
                file.app_code_hash.clone()
            } else {
                args.registry.app_code_hashes.clone()
            },
            proxy_code_hashes: if args.registry.proxy_code_hashes.is_empty() {
                file.proxy_code_hash.clone()
            } else {
                args.registry.proxy_code_hashes.clone()
            },
            kms_code_hashes: if args.registry.kms_code_hashes.is_empty() {
                file.kms_code_hash.clone()
            } else {
                args.registry.kms_code_hashes.clone()
            },
            max_staleness: args.registry.max_staleness,
            poll_interval: args.registry.poll_interval,
        }
    };
    let max_staleness = match source_args.max_staleness {
        Some(value) => Some(value),
        None => file_duration("max_staleness", &file.max_staleness)?,
    };
    let poll_interval = match source_args.poll_interval {
        Some(value) => Some(value),
        None => file_duration("poll_interval", &file.poll_interval)?,
    };
    let registry = registry_source(RegistryArgs {
        max_staleness,
        poll_interval,
        ..source_args
    })?;

    let limits = Limits {
        max_request_bytes: args
            .limits
            .max_request_bytes
            .or(file.max_request_bytes)
            .unwrap_or(DEFAULT_MAX_REQUEST_BYTES),
        max_boot_info_bytes: args
            .limits
            .max_boot_info_bytes
            .or(file.max_boot_info_bytes)
            .unwrap_or(DEFAULT_MAX_BOOT_INFO_BYTES),
        max_concurrency: args
            .limits
            .max_concurrency
            .or(file.max_concurrency)
            .unwrap_or(DEFAULT_MAX_CONCURRENCY),
        verify_workers: match args.limits.verify_workers.or(file.verify_workers) {
            Some(workers) => workers,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        },
        request_timeout: match args.limits.request_timeout {
            Some(value) => value,
            None => file_duration("request_timeout", &file.request_timeout)?
                .unwrap_or(DEFAULT_REQUEST_TIMEOUT),
        },
        shutdown_grace: match args.limits.shutdown_grace {
            Some(value) => value,
            None => file_duration("shutdown_grace", &file.shutdown_grace)?
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
        },
    };
    if limits.max_request_bytes == 0
        || limits.max_boot_info_bytes == 0
        || limits.max_concurrency == 0
        || limits.verify_workers == 0
    {
        bail!("--max-request-bytes, --max-boot-info-bytes, --max-concurrency and --verify-workers must be at least 1");
    }
    let duration = |flag: Option<Duration>, key: &str, value: &Option<String>, default| {
        anyhow::Ok(match flag {
            Some(value) => value,
            None => file_duration(key, value)?.unwrap_or(default),
        })
    };
    let connections = ConnectionLimits {
        max_connections: args
            .connections
            .max_connections
            .or(file.max_connections)
            .unwrap_or(DEFAULT_MAX_CONNECTIONS),
        header_read_timeout: duration(
            args.connections.header_read_timeout,
            "header_read_timeout",
            &file.header_read_timeout,
            DEFAULT_HEADER_READ_TIMEOUT,
        )?,
        idle_timeout: duration(
            args.connections.idle_timeout,
            "idle_timeout",
            &file.idle_timeout,
            DEFAULT_IDLE_TIMEOUT,
        )?,
        keepalive_interval: duration(
            args.connections.keepalive_interval,
            "keepalive_interval",
            &file.keepalive_interval,
            DEFAULT_KEEPALIVE_INTERVAL,
        )?,
        keepalive_timeout: duration(
            args.connections.keepalive_timeout,
            "keepalive_timeout",
            &file.keepalive_timeout,
            DEFAULT_KEEPALIVE_TIMEOUT,
        )?,
        max_concurrent_streams: args
            .connections
            .max_concurrent_streams
            .or(file.max_concurrent_streams)
            .unwrap_or(DEFAULT_MAX_CONCURRENT_STREAMS),
    };
    if connections.max_connections == 0 || connections.max_concurrent_streams == 0 {
        bail!("--max-connections and --max-concurrent-streams must be at least 1");
    }
    if [
        connections.header_read_timeout,
        connections.idle_timeout,
        connections.keepalive_interval,
        connections.keepalive_timeout,
    ]
    .iter()
    .any(Duration::is_zero)
    {
        bail!("--header-read-timeout, --idle-timeout, --keepalive-interval and --keepalive-timeout must be positive");
    }
    if limits.request_timeout.is_zero() {
        bail!("--request-timeout must be positive");
    }

    let root = |flag: Option<PathBuf>, key: Option<PathBuf>, what: &str| {
        flag.or(key.map(from_file))
            .map(|path| {
                read_root_certificate(&path).with_context(|| format!("{what} {}", path.display()))
            })
            .transpose()
    };
    let gcp = GcpArgs {
        gcp_root: args.gcp.gcp_root.or(file.gcp_root.clone().map(from_file)),
        gcp_ca_bundle: args
            .gcp
            .gcp_ca_bundle
            .or(file.gcp_ca_bundle.clone().map(from_file)),
        gcp_require_crl: args.gcp.gcp_require_crl || file.gcp_require_crl.unwrap_or(false),
    };
    let trust_roots = TrustRoots {
        nitro_der: root(args.nitro_root, file.nitro_root.clone(), "--nitro-root")?,
        intel_der: root(args.intel_root, file.intel_root.clone(), "--intel-root")?,
        gcp_der: gcp.root_der()?,
        gcp_ca: gcp.bundle()?,
    };

    let (collateral_fetch, ca_fetch_allow) = resolve_serve(
        args.collateral,
        CollateralFileKeys {
            pccs_url: file.pccs_url.clone(),
            no_collateral_fetch: file.no_collateral_fetch,
            collateral_update: file.collateral_update.clone(),
            collateral_cache: file.collateral_cache.clone().map(from_file),
            collateral_refresh_before: file.collateral_refresh_before.clone(),
            root_ca_crl_url: file.root_ca_crl_url.clone(),
            ca_fetch_allow: file.ca_fetch_allow.clone(),
        },
    )?;

    Ok(Config {
        grpc_listen: args
            .grpc_listen
            .or(file.grpc_listen)
            .unwrap_or(DEFAULT_GRPC_LISTEN),
        http_listen: args
            .http_listen
            .or(file.http_listen)
            .unwrap_or(DEFAULT_HTTP_LISTEN),
        registry,
        limits,
        connections,
        trust_roots,
        log_format: args.log_format.or(file.log_format).unwrap_or_default(),
        log_filter: args
            .log_filter
            .or(file.log_filter)
            .unwrap_or_else(|| "info".to_owned()),
        dangerous_fixed_now: args.dangerous_fixed_now.or(file.dangerous_fixed_now),
        collateral_fetch,
        ca_fetch_allow,
        allow_tdx_lite: args.allow_tdx_lite.or(file.allow_tdx_lite).unwrap_or(true),
        result_cache_entries: args
            .result_cache_entries
            .or(file.result_cache_entries)
            .unwrap_or(DEFAULT_RESULT_CACHE_ENTRIES),
    })
}

fn read_config_file(path: &Path) -> anyhow::Result<FileConfig> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_CONFIG_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    if text.len() as u64 > MAX_CONFIG_FILE_BYTES {
        bail!(
            "{} is larger than {MAX_CONFIG_FILE_BYTES} bytes",
            path.display()
        );
    }
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Largest root certificate file read.
const MAX_ROOT_FILE_BYTES: u64 = 64 * 1024;

/// A root certificate from a PEM or DER file, as DER; it must parse as an X.509 certificate, so a
/// wrong file fails at start rather than rejecting every attestation.
pub(super) fn read_root_certificate(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_ROOT_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_ROOT_FILE_BYTES {
        bail!("larger than {MAX_ROOT_FILE_BYTES} bytes");
    }
    let der = if bytes.starts_with(b"-----BEGIN") {
        let (_, pem) =
            x509_parser::pem::parse_x509_pem(&bytes).map_err(|e| anyhow!("not PEM: {e}"))?;
        pem.contents
    } else {
        bytes
    };
    x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow!("not an X.509 certificate: {e}"))?;
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::super::source::DEFAULT_POLL_INTERVAL;
    use super::*;
    use crate::registry::chain::Finality;
    use crate::service::config::RegistrySource;
    use clap::{CommandFactory as _, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> anyhow::Result<Config> {
        let cli = Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))?;
        resolve(cli.serve)
    }

    #[test]
    fn no_arguments_serve_the_embedded_registry_on_localhost() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.grpc_listen, DEFAULT_GRPC_LISTEN);
        assert_eq!(config.http_listen, DEFAULT_HTTP_LISTEN);
        assert_eq!(config.registry, RegistrySource::Embedded);
        assert_eq!(config.dangerous_fixed_now, None);
        assert_eq!(config.limits.request_timeout, DEFAULT_REQUEST_TIMEOUT);
    }

    #[test]
    fn chain_flags_build_a_chain_config() {
        let config = parse(&[
            "--rpc-url",
            "http://user:key@127.0.0.1:8545/v2/secret",
            "--kms-contract",
            "0x5FbDB2315678afecb367f032d93F642f64180aa3",
            "--confirmations",
            "2",
            "--from-block",
            "7",
            "--app-code-hash",
            &format!("0x{}", "ab".repeat(32)),
            "--max-staleness",
            "30s",
            "--poll-interval",
            "500ms",
            "--chain-id",
            "31337",
        ])
        .unwrap();
        let RegistrySource::Chain(chain) = &config.registry else {
            panic!("expected a chain source, got {:?}", config.registry);
        };
        assert_eq!(chain.chain_id, Some(31337));
        assert_eq!(chain.confirmations, 2);
        assert_eq!(chain.from_block, 7);
        assert_eq!(chain.app_code_hashes, vec![[0xab; 32]]);
        assert_eq!(chain.max_staleness, Duration::from_secs(30));
        assert_eq!(chain.poll_interval, Duration::from_millis(500));
        assert_eq!(
            config.registry.describe(),
            "chain:http://127.0.0.1:8545:0x5fbdb2315678afecb367f032d93f642f64180aa3"
        );
    }

    #[test]
    fn inconsistent_sources_are_usage_errors() {
        let both = parse(&["--registry", "a.toml", "--rpc-url", "http://x"]).unwrap_err();
        assert!(both.to_string().contains("choose one"), "{both}");
        let no_contract = parse(&["--rpc-url", "http://x"]).unwrap_err();
        assert!(
            no_contract.to_string().contains("--kms-contract"),
            "{no_contract}"
        );
        let short = parse(&["--rpc-url", "http://x", "--kms-contract", "0x01"]).unwrap_err();
        assert!(short.to_string().contains("20 expected"), "{short}");
        let stray = parse(&["--kms-contract", &format!("0x{}", "11".repeat(20))]).unwrap_err();
        assert!(stray.to_string().contains("need --rpc-url"), "{stray}");
        let stray = parse(&["--chain-id", "1"]).unwrap_err();
        assert!(stray.to_string().contains("need --rpc-url"), "{stray}");
        let stray = parse(&["--registry", "a.toml", "--chain-id", "1"]).unwrap_err();
        assert!(stray.to_string().contains("belong to --rpc-url"), "{stray}");
    }

    #[test]
    fn config_file_fills_what_flags_leave_and_resolves_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(
            &path,
            "grpc_listen = \"127.0.0.1:7000\"\nhttp_listen = \"127.0.0.1:7001\"\n\
             registry = \"allow.toml\"\nrequest_timeout = \"3s\"\nlog_format = \"json\"\n",
        )
        .unwrap();
        let config = parse(&[
            "--config",
            path.to_str().unwrap(),
            "--grpc-listen",
            "127.0.0.1:9",
        ])
        .unwrap();
        assert_eq!(config.grpc_listen.port(), 9, "the flag beats the file");
        assert_eq!(config.http_listen.port(), 7001);
        assert_eq!(config.limits.request_timeout, Duration::from_secs(3));
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(
            config.registry,
            RegistrySource::File {
                path: dir.path().join("allow.toml"),
                poll_interval: DEFAULT_POLL_INTERVAL
            }
        );
        // A source named on the command line replaces the file's source as a whole.
        let config = parse(&["--config", path.to_str().unwrap(), "--registry", "/x.toml"]).unwrap();
        assert!(
            matches!(config.registry, RegistrySource::File { ref path, .. } if path == Path::new("/x.toml"))
        );
    }

    #[test]
    fn config_file_rejects_unknown_keys_and_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, "grpc_lisen = \"127.0.0.1:1\"\n").unwrap();
        let error = format!(
            "{:#}",
            parse(&["--config", path.to_str().unwrap()]).unwrap_err()
        );
        assert!(error.contains("grpc_lisen"), "{error}");
        std::fs::write(&path, "request_timeout = \"soon\"\n").unwrap();
        let error = format!(
            "{:#}",
            parse(&["--config", path.to_str().unwrap()]).unwrap_err()
        );
        assert!(error.contains("request_timeout"), "{error}");
    }

    #[test]
    fn confirmations_are_a_depth_or_a_block_tag_on_the_command_line_and_in_the_file() {
        let chain = |config: Config| match config.registry {
            RegistrySource::Chain(chain) => chain,
            other => panic!("expected a chain source, got {other:?}"),
        };
        let source = [
            "--rpc-url",
            "http://127.0.0.1:8545",
            "--kms-contract",
            "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        ];
        let finalized =
            chain(parse(&[&source[..], &["--confirmations", "finalized"]].concat()).unwrap());
        assert_eq!(finalized.finality, Some(Finality::Finalized));
        let error = parse(&[&source[..], &["--confirmations", "final"]].concat()).unwrap_err();
        assert!(format!("{error:#}").contains("safe"), "{error:#}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        let file = |confirmations: &str| {
            std::fs::write(
                &path,
                format!(
                    "rpc_url = \"http://127.0.0.1:8545\"\n\
                     kms_contract = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n\
                     confirmations = {confirmations}\n"
                ),
            )
            .unwrap();
            parse(&["--config", path.to_str().unwrap()])
        };
        assert_eq!(
            chain(file("\"safe\"").unwrap()).finality,
            Some(Finality::Safe)
        );
        let depth = chain(file("3").unwrap());
        assert_eq!((depth.confirmations, depth.finality), (3, None));
        let error = file("\"soon\"").unwrap_err();
        assert!(format!("{error:#}").contains("confirmations"), "{error:#}");
    }

    #[test]
    fn trust_roots_must_be_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/nitro/aws_nitro_root_g1.der");
        let der = std::fs::read(&samples).unwrap();
        let config = parse(&["--nitro-root", samples.to_str().unwrap()]).unwrap();
        assert_eq!(config.trust_roots.nitro_der, Some(der));
        assert_eq!(config.trust_roots.intel_der, None);
        let junk = dir.path().join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let error = format!(
            "{:#}",
            parse(&["--intel-root", junk.to_str().unwrap()]).unwrap_err()
        );
        assert!(error.contains("--intel-root"), "{error}");
        let missing = format!(
            "{:#}",
            parse(&["--nitro-root", "/nonexistent.pem"]).unwrap_err()
        );
        assert!(missing.contains("--nitro-root"), "{missing}");
    }

    #[test]
    fn collateral_settings_come_from_flags_or_the_file() {
        let fetch = parse(&[]).unwrap().collateral_fetch.expect("on by default");
        assert_eq!(fetch.base_url, crate::collateral::INTEL_PCS_URL);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(
            &path,
            "pccs_url = \"https://pccs.internal:8081\"\ncollateral_cache = \"cache\"\n\
             collateral_update = \"early\"\nca_fetch_allow = [\"http://ca.example/\"]\n",
        )
        .unwrap();
        let config = parse(&["--config", path.to_str().unwrap()]).unwrap();
        assert!(config.ca_fetch_allow.allows_str("http://ca.example/x.crt"));
        let fetch = config.collateral_fetch.unwrap();
        assert_eq!(fetch.base_url, "https://pccs.internal:8081");
        assert_eq!(
            fetch.cache_dir,
            Some(dir.path().join("cache")),
            "relative to the file"
        );
        assert_eq!(fetch.update, crate::collateral::TcbUpdate::Early);
        std::fs::write(&path, "no_collateral_fetch = true\n").unwrap();
        let config = parse(&["--config", path.to_str().unwrap()]).unwrap();
        assert!(config.collateral_fetch.is_none());
    }

    #[test]
    fn the_result_cache_is_on_unless_zero_from_the_flag_or_the_file() {
        assert_eq!(
            parse(&[]).unwrap().result_cache_entries,
            DEFAULT_RESULT_CACHE_ENTRIES
        );
        assert_eq!(
            parse(&["--result-cache-entries", "0"])
                .unwrap()
                .result_cache_entries,
            0
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, "result_cache_entries = 7\n").unwrap();
        let file = path.to_str().unwrap();
        assert_eq!(parse(&["--config", file]).unwrap().result_cache_entries, 7);
        assert_eq!(
            parse(&["--config", file, "--result-cache-entries", "9"])
                .unwrap()
                .result_cache_entries,
            9,
            "the flag wins"
        );
    }

    #[test]
    fn dangerous_fixed_now_is_off_unless_given() {
        assert_eq!(
            parse(&["--dangerous-fixed-now", "1705431295"])
                .unwrap()
                .dangerous_fixed_now,
            Some(1705431295)
        );
        assert_eq!(parse(&[]).unwrap().dangerous_fixed_now, None);
        // Named like every other setting: in the environment and in the file.
        let command = Cli::command();
        let argument = command
            .get_arguments()
            .find(|argument| argument.get_id() == "dangerous_fixed_now")
            .expect("the argument");
        assert_eq!(
            argument.get_env(),
            Some(std::ffi::OsStr::new("TEE_VERIFIER_DANGEROUS_FIXED_NOW"))
        );
        assert!(argument.is_hide_set(), "kept out of --help");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, "dangerous_fixed_now = 1705431295\n").unwrap();
        let config = parse(&["--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(config.dangerous_fixed_now, Some(1705431295));
    }
}
