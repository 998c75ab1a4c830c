//! The dstack room's error type. `kind()` is an [`ErrorKind`], whose string the CLI and JSON
//! output expose (stable).

use crate::encoding::HexError;
use crate::error::ErrorKind;
use std::fmt;
use thiserror::Error;

/// Which step of binding a TDX-lite OS image to the hardware failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OsImageCheck {
    /// `vm_config.tdx_measurement` is absent, or sha256 of its checksum file is not os_image_hash.
    ChecksumFile,
    /// The checksum file's `measurement.tdx.cbor` line is missing, repeated or not sha256 of the
    /// measurement document.
    MeasurementHash,
    /// The measurement document is not version 3.
    CborVersion,
    /// `vm_config.ovmf_variant` names another OVMF than the document.
    OvmfVariant,
    /// The event log lacks the three named RTMR0 `ACPI DATA` digests.
    AcpiEvents,
    /// `memory_size` is one the image-less computation cannot measure.
    MemorySize,
    /// The computed MRTD differs from the quote's.
    Mrtd,
    /// The computed RTMRn (0-2) differs from the quote's.
    Rtmr(u8),
    /// GCP: the quoted PCR0 is not Google's TDX firmware.
    Pcr0,
    /// GCP: PCR2's third event (the UKI's Authenticode digest) is not the document's `uki_auth`.
    UkiAuth,
}

impl fmt::Display for OsImageCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OsImageCheck::ChecksumFile => f.write_str("checksum file"),
            OsImageCheck::MeasurementHash => f.write_str("measurement hash"),
            OsImageCheck::CborVersion => f.write_str("CBOR version"),
            OsImageCheck::OvmfVariant => f.write_str("ovmf variant"),
            OsImageCheck::AcpiEvents => f.write_str("ACPI events"),
            OsImageCheck::MemorySize => f.write_str("memory size"),
            OsImageCheck::Mrtd => f.write_str("MRTD"),
            OsImageCheck::Rtmr(index) => write!(f, "RTMR{index}"),
            OsImageCheck::Pcr0 => f.write_str("PCR0"),
            OsImageCheck::UkiAuth => f.write_str("UKI digest"),
        }
    }
}

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
    /// A dstack format recognised but not handled: GCP TDX, SEV-SNP and NitroTPM attestations in
    /// V0, a QEMU too old for the image-less TDX-lite computation.
    #[error("{0} is not supported")]
    Unsupported(&'static str),
    /// A VersionedAttestation V1 whose platform kind is not verified here (`gcp-tdx`, `sev-snp`,
    /// `aws-nitro-tpm` or an unknown kind), named as the attestation spells it (at most 64
    /// characters).
    #[error("dstack attestation platform {0:?} is not supported")]
    UnsupportedPlatform(String),
    /// JSON (evidence, event log, vm_config) does not parse or has the wrong shape.
    #[error("invalid JSON in {what}: {reason}")]
    Json {
        /// Which document.
        what: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// A VersionedAttestation V1 that upstream's msgpack decoder would refuse: not named maps,
    /// a missing or extra field, a `version` other than 1, trailing bytes.
    #[error("invalid msgpack VersionedAttestation V1: {0}")]
    Msgpack(String),
    /// A CBOR document (the TDX-lite measurement document) that does not decode.
    #[error("invalid CBOR in {what}: {reason}")]
    Cbor {
        /// Which document.
        what: &'static str,
        /// The decoder's message.
        reason: String,
    },
    /// A base64 field of vm_config (the TDX-lite checksum file or measurement) that does not
    /// decode.
    #[error("invalid base64 in {0}")]
    Base64(&'static str),
    /// A field whose content breaks its format (e.g. the TD HOB witness, `qemu_version`).
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// An RA-TLS certificate that does not parse, or whose attestation extensions are absent,
    /// repeated, oversized or not DER OCTET STRINGs.
    #[error("invalid RA-TLS certificate: {0}")]
    Certificate(String),
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
    /// An RA-TLS certificate's attestation does not bind its key: report_data is not
    /// sha512("ratls-cert:" || SubjectPublicKeyInfo DER).
    #[error(
        "the attestation's report_data {attested} is not sha512(\"ratls-cert:\" || the \
         certificate's SubjectPublicKeyInfo) = {expected}"
    )]
    CertificateKeyMismatch {
        /// The attestation's report data (hex).
        attested: String,
        /// The value the certificate's key requires (hex).
        expected: String,
    },
    /// A TDX-lite OS image that does not compute to the quoted registers; `check` names the step.
    #[error("the OS image is not the one the hardware measured ({check}): {detail}")]
    OsImageMismatch {
        /// The step that failed.
        check: OsImageCheck,
        /// What differed (computed and quoted values where there are some).
        detail: String,
    },
    /// A Nitro document lacks PCR0, 1 or 2 or one of them is not 48 bytes.
    #[error("PCR{0} is missing or not 48 bytes")]
    InvalidPcr(u8),
    /// A Nitro enclave has PCR0..2 all zero (debug mode); dstack refuses it.
    #[error("Nitro enclave runs in debug mode (PCR0-2 all zero)")]
    DebugEnclave,
}

impl DstackError {
    /// `TooLarge` when `len` exceeds `max`: every bound is checked before the bytes are used.
    pub(super) fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), DstackError> {
        if len > max {
            return Err(DstackError::TooLarge { what, len, max });
        }
        Ok(())
    }

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
            | DstackError::InvalidPcr(_)
            | DstackError::Msgpack(_)
            | DstackError::Cbor { .. }
            | DstackError::Base64(_)
            | DstackError::Invalid { .. }
            | DstackError::Certificate(_) => ErrorKind::Malformed,
            DstackError::Unsupported(_) | DstackError::UnsupportedPlatform(_) => {
                ErrorKind::Unsupported
            }
            DstackError::DigestMismatch { .. }
            | DstackError::PreimageMismatch { .. }
            | DstackError::RtmrMismatch { .. } => ErrorKind::EventLogMismatch,
            DstackError::ComposeHashMismatch { .. }
            | DstackError::ReportDataMismatch { .. }
            | DstackError::OsImageHashMismatch { .. }
            | DstackError::CertificateKeyMismatch { .. } => ErrorKind::BindingMismatch,
            DstackError::OsImageMismatch { .. } => ErrorKind::OsImageMismatch,
            DstackError::DebugEnclave => ErrorKind::DebugEnclave,
        }
    }
}
