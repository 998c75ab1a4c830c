//! The dstack room's error type. `kind()` is an [`ErrorKind`], whose string the CLI and JSON
//! output expose (stable).

use crate::encoding::HexError;
use crate::error::ErrorKind;
use thiserror::Error;

/// Why dstack evidence was rejected.
#[non_exhaustive]
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DstackError {
    /// An input (evidence, event log, a field) is longer than its bound; checked before it is
    /// parsed.
    #[error("{what} is {len}, more than the {max} accepted")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its length (bytes, or events for an event log).
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The bytes are not a dstack format: not JSON, not SCALE V0, or JSON without `quote` and
    /// `event_log`.
    #[error("not dstack evidence: {0}")]
    UnrecognizedFormat(&'static str),
    /// A dstack format recognised but not handled: `VersionedAttestation` V1 (msgpack), GCP TDX,
    /// SEV-SNP and NitroTPM attestations.
    #[error("{0} is not supported")]
    Unsupported(&'static str),
    /// JSON (evidence, event log, vm_config) does not parse or has the wrong shape.
    #[error("invalid JSON in {what}: {reason}")]
    Json {
        /// Which document.
        what: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// The SCALE-encoded `VersionedAttestation` V0 is truncated or invalid.
    #[error("invalid SCALE encoding at byte {offset}: {reason}")]
    Scale {
        /// Byte offset of the failure.
        offset: usize,
        /// What was wrong there.
        reason: &'static str,
    },
    /// Two parts of the evidence disagree, e.g. `runtime_events` differ from the event log's RTMR3
    /// events.
    #[error("inconsistent evidence: {0}")]
    Inconsistent(&'static str),
    /// A hex field does not parse.
    #[error("{field}: {source}")]
    Hex {
        /// The field.
        field: &'static str,
        /// The hex error.
        source: HexError,
    },
    /// A field has the wrong length.
    #[error("{field} is {len} bytes, {expected} expected")]
    Length {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The length required.
        expected: usize,
    },
    /// An event breaks a structural rule: imr not 0-3, name too long, a version other than 1 or 2,
    /// a non-runtime event in RTMR3, version or preimage on a boot event, a boot digest not 48
    /// bytes.
    #[error("event {index}: {reason}")]
    InvalidEvent {
        /// 0-based position of the event in the log.
        index: usize,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A runtime event's supplied digest is not the digest recomputed from its name and payload.
    #[error("event {index} ({name}): its digest field is not the digest of its name and payload")]
    DigestMismatch {
        /// 0-based position of the event in the log.
        index: usize,
        /// The event's name.
        name: String,
    },
    /// A V2 runtime event's `preimage` is not the canonical JSON of its name and payload.
    #[error("event {index} ({name}): its V2 preimage is not the canonical encoding of its name and payload")]
    PreimageMismatch {
        /// 0-based position of the event in the log.
        index: usize,
        /// The event's name.
        name: String,
    },
    /// Replaying the event log does not give the quote's register.
    #[error("RTMR{register} replays to {replayed} but the quote has {quoted}")]
    RtmrMismatch {
        /// The register (0-3).
        register: usize,
        /// The replayed value (hex).
        replayed: String,
        /// The quote's value (hex).
        quoted: String,
    },
    /// A required runtime event (e.g. `app-id`) is absent before `system-ready`.
    #[error("no {0:?} runtime event before system-ready")]
    MissingEvent(&'static str),
    /// The caller's app-compose.json does not hash to the `compose-hash` event.
    #[error("compose-hash event {measured} is not sha256 of the given app-compose ({computed})")]
    ComposeHashMismatch {
        /// The `compose-hash` event's payload (hex).
        measured: String,
        /// sha256 of the given file (hex).
        computed: String,
    },
    /// The attested report data is not the expected value right-padded with zeros to 64 bytes, or
    /// not the evidence's own `report_data`.
    #[error("attested report_data {attested} is not the expected {expected}")]
    ReportDataMismatch {
        /// The platform's report data (hex).
        attested: String,
        /// The expected report data, padded to 64 bytes (hex).
        expected: String,
    },
    /// vm_config's os_image_hash differs from the Nitro measurement sha256(PCR0 ‖ PCR1 ‖ PCR2).
    #[error("vm_config os_image_hash {claimed} is not the measured {measured}")]
    OsImageHashMismatch {
        /// vm_config's value (hex).
        claimed: String,
        /// The measured value (hex).
        measured: String,
    },
    /// A Nitro document lacks PCR0, 1 or 2 or one of them is not 48 bytes.
    #[error("PCR{0} is missing or not 48 bytes")]
    InvalidPcr(u8),
    /// A Nitro enclave has PCR0..2 all zero (debug mode); dstack refuses it.
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
