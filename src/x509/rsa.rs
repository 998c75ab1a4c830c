//! What Google's vTPM "EK/AK CA" PKI adds to the walker: RSA keys and sha256WithRSAEncryption
//! links ([`SignatureAlgorithm::RsaPkcs1Sha256`]), and the extended key usage upstream's webpki
//! checks with `KeyUsage::required_if_present(2.23.133.8.1)` (dstack tpm-qvl).
//!
//! The signature of every link and CRL goes through [`verify_signed_by`], whichever the PKI's
//! algorithm, so an ECDSA PKI and an RSA one share the walk.

use super::facts::CertFacts;
use super::{SignatureAlgorithm, X509Error};
use crate::crypto::{self, RsaPublicKey, SignatureEncoding};
use x509_parser::extensions::ExtendedKeyUsage;
use x509_parser::oid_registry::{
    Oid, OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION,
};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// What an RSA PKI accepts as a key, for the error message.
const RSA_PKI_KEYS: &str = "RSA of 2048-4096 bits (or EC P-256 on a leaf)";

/// A SubjectPublicKeyInfo's key as Google's vTPM PKI has them.
pub(crate) enum SpkiKey {
    /// rsaEncryption, of a size the crypto backend takes.
    Rsa(RsaPublicKey),
    /// id-ecPublicKey on P-256 (the uncompressed point is the SPKI's BIT STRING).
    P256,
}

/// Why a SubjectPublicKeyInfo is not an [`SpkiKey`].
pub(crate) enum SpkiKeyError {
    /// rsaEncryption whose key does not decode.
    UndecodableRsa,
    /// Another algorithm or curve, or an RSA key the backend refuses; says which.
    Unsupported(String),
}

/// Reads `spki` as an RSA or a P-256 key; the one reading the AK and the CA walker share.
pub(crate) fn spki_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<SpkiKey, SpkiKeyError> {
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        return match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => RsaPublicKey::new(rsa.modulus, rsa.exponent)
                .map(SpkiKey::Rsa)
                .map_err(|error| SpkiKeyError::Unsupported(error.to_string())),
            _ => Err(SpkiKeyError::UndecodableRsa),
        };
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|parameters| parameters.as_oid().ok());
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY && curve == Some(OID_EC_P256) {
        return Ok(SpkiKey::P256);
    }
    Err(SpkiKeyError::Unsupported(format!(
        "{algorithm} {}",
        curve.map_or_else(String::new, |curve| curve.to_id_string())
    )))
}

/// The key of a certificate in an RSA PKI: an RSA key of 2048 to 4096 bits (`Some`), or a P-256
/// key (`None`), which only a leaf may hold since it can sign no RSA link.
pub(super) fn rsa_pki_key(
    spki: &SubjectPublicKeyInfo<'_>,
    subject: &str,
) -> Result<Option<RsaPublicKey>, X509Error> {
    match spki_key(spki) {
        Ok(SpkiKey::Rsa(key)) => Ok(Some(key)),
        Ok(SpkiKey::P256) => Ok(None),
        Err(SpkiKeyError::UndecodableRsa) => Err(X509Error::Unparsable {
            index: 0,
            reason: format!("{subject}: RSA public key cannot be decoded"),
        }),
        Err(SpkiKeyError::Unsupported(found)) => Err(X509Error::Algorithm {
            subject: subject.to_owned(),
            what: "public key",
            found,
            expected: RSA_PKI_KEYS.to_owned(),
        }),
    }
}

/// Verifies `signature` over `message` by `signer`'s key with the PKI's algorithm. A signer
/// whose key cannot make that signature (a P-256 key in an RSA PKI) is an `algorithm` error;
/// a signature that does not verify is `bad_signature()`.
pub(super) fn verify_signed_by(
    algorithm: SignatureAlgorithm,
    signer: &CertFacts,
    message: &[u8],
    signature: &[u8],
    bad_signature: impl FnOnce() -> X509Error,
) -> Result<(), X509Error> {
    let verified = match (algorithm.curve(), &signer.rsa_key) {
        (Some(curve), _) => crypto::verify(
            curve,
            &signer.public_key,
            message,
            signature,
            SignatureEncoding::Der,
        ),
        (None, Some(key)) => crypto::verify_rsa_pkcs1_sha256(key, message, signature),
        (None, None) => {
            return Err(X509Error::Algorithm {
                subject: signer.label.clone(),
                what: "signing key",
                found: "EC P-256".into(),
                expected: "RSA (it signs certificates or CRLs)".into(),
            })
        }
    };
    verified.map_err(|_| bad_signature())
}

/// A certificate's extendedKeyUsage, as the walker checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct EkuFacts {
    pub(super) critical: bool,
    /// The purposes outside RFC 5280's named ones (DER OID contents).
    pub(super) other: Vec<Vec<u8>>,
}

impl EkuFacts {
    pub(super) fn new(eku: &ExtendedKeyUsage<'_>, critical: bool) -> Self {
        EkuFacts {
            critical,
            other: eku
                .other
                .iter()
                .map(|oid| oid.as_bytes().to_vec())
                .collect(),
        }
    }
}

/// The extended key usage rule of a walker, checked on every certificate below the pinned root.
/// With a required purpose, webpki's `required_if_present`: a certificate without the extension
/// passes, one with it must list the purpose (anyExtendedKeyUsage does not stand in for it).
/// Without one, a critical extendedKeyUsage is refused: nothing here would honour it.
pub(super) fn check_eku(
    cert: &CertFacts,
    required: Option<&Oid<'static>>,
) -> Result<(), X509Error> {
    let Some(eku) = &cert.extended_key_usage else {
        return Ok(());
    };
    match required {
        Some(purpose) if !eku.other.iter().any(|oid| oid == purpose.as_bytes()) => {
            Err(X509Error::Constraint {
                subject: cert.label.clone(),
                problem: "extendedKeyUsage does not list the purpose this PKI requires",
            })
        }
        None if eku.critical => Err(X509Error::UnknownCriticalExtension {
            subject: cert.label.clone(),
            oid: "2.5.29.37 (extendedKeyUsage)".into(),
        }),
        _ => Ok(()),
    }
}
