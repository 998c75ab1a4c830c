//! The TDX room's error type. `kind()` is an [`ErrorKind`], whose string the CLI and JSON output
//! expose (stable).

use crate::error::ErrorKind;
use crate::x509::X509Error;
use thiserror::Error;

/// Why a TDX quote or its collateral was rejected.
#[non_exhaustive]
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TdxError {
    // --- the quote's own structure ("malformed") ---
    /// An input (quote, collateral JSON) is longer than its bound; checked before it is parsed.
    #[error("{what} is {len} bytes, more than the {max} accepted")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The bound in bytes.
        max: usize,
    },
    /// A length or field runs past the end of the quote or of its enclosing structure.
    #[error("quote truncated: {field} at offset {offset} runs past its container")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Its offset in bytes from the start of the quote (or its container).
        offset: usize,
    },
    /// The header's version is neither 4 nor 5.
    #[error("unsupported quote version {0} (TDX quotes are version 4 or 5)")]
    UnsupportedVersion(u16),
    /// The header's attestation key type is not 2 (ECDSA P-256).
    #[error("unsupported attestation key type {0} (only 2, ECDSA P-256, is used)")]
    UnsupportedKeyType(u16),
    /// The header's TEE type is not TDX (0x81); SGX quotes are refused.
    #[error("TEE type {0:#x} is not TDX (0x81)")]
    UnsupportedTeeType(u32),
    /// A v5 quote's body type is not 2, 3 or 4.
    #[error("unsupported v5 body type {0} (TD reports are types 2, 3 and 4)")]
    UnsupportedBodyType(u16),
    /// A v5 quote's declared body size differs from the length of its body type's layout.
    #[error("v5 body type {body_type} declares {declared} bytes, its layout has {expected}")]
    BodySizeMismatch {
        /// The declared body type.
        body_type: u16,
        /// The declared body size in bytes.
        declared: u32,
        /// The layout's size in bytes.
        expected: usize,
    },
    /// The QE certification data type is not one this crate reads, or the QE report's nested data
    /// is not type 6.
    #[error("unsupported certification data type {0}")]
    UnsupportedCertDataType(u16),
    /// The PEM PCK chain inside the quote (certification data type 5) does not parse.
    #[error("the quote's PCK certificate chain: {0}")]
    MalformedCertChain(String),

    // --- collateral ---
    /// A piece of collateral needed for this quote is absent, e.g. no PCK chain in the quote or the
    /// collateral.
    #[error("collateral missing: {0}")]
    CollateralMissing(String),
    /// Collateral does not parse: bad JSON, hex, PEM, or a field out of range.
    #[error("collateral invalid: {0}")]
    CollateralInvalid(String),
    /// A collateral document's or CRL's `nextUpdate` has passed at `now`.
    #[error("{what} expired at {valid_until} (checked at {now})")]
    CollateralExpired {
        /// Which document.
        what: &'static str,
        /// End of its validity (unix seconds).
        valid_until: u64,
        /// The time checked (unix seconds).
        now: u64,
    },
    /// A collateral document's or CRL's `issueDate` lies after `now`.
    #[error("{what} is not valid before {valid_from} (checked at {now})")]
    CollateralNotYetValid {
        /// Which document.
        what: &'static str,
        /// Start of its validity (unix seconds).
        valid_from: u64,
        /// The time checked (unix seconds).
        now: u64,
    },
    /// The collateral is for another platform: the TCB Info's FMSPC or PCE-ID differs from the PCK
    /// certificate's.
    #[error("collateral does not match the platform: {0}")]
    CollateralMismatch(String),

    // --- certificates and signatures ---
    /// An issuer chain (collateral signer, CRL issuer, PCK chain) failed the X.509 walk; `kind()`
    /// is the X.509 error's.
    #[error("{what}: {source}")]
    Chain {
        /// Which chain.
        what: &'static str,
        /// The X.509 failure.
        source: X509Error,
    },
    /// A TCB Info or QE Identity signer is not issued directly by the Intel SGX Root CA.
    #[error("{0} signer must be issued directly by the root CA")]
    SignerNotIssuedByRoot(&'static str),
    /// The PCK leaf's SGX extension is missing or malformed, or its CPUSVN differs from its TCB
    /// component SVNs.
    #[error("PCK certificate SGX extension: {0}")]
    PckExtension(String),
    /// A signature (quote, QE report, TCB Info, QE Identity) does not verify.
    #[error("{0} signature does not verify")]
    Signature(&'static str),
    /// The QE report's REPORTDATA is not SHA-256(attestation key ‖ QE auth data) followed by zeros.
    #[error("QE report does not bind the attestation key: {0}")]
    BindingMismatch(&'static str),

    // --- appraisal ---
    /// The QE is not Intel's or its report does not match the QE Identity (MRSIGNER, ISV product
    /// ID, attributes, MISCSELECT).
    #[error("QE identity mismatch: {0}")]
    QeIdentityMismatch(String),
    /// MRSIGNERSEAM or SEAMATTRIBUTES do not match the TCB Info's TDX module identity.
    #[error("TDX module identity mismatch: {0}")]
    TdxModuleMismatch(String),
    /// No TCB level of the TCB Info or QE Identity is at or below the platform's SVNs.
    #[error("no matching TCB level: {0}")]
    TcbLevelNotFound(String),
    /// The matching TCB level (platform, TDX module or QE) has status `Revoked`.
    #[error("TCB status is Revoked")]
    Revoked,
    /// The TD attributes violate the [`super::TdxPolicy`] (e.g. the debug bit is set).
    #[error("TD attributes refused: {0}")]
    TdAttributes(&'static str),
}

impl TdxError {
    /// The class of the failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TdxError::TooLarge { .. }
            | TdxError::Truncated { .. }
            | TdxError::UnsupportedVersion(_)
            | TdxError::UnsupportedKeyType(_)
            | TdxError::UnsupportedTeeType(_)
            | TdxError::UnsupportedBodyType(_)
            | TdxError::BodySizeMismatch { .. }
            | TdxError::UnsupportedCertDataType(_)
            | TdxError::MalformedCertChain(_) => ErrorKind::Malformed,
            TdxError::CollateralMissing(_) => ErrorKind::CollateralMissing,
            TdxError::CollateralInvalid(_) | TdxError::CollateralMismatch(_) => {
                ErrorKind::CollateralInvalid
            }
            TdxError::CollateralExpired { .. } => ErrorKind::CollateralExpired,
            TdxError::CollateralNotYetValid { .. } => ErrorKind::CollateralNotYetValid,
            TdxError::Chain { source, .. } => source.kind(),
            TdxError::SignerNotIssuedByRoot(_) | TdxError::PckExtension(_) => {
                ErrorKind::CertificateInvalid
            }
            TdxError::Signature(_) => ErrorKind::Signature,
            TdxError::BindingMismatch(_) => ErrorKind::BindingMismatch,
            TdxError::QeIdentityMismatch(_) => ErrorKind::QeIdentityMismatch,
            TdxError::TdxModuleMismatch(_) => ErrorKind::TdxModuleMismatch,
            TdxError::TcbLevelNotFound(_) => ErrorKind::TcbLevelNotFound,
            TdxError::Revoked => ErrorKind::Revoked,
            TdxError::TdAttributes(_) => ErrorKind::TdAttributes,
        }
    }
}
