//! `tee-verifier verify`: full verification of one piece of evidence at a point in time.

use super::evidence::EvidenceOptions;
use super::source::RegistryArgs;
use super::{check, source};
use super::{output, Verdict};
use crate::boot_info::BootInfo;
use crate::evidence::{Report, Unauthorizable};
use crate::registry::{Decision, RegistryError};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Verify an attestation: signatures, certificate chains to the pinned roots, validity at NOW,
/// collateral, platform policy, event-log replay and the bindings you ask for.
///
/// FILE may be an AWS Nitro NSM document (raw CBOR, base64 or hex), a raw TDX quote (with
/// --event-log for dstack's app identity), a dstack quote report JSON {quote, event_log,
/// report_data, vm_config}, a dstack VersionedAttestation (V0 SCALE, V1 msgpack, or
/// {"attestation": hex}; TDX, Nitro or GCP TDX), or a dstack RA-TLS certificate (PEM or DER),
/// whose attestation must bind its key. TDX (GCP's included) needs Intel collateral
/// (QuoteCollateralV3 JSON): via --collateral, or fetched from an Intel PCS or PCCS with
/// --pccs-url (and verified exactly as a --collateral file is); GCP needs Google's intermediate
/// (and any CRLs) via --gcp-ca-bundle, since its evidence carries only the AK certificate.
///
/// A TDX os_image_hash is bound to the hardware for TDX-lite images (vm_config's measurement
/// recomputed into MRTD and RTMR0-2; --allow-tdx-lite false turns that off) and is otherwise the
/// host's claim, which authorization refuses unless --accept-os-image-claim. A GCP os_image_hash
/// is bound by the vTPM quote when vm_config carries gcp_measurement.
///
/// Examples:
///   tee-verifier verify doc.cbor
///   tee-verifier verify --json --now 1705431295 --nonce 0x01ab doc.cbor
///   base64 -w0 doc.cbor | tee-verifier verify --encoding base64 -
///   tee-verifier verify --collateral collateral.json --app-compose app-compose.json report.json
///   tee-verifier verify --pccs-url https://api.trustedservices.intel.com quote.bin
///   tee-verifier verify --collateral collateral.json ratls-client.pem
///   tee-verifier verify --collateral collateral.json --gcp-ca-bundle google-ca.pem gcp.bin
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub(super) struct VerifyArgs {
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    evidence: EvidenceOptions,
    /// Then authorize the verified boot info as a KMS instance (isKmsAllowed) instead of an app.
    #[arg(long)]
    kms: bool,
    /// With a source (--registry FILE, or --rpc-url URL --kms-contract ADDR), also answer
    /// DstackKms.isAppAllowed for the verified boot info; exit 0 only if verified AND allowed.
    /// Authorize a TDX boot info whose os_image_hash is only the host's vm_config claim (do this
    /// only if the OS image was measured by another step, as dstack's KMS does).
    #[arg(long)]
    accept_os_image_claim: bool,
    #[command(flatten, next_help_heading = "Authorization source")]
    source: RegistryArgs,
    /// The evidence file, or - for stdin.
    file: PathBuf,
}

pub(super) fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !args.kms || source::is_configured(&args.source),
        "--kms authorizes against a source: add --registry FILE or --rpc-url URL --kms-contract ADDR"
    );
    let now = args.evidence.now();
    let verified = match args.evidence.verify(&args.file, now)? {
        Ok(verified) => verified,
        Err(error) => {
            reject(args.json, error.kind().as_str(), &error.to_string());
            return Ok(Verdict::Rejected.into());
        }
    };
    let report = verified.report();
    if !source::is_configured(&args.source) {
        if args.json {
            output::print_json(&report);
        } else {
            print_summary(&report, now);
        }
        return Ok(Verdict::Accepted.into());
    }
    let authorization = match verified.authorizable_boot_info(args.accept_os_image_claim) {
        Ok(boot) => Authorization::Decided(authorize(boot, &args.source, args.kms)?),
        Err(reason) => Authorization::Refused(reason),
    };
    if args.json {
        let mut json = serde_json::to_value(&report)?;
        if let Some(object) = json.as_object_mut() {
            object.insert("authorization".into(), authorization.to_json());
        }
        output::print_json(&json);
    } else {
        print_summary(&report, now);
    }
    Ok(match &authorization {
        Authorization::Decided(decision) => check::print_decision_code(decision, !args.json),
        Authorization::Refused(reason) => {
            if !args.json {
                say!("NOT AUTHORIZED: {reason}");
            }
            Verdict::Rejected.into()
        }
    })
}

/// What the allowlist said about the verified evidence.
enum Authorization {
    /// The registry's decision, or why it could not answer.
    Decided(Result<Decision, RegistryError>),
    /// Nothing verified to ask about: a denial of our own, at no block.
    Refused(Unauthorizable),
}

impl Authorization {
    fn to_json(&self) -> serde_json::Value {
        match self {
            Authorization::Decided(Ok(decision)) => check::authorization_json(decision),
            Authorization::Decided(Err(error)) => serde_json::json!({
                "allowed": false,
                "error": { "kind": error.kind(), "message": error.to_string() },
            }),
            Authorization::Refused(reason) => {
                serde_json::json!({ "allowed": false, "reason": reason.to_string(), "block": null })
            }
        }
    }
}

/// Asks the registry about a verified boot info.
fn authorize(
    boot: &BootInfo,
    source_args: &RegistryArgs,
    as_kms: bool,
) -> anyhow::Result<Result<Decision, RegistryError>> {
    let opened = source::open(source_args)?;
    Ok(opened.runtime.block_on(if as_kms {
        opened.registry.decide_kms(boot)
    } else {
        opened.registry.decide_app(boot)
    }))
}

/// Prints a rejection, as JSON or as one line.
fn reject(json: bool, kind: &str, message: &str) {
    if json {
        output::print_json(&output::rejection_json(kind, message));
    } else {
        say!("REJECTED ({kind}): {message}");
    }
}

fn print_summary(report: &Report, now: u64) {
    let platform = serde_json::to_value(report.platform).unwrap_or_default();
    say!(
        "VERIFIED {} attestation at {now}",
        platform.as_str().unwrap_or("?")
    );
    output::print_report(report);
}
