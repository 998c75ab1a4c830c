//! `tee-verifier measure`: compute a measurement from its parts, or preview a document's
//! measurements without verifying it.

use super::{output, parse_hex_arg, read_input, HexArg};
use crate::encoding::{decode_input, to_0x_hex, InputEncoding};
use crate::evidence::{preview, EvidenceInput};
use crate::governance::compose::{compose_hash, unpinned_images};
use crate::governance::explain::unpinned_hint;
use crate::nitro::os_image_hash;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Compute OS_IMAGE_HASH = sha256(PCR0‖PCR1‖PCR2) from PCR values, the compose-hash of an
/// app-compose.json, or preview the measurements of an attestation FILE WITHOUT verifying it
/// (nothing is checked: use `verify` for that).
///
/// The compose-hash is sha256 of the file's exact bytes: the very file the CVM is deployed with,
/// not a re-formatted copy (one changed space is another hash). Images referenced by tag without
/// @sha256: are reported: the hash then does not pin the code, and a rewritten tag is why "the
/// measurement changes on every deploy".
///
/// Examples:
///   tee-verifier measure --pcr0 HEX --pcr1 HEX --pcr2 HEX
///   tee-verifier measure --app-compose app-compose.json
///   tee-verifier measure --json doc.cbor
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub(super) struct MeasureArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// PCR0 (hex, 48 bytes for Nitro).
    #[arg(long, value_name = "HEX", value_parser = parse_hex_arg, requires_all = ["pcr1", "pcr2"], conflicts_with_all = ["file", "app_compose"])]
    pcr0: Option<HexArg>,
    /// PCR1 (hex).
    #[arg(long, value_name = "HEX", value_parser = parse_hex_arg, requires_all = ["pcr0", "pcr2"])]
    pcr1: Option<HexArg>,
    /// PCR2 (hex).
    #[arg(long, value_name = "HEX", value_parser = parse_hex_arg, requires_all = ["pcr0", "pcr1"])]
    pcr2: Option<HexArg>,
    /// An app-compose.json: print its compose-hash and the images it pulls by tag.
    #[arg(long, value_name = "FILE", conflicts_with = "file")]
    app_compose: Option<PathBuf>,
    /// How FILE spells its bytes.
    #[arg(long, value_enum, default_value = "auto")]
    encoding: InputEncoding,
    /// An attestation to preview (not verified), or - for stdin.
    #[arg(required_unless_present_any = ["pcr0", "app_compose"])]
    file: Option<PathBuf>,
}

/// `measure --app-compose`: the compose-hash of the exact bytes, and the unpinned images.
fn app_compose(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let bytes = read_input(path)?;
    let hash = to_0x_hex(&compose_hash(&bytes));
    let hints: Vec<_> = unpinned_images(&bytes)?
        .into_iter()
        .map(unpinned_hint)
        .collect();
    if json {
        output::print_json(&serde_json::json!({ "compose_hash": hash, "hints": hints }));
    } else {
        say!("{hash}");
        for hint in &hints {
            say!("  {}: {}", super::explain::snake(&hint.kind), hint.message);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn run(args: MeasureArgs) -> anyhow::Result<ExitCode> {
    if let (Some(pcr0), Some(pcr1), Some(pcr2)) = (&args.pcr0, &args.pcr1, &args.pcr2) {
        let len = pcr0.0.len();
        anyhow::ensure!(
            matches!(len, 32 | 48 | 64) && pcr1.0.len() == len && pcr2.0.len() == len,
            "PCRs are 32, 48 or 64 bytes each, all from one bank (Nitro's are 48)"
        );
        let hash = to_0x_hex(&os_image_hash(&pcr0.0, &pcr1.0, &pcr2.0));
        if args.json {
            output::print_json(&serde_json::json!({ "os_image_hash": hash }));
        } else {
            say!("{hash}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(path) = &args.app_compose {
        return app_compose(path, args.json);
    }
    let Some(path) = &args.file else {
        anyhow::bail!("give --pcr0/--pcr1/--pcr2, --app-compose FILE or a FILE");
    };
    let evidence = decode_input(&read_input(path)?, args.encoding)?;
    match preview(&EvidenceInput {
        evidence: &evidence,
        ..Default::default()
    }) {
        Ok(preview) => {
            if args.json {
                output::print_json(&preview);
            } else {
                say!("NOT VERIFIED: preview of what the document claims; run `verify` to check it");
                output::print_report(preview.report());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            if args.json {
                output::print_json(&output::rejection_json(
                    error.kind().as_str(),
                    &error.to_string(),
                ));
            } else {
                say!("UNREADABLE ({}): {error}", error.kind());
            }
            Ok(ExitCode::from(1))
        }
    }
}
