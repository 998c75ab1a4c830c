//! `tee-verifier check`: what `DstackKms.isAppAllowed` (or `isKmsAllowed`) answers for a boot info.

use super::source::RegistryArgs;
use super::{output, source};
use crate::boot_info::{BootInfo, BootInfoJson};
use crate::registry::{Decision, RegistryError};
use clap::Args;
use std::process::ExitCode;

/// Answer exactly what DstackKms.isAppAllowed(bootInfo) (or, with --kms, isKmsAllowed) answers,
/// reason string included, from a registry file or from a chain view at a confirmed block.
///
/// Absent boot-info values are zero, as the KMS webhook pads them; hex may have 0x, any case.
/// Exit: 0 allowed, 1 denied, 2 unavailable or error.
///
/// Examples:
///   tee-verifier check --registry registry.toml --app-id 0x3763…2a2d --compose-hash 0x3763…27e7 \
///       --os-image-hash 0x14ad…1c67 --device-id 0xea0b…7d03 --tcb-status UpToDate
///   tee-verifier check --json --rpc-url http://127.0.0.1:8545 --kms-contract 0xKMS… --kms \
///       --mr-aggregated 0x… --device-id 0x… --os-image-hash 0x…
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub(super) struct CheckArgs {
    /// Print one JSON object: {"allowed":…,"reason":…,"block":…}.
    #[arg(long)]
    json: bool,
    /// Ask isKmsAllowed (a KMS instance booting) instead of isAppAllowed.
    #[arg(long)]
    kms: bool,
    #[command(flatten)]
    source: RegistryArgs,
    #[command(flatten)]
    boot: BootInfoArgs,
}

/// The AppBootInfo fields, spelled as dstack's KMS webhook takes them.
#[derive(Args)]
pub(super) struct BootInfoArgs {
    #[arg(long, value_name = "ADDR", default_value = "")]
    app_id: String,
    #[arg(long, value_name = "HEX", default_value = "")]
    compose_hash: String,
    #[arg(long, value_name = "ADDR", default_value = "")]
    instance_id: String,
    #[arg(long, value_name = "HEX", default_value = "")]
    device_id: String,
    #[arg(long, value_name = "HEX", default_value = "")]
    mr_aggregated: String,
    #[arg(long, value_name = "HEX", default_value = "")]
    mr_system: String,
    #[arg(long, value_name = "HEX", default_value = "")]
    os_image_hash: String,
    /// TCB status, e.g. UpToDate (empty for Nitro).
    #[arg(long, value_name = "STR", default_value = "")]
    tcb_status: String,
    /// An advisory ID (repeatable).
    #[arg(long = "advisory-id", value_name = "ID")]
    advisory_ids: Vec<String>,
}

impl BootInfoArgs {
    /// The boot info as given (the webhook's strings).
    pub(super) fn json(&self) -> BootInfoJson {
        BootInfoJson {
            app_id: self.app_id.clone(),
            compose_hash: self.compose_hash.clone(),
            instance_id: self.instance_id.clone(),
            device_id: self.device_id.clone(),
            mr_aggregated: self.mr_aggregated.clone(),
            mr_system: self.mr_system.clone(),
            os_image_hash: self.os_image_hash.clone(),
            tcb_status: self.tcb_status.clone(),
            advisory_ids: self.advisory_ids.clone(),
        }
    }

    /// The boot info, padded as the KMS webhook pads it.
    pub(super) fn boot_info(&self) -> anyhow::Result<BootInfo> {
        Ok(BootInfo::try_from(&self.json())?)
    }

    /// Whether any field was given.
    pub(super) fn is_given(&self) -> bool {
        let json = self.json();
        [
            &json.app_id,
            &json.compose_hash,
            &json.instance_id,
            &json.device_id,
            &json.mr_aggregated,
            &json.mr_system,
            &json.os_image_hash,
            &json.tcb_status,
        ]
        .iter()
        .any(|text| !text.is_empty())
            || !json.advisory_ids.is_empty()
    }
}

pub(super) fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let boot = args.boot.boot_info()?;
    let opened = source::open(&args.source)?;
    let decision = opened.runtime.block_on(if args.kms {
        opened.registry.decide_kms(&boot)
    } else {
        opened.registry.decide_app(&boot)
    });
    if args.json {
        match &decision {
            Ok(decision) => output::print_json(&authorization_json(decision)),
            Err(error) => output::print_json(&serde_json::json!({
                "allowed": false,
                "error": { "kind": error.kind(), "message": error.to_string() },
            })),
        }
    }
    Ok(print_decision_code(&decision, !args.json))
}

/// The exit code of a decision (0 allowed, 1 denied, 2 no answer), printing it for people if asked.
pub(super) fn print_decision_code(
    decision: &Result<Decision, RegistryError>,
    for_people: bool,
) -> ExitCode {
    match decision {
        Ok(decision) => {
            if for_people && decision.allowed {
                say!("ALLOWED at block {}", decision.block);
            } else if for_people {
                say!("DENIED at block {}: {}", decision.block, decision.reason);
            }
            ExitCode::from(u8::from(!decision.allowed))
        }
        Err(error) => {
            if for_people {
                say!("NO ANSWER ({}): {error}", error.kind());
            }
            ExitCode::from(2)
        }
    }
}

/// `{"allowed":…,"reason":…,"block":…}`: the decision as `check` and `verify` print it.
pub(super) fn authorization_json(decision: &Decision) -> serde_json::Value {
    serde_json::json!({
        "allowed": decision.allowed,
        "reason": decision.reason,
        "block": decision.block,
    })
}
