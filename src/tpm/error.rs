//! The TPM room's error type. `kind()` is the stable [`ErrorKind`] the CLI and JSON output expose.

use crate::crypto::CryptoError;
use crate::error::ErrorKind;
use thiserror::Error;

/// Why a TPM quote or event log was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TpmError {
    /// An input above its bound, refused before it is read; `malformed`.
    #[error("{what} is {len}, more than the {max} accepted")]
    TooLarge {
        /// Which input.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A structure that ends early; `malformed`.
    #[error("{what} runs past the end of the input at byte {offset}")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Where it starts.
        offset: usize,
    },
    /// TPMS_ATTEST without `TPM_GENERATED_VALUE`: not made by a TPM; `malformed`.
    #[error("TPMS_ATTEST magic is {0:#010x}, not TPM_GENERATED_VALUE")]
    Magic(u32),
    /// A TPMS_ATTEST that is not a quote; `malformed`.
    #[error("TPMS_ATTEST type is {0:#06x}, not TPM_ST_ATTEST_QUOTE")]
    AttestType(u16),
    /// A PCR selected twice (in one or two selections); `malformed`.
    #[error("PCR {0} is selected twice")]
    DuplicatePcr(u32),
    /// A PCR value that is not 32 bytes; `malformed`.
    #[error("PCR {index} value is {len} bytes; a SHA-256 PCR has 32")]
    PcrValueLength {
        /// The PCR.
        index: u32,
        /// The value's length.
        len: usize,
    },
    /// An event digest that is not 32 bytes; `malformed`.
    #[error("event log digest for PCR {index} is {len} bytes; a SHA-256 digest has 32")]
    EventDigestLength {
        /// The event's PCR.
        index: u32,
        /// The digest's length.
        len: usize,
    },
    /// A TCG2 event log that does not parse; `malformed`.
    #[error("invalid TCG event log at byte {offset}: {reason}")]
    EventLog {
        /// Where the bad record starts.
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An attestation key certificate that does not parse; `malformed`.
    #[error("attestation key certificate: {0}")]
    AkCertificate(String),
    /// A key other than RSA (2048-4096 bits) or ECC P-256; `algorithm`.
    #[error("attestation key is {0}; only RSA and ECC P-256 keys are accepted")]
    UnsupportedKey(String),
    /// A signature scheme other than RSASSA or ECDSA; `algorithm`.
    #[error("signature scheme {0:#06x} is neither RSASSA (0x0014) nor ECDSA (0x0018)")]
    UnsupportedScheme(u16),
    /// A signature hash other than SHA-256; `algorithm`.
    #[error("signature hash {0:#06x} is not SHA-256 (0x000b)")]
    UnsupportedHash(u16),
    /// A signature whose scheme does not fit the key's type; `algorithm`.
    #[error("a {signature} signature cannot come from an {key} attestation key")]
    KeyMismatch {
        /// The key's type.
        key: &'static str,
        /// The signature's scheme.
        signature: &'static str,
    },
    /// An ECDSA r or s that is not exactly 32 bytes; `signature`.
    #[error("ECDSA {which} is {len} bytes; a P-256 scalar is exactly 32")]
    EcdsaScalarLength {
        /// `r` or `s`.
        which: &'static str,
        /// Its length.
        len: usize,
    },
    /// The signature does not verify (or the key is refused); the crypto error's kind.
    #[error("quote signature: {0}")]
    Signature(#[from] CryptoError),
    /// A selection in a bank other than SHA-256; `binding_mismatch`.
    #[error("the quote selects PCRs in bank {0:#06x}; only SHA-256 (0x000b) is accepted")]
    PcrBank(u16),
    /// The PCR values given are not the selected PCRs in selection order; `binding_mismatch`.
    #[error("the quote selects PCRs {attested:?} but the PCR values given are {provided:?}")]
    PcrSelectionMismatch {
        /// The signed selection.
        attested: Vec<u32>,
        /// The indices of the values given.
        provided: Vec<u32>,
    },
    /// pcrDigest is not the digest of the values given; `binding_mismatch`.
    #[error("pcrDigest {attested} is not SHA-256 of the PCR values given ({computed})")]
    PcrDigestMismatch {
        /// The signed digest, hex.
        attested: String,
        /// The digest of the values, hex.
        computed: String,
    },
    /// extraData is not the expected qualifying data; `binding_mismatch`.
    #[error("extraData {attested} is not the expected qualifying data {expected}")]
    QualifiedDataMismatch {
        /// The signed extraData, hex.
        attested: String,
        /// The expected qualifying data, hex.
        expected: String,
    },
    /// A quoted PCR that its events do not replay to; `event_log_mismatch`.
    #[error("PCR {index} replays to {replayed} from the event log but the quote has {quoted}")]
    PcrReplayMismatch {
        /// The PCR.
        index: u32,
        /// The replayed value, hex.
        replayed: String,
        /// The quoted value, hex.
        quoted: String,
    },
}

impl TpmError {
    /// Stable snake_case name of the failure class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TpmError::TooLarge { .. }
            | TpmError::Truncated { .. }
            | TpmError::Magic(_)
            | TpmError::AttestType(_)
            | TpmError::DuplicatePcr(_)
            | TpmError::PcrValueLength { .. }
            | TpmError::EventDigestLength { .. }
            | TpmError::EventLog { .. }
            | TpmError::AkCertificate(_) => ErrorKind::Malformed,
            TpmError::UnsupportedKey(_)
            | TpmError::UnsupportedScheme(_)
            | TpmError::UnsupportedHash(_)
            | TpmError::KeyMismatch { .. } => ErrorKind::Algorithm,
            TpmError::EcdsaScalarLength { .. } => ErrorKind::Signature,
            TpmError::Signature(error) => error.kind(),
            TpmError::PcrBank(_)
            | TpmError::PcrSelectionMismatch { .. }
            | TpmError::PcrDigestMismatch { .. }
            | TpmError::QualifiedDataMismatch { .. } => ErrorKind::BindingMismatch,
            TpmError::PcrReplayMismatch { .. } => ErrorKind::EventLogMismatch,
        }
    }
}
