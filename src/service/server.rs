//! Starting and stopping the service: listeners, the registry source, background tasks, and a
//! graceful shutdown that drains in-flight requests.

use super::collateral;
use super::config::{redact_url, Config, LogFormat, RegistrySource, TrustRoots};
use super::core::{Clock, Core};
use super::grpc::VerifierService;
use super::http::{self, SourceInfo};
use super::proto::{self, verifier_server::VerifierServer};
use super::{listener, message_limits, monitor};
use crate::collateral::{CaConfig, CaFetcher, CollateralConfig, CollateralFetcher, HttpLimits};
use crate::dstack::gcp_ak::GcpAkVerifier;
use crate::dstack::OsImagePolicy;
use crate::encoding::to_0x_hex;
use crate::error::ErrorKind;
use crate::evidence::EvidenceVerifier;
use crate::nitro::NitroVerifier;
use crate::registry::chain::{ChainConfig, ChainRegistry};
use crate::registry::file::FileRegistry;
use crate::registry::Registry;
use crate::tdx::TdxVerifier;
use anyhow::Context as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Longest wait between attempts to build a chain view that failed.
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(30);

/// Sets up tracing to stderr; a second call (tests starting several servers) keeps the first.
pub fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("--log-filter {filter:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}

/// A started service: both listeners bound, serving in the background.
pub struct Server {
    /// The address the gRPC listener is bound to (the real port when 0 was asked).
    pub grpc_addr: SocketAddr,
    /// The address the HTTP listener is bound to (the real port when 0 was asked).
    pub http_addr: SocketAddr,
    core: Arc<Core>,
    shutdown: watch::Sender<bool>,
    grpc: JoinHandle<std::io::Result<()>>,
    http: JoinHandle<std::io::Result<()>>,
    background: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds the listeners, opens the registry source and starts serving. A registry file that
    /// cannot be read is an error here; a chain is built in the background (health NOT_SERVING
    /// and answers UNAVAILABLE until it is).
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        let (shutdown, shutdown_signal) = watch::channel(false);
        let clock = match config.dangerous_fixed_now {
            Some(now) => {
                tracing::warn!(
                    now,
                    "dangerous_fixed_now is set, FOR TESTS ONLY: evidence is verified as of a fixed time, not the clock"
                );
                Clock::DangerousFixed(now)
            }
            None => Clock::System,
        };
        let tdx = tdx_verifier(&config.trust_roots);
        let collateral = config
            .collateral_fetch
            .clone()
            .map(|fetch| {
                let fetch = CollateralConfig {
                    http: collateral::within_deadline(fetch.http, config.limits.request_timeout),
                    ..fetch
                };
                collateral_fetcher(fetch, &config.trust_roots, &tdx)
            })
            .transpose()?;
        // The AK chains of GCP evidence name their issuers and CRLs; fetched like Intel
        // collateral (off with it), within the request deadline.
        let ca_fetcher = config
            .collateral_fetch
            .as_ref()
            .map(|_| {
                CaFetcher::new(CaConfig {
                    allow: config.ca_fetch_allow.clone(),
                    http: collateral::within_deadline(
                        HttpLimits::default(),
                        config.limits.request_timeout,
                    ),
                })
            })
            .transpose()
            .context("the CA certificate fetcher")?;
        let core = Arc::new(
            Core::new(
                evidence_verifier(&config.trust_roots, tdx)
                    .with_os_image_policy(OsImagePolicy {
                        allow_lite: config.allow_tdx_lite,
                    })
                    // Last: a configuration change starts an empty result cache.
                    .with_result_cache(
                        config.result_cache_entries,
                        super::config::RESULT_CACHE_MAX_BYTES,
                    ),
                clock,
                config.limits.clone(),
                shutdown_signal.clone(),
                config.registry.describe(),
            )
            .with_fetchers(collateral.clone(), ca_fetcher),
        );

        let grpc_listener = TcpListener::bind(config.grpc_listen)
            .await
            .with_context(|| format!("binding the gRPC listener to {}", config.grpc_listen))?;
        let http_listener = TcpListener::bind(config.http_listen)
            .await
            .with_context(|| format!("binding the HTTP listener to {}", config.http_listen))?;
        let grpc_addr = grpc_listener.local_addr()?;
        let http_addr = http_listener.local_addr()?;

        let mut background = Vec::new();
        if let Some(fetcher) = collateral {
            background.push(tokio::spawn(collateral::refresh_periodically(
                fetcher, clock,
            )));
        }
        let source_info = match &config.registry {
            RegistrySource::Embedded => {
                core.registry.install(Arc::new(
                    FileRegistry::embedded_default().context("the embedded default registry")?,
                ));
                SourceInfo::default()
            }
            RegistrySource::File {
                path,
                poll_interval,
            } => {
                let registry =
                    Arc::new(FileRegistry::open(path).with_context(|| {
                        format!("opening the registry file {}", path.display())
                    })?);
                // The reloader task ends by itself once the registry is dropped.
                let _reloader = registry.spawn_reloader(*poll_interval);
                core.registry.install(registry);
                SourceInfo::default()
            }
            RegistrySource::Chain(chain) => {
                background.push(tokio::spawn(follow_chain(
                    Arc::clone(&core),
                    (**chain).clone(),
                    shutdown_signal.clone(),
                )));
                SourceInfo {
                    kms_contract: Some(to_0x_hex(&chain.kms_contract)),
                    eth_rpc_url: Some(redact_url(&chain.rpc_url)),
                }
            }
        };

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        // Not serving until the monitor has seen the view answer (the reporter starts SERVING).
        health_reporter
            .set_not_serving::<VerifierServer<VerifierService>>()
            .await;
        health_reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        background.push(tokio::spawn(monitor::run(Arc::clone(&core))));
        background.push(tokio::spawn(monitor::publish_health(
            Arc::clone(&core),
            health_reporter,
        )));

        // Both reflection versions: grpcurl before 1.8.8 only speaks v1alpha.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        // tonic's own limit is the largest of the per-method limits, which `message_limits`
        // enforces on the wire first (RESOURCE_EXHAUSTED, before a byte is buffered).
        let verifier = VerifierServer::new(VerifierService::new(Arc::clone(&core)))
            .max_decoding_message_size(
                config
                    .limits
                    .max_request_bytes
                    .max(config.limits.max_boot_info_bytes),
            );
        let grpc_router = tonic::service::Routes::new(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(verifier)
            .prepare()
            .into_axum_router();
        let grpc = tokio::spawn(listener::serve(
            grpc_listener,
            grpc_router,
            message_limits::prepare(&config.limits),
            listener::Protocols::Http2,
            config.connections.clone(),
            shutdown_signal.clone(),
        ));

        let http_router = http::router(Arc::clone(&core), source_info);
        let http = tokio::spawn(listener::serve(
            http_listener,
            http_router,
            Arc::new(|request| request.map(axum::body::Body::new)),
            listener::Protocols::Http1And2,
            config.connections.clone(),
            shutdown_signal,
        ));

        tracing::info!(
            grpc = %grpc_addr,
            http = %http_addr,
            registry = %core.source,
            "tee-verifier serving"
        );
        Ok(Server {
            grpc_addr,
            http_addr,
            core,
            shutdown,
            grpc,
            http,
            background,
        })
    }

    /// Serves until `signal` resolves, then stops accepting, lets in-flight requests finish (at
    /// most `shutdown_grace`), and returns. A server that fails on its own is an error.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        let failure = tokio::select! {
            () = signal => None,
            result = &mut self.grpc => Some(format!("the gRPC server stopped: {result:?}")),
            result = &mut self.http => Some(format!("the HTTP server stopped: {result:?}")),
        };
        tracing::info!("shutting down: draining in-flight requests");
        let _ = self.shutdown.send(true);
        let grace = self.core.limits.shutdown_grace;
        let drained = tokio::time::timeout(grace, async {
            let _ = (&mut self.grpc).await;
            let _ = (&mut self.http).await;
        })
        .await
        .is_ok();
        if !drained {
            tracing::warn!(
                grace_ms = grace.as_millis(),
                "requests still in flight after the grace period; stopping anyway"
            );
            self.grpc.abort();
            self.http.abort();
        }
        for task in &self.background {
            task.abort();
        }
        match failure {
            Some(failure) => Err(anyhow::anyhow!(failure)),
            None => {
                tracing::info!("stopped");
                Ok(())
            }
        }
    }
}

