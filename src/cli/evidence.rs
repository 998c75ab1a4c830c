//! The evidence options `verify` takes, shared with the commands that verify evidence before
//! using it (`explain EVIDENCE_FILE`, `propose --from-evidence`): one reading of the files and
//! one verification, so every command verifies exactly as `verify` does.

use super::collateral::{fetch_for_verify, IntelSourceArgs};
use super::gcp::GcpArgs;
use super::{now_or_clock, parse_hex_arg, read_input, HexArg};
use crate::dstack::OsImagePolicy;
use crate::encoding::{decode_input, InputEncoding};
use crate::error::ErrorKind;
use crate::evidence::{EvidenceInput, EvidenceVerifier, Expectations, Verified};
use clap::Args;
use std::path::{Path, PathBuf};

/// How to read and verify one evidence file.
#[derive(Args, Clone, Debug)]
pub(super) struct EvidenceOptions {
    /// Verify as of this time (unix seconds) instead of now; for archived evidence.
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub now: Option<u64>,
    /// How FILE spells its bytes; auto detects hex text, base64 text, else raw.
    #[arg(long, value_enum, default_value = "auto")]
    pub encoding: InputEncoding,
    /// Expected nonce (hex); a different or missing nonce rejects.
    #[arg(long, value_name = "HEX", value_parser = parse_hex_arg)]
    pub nonce: Option<HexArg>,
    /// Expected user_data (hex).
    #[arg(long, value_name = "HEX", value_parser = parse_hex_arg)]
    pub user_data: Option<HexArg>,
    /// Expected public_key (hex).
    #[arg(long, value_name = "HEX", value_parser = parse_hex_arg)]
    pub public_key: Option<HexArg>,
    /// Reject documents whose signed timestamp is older than this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub max_age: Option<u64>,
    /// Intel collateral for a TDX quote (QuoteCollateralV3 JSON).
    #[arg(long, value_name = "FILE")]
    pub collateral: Option<PathBuf>,
    /// dstack event log (JSON) for a raw TDX quote; every RTMR is replayed against the quote.
    #[arg(long, value_name = "FILE")]
    pub event_log: Option<PathBuf>,
    /// dstack vm_config (JSON): for a raw TDX quote with --event-log, or in place of the one a
    /// dstack attestation embeds (as dstack's KMS prefers the request's).
    #[arg(long, value_name = "FILE")]
    pub vm_config: Option<PathBuf>,
    /// Bind a TDX-lite OS image to the hardware (vm_config's checksum file and measurement
    /// recomputed into MRTD and RTMR0-2, as dstack's KMS does). false: a lite attestation still
    /// verifies, but its os_image_hash stays an unbound claim.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub allow_tdx_lite: bool,
    /// The app-compose.json whose sha256 must equal the attested compose-hash.
    #[arg(long, value_name = "FILE")]
    pub app_compose: Option<PathBuf>,
    /// Expected report data (hex, right-padded with zeros to 64 bytes).
    #[arg(long, value_name = "HEX", value_parser = parse_hex_arg)]
    pub report_data: Option<HexArg>,
    /// Accept a debug-mode enclave or debug TD (never do this in production).
    #[arg(long)]
    pub allow_debug: bool,
    #[command(
        flatten,
        next_help_heading = "Collateral source (without --collateral)"
    )]
    pub fetch: IntelSourceArgs,
    #[command(flatten, next_help_heading = "Google Cloud (dstack-gcp-tdx)")]
    pub gcp: GcpArgs,
}

impl EvidenceOptions {
    /// `--now`, or the clock.
    pub(super) fn now(&self) -> u64 {
        now_or_clock(self.now)
    }

    /// Reads `file` (and the files the options name), fetches TDX collateral with `--pccs-url`
    /// when none is given, and verifies it at `now`. The outer error is a usage, I/O or
    /// availability error (exit 2), including a check the evidence cannot make; the inner one
    /// is a verdict on the evidence (or on the collateral fetched for it).
    pub(super) fn verify(
        &self,
        file: &Path,
        now: u64,
    ) -> anyhow::Result<Result<Verified, crate::Error>> {
        let evidence = decode_input(&read_input(file)?, self.encoding)?;
        let read_optional = |path: &Option<PathBuf>| path.as_deref().map(read_input).transpose();
        let (collateral, event_log, vm_config, app_compose) = (
            read_optional(&self.collateral)?,
            read_optional(&self.event_log)?,
            read_optional(&self.vm_config)?,
            read_optional(&self.app_compose)?,
        );
        let collateral = match collateral {
            Some(collateral) => Some(collateral),
            None => match fetch_for_verify(&self.fetch, &evidence, now)? {
                Ok(fetched) => fetched,
                Err(error) => return Ok(Err(error.into())),
            },
        };
        let input = EvidenceInput {
            evidence: &evidence,
            event_log: event_log.as_deref(),
            collateral: collateral.as_deref(),
            vm_config: vm_config.as_deref(),
            app_compose: app_compose.as_deref(),
        };
        let expect = Expectations {
            nonce: self.nonce.as_ref().map(|h| h.0.clone()),
            user_data: self.user_data.as_ref().map(|h| h.0.clone()),
            public_key: self.public_key.as_ref().map(|h| h.0.clone()),
            max_age_secs: self.max_age,
            report_data: self.report_data.as_ref().map(|h| h.0.clone()),
            allow_debug: self.allow_debug,
            os_image: Some(OsImagePolicy {
                allow_lite: self.allow_tdx_lite,
            }),
        };
        let (gcp, gcp_bundle) = self.gcp.verifier()?;
        let verifier = EvidenceVerifier::default().with_gcp(gcp, gcp_bundle);
        match verifier.verify(&input, now, &expect) {
            // A check the evidence cannot make is a usage error, not a verdict on the evidence.
            Err(error) if error.kind() == ErrorKind::InvalidArgument => anyhow::bail!(error),
            outcome => Ok(outcome.map_err(crate::Error::from)),
        }
    }
}
