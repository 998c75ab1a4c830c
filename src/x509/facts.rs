//! Certificate facts: what the walker needs of a certificate, parsed once, with the checks that
//! depend neither on time nor on the certificate's place in a chain (size, encoding, pinned
//! algorithm and curve, duplicate and unknown critical extensions, decodable constraints).

use super::rsa::{rsa_pki_key, EkuFacts};
use super::{SignatureAlgorithm, X509Error, MAX_DER_LEN};
use crate::crypto::RsaPublicKey;
use std::collections::HashSet;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::{
    OID_KEY_TYPE_EC_PUBLIC_KEY, OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_KEY_USAGE,
};
use x509_parser::prelude::FromDer;

/// What the walker needs of a certificate, after its time-independent checks passed.
#[derive(Debug)]
pub(super) struct CertFacts {
    pub(super) subject: Vec<u8>,
    pub(super) issuer: Vec<u8>,
    /// Common name (or the whole subject) for error messages.
    pub(super) label: String,
    pub(super) serial: Vec<u8>,
    pub(super) public_key: Vec<u8>,
    /// The RSA key of a certificate in an RSA PKI (`None` for ECDSA PKIs and P-256 leaves).
    pub(super) rsa_key: Option<RsaPublicKey>,
    pub(super) tbs: Vec<u8>,
    pub(super) signature: Vec<u8>,
    pub(super) not_before: u64,
    pub(super) not_after: u64,
    pub(super) basic_constraints: Option<BasicConstraintsFacts>,
    pub(super) key_usage: Option<KeyUsageFacts>,
    pub(super) extended_key_usage: Option<EkuFacts>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct BasicConstraintsFacts {
    pub(super) critical: bool,
    pub(super) ca: bool,
    pub(super) path_len: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct KeyUsageFacts {
    pub(super) digital_signature: bool,
    pub(super) key_cert_sign: bool,
    pub(super) crl_sign: bool,
}

/// Parses a certificate and runs the checks that do not depend on time or on its place in a chain.
pub(super) fn parse_facts(
    index: usize,
    der: &[u8],
    algorithm: SignatureAlgorithm,
) -> Result<CertFacts, X509Error> {
    let unparsable = |reason: String| X509Error::Unparsable { index, reason };
    if der.len() > MAX_DER_LEN {
        return Err(unparsable("larger than allowed".into()));
    }
    let cert = match X509Certificate::from_der(der) {
        Ok((&[], cert)) => cert,
        Ok(_) => return Err(unparsable("trailing bytes after the certificate".into())),
        Err(e) => return Err(unparsable(e.to_string())),
    };
    // x509-parser reads some non-DER encodings of its unsigned parts; one certificate, one
    // encoding.
    super::der::check_signed_object(der).map_err(|reason| X509Error::NotDer { index, reason })?;
    let label = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map_or_else(|| cert.subject().to_string(), str::to_owned);
    let algorithm_error = |what, found: String, expected: String| X509Error::Algorithm {
        subject: label.clone(),
        what,
        found,
        expected,
    };
    let expected_sig = algorithm.signature_oid();
    for found in [
        &cert.signature_algorithm.algorithm,
        &cert.tbs_certificate.signature.algorithm,
    ] {
        if *found != expected_sig {
            return Err(algorithm_error(
                "signature algorithm",
                found.to_id_string(),
                expected_sig.to_id_string(),
            ));
        }
    }
    let spki = cert.public_key();
    let rsa_key = match algorithm.curve_oid() {
        None => rsa_pki_key(spki, &label)?,
        Some(curve_oid) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY
                || curve.as_ref() != Some(&curve_oid)
            {
                return Err(algorithm_error(
                    "public key",
                    format!(
                        "{} {:?}",
                        spki.algorithm.algorithm,
                        curve.map(|c| c.to_id_string())
                    ),
                    format!("EC {curve_oid}"),
                ));
            }
            None
        }
    };

    let mut basic_constraints = None;
    let mut key_usage = None;
    let mut extended_key_usage = None;
    let mut seen = HashSet::new();
    for ext in cert.extensions() {
        // RFC 5280 §4.2: an extension appears at most once; "last one wins" would let a
        // second basicConstraints override the first.
        if !seen.insert(ext.oid.as_bytes()) {
            return Err(unparsable(format!("extension {} appears twice", ext.oid)));
        }
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => {
                basic_constraints = Some(BasicConstraintsFacts {
                    critical: ext.critical,
                    ca: bc.ca,
                    path_len: bc.path_len_constraint,
                });
            }
            ParsedExtension::KeyUsage(ku) => {
                key_usage = Some(KeyUsageFacts {
                    digital_signature: ku.digital_signature(),
                    key_cert_sign: ku.key_cert_sign(),
                    crl_sign: ku.crl_sign(),
                });
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                extended_key_usage = Some(EkuFacts::new(eku, ext.critical));
            }
            _ if ext.critical => {
                return Err(X509Error::UnknownCriticalExtension {
                    subject: label,
                    oid: ext.oid.to_id_string(),
                });
            }
            _ => {}
        }
    }
    // A basicConstraints or keyUsage that x509-parser could not decode must not pass as absent.
    for oid in [OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_KEY_USAGE] {
        let present = cert.extensions().iter().any(|e| e.oid == oid);
        let decoded = if oid == OID_X509_EXT_BASIC_CONSTRAINTS {
            basic_constraints.is_some()
        } else {
            key_usage.is_some()
        };
        if present && !decoded {
            return Err(unparsable(format!("extension {oid} cannot be decoded")));
        }
    }