/// The verifiers, with the built-in Nitro root unless another is pinned, and `tdx`.
fn evidence_verifier(roots: &TrustRoots, tdx: TdxVerifier) -> EvidenceVerifier {
    use sha2::{Digest as _, Sha256};
    let nitro = match &roots.nitro_der {
        Some(der) => {
            tracing::warn!(sha256 = %crate::encoding::hex(Sha256::digest(der)), "Nitro documents are verified against a non-default root");
            NitroVerifier::with_root_der(der)
        }
        None => NitroVerifier::new(),
    };
    let gcp = match &roots.gcp_der {
        Some(der) => {
            tracing::warn!(sha256 = %crate::encoding::hex(Sha256::digest(der)), "GCP attestation keys are verified against a non-default root");
            GcpAkVerifier::with_root_der(der)
        }
        None => GcpAkVerifier::new(),
    };
    EvidenceVerifier::new(nitro, tdx).with_gcp(gcp, roots.gcp_ca.clone())
}

/// The TDX verifier, with the built-in Intel root unless another is pinned.
fn tdx_verifier(roots: &TrustRoots) -> TdxVerifier {
    use sha2::{Digest as _, Sha256};
    match &roots.intel_der {
        Some(der) => {
            tracing::warn!(sha256 = %crate::encoding::hex(Sha256::digest(der)), "TDX quotes are verified against a non-default root");
            TdxVerifier::with_root_der(der)
        }
        None => TdxVerifier::new(),
    }
}

