//! `tee-verifier explain`: "why was I refused?" The contract's decision (the one `check` gives),
//! every check the contract makes in its order, and hints at the usual mistakes.

use super::check::BootInfoArgs;
use super::evidence::EvidenceOptions;
use super::source::RegistryArgs;
use super::{output, read_input, source};
use crate::boot_info::{BootInfo, BootInfoJson};
use crate::governance::explain::{explain_app, explain_kms, Context, Explanation};
use crate::registry::{Decision, RegistryError};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

/// Explain an authorization: the answer DstackKms.isAppAllowed (or, with --kms, isKmsAllowed)
/// gives, exactly as `check` gives it, plus every check the contract makes, in its order, with
/// its outcome and the values involved, and hints at what usually causes a refusal:
///
///   not_registered        the value is not registered (propose it: `tee-verifier propose`)
///   registered_elsewhere  the compose hash is allowed for another app
///   revoked               the value was removed (the block of its removal)
///   pending               the change is scheduled in a timelock (operation id and ETA)
///   hex_width             a value given with the wrong width, or matching a registered value
///                         only when padded or trimmed
///   debug_image           the image hash of a debug enclave
///   tcb_not_up_to_date    the app requires UpToDate and the TCB is not
///   device_not_allowed    the device is not allowed
///   app_not_registered    the app is not registered with the KMS, or its code is absent
///   unpinned_image        with --app-compose: an image referenced by tag, not @sha256:, which
///                         is why the measurement changes on every deploy
///   compose_hash_mismatch with --app-compose: the file does not hash to the compose hash
///
/// Give the boot info as `check` takes it (--app-id, --compose-hash, …), or an EVIDENCE FILE
/// with `verify`'s options: it is verified first, and its boot info explained.
/// --json prints {"allowed","reason","block","checks":[{"name","ok","reached","detail"}…],
/// "hints":[{"kind","message",…}…]}. Exit: 0 allowed, 1 denied (or evidence rejected), 2
/// unavailable or error.
///
/// Examples:
///   tee-verifier explain --registry registry.toml --app-id 0x3763…2a2d --compose-hash 0x… \
///       --os-image-hash 0x… --device-id 0x… --tcb-status UpToDate --app-compose app-compose.json
///   tee-verifier explain --json --rpc-url URL --kms-contract ADDR --collateral c.json quote.json
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub(super) struct ExplainArgs {
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Explain isKmsAllowed (a KMS instance booting) instead of isAppAllowed.
    #[arg(long)]
    kms: bool,
    /// Explain a TDX boot info whose os_image_hash is only the host's vm_config claim (as
    /// `verify --accept-os-image-claim`).
    #[arg(long, requires = "file")]
    accept_os_image_claim: bool,
    #[command(flatten, next_help_heading = "Boot info (instead of an evidence FILE)")]
    boot: BootInfoArgs,
    #[command(flatten, next_help_heading = "Evidence options (with FILE)")]
    evidence: EvidenceOptions,
    #[command(flatten, next_help_heading = "Authorization source")]
    source: RegistryArgs,
    /// An evidence file (or - for stdin) to verify and explain, instead of boot info flags.
    file: Option<PathBuf>,
}

/// A serialized enum's snake_case spelling (a hint or warning kind), for people.
pub(super) fn snake(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        _ => String::new(),
    }
}

pub(super) fn run(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let (boot, given): (BootInfo, Option<BootInfoJson>) = match &args.file {
        Some(file) => {
            anyhow::ensure!(
                !args.boot.is_given(),
                "give the boot info flags or an evidence FILE, not both"
            );
            let now = args.evidence.now();
            let verified = match args.evidence.verify(file, now)? {
                Ok(verified) => verified,
                Err(error) => {
                    refused(args.json, error.kind().as_str(), &error.to_string());
                    return Ok(ExitCode::from(1));
                }
            };
            match verified.authorizable_boot_info(args.accept_os_image_claim) {
                Ok(boot) => (boot.clone(), None),
                Err(reason) => {
                    refused(args.json, "unauthorizable", &reason.to_string());
                    return Ok(ExitCode::from(1));
                }
            }
        }
        None => (args.boot.boot_info()?, Some(args.boot.json())),
    };
    let app_compose = args
        .evidence
        .app_compose
        .as_deref()
        .map(read_input)
        .transpose()?;
    let opened = source::open(&args.source)?;
    let registry = &opened.registry;
    let decision = opened.runtime.block_on(if args.kms {
        registry.decide_kms(&boot)
    } else {
        registry.decide_app(&boot)
    });
    let explained = decision.and_then(|decision| {
        let view = registry
            .snapshot()?
            .to_view()
            .map_err(RegistryError::Unavailable)?;
        let changes = registry.timelock_changes()?;
        let removals = registry.removals()?;
        let context = Context {
            given: given.as_ref(),
            pending: changes.as_ref().map_or(&[][..], |c| c.changes.as_slice()),
            removals: Some(&removals),
            app_compose: app_compose.as_deref(),
        };
        Ok(explain(&view, &decision, &boot, &context, args.kms))
    });
    let explanation = match explained {
        Ok(Ok(explanation)) => explanation,
        Ok(Err(error)) => anyhow::bail!("cannot explain ({}): {error}", error.kind()),
        Err(error) => {
            return Ok(output::print_no_answer(
                args.json,
                "allowed",
                false.into(),
                &error,
            ))
        }
    };
    if args.json {
        output::print_json(&explanation);
    } else {
        print_explanation(&explanation);
    }
    Ok(ExitCode::from(u8::from(!explanation.allowed)))
}

fn explain(
    view: &crate::registry::view::RegistryView,
    decision: &Decision,
    boot: &BootInfo,
    context: &Context<'_>,
    kms: bool,
) -> Result<Explanation, crate::governance::GovernanceError> {
    if kms {
        explain_kms(view, decision, boot, context)
    } else {
        explain_app(view, decision, boot, context)
    }
}

/// Evidence that cannot be explained: rejected by verification, or without boot info.
fn refused(json: bool, kind: &str, message: &str) {
    if json {
        output::print_json(&output::rejection_json(kind, message));
    } else {
        say!("REJECTED ({kind}): {message}");
    }
}

fn print_explanation(explanation: &Explanation) {
    if explanation.allowed {
        say!("ALLOWED at block {}", explanation.block);
    } else {
        say!(
            "DENIED at block {}: {}",
            explanation.block,
            explanation.reason
        );
    }
    say!("checks, in the contract's order:");
    for check in &explanation.checks {
        let mark = match (check.ok, check.reached) {
            (true, _) => "ok  ",
            (false, true) => "FAIL",
            (false, false) => "fail",
        };
        let note = if check.reached {
            ""
        } else {
            " (not reached: the contract stopped earlier)"
        };
        say!("  {mark} {:<26} {}{note}", check.name, check.detail);
    }
    if !explanation.hints.is_empty() {
        say!("hints:");
    }
    for hint in &explanation.hints {
        say!("  {}: {}", snake(&hint.kind), hint.message);
    }
}
