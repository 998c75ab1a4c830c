//! The TPM room's error type. `kind()` strings are stable: the CLI and JSON output expose them.

use crate::crypto::CryptoError;
use thiserror::Error;

/// Why a TPM quote or event log was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TpmError {
    #[error("{what} is {len}, more than the {max} accepted")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what} runs past the end of the input at byte {offset}")]
    Truncated { what: &'static str, offset: usize },
    #[error("TPMS_ATTEST magic is {0:#010x}, not TPM_GENERATED_VALUE")]
    Magic(u32),
    #[error("TPMS_ATTEST type is {0:#06x}, not TPM_ST_ATTEST_QUOTE")]
    AttestType(u16),
    #[error("PCR {0} is selected twice")]
    DuplicatePcr(u32),
    #[error("PCR {index} value is {len} bytes; a SHA-256 PCR has 32")]
    PcrValueLength { index: u32, len: usize },
    #[error("event log digest for PCR {index} is {len} bytes; a SHA-256 digest has 32")]
    EventDigestLength { index: u32, len: usize },
    #[error("invalid TCG event log at byte {offset}: {reason}")]
    EventLog { offset: usize, reason: &'static str },
    #[error("attestation key certificate: {0}")]
    AkCertificate(String),
    #[error("attestation key is {0}; only RSA and ECC P-256 keys are accepted")]
    UnsupportedKey(String),
    #[error("signature scheme {0:#06x} is neither RSASSA (0x0014) nor ECDSA (0x0018)")]
    UnsupportedScheme(u16),
    #[error("signature hash {0:#06x} is not SHA-256 (0x000b)")]
    UnsupportedHash(u16),
    #[error("a {signature} signature cannot come from an {key} attestation key")]
    KeyMismatch {
        key: &'static str,
        signature: &'static str,
    },
    #[error("ECDSA {which} is {len} bytes; a P-256 scalar is exactly 32")]
    EcdsaScalarLength { which: &'static str, len: usize },
    #[error("quote signature: {0}")]
    Signature(#[from] CryptoError),
    #[error("the quote selects PCRs in bank {0:#06x}; only SHA-256 (0x000b) is accepted")]
    PcrBank(u16),
    #[error("the quote selects PCRs {attested:?} but the PCR values given are {provided:?}")]
    PcrSelectionMismatch {
        attested: Vec<u32>,
        provided: Vec<u32>,
    },
    #[error("pcrDigest {attested} is not SHA-256 of the PCR values given ({computed})")]
    PcrDigestMismatch { attested: String, computed: String },
    #[error("extraData {attested} is not the expected qualifying data {expected}")]
    QualifiedDataMismatch { attested: String, expected: String },
    #[error("PCR {index} replays to {replayed} from the event log but the quote has {quoted}")]
    PcrReplayMismatch {
        index: u32,
        replayed: String,
        quoted: String,
    },
}

impl TpmError {
    /// Stable snake_case name of the failure class.
    pub fn kind(&self) -> &'static str {
        match self {
            TpmError::TooLarge { .. }
            | TpmError::Truncated { .. }
            | TpmError::Magic(_)
            | TpmError::AttestType(_)
            | TpmError::DuplicatePcr(_)
            | TpmError::PcrValueLength { .. }
            | TpmError::EventDigestLength { .. }
            | TpmError::EventLog { .. }
            | TpmError::AkCertificate(_) => "malformed",
            TpmError::UnsupportedKey(_)
            | TpmError::UnsupportedScheme(_)
            | TpmError::UnsupportedHash(_)
            | TpmError::KeyMismatch { .. } => "algorithm",
            TpmError::EcdsaScalarLength { .. } => "signature",
            TpmError::Signature(error) => error.kind(),
            TpmError::PcrBank(_)
            | TpmError::PcrSelectionMismatch { .. }
            | TpmError::PcrDigestMismatch { .. }
            | TpmError::QualifiedDataMismatch { .. } => "binding_mismatch",
            TpmError::PcrReplayMismatch { .. } => "event_log_mismatch",
        }
    }
}