    let validity = cert.validity();
    Ok(CertFacts {
        subject: cert.subject().as_raw().to_vec(),
        issuer: cert.issuer().as_raw().to_vec(),
        serial: normalized_serial(cert.raw_serial()).to_vec(),
        public_key: spki.subject_public_key.data.to_vec(),
        rsa_key,
        tbs: cert.tbs_certificate.as_ref().to_vec(),
        signature: cert.signature_value.data.to_vec(),
        not_before: to_unix(validity.not_before.timestamp()),
        not_after: to_unix(validity.not_after.timestamp()),
        basic_constraints,
        key_usage,
        extended_key_usage,
        label,
    })
}

/// Serial numbers compared without DER's sign-padding zeros.
pub(super) fn normalized_serial(raw: &[u8]) -> &[u8] {
    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    &raw[start..]
}

/// X.509 times before 1970 cannot occur in any PKI we accept; clamp rather than wrap.
pub(super) fn to_unix(timestamp: i64) -> u64 {
    u64::try_from(timestamp).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use crate::x509::test_pki::{kind, verifier_for, Pki, Spec, NOW};
    use crate::x509::SignatureAlgorithm;
    use rcgen::{CustomExtension, IsCa, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384};

    #[test]
    fn algorithm_and_curve_are_pinned() {
        let pki = Pki::issue(
            &[Spec::ca("root", None), Spec::leaf("leaf")],
            &PKCS_ECDSA_P256_SHA256,
        );
        let p384_policy = verifier_for(&pki.ders[0], SignatureAlgorithm::EcdsaP384Sha384);
        assert_eq!(
            kind(p384_policy.verify(&pki.chain(), NOW, &[])),
            "algorithm"
        );
        let p256_policy = verifier_for(&pki.ders[0], SignatureAlgorithm::EcdsaP256Sha256);
        p256_policy.verify(&pki.chain(), NOW, &[]).unwrap();
    }

    #[test]
    fn duplicate_extensions_are_rejected() {
        // basicConstraints CA:FALSE then CA:TRUE: a "last one wins" reader would make it a CA.
        let mut mid = Spec::ca("intermediate", Some(0));
        mid.ca = IsCa::NoCa;
        let mut not_ca = CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 0x00]);
        not_ca.set_criticality(true);
        let mut ca =
            CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 0x03, 0x01, 0x01, 0xff]);
        ca.set_criticality(true);
        mid.extra = vec![not_ca, ca];
        let pki = Pki::issue(
            &[Spec::ca("root", None), mid, Spec::leaf("leaf")],
            &PKCS_ECDSA_P384_SHA384,
        );
        assert_eq!(
            kind(pki.verifier().verify(&pki.chain(), NOW, &[])),
            "certificate_invalid"
        );
    }
}
