//! One X.509 chain walker for every platform: AWS Nitro's P-384 PKI and Intel's P-256 SGX/TDX PKI.
//!
//! A chain is given leaf first, root last, and the root must be the pinned one (by DER SHA-256).
//! Every call checks, for every certificate of the presented chain: issuer/subject chaining, the
//! link's signature by the parent key with the pinned algorithm, the validity window at `now` (root
//! included), basicConstraints (CA flag, pathLen), keyUsage (keyCertSign on CAs, digitalSignature on
//! the leaf, cRLSign on a CRL issuer), unknown critical extensions, and revocation by the CRLs given.
//!
//! What is cached (per verifier, so per pinned policy) is only the expensive, time-independent part:
//! parsing with the static checks, and each verified link signature keyed by (child, parent) DER
//! hashes. The time, constraint and revocation checks run on every call, so a cached certificate is
//! never trusted outside its own validity window; a warm chain costs hashing and lookups. Every
//! lookup of either cache is counted as a hit or a miss ([`ChainVerifier::cache_counts`]).
//!
//! The parts: `der` refuses encodings that are not canonical DER, `facts` parses a certificate and
//! runs its static checks, `chain` walks a chain, `revocation_list` reads a CRL's fields from its
//! DER, `crl` verifies CRLs and answers revocation, `chain_cache` holds the two caches, `rsa` the RSA links and extended key usage Google's vTPM
//! PKI needs, `error` the errors.

mod chain;
mod chain_cache;
mod crl;
pub(crate) mod der;
mod error;
mod facts;
mod revocation_list;
mod rsa;
#[cfg(feature = "tpm")]
pub(crate) use rsa::{spki_key, SpkiKey, SpkiKeyError};
#[cfg(test)]
mod test_pki;

pub(crate) use chain::ChainVerifier;
pub(crate) use chain_cache::ChainCacheCounts;
pub(crate) use crl::VerifiedCrl;
pub use error::X509Error;
pub(crate) use revocation_list::read_crl;

use crate::crypto::Curve;
use x509_parser::oid_registry::{
    Oid, OID_EC_P256, OID_NIST_EC_P384, OID_PKCS1_SHA256WITHRSA, OID_SIG_ECDSA_WITH_SHA256,
    OID_SIG_ECDSA_WITH_SHA384,
};

/// Longest chain we walk (AWS uses 5 certificates, Intel 3).
pub(crate) const MAX_CHAIN_LEN: usize = 8;
/// Largest certificate we parse (real AWS and Intel certificates are under 2 KiB).
pub(crate) const MAX_DER_LEN: usize = 16 * 1024;
/// Largest CRL we parse (Intel's PCK CRLs list many serials).
pub(crate) const MAX_CRL_LEN: usize = 1024 * 1024;

/// The extnValue of the extension `oid` (encoded OID contents) of a certificate that a
/// [`ChainVerifier`] accepted: read from its DER without parsing it again. `None` without it.
pub(crate) fn verified_extension_value<'a>(
    cert_der: &'a [u8],
    oid: &[u8],
) -> Result<Option<&'a [u8]>, String> {
    der::extension_value(cert_der, oid)
}

/// [`facts`]'s parse of one certificate, for the fuzz targets (`crate::fuzzing`).
#[cfg(fuzzing)]
pub(crate) fn parse_certificate_for_fuzzing(der: &[u8]) -> Result<(), X509Error> {
    facts::parse_facts(0, der, SignatureAlgorithm::EcdsaP256Sha256).map(drop)
}

/// The signature algorithm every certificate and CRL of a PKI must use, with its curve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SignatureAlgorithm {
    /// ecdsa-with-SHA256 over prime256v1 (Intel SGX/TDX).
    EcdsaP256Sha256,
    /// ecdsa-with-SHA384 over secp384r1 (AWS Nitro Enclaves).
    EcdsaP384Sha384,
    /// sha256WithRSAEncryption (RSASSA-PKCS1-v1.5) by RSA keys of 2048 to 4096 bits (Google's
    /// vTPM "EK/AK CA" PKI). The leaf may instead hold a P-256 key: it signs no link.
    RsaPkcs1Sha256,
}

impl SignatureAlgorithm {
    /// The curve of an ECDSA PKI; `None` for RSA.
    pub(crate) fn curve(self) -> Option<Curve> {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 => Some(Curve::P256),
            SignatureAlgorithm::EcdsaP384Sha384 => Some(Curve::P384),
            SignatureAlgorithm::RsaPkcs1Sha256 => None,
        }
    }

    fn signature_oid(self) -> Oid<'static> {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 => OID_SIG_ECDSA_WITH_SHA256,
            SignatureAlgorithm::EcdsaP384Sha384 => OID_SIG_ECDSA_WITH_SHA384,
            SignatureAlgorithm::RsaPkcs1Sha256 => OID_PKCS1_SHA256WITHRSA,
        }
    }

    /// The curve every key of an ECDSA PKI is on (`None` for RSA, whose keys `rsa` checks).
    fn curve_oid(self) -> Option<Oid<'static>> {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 => Some(OID_EC_P256),
            SignatureAlgorithm::EcdsaP384Sha384 => Some(OID_NIST_EC_P384),
            SignatureAlgorithm::RsaPkcs1Sha256 => None,
        }
    }
}

/// What a PKI pins: its algorithm and its root certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChainPolicy {
    pub algorithm: SignatureAlgorithm,
    /// SHA-256 of the root certificate's DER.
    pub root_sha256: [u8; 32],
}
