//! `tee-verifier serve`: the gRPC service the dstack KMS and its operators call
//! (`tee_verifier.v1.Verifier`, `grpc.health.v1`, server reflection v1 and v1alpha), and beside it
//! an HTTP server that is a drop-in for dstack's KMS auth webhook, with `/metrics` and `/healthz`.
//!
//! - [`config`]: the resolved settings, one [`Config`] (the CLI builds it from flags, environment
//!   and TOML file).
//! - `collateral`: Intel collateral fetched for TDX evidence that comes without it.
//! - `core`: what both servers share; `grpc` and `http`: the two faces; `convert`: every mapping
//!   between library types and the wire; `monitor`: registry availability for health and metrics;
//!   `metrics`: the Prometheus counters; [`server`]: start-up and graceful shutdown; `listener`:
//!   accepting and holding connections (limits, timeouts, idle eviction); `message_limits`:
//!   per-method gRPC message limits on the wire; `codec`: prost's codec with malformed messages
//!   as INVALID_ARGUMENT; `webhook_body`: webhook bodies read within their budget.
//!
//! Verification failures and denials are answers; only malformed requests (INVALID_ARGUMENT), an
//! unavailable registry view (UNAVAILABLE: fail closed) and the server's limits are gRPC errors.

mod codec;
mod collateral;
pub mod config;
mod convert;
mod core;
mod gcp_ca;
mod governance;
mod grpc;
mod http;
mod listener;
mod message_limits;
mod metrics;
mod monitor;
pub mod server;
mod webhook_body;

pub use config::Config;
pub use metrics::process_cpu_seconds;
pub use server::Server;

/// The generated `tee_verifier.v1` messages, server and client. Their documentation is the
/// proto file's comments (`proto/tee_verifier/v1/verifier.proto`), which prost carries over where
/// the proto has them.
#[allow(missing_docs, unreachable_pub)]
pub mod proto {
    tonic::include_proto!("tee_verifier.v1");

    /// The encoded `FileDescriptorSet` of the API, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/tee_verifier_v1_descriptor.bin"));
}

/// `tee-verifier serve`: serves until SIGTERM or SIGINT, then drains. Builds its own tokio
/// runtime. Start-up errors (a bad log filter, a port in use, an unreadable registry file) are
/// returned as errors (the CLI exits 2).
pub fn run(config: Config) -> anyhow::Result<std::process::ExitCode> {
    use anyhow::Context as _;
    use std::io::Write as _;
    server::init_logging(config.log_format, &config.log_filter)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tee-verifier")
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let server = Server::start(config).await?;
        // The one line on stdout: the bound addresses (tests and scripts read it with port 0).
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "listening grpc={} http={}",
            server.grpc_addr, server.http_addr
        )?;
        stdout.flush()?;
        drop(stdout);
        server.run_until(server::termination_signal()).await
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}
