//! The errors of the walker, with their stable kind strings.

use super::MAX_CHAIN_LEN;
use crate::error::ErrorKind;
use thiserror::Error;

/// Why a certificate chain or CRL was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum X509Error {
    /// The chain has no certificate or more than 8.
    #[error("certificate chain is empty or longer than {MAX_CHAIN_LEN}")]
    ChainLength,
    /// A certificate is not DER X.509 v3.
    #[error("certificate {index} of the chain cannot be parsed: {reason}")]
    Unparsable {
        /// 0-based position in the chain (leaf first).
        index: usize,
        /// The parser's message.
        reason: String,
    },
    /// A certificate's encoding is not canonical DER (the same certificate re-encoded).
    #[error("certificate {index} of the chain is not canonical DER: {reason}")]
    NotDer {
        /// 0-based position in the chain (leaf first).
        index: usize,
        /// What is not canonical.
        reason: String,
    },
    /// A CRL's encoding is not canonical DER.
    #[error("CRL is not canonical DER: {0}")]
    CrlNotDer(String),
    /// The chain's last certificate is not byte for byte the pinned root.
    #[error("chain root is not the pinned root (DER SHA-256 {found})")]
    UntrustedRoot {
        /// SHA-256 of the root presented (hex).
        found: String,
    },
    /// A key or signature algorithm is not the one the PKI uses (e.g. P-384 with ECDSA-SHA384
    /// for Nitro, P-256 with ECDSA-SHA256 for Intel).
    #[error("{subject}: {what} is {found}, only {expected} is accepted")]
    Algorithm {
        /// The certificate's subject.
        subject: String,
        /// Which algorithm (key or signature).
        what: &'static str,
        /// The one found (OID or name).
        found: String,
        /// The one accepted.
        expected: String,
    },
    /// A certificate's issuer name differs from its issuer's subject name.
    #[error("{subject}: issuer does not match the subject of the next certificate in the chain")]
    NameMismatch {
        /// The certificate's subject.
        subject: String,
    },
    /// A certificate's signature does not verify under its issuer's key.
    #[error("{subject}: signature by its issuer does not verify")]
    Signature {
        /// The certificate's subject.
        subject: String,
    },
    /// `now` is after a certificate's notAfter.
    #[error("{subject}: expired at {not_after} (checked at {now})")]
    Expired {
        /// The certificate's subject.
        subject: String,
        /// End of its validity (unix seconds).
        not_after: u64,
        /// The time checked (unix seconds).
        now: u64,
    },
    /// `now` is before a certificate's notBefore.
    #[error("{subject}: not valid before {not_before} (checked at {now})")]
    NotYetValid {
        /// The certificate's subject.
        subject: String,
        /// Start of its validity (unix seconds).
        not_before: u64,
        /// The time checked (unix seconds).
        now: u64,
    },
    /// A basicConstraints, keyUsage or pathLen rule fails (an issuer that is not a CA or lacks
    /// keyCertSign, a leaf that is a CA or lacks digitalSignature, a CRL issuer without cRLSign,
    /// an exceeded pathLen).
    #[error("{subject}: {problem}")]
    Constraint {
        /// The certificate's subject.
        subject: String,
        /// The rule broken.
        problem: &'static str,
    },
    /// A certificate carries a critical extension this walker does not understand.
    #[error("{subject}: unknown critical extension {oid}")]
    UnknownCriticalExtension {
        /// The certificate's subject.
        subject: String,
        /// The extension's OID (dotted).
        oid: String,
    },
    /// A certificate's serial number is on its issuer's CRL.
    #[error("{subject}: revoked (serial {serial})")]
    Revoked {
        /// The certificate's subject.
        subject: String,
        /// Its serial number (hex).
        serial: String,
    },
    /// A CRL does not parse, is over its bound, has the wrong signature algorithm or issuer, a
    /// critical extension (partial or indirect CRLs are refused), no nextUpdate, or a signature
    /// that does not verify.
    #[error("CRL is invalid: {0}")]
    CrlInvalid(String),
    /// `now` is after a CRL's nextUpdate.
    #[error("CRL of {issuer} expired at {next_update} (checked at {now})")]
    CrlExpired {
        /// The CRL issuer's name.
        issuer: String,
        /// End of its validity (unix seconds).
        next_update: u64,
        /// The time checked (unix seconds).
        now: u64,
    },
    /// `now` is before a CRL's thisUpdate.
    #[error("CRL of {issuer} is not valid before {this_update} (checked at {now})")]
    CrlNotYetValid {
        /// The CRL issuer's name.
        issuer: String,
        /// Start of its validity (unix seconds).
        this_update: u64,
        /// The time checked (unix seconds).
        now: u64,
    },
}

impl X509Error {
    /// The class of the failure (`CertificateInvalid`, `UntrustedRoot`, `Expired`, ...).
    pub fn kind(&self) -> ErrorKind {
        match self {
            X509Error::ChainLength
            | X509Error::Unparsable { .. }
            | X509Error::NameMismatch { .. }
            | X509Error::Constraint { .. }
            | X509Error::UnknownCriticalExtension { .. } => ErrorKind::CertificateInvalid,
            X509Error::NotDer { .. } | X509Error::CrlNotDer(_) => ErrorKind::Malformed,
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
