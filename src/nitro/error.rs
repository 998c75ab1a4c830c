//! Why a Nitro attestation document was refused. Each variant maps to one [`ErrorKind`], whose
//! string is stable.

use super::cbor::CborError;
use crate::crypto::CryptoError;
use crate::error::ErrorKind;
use crate::x509::X509Error;
use thiserror::Error;

/// Why a Nitro attestation document was refused.
#[non_exhaustive]
#[derive(Debug, Error)]
pub enum NitroError {
    // --- envelope (COSE_Sign1) ---
    #[error("document is {len} bytes; the limit is {max}")]
    DocumentTooLarge { len: usize, max: usize },
    #[error("not a COSE_Sign1 structure: {0}")]
    Envelope(#[source] coset::CoseError),
    #[error("COSE tag {0} where only 18 (COSE_Sign1) or no tag is accepted")]
    UnexpectedTag(u64),
    #[error("COSE protected header selects {0}; only ES384 (alg -35) is accepted")]
    Algorithm(String),
    #[error("COSE protected header must be exactly {{1: -35}} (bytes a1 01 38 22)")]
    ProtectedHeader,
    #[error("COSE unprotected header must be an empty map")]
    UnprotectedHeader,
    #[error("COSE payload is absent (detached payloads are not accepted)")]
    PayloadAbsent,
    #[error("COSE payload is {len} bytes; it must be 1..={max}")]
    PayloadSize { len: usize, max: usize },

    // --- payload (attestation document fields) ---
    #[error("payload {field}: {source}")]
    Cbor {
        field: &'static str,
        #[source]
        source: CborError,
    },
    #[error("payload field {0} is missing")]
    MissingField(&'static str),
    #[error("payload field {0} appears twice")]
    DuplicateField(&'static str),
    #[error("unknown payload field \"{0:.64}\"")]
    UnknownField(String),
    #[error("payload field {field} is {len} bytes; it must be {min}..={max}")]
    FieldLength {
        field: &'static str,
        len: usize,
        min: usize,
        max: usize,
    },
    #[error("payload field {field} {reason}")]
    FieldValue {
        field: &'static str,
        reason: &'static str,
    },
    #[error("pcrs must hold 1..=32 entries")]
    PcrCount,
    #[error("PCR index {0} is out of range 0..32")]
    PcrIndex(u64),
    #[error("PCR{0} appears twice")]
    DuplicatePcr(u8),
    #[error("PCR{index} is {len} bytes; it must be 32, 48 or 64")]
    PcrLength { index: u8, len: usize },
    #[error("PCR{0} is missing; OS_IMAGE_HASH needs PCR0, PCR1 and PCR2")]
    MissingPcr(u8),

    // --- authenticity ---
    #[error("certificate chain: {0}")]
    Chain(#[from] X509Error),
    #[error("COSE signature: {0}")]
    Signature(#[from] CryptoError),

    // --- policy ---
    #[error("document is {age_secs} s old; the limit is {max_age_secs} s")]
    DocumentTooOld { age_secs: u64, max_age_secs: u64 },
    #[error(
        "document timestamp {timestamp_ms} ms lies more than {max_skew_secs} s after now ({now} s)"
    )]
    DocumentFromFuture {
        timestamp_ms: u64,
        now: u64,
        max_skew_secs: u64,
    },
    #[error("document {0} does not match the expected value")]
    BindingMismatch(&'static str),
    #[error("debug-mode enclave (PCR0, PCR1 and PCR2 are all zero)")]
    DebugEnclave,
}

impl NitroError {
    /// The class of the failure; its `as_str()` is the stable name JSON output carries.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NitroError::DocumentTooLarge { .. }
            | NitroError::Envelope(_)
            | NitroError::UnexpectedTag(_)
            | NitroError::ProtectedHeader
            | NitroError::UnprotectedHeader
            | NitroError::PayloadAbsent
            | NitroError::PayloadSize { .. }
            | NitroError::Cbor { .. }
            | NitroError::MissingField(_)
            | NitroError::DuplicateField(_)
            | NitroError::UnknownField(_)
            | NitroError::FieldLength { .. }
            | NitroError::FieldValue { .. }
            | NitroError::PcrCount
            | NitroError::PcrIndex(_)
            | NitroError::DuplicatePcr(_)
            | NitroError::PcrLength { .. }
            | NitroError::MissingPcr(_) => ErrorKind::Malformed,
            NitroError::Algorithm(_) => ErrorKind::Algorithm,
            NitroError::Chain(error) => error.into(),
            NitroError::Signature(error) => error.into(),
            NitroError::DocumentTooOld { .. } | NitroError::DocumentFromFuture { .. } => {
                ErrorKind::StaleDocument
            }
            NitroError::BindingMismatch(_) => ErrorKind::BindingMismatch,
            NitroError::DebugEnclave => ErrorKind::DebugEnclave,
        }
    }
}
