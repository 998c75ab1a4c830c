//! Why a Nitro attestation document was refused. Each variant maps to one [`ErrorKind`], whose
//! string is stable.

use crate::cbor::CborError;
use crate::crypto::CryptoError;
use crate::error::ErrorKind;
use crate::x509::X509Error;
use thiserror::Error;

/// Why a Nitro attestation document was refused.
#[non_exhaustive]
#[derive(Debug, Error)]
pub enum NitroError {
    // --- envelope (COSE_Sign1) ---
    /// The whole document is over its bound; checked before it is decoded.
    #[error("document is {len} bytes; the limit is {max}")]
    DocumentTooLarge {
        /// Its length in bytes.
        len: usize,
        /// The bound in bytes.
        max: usize,
    },
    /// The bytes are not a COSE_Sign1 array (`[protected, unprotected, payload, signature]`).
    #[error("not a COSE_Sign1 structure: {0}")]
    Envelope(#[source] coset::CoseError),
    /// The document is tagged, with a tag other than 18 (COSE_Sign1).
    #[error("COSE tag {0} where only 18 (COSE_Sign1) or no tag is accepted")]
    UnexpectedTag(u64),
    /// The protected header names an algorithm other than ES384; the text names it.
    #[error("COSE protected header selects {0}; only ES384 (alg -35) is accepted")]
    Algorithm(String),
    /// The protected header is not exactly `{1: -35}`: extra or missing parameters.
    #[error("COSE protected header must be exactly {{1: -35}} (bytes a1 01 38 22)")]
    ProtectedHeader,
    /// The unprotected header is not an empty map.
    #[error("COSE unprotected header must be an empty map")]
    UnprotectedHeader,
    /// The payload is nil (detached).
    #[error("COSE payload is absent (detached payloads are not accepted)")]
    PayloadAbsent,
    /// The payload is empty or over its bound.
    #[error("COSE payload is {len} bytes; it must be 1..={max}")]
    PayloadSize {
        /// Its length in bytes.
        len: usize,
        /// The bound in bytes.
        max: usize,
    },

    // --- payload (attestation document fields) ---
    /// The payload's CBOR is malformed or a field has the wrong CBOR type.
    #[error("payload {field}: {source}")]
    Cbor {
        /// The field being read (`map` for the map itself).
        field: &'static str,
        /// The CBOR error.
        #[source]
        source: CborError,
    },
    /// A required field (`module_id`, `digest`, `timestamp`, `pcrs`, `certificate`, `cabundle`)
    /// is absent.
    #[error("payload field {0} is missing")]
    MissingField(&'static str),
    /// A field key appears twice in the map.
    #[error("payload field {0} appears twice")]
    DuplicateField(&'static str),
    /// The map holds a key outside AWS's closed schema (the text is cut to 64 characters).
    #[error("unknown payload field \"{0:.64}\"")]
    UnknownField(String),
    /// A byte or text field is shorter or longer than the schema allows.
    #[error("payload field {field} is {len} bytes; it must be {min}..={max}")]
    FieldLength {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// Shortest allowed.
        min: usize,
        /// Longest allowed.
        max: usize,
    },
    /// A field has a forbidden value: an empty `module_id`, a `digest` other than `"SHA384"`, a
    /// zero `timestamp`, an empty `cabundle`.
    #[error("payload field {field} {reason}")]
    FieldValue {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `pcrs` is empty or holds more than 32 entries.
    #[error("pcrs must hold 1..=32 entries")]
    PcrCount,
    /// A PCR index is 32 or more.
    #[error("PCR index {0} is out of range 0..32")]
    PcrIndex(u64),
    /// A PCR index appears twice in `pcrs`.
    #[error("PCR{0} appears twice")]
    DuplicatePcr(u8),
    /// A PCR value is not 32, 48 or 64 bytes.
    #[error("PCR{index} is {len} bytes; it must be 32, 48 or 64")]
    PcrLength {
        /// The PCR index.
        index: u8,
        /// Its length in bytes.
        len: usize,
    },
    /// PCR0, 1 or 2 is absent, so OS_IMAGE_HASH cannot be computed.
    #[error("PCR{0} is missing; OS_IMAGE_HASH needs PCR0, PCR1 and PCR2")]
    MissingPcr(u8),

    // --- authenticity ---
    /// The leaf and `cabundle` do not chain to the pinned AWS Nitro root at `now` (signature,
    /// validity window, constraints); `kind()` is the X.509 error's.
    #[error("certificate chain: {0}")]
    Chain(#[from] X509Error),
    /// The ES384 COSE signature does not verify under the leaf certificate's key.
    #[error("COSE signature: {0}")]
    Signature(#[from] CryptoError),

    // --- policy ---
    /// The document's timestamp is older than the caller's `max_age_secs` at `now`.
    #[error("document is {age_secs} s old; the limit is {max_age_secs} s")]
    DocumentTooOld {
        /// Age at `now`, in seconds.
        age_secs: u64,
        /// The caller's bound, in seconds.
        max_age_secs: u64,
    },
    /// The document's timestamp is more than [`super::MAX_FUTURE_SKEW_SECS`] after `now`.
    #[error(
        "document timestamp {timestamp_ms} ms lies more than {max_skew_secs} s after now ({now} s)"
    )]
    DocumentFromFuture {
        /// The document's timestamp (ms since the Unix epoch).
        timestamp_ms: u64,
        /// The time checked (unix seconds).
        now: u64,
        /// The skew allowed, in seconds.
        max_skew_secs: u64,
    },
    /// The document's `nonce`, `user_data` or `public_key` is absent or differs from the
    /// caller's expectation; names the field.
    #[error("document {0} does not match the expected value")]
    BindingMismatch(&'static str),
    /// PCR0..2 are all zero (a debug-mode enclave) and the caller did not allow debug.
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
            NitroError::Chain(error) => error.kind(),
            NitroError::Signature(error) => error.kind(),
            NitroError::DocumentTooOld { .. } | NitroError::DocumentFromFuture { .. } => {
                ErrorKind::StaleDocument
            }
            NitroError::BindingMismatch(_) => ErrorKind::BindingMismatch,
            NitroError::DebugEnclave => ErrorKind::DebugEnclave,
        }
    }
}
