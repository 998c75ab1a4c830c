//! `tee-verifier verify`: full verification of one piece of evidence at a point in time.

use super::{HexArg, now_or_clock, output, parse_hex_arg, read_input, Verdict};
use crate::encoding::{decode_input, InputEncoding};
use crate::evidence::{EvidenceInput, EvidenceVerifier, Expectations, Report};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Verify an attestation: signatures, certificate chain to the pinned root, validity at NOW,
/// platform policy and the bindings you ask for.
///
/// Examples:
///   tee-verifier verify doc.cbor
///   tee-verifier verify --json --now 1705431295 --nonce 0x01ab doc.cbor
///   base64 -w0 doc.cbor | tee-verifier verify --encoding base64 -
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct VerifyArgs {
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
    /// Accept a debug-mode enclave or debug TD (never do this in production).
    #[arg(long)]
    allow_debug: bool,
    /// The evidence file, or - for stdin.
    file: PathBuf,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let evidence = decode_input(&read_input(&args.file)?, args.encoding)?;
    let input = EvidenceInput { evidence: &evidence, ..Default::default() };
    let expect = Expectations {
        nonce: args.nonce.map(|h| h.0),
        user_data: args.user_data.map(|h| h.0),
        public_key: args.public_key.map(|h| h.0),
        max_age_secs: args.max_age,
        report_data: None,
        allow_debug: args.allow_debug,
    };
    let now = now_or_clock(args.now);
    let verdict = match EvidenceVerifier::default().verify(&input, now, &expect) {
        Ok(report) => {
            if args.json {
                output::print_json(&report);
            } else {
                print_summary(&report, now);
            }
            Verdict::Accepted
        }
        Err(error) => {
            if args.json {
                output::print_json(&output::rejection_json(error.kind(), &error.to_string()));
            } else {
                println!("REJECTED ({}): {error}", error.kind());
            }
            Verdict::Rejected
        }
    };
    Ok(verdict.into())
}

fn print_summary(report: &Report, now: u64) {
    println!("VERIFIED {:?} attestation at {now}", report.platform);
    println!("  os_image_hash  {}", report.os_image_hash);
    if let Some(module_id) = &report.module_id {
        println!("  module_id      {module_id}");
    }
    if let Some(timestamp_ms) = report.timestamp_ms {
        println!("  timestamp_ms   {timestamp_ms}");
    }
    for (index, value) in report.pcrs.iter().filter(|(i, _)| **i <= 2) {
        println!("  pcr{index}           {value}");
    }
    for (name, value) in [
        ("user_data", &report.user_data),
        ("nonce", &report.nonce),
        ("public_key", &report.public_key),
    ] {
        if let Some(value) = value {
            println!("  {name:<14} {value}");
        }
    }
}
