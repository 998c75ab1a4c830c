//! The errors of the walker, with their stable kind strings.

use super::MAX_CHAIN_LEN;
use crate::error::ErrorKind;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum X509Error {
    #[error("certificate chain is empty or longer than {MAX_CHAIN_LEN}")]
    ChainLength,
    #[error("certificate {index} of the chain cannot be parsed: {reason}")]
    Unparsable { index: usize, reason: String },
    #[error("chain root is not the pinned root (DER SHA-256 {found})")]
    UntrustedRoot { found: String },
    #[error("{subject}: {what} is {found}, only {expected} is accepted")]
    Algorithm {
        subject: String,
        what: &'static str,
        found: String,
        expected: String,
    },
    #[error("{subject}: issuer does not match the subject of the next certificate in the chain")]
    NameMismatch { subject: String },
    #[error("{subject}: signature by its issuer does not verify")]
    Signature { subject: String },
    #[error("{subject}: expired at {not_after} (checked at {now})")]
    Expired {
        subject: String,
        not_after: u64,
        now: u64,
    },
    #[error("{subject}: not valid before {not_before} (checked at {now})")]
    NotYetValid {
        subject: String,
        not_before: u64,
        now: u64,
    },
    #[error("{subject}: {problem}")]
    Constraint {
        subject: String,
        problem: &'static str,
    },
    #[error("{subject}: unknown critical extension {oid}")]
    UnknownCriticalExtension { subject: String, oid: String },
    #[error("{subject}: revoked (serial {serial})")]
    Revoked { subject: String, serial: String },
    #[error("CRL is invalid: {0}")]
    CrlInvalid(String),
    #[error("CRL of {issuer} expired at {next_update} (checked at {now})")]
    CrlExpired {
        issuer: String,
        next_update: u64,
        now: u64,
    },
    #[error("CRL of {issuer} is not valid before {this_update} (checked at {now})")]
    CrlNotYetValid {
        issuer: String,
        this_update: u64,
        now: u64,
    },
}

impl X509Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            X509Error::ChainLength
            | X509Error::Unparsable { .. }
            | X509Error::NameMismatch { .. }
            | X509Error::Constraint { .. }
            | X509Error::UnknownCriticalExtension { .. } => ErrorKind::CertificateInvalid,
            X509Error::UntrustedRoot { .. } => ErrorKind::UntrustedRoot,
            X509Error::Algorithm { .. } => ErrorKind::Algorithm,
            X509Error::Signature { .. } => ErrorKind::Signature,
            X509Error::Expired { .. } => ErrorKind::Expired,
            X509Error::NotYetValid { .. } => ErrorKind::NotYetValid,
            X509Error::Revoked { .. } => ErrorKind::Revoked,
            X509Error::CrlInvalid(_) => ErrorKind::CollateralInvalid,
            X509Error::CrlExpired { .. } => ErrorKind::CollateralExpired,
            X509Error::CrlNotYetValid { .. } => ErrorKind::CollateralNotYetValid,
        }
    }
}