/// The Intel collateral fetcher, pinned to the root the service's TDX verifier pins (a clone of
/// it, sharing its caches), so that fetched collateral is judged as inline collateral is.
fn collateral_fetcher(
    mut fetch: CollateralConfig,
    roots: &TrustRoots,
    tdx: &TdxVerifier,
) -> anyhow::Result<CollateralFetcher> {
    fetch.trust_anchor_der = roots
        .intel_der
        .clone()
        .unwrap_or_else(|| crate::tdx::INTEL_SGX_ROOT_CA_DER.to_vec());
    tracing::info!(
        pccs = %redact_url(&fetch.base_url),
        update = fetch.update.as_str(),
        cache_dir = ?fetch.cache_dir,
        "TDX collateral is fetched for quotes that come without it"
    );
    CollateralFetcher::new(fetch, tdx.clone()).context("the TDX collateral fetcher")
}

/// Resolves once shutdown has begun.
async fn shutdown_requested(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stopping| *stopping).await;
}

/// Builds the chain view (retrying with backoff while the node cannot be reached), installs it,
/// and follows the chain until shutdown.
async fn follow_chain(core: Arc<Core>, config: ChainConfig, shutdown: watch::Receiver<bool>) {
    let mut backoff = Duration::from_secs(1);
    let registry = loop {
        let progress: crate::registry::chain::ProgressFn = Arc::new(|progress| {
            tracing::debug!(?progress.stage, progress.done, progress.total, progress.target_block, "building the registry view");
        });
        match ChainRegistry::connect(config.clone(), Some(progress)).await {
            Ok(registry) => break registry,
            Err(error) if error.kind() == ErrorKind::InvalidConfig => {
                tracing::error!(%error, "the chain source is misconfigured; answers stay UNAVAILABLE");
                core.registry
                    .fail(format!("the chain source is misconfigured: {error}"));
                return;
            }
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = backoff.as_millis(), "building the registry view failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_CONNECT_BACKOFF);
            }
        }
    };
    tracing::info!(block = registry.block(), "registry view built");
    let follower = registry.spawn_follower();
    core.registry
        .install(Arc::new(registry) as Arc<dyn Registry>);
    shutdown_requested(shutdown).await;
    drop(follower);
}

/// Resolves on SIGINT or SIGTERM.
pub async fn termination_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut stream) => {
                    stream.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = interrupt => {},
            () = terminate => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
