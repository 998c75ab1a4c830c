//! `tee-verifier registry pending`: the allowlist changes waiting in the timelocks that govern
//! the KMS and its apps, with their ETA.

use super::source::RegistryArgs;
use super::{output, source};
use crate::encoding::to_0x_hex;
use crate::governance::PendingState;
use clap::Args;
use std::process::ExitCode;

/// The changes scheduled in a TimelockController and not yet executed or cancelled: each call
/// (add/remove on the KMS or an app), its operation id, when it can execute (ETA, unix seconds)
/// and its state (waiting: the delay has not passed; ready: anyone with the executor role may
/// executeBatch it now).
///
/// The chain source follows the timelocks given to it and every one it finds as owner() of the
/// KMS or of an app (a contract answering getMinDelay()). A registry file has no timelock, so it
/// has no pending changes (this says so).
///
/// --json prints {"block":N,"pending":[{"operation_id","target","function","args","eta","state"},…]}.
/// Exit: 0 answered (pending or not), 2 unavailable or error.
///
/// Examples:
///   tee-verifier registry pending --rpc-url http://127.0.0.1:8545 --kms-contract 0xKMS…
///   tee-verifier registry pending --json --rpc-url URL --kms-contract ADDR --confirmations 0
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub(super) struct PendingArgs {
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    source: RegistryArgs,
}

pub(super) fn run(args: PendingArgs) -> anyhow::Result<ExitCode> {
    let opened = source::open(&args.source)?;
    let answer = match opened.registry.timelock_changes() {
        Ok(answer) => answer,
        Err(error) => {
            let absent = serde_json::Value::Null;
            return Ok(output::print_no_answer(
                args.json, "pending", absent, &error,
            ));
        }
    };
    let Some(changes) = answer else {
        let block = opened.registry.status()?.block;
        if args.json {
            output::print_json(&serde_json::json!({
                "block": block,
                "pending": [],
                "note": "a registry file follows no timelock: it has no pending changes",
            }));
        } else {
            say!("a registry file follows no timelock: no pending changes (block {block})");
        }
        return Ok(ExitCode::SUCCESS);
    };
    let pending: Vec<_> = changes.pending().map(|change| change.json()).collect();
    if args.json {
        output::print_json(&serde_json::json!({ "block": changes.block, "pending": pending }));
        return Ok(ExitCode::SUCCESS);
    }
    if pending.is_empty() {
        say!("no pending changes at block {}", changes.block);
    } else {
        say!(
            "{} pending change(s) at block {}:",
            pending.len(),
            changes.block
        );
    }
    for change in changes.pending() {
        let when = match change.state {
            PendingState::Ready => format!("READY since {}", change.eta),
            _ => format!("waiting until {}", change.eta),
        };
        say!(
            "  {}({}) on {}",
            change.call.function.name(),
            to_0x_hex(&change.call.value),
            to_0x_hex(&change.call.contract)
        );
        say!(
            "    operation {} in timelock {}: {when}",
            to_0x_hex(&change.operation_id),
            to_0x_hex(&change.timelock)
        );
    }
    Ok(ExitCode::SUCCESS)
}
