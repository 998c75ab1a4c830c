//! `tee-verifier verify`: full verification of one piece of evidence at a point in time.

use super::gcp::GcpArgs;
use super::source::RegistryArgs;
use super::{check, source};
use super::{now_or_clock, output, parse_hex_arg, read_input, HexArg, Verdict};
use crate::boot_info::BootInfo;
use crate::dstack::OsImagePolicy;
use crate::encoding::{decode_input, InputEncoding};
use crate::error::ErrorKind;
use crate::evidence::{EvidenceInput, EvidenceVerifier, Expectations, Report, Unauthorizable};
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
/// (QuoteCollateralV3 JSON) via --collateral; GCP needs Google's intermediate (and any CRLs) via
/// --gcp-ca-bundle, since its evidence carries only the AK certificate.
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
///   tee-verifier verify --collateral collateral.json ratls-client.pem
///   tee-verifier verify --collateral collateral.json --gcp-ca-bundle google-ca.pem gcp.bin
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub(super) struct VerifyArgs {
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
    /// Verify as of this time (unix seconds) instead of now; for archived evidence.
    #[arg(long, value_name = "UNIX_SECONDS")]
    now: Option<u64>,
    /// How FILE spells its bytes; auto detects hex text, base64 text, else raw.
    #[arg(long, value_enum, default_value = "auto")]
    encoding: InputEncoding,
    /// Expected nonce (hex); a different or missing nonce rejects.
    #[arg(long, value_name = "HEX", value_parser = parse_hex_arg)]
    nonce: Option<HexArg>,
    /// Expected user_data (hex).
    #[arg(long, value_name = "HEX", value_parser = parse_hex_arg)]
    user_data: Option<HexArg>,
    /// Expected public_key (hex).
    #[arg(long, value_name = "HEX", value_parser = parse_hex_arg)]
    public_key: Option<HexArg>,
    /// Reject documents whose signed timestamp is older than this many seconds.
    #[arg(long, value_name = "SECONDS")]
    max_age: Option<u64>,
    /// Intel collateral for a TDX quote (QuoteCollateralV3 JSON).
    #[arg(long, value_name = "FILE")]
    collateral: Option<PathBuf>,
    /// dstack event log (JSON) for a raw TDX quote; every RTMR is replayed against the quote.
    #[arg(long, value_name = "FILE")]
    event_log: Option<PathBuf>,
    /// dstack vm_config (JSON): for a raw TDX quote with --event-log, or in place of the one a
    /// dstack attestation embeds (as dstack's KMS prefers the request's).
    #[arg(long, value_name = "FILE")]
    vm_config: Option<PathBuf>,
    /// Bind a TDX-lite OS image to the hardware (vm_config's checksum file and measurement
    /// recomputed into MRTD and RTMR0-2, as dstack's KMS does). false: a lite attestation still
    /// verifies, but its os_image_hash stays an unbound claim.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    allow_tdx_lite: bool,
    /// The app-compose.json whose sha256 must equal the attested compose-hash.
    #[arg(long, value_name = "FILE")]
    app_compose: Option<PathBuf>,
    /// Expected report data (hex, right-padded with zeros to 64 bytes).
    #[arg(long, value_name = "HEX", value_parser = parse_hex_arg)]
    report_data: Option<HexArg>,
    /// Accept a debug-mode enclave or debug TD (never do this in production).
    #[arg(long)]
    allow_debug: bool,
    /// Then authorize the verified boot info as a KMS instance (isKmsAllowed) instead of an app.
    #[arg(long)]
    kms: bool,
    /// With a source (--registry FILE, or --rpc-url URL --kms-contract ADDR), also answer
    /// DstackKms.isAppAllowed for the verified boot info; exit 0 only if verified AND allowed.
    /// Authorize a TDX boot info whose os_image_hash is only the host's vm_config claim (do this
    /// only if the OS image was measured by another step, as dstack's KMS does).
    #[arg(long)]
    accept_os_image_claim: bool,
    #[command(flatten, next_help_heading = "Google Cloud (dstack-gcp-tdx)")]
    gcp: GcpArgs,
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
    let evidence = decode_input(&read_input(&args.file)?, args.encoding)?;
    let read_optional = |path: &Option<PathBuf>| path.as_deref().map(read_input).transpose();
    let (collateral, event_log, vm_config, app_compose) = (
        read_optional(&args.collateral)?,
        read_optional(&args.event_log)?,
        read_optional(&args.vm_config)?,
        read_optional(&args.app_compose)?,
    );
    let input = EvidenceInput {
        evidence: &evidence,
        event_log: event_log.as_deref(),
        collateral: collateral.as_deref(),
        vm_config: vm_config.as_deref(),
        app_compose: app_compose.as_deref(),
    };
    let expect = Expectations {
        nonce: args.nonce.map(|h| h.0),
        user_data: args.user_data.map(|h| h.0),
        public_key: args.public_key.map(|h| h.0),
        max_age_secs: args.max_age,
        report_data: args.report_data.map(|h| h.0),
        allow_debug: args.allow_debug,
        os_image: Some(OsImagePolicy {
            allow_lite: args.allow_tdx_lite,
        }),
    };
    let now = now_or_clock(args.now);
    let (gcp, gcp_bundle) = args.gcp.verifier()?;
    let verifier = EvidenceVerifier::default().with_gcp(gcp, gcp_bundle);
    let verified = match verifier.verify(&input, now, &expect) {
        Ok(verified) => verified,
        // A check the evidence cannot make is a usage error, not a verdict on the evidence.
        Err(error) if error.kind() == ErrorKind::InvalidArgument => anyhow::bail!(error),
        Err(error) => {
            if args.json {
                output::print_json(&output::rejection_json(
                    error.kind().as_str(),
                    &error.to_string(),
                ));
            } else {
                say!("REJECTED ({}): {error}", error.kind());
            }
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
    Ok(if as_kms {
        opened.registry.decide_kms(boot)
    } else {
        opened.runtime.block_on(opened.registry.decide_app(boot))
    })
}

fn print_summary(report: &Report, now: u64) {
    let platform = serde_json::to_value(report.platform).unwrap_or_default();
    say!(
        "VERIFIED {} attestation at {now}",
        platform.as_str().unwrap_or("?")
    );
    output::print_report(report);
}
