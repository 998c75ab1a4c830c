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
    #[error("{what} is {len} bytes, more than the {max} accepted")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("quote truncated: {field} at offset {offset} runs past its container")]
    Truncated { field: &'static str, offset: usize },
    #[error("unsupported quote version {0} (TDX quotes are version 4 or 5)")]
    UnsupportedVersion(u16),
    #[error("unsupported attestation key type {0} (only 2, ECDSA P-256, is used)")]
    UnsupportedKeyType(u16),
    #[error("TEE type {0:#x} is not TDX (0x81)")]
    UnsupportedTeeType(u32),
    #[error("unsupported v5 body type {0} (TD reports are types 2, 3 and 4)")]
    UnsupportedBodyType(u16),
    #[error("v5 body type {body_type} declares {declared} bytes, its layout has {expected}")]
    BodySizeMismatch {
        body_type: u16,
        declared: u32,
        expected: usize,
    },
    #[error("unsupported certification data type {0}")]
    UnsupportedCertDataType(u16),
    #[error("the quote's PCK certificate chain: {0}")]
    MalformedCertChain(String),

    // --- collateral ---
    #[error("collateral missing: {0}")]
    CollateralMissing(String),
    #[error("collateral invalid: {0}")]
    CollateralInvalid(String),
    #[error("{what} expired at {valid_until} (checked at {now})")]
    CollateralExpired {
        what: &'static str,
        valid_until: u64,
        now: u64,
    },
    #[error("{what} is not valid before {valid_from} (checked at {now})")]
    CollateralNotYetValid {
        what: &'static str,
        valid_from: u64,
        now: u64,
    },
    #[error("collateral does not match the platform: {0}")]
    CollateralMismatch(String),

    // --- certificates and signatures ---
    #[error("{what}: {source}")]
    Chain {
        what: &'static str,
        source: X509Error,
    },
    #[error("{0} signer must be issued directly by the root CA")]
    SignerNotIssuedByRoot(&'static str),
    #[error("PCK certificate SGX extension: {0}")]
    PckExtension(String),
    #[error("{0} signature does not verify")]
    Signature(&'static str),
    #[error("QE report does not bind the attestation key: {0}")]
    BindingMismatch(&'static str),

    // --- appraisal ---
    #[error("QE identity mismatch: {0}")]
    QeIdentityMismatch(String),
    #[error("TDX module identity mismatch: {0}")]
    TdxModuleMismatch(String),
    #[error("no matching TCB level: {0}")]
    TcbLevelNotFound(String),
    #[error("TCB status is Revoked")]
    Revoked,
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
            TdxError::Chain { source, .. } => source.into(),
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
