//! The end-to-end pipeline shared by the CLI and the service: detect what kind of evidence some
//! bytes are, verify it at `now` with the platform's rules, and report the measurements in one
//! shape (the field names of the CLI's `--json` and of the gRPC response).

use crate::encoding::to_0x_hex;
use crate::nitro::{self, NitroError, NitroVerifier};
use serde::Serialize;
use std::collections::BTreeMap;
use thiserror::Error;

/// The evidence and what travels with it. Only `evidence` is required; the rest depends on the format.
#[derive(Clone, Copy, Debug, Default)]
pub struct EvidenceInput<'a> {
    /// A Nitro COSE document, a raw TDX quote, a dstack VersionedAttestation, or a dstack quote
    /// report JSON (`{quote, event_log, report_data?, vm_config?}`), already decoded from base64/hex.
    pub evidence: &'a [u8],
    /// dstack event-log JSON, for a raw TDX quote.
    pub event_log: Option<&'a [u8]>,
    /// Intel collateral in the QuoteCollateralV3 JSON shape, for TDX.
    pub collateral: Option<&'a [u8]>,
    /// dstack vm_config JSON, when not inside the evidence.
    pub vm_config: Option<&'a [u8]>,
    /// The exact app-compose.json bytes whose sha256 must be the attested compose-hash.
    pub app_compose: Option<&'a [u8]>,
}

/// Everything a caller may expect of the evidence besides its signatures.
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    pub nonce: Option<Vec<u8>>,
    pub user_data: Option<Vec<u8>>,
    pub public_key: Option<Vec<u8>>,
    /// Expected 64-byte report data (TDX REPORTDATA, or the report data dstack binds for Nitro).
    pub report_data: Option<Vec<u8>>,
    /// Oldest acceptable document, in seconds before `now` (Nitro's signed timestamp).
    pub max_age_secs: Option<u64>,
    /// Accept debug-mode enclaves and debug TDs. Never on by default.
    pub allow_debug: bool,
}

/// Why evidence was rejected. `kind()` is the stable name printed by the CLI and the service.
#[derive(Debug, Error)]
pub enum EvidenceError {
    #[error("unrecognized evidence format: {0}")]
    UnknownFormat(&'static str),
    #[error(transparent)]
    Nitro(#[from] NitroError),
}

impl EvidenceError {
    pub fn kind(&self) -> &'static str {
        match self {
            EvidenceError::UnknownFormat(_) => "malformed",
            EvidenceError::Nitro(e) => e.kind(),
        }
    }
}

/// The TEE that produced the evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Nitro,
}

/// What verification established (or, for a preview, what the evidence claims). Hex values are
/// `0x`-prefixed lowercase; absent values serialize as null.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub verified: bool,
    pub platform: Platform,
    pub os_image_hash: String,
    pub module_id: Option<String>,
    pub timestamp_ms: Option<u64>,
    pub pcrs: BTreeMap<u8, String>,
    pub user_data: Option<String>,
    pub nonce: Option<String>,
    pub public_key: Option<String>,
}

/// Verifiers for every platform, sharing their caches across calls (cheap to clone).
#[derive(Clone)]
pub struct EvidenceVerifier {
    nitro: NitroVerifier,
}

impl Default for EvidenceVerifier {
    fn default() -> Self {
        EvidenceVerifier {
            nitro: NitroVerifier::new(),
        }
    }
}

impl EvidenceVerifier {
    /// Verifies `evidence` (already decoded from base64/hex) at `now`.
    pub fn verify(
        &self,
        input: &EvidenceInput<'_>,
        now: u64,
        expect: &Expectations,
    ) -> Result<Report, EvidenceError> {
        let evidence = input.evidence;
        match detect(evidence)? {
            Format::NitroDocument => {
                let nitro_expect = nitro::Expectations {
                    nonce: expect.nonce.clone(),
                    user_data: expect.user_data.clone(),
                    public_key: expect.public_key.clone(),
                    max_age_secs: expect.max_age_secs,
                    allow_debug: expect.allow_debug,
                };
                let verified = self.nitro.verify(evidence, now, &nitro_expect)?;
                Ok(nitro_report(&verified.document, verified.os_image_hash, true))
            }
        }
    }
}

/// Parses `evidence` and reports what it claims, without checking any signature.
pub fn preview(input: &EvidenceInput<'_>) -> Result<Report, EvidenceError> {
    let evidence = input.evidence;
    match detect(evidence)? {
        Format::NitroDocument => {
            let document = nitro::parse_document(evidence)?;
            let os_image_hash = document.os_image_hash()?;
            Ok(nitro_report(&document, os_image_hash, false))
        }
    }
}

enum Format {
    NitroDocument,
}

/// Recognizes the format from its first bytes.
fn detect(evidence: &[u8]) -> Result<Format, EvidenceError> {
    match evidence.first() {
        // A CBOR array of 4 (untagged COSE_Sign1) or tag 18 in front of it.
        Some(0x84) | Some(0xd2) => Ok(Format::NitroDocument),
        None => Err(EvidenceError::UnknownFormat("empty input")),
        Some(_) => Err(EvidenceError::UnknownFormat(
            "expected a Nitro COSE_Sign1 document",
        )),
    }
}

fn nitro_report(
    document: &nitro::AttestationDocument,
    os_image_hash: [u8; 32],
    verified: bool,
) -> Report {
    let optional = |value: &Option<Vec<u8>>| value.as_deref().map(to_0x_hex);
    Report {
        verified,
        platform: Platform::Nitro,
        os_image_hash: to_0x_hex(&os_image_hash),
        module_id: Some(document.module_id.clone()),
        timestamp_ms: Some(document.timestamp_ms),
        pcrs: document
            .pcrs
            .iter()
            .map(|(index, value)| (*index, to_0x_hex(value)))
            .collect(),
        user_data: optional(&document.user_data),
        nonce: optional(&document.nonce),
        public_key: optional(&document.public_key),
    }
}
