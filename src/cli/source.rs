//! Opening the allowlist for one-shot commands (`check`, `registry`, `verify` with a source): the
//! same `--registry FILE` / `--rpc-url URL --kms-contract ADDR …` options as `serve`, built once and
//! answered from, with build progress on stderr.

use crate::registry::chain::{ChainRegistry, ProgressFn, SyncProgress};
use crate::registry::file::FileRegistry;
use crate::registry::Registry;
use crate::service::config::{registry_source, RegistryArgs, RegistrySource};
use std::sync::Arc;

/// An opened registry, with the runtime its chain requests (if any) run on.
pub struct OpenRegistry {
    pub registry: Arc<dyn Registry>,
    pub runtime: tokio::runtime::Runtime,
}

/// Whether the options name a source (flags or `TEE_VERIFIER_*` variables).
pub fn is_configured(args: &RegistryArgs) -> bool {
    args.registry.is_some() || args.rpc_url.is_some()
}

/// Opens the source the options name. Errors are usage or availability errors (exit 2).
pub fn open(args: &RegistryArgs) -> anyhow::Result<OpenRegistry> {
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
                .block_on(ChainRegistry::connect(config, Some(progress)))
                .context("building the registry view from the chain")?;
            eprintln!();
            Arc::new(registry)
        }
    };
    Ok(OpenRegistry { registry, runtime })
}
