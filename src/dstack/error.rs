//! The dstack room's error type. `kind()` is an [`ErrorKind`], whose string the CLI and JSON
//! output expose (stable).

use crate::encoding::HexError;
use crate::error::ErrorKind;
use thiserror::Error;

/// Why dstack evidence was rejected.
#[non_exhaustive]
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DstackError {
    #[error("{what} is {len}, more than the {max} accepted")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("not dstack evidence: {0}")]
    UnrecognizedFormat(&'static str),
    #[error("{0} is not supported")]
    Unsupported(&'static str),
    #[error("invalid JSON in {what}: {reason}")]
    Json { what: &'static str, reason: String },
    #[error("invalid SCALE encoding at byte {offset}: {reason}")]
    Scale { offset: usize, reason: &'static str },
    #[error("inconsistent evidence: {0}")]
    Inconsistent(&'static str),
    #[error("{field}: {source}")]
    Hex {
        field: &'static str,
        source: HexError,
    },
    #[error("{field} is {len} bytes, {expected} expected")]
    Length {
        field: &'static str,
        len: usize,
        expected: usize,
    },
    #[error("event {index}: {reason}")]
    InvalidEvent { index: usize, reason: &'static str },
    #[error("event {index} ({name}): its digest field is not the digest of its name and payload")]
    DigestMismatch { index: usize, name: String },
    #[error("event {index} ({name}): its V2 preimage is not the canonical encoding of its name and payload")]
    PreimageMismatch { index: usize, name: String },
    #[error("RTMR{register} replays to {replayed} but the quote has {quoted}")]
    RtmrMismatch {
        register: usize,
        replayed: String,
        quoted: String,
    },
    #[error("no {0:?} runtime event before system-ready")]
    MissingEvent(&'static str),
    #[error("compose-hash event {measured} is not sha256 of the given app-compose ({computed})")]
    ComposeHashMismatch { measured: String, computed: String },
    #[error("attested report_data {attested} is not the expected {expected}")]
    ReportDataMismatch { attested: String, expected: String },
    #[error("vm_config os_image_hash {claimed} is not the measured {measured}")]
    OsImageHashMismatch { claimed: String, measured: String },
    #[error("PCR{0} is missing or not 48 bytes")]
    InvalidPcr(u8),
    #[error("Nitro enclave runs in debug mode (PCR0-2 all zero)")]
    DebugEnclave,
}

impl DstackError {
    /// The class of the failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DstackError::TooLarge { .. }
            | DstackError::UnrecognizedFormat(_)
            | DstackError::Json { .. }
            | DstackError::Scale { .. }
            | DstackError::Inconsistent(_)
            | DstackError::Hex { .. }
            | DstackError::Length { .. }
            | DstackError::InvalidEvent { .. }
            | DstackError::MissingEvent(_)
            | DstackError::InvalidPcr(_) => ErrorKind::Malformed,
            DstackError::Unsupported(_) => ErrorKind::Unsupported,
            DstackError::DigestMismatch { .. }
            | DstackError::PreimageMismatch { .. }
            | DstackError::RtmrMismatch { .. } => ErrorKind::EventLogMismatch,
            DstackError::ComposeHashMismatch { .. }
            | DstackError::ReportDataMismatch { .. }
            | DstackError::OsImageHashMismatch { .. } => ErrorKind::BindingMismatch,
            DstackError::DebugEnclave => ErrorKind::DebugEnclave,
        }
    }
}
