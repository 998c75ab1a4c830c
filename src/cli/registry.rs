//! `tee-verifier registry`: membership questions for monitoring probes, and the whole view.

use super::source::RegistryArgs;
use super::{output, source};
use crate::encoding::parse_hex_padded;
use crate::registry::Lookup;
use clap::{Args, Subcommand};
use std::process::ExitCode;

/// Inspect the allowlist: is a measurement registered, what does the whole view hold, and what
/// is scheduled to change.
#[derive(Args)]
pub(super) struct RegistryCommand {
    #[command(subcommand)]
    command: RegistrySubcommand,
}

#[derive(Subcommand)]
enum RegistrySubcommand {
    Lookup(LookupArgs),
    Show(ShowArgs),
    Pending(super::pending::PendingArgs),
}

/// Is one measurement registered? Exit 0 registered, 1 not registered, 2 unavailable or error.
///
/// Examples:
///   tee-verifier registry lookup --registry registry.toml --os-image-hash 0x14ad…1c67
///   tee-verifier registry lookup --json --rpc-url URL --kms-contract ADDR --app-id 0x… --compose-hash 0x…
#[derive(Args)]
#[command(verbatim_doc_comment)]
#[command(group = clap::ArgGroup::new("measurement").required(true).args(["os_image_hash", "compose_hash", "kms_aggregated_mr", "kms_device_id"]))]
pub(super) struct LookupArgs {
    /// Print {"registered":…,"block":…}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    source: RegistryArgs,
    /// DstackKms.addOsImageHash registered this hash.
    #[arg(long, value_name = "HEX")]
    os_image_hash: Option<String>,
    /// The app whose compose-hash to look up.
    #[arg(long, value_name = "ADDR", requires = "compose_hash")]
    app_id: Option<String>,
    /// DstackApp(app-id).addComposeHash registered this hash.
    #[arg(long, value_name = "HEX", requires = "app_id")]
    compose_hash: Option<String>,
    /// DstackKms.addKmsAggregatedMr registered this MR.
    #[arg(long, value_name = "HEX")]
    kms_aggregated_mr: Option<String>,
    /// DstackKms.addKmsDevice registered this device.
    #[arg(long, value_name = "HEX")]
    kms_device_id: Option<String>,
}

/// The whole view with its block: TOML (a valid registry file) or, with --json, JSON.
#[derive(Args)]
pub(super) struct ShowArgs {
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    source: RegistryArgs,
}

pub(super) fn run(command: RegistryCommand) -> anyhow::Result<ExitCode> {
    match command.command {
        RegistrySubcommand::Lookup(args) => lookup(args),
        RegistrySubcommand::Show(args) => show(args),
        RegistrySubcommand::Pending(args) => super::pending::run(args),
    }
}

fn lookup(args: LookupArgs) -> anyhow::Result<ExitCode> {
    let query = if let Some(hash) = &args.os_image_hash {
        Lookup::OsImageHash(parse_hex_padded(hash)?)
    } else if let (Some(app_id), Some(hash)) = (&args.app_id, &args.compose_hash) {
        Lookup::ComposeHash {
            app_id: parse_hex_padded(app_id)?,
            compose_hash: parse_hex_padded(hash)?,
        }
    } else if let Some(mr) = &args.kms_aggregated_mr {
        Lookup::KmsAggregatedMr(parse_hex_padded(mr)?)
    } else if let Some(id) = &args.kms_device_id {
        Lookup::KmsDeviceId(parse_hex_padded(id)?)
    } else {
        anyhow::bail!("name one measurement to look up");
    };
    let opened = source::open(&args.source)?;
    match opened.registry.lookup(&query) {
        Ok(answer) => {
            if args.json {
                output::print_json(
                    &serde_json::json!({ "registered": answer.present, "block": answer.block }),
                );
            } else if answer.present {
                say!("REGISTERED at block {}", answer.block);
            } else {
                say!("NOT REGISTERED at block {}", answer.block);
            }
            Ok(ExitCode::from(u8::from(!answer.present)))
        }
        Err(error) => Ok(output::print_no_answer(
            args.json,
            "registered",
            serde_json::Value::Null,
            &error,
        )),
    }
}

fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let opened = source::open(&args.source)?;
    let snapshot = opened.registry.snapshot()?;
    if args.json {
        output::print_json(&snapshot);
    } else {
        output::print_line(toml::to_string(&snapshot)?.trim_end());
    }
    Ok(ExitCode::SUCCESS)
}
