//! TPMT_SIGNATURE (TPM 2.0 Part 2 §11.3.4) and the attestation key that verifies it. Only the two
//! schemes a vTPM attestation key uses are accepted, both over SHA-256: RSASSA-PKCS1-v1.5 and
//! ECDSA on P-256. Bytes after the signature are ignored: the guest sends the rest of the TPM
//! response (its auth area) with it.

use super::reader::Reader;
use super::{TpmError, TPM_ALG_ECDSA, TPM_ALG_RSASSA, TPM_ALG_SHA256};
use crate::crypto::{self, Curve, RsaPublicKey, SignatureEncoding};
use crate::x509::{spki_key, SpkiKey, SpkiKeyError};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

/// Length of a P-256 scalar (r or s).
const P256_SCALAR_LEN: usize = 32;

/// A signature scheme, with the hash (always SHA-256) it is paired with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureScheme {
    /// RSASSA-PKCS1-v1.5 with SHA-256.
    RsassaSha256,
    /// ECDSA on P-256 with SHA-256.
    EcdsaP256Sha256,
}

impl SignatureScheme {
    /// The name shown in output.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureScheme::RsassaSha256 => "rsassa-pkcs1v15-sha256",
            SignatureScheme::EcdsaP256Sha256 => "ecdsa-p256-sha256",
        }
    }
}

/// A parsed TPMT_SIGNATURE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TpmSignature {
    /// `TPMS_SIGNATURE_RSASSA`: the PKCS#1 v1.5 signature, as long as the key's modulus.
    Rsassa {
        /// The signature, big-endian.
        signature: Vec<u8>,
    },
    /// `TPMS_SIGNATURE_ECDSA` on P-256: r and s, each exactly 32 bytes.
    Ecdsa {
        /// The r scalar, big-endian.
        r: [u8; P256_SCALAR_LEN],
        /// The s scalar, big-endian.
        s: [u8; P256_SCALAR_LEN],
    },
}

impl TpmSignature {
    /// Parses a TPMT_SIGNATURE from the start of `bytes`; whatever follows it is ignored.
    pub fn parse(bytes: &[u8]) -> Result<TpmSignature, TpmError> {
        let mut reader = Reader::new(bytes);
        let scheme = reader.be_u16("sigAlg")?;
        let hash = reader.be_u16("signature hash")?;
        if scheme != TPM_ALG_RSASSA && scheme != TPM_ALG_ECDSA {
            return Err(TpmError::UnsupportedScheme(scheme));
        }
        if hash != TPM_ALG_SHA256 {
            return Err(TpmError::UnsupportedHash(hash));
        }
        if scheme == TPM_ALG_RSASSA {
            let signature = reader.tpm2b("RSASSA signature")?.to_vec();
            return Ok(TpmSignature::Rsassa { signature });
        }
        let scalar = |reader: &mut Reader, which| {
            let bytes = reader.tpm2b(which)?;
            <[u8; P256_SCALAR_LEN]>::try_from(bytes).map_err(|_| TpmError::EcdsaScalarLength {
                which,
                len: bytes.len(),
            })
        };
        let r = scalar(&mut reader, "r")?;
        let s = scalar(&mut reader, "s")?;
        Ok(TpmSignature::Ecdsa { r, s })
    }

    /// The scheme (and hash) of this signature.
    pub fn scheme(&self) -> SignatureScheme {
        match self {
            TpmSignature::Rsassa { .. } => SignatureScheme::RsassaSha256,
            TpmSignature::Ecdsa { .. } => SignatureScheme::EcdsaP256Sha256,
        }
    }
}

/// The public part of an attestation key, as its certificate carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AkPublicKey {
    /// An RSA key (Google's RSA-2048 AKs), for RSASSA-PKCS1-v1.5/SHA-256 signatures.
    Rsa(RsaPublicKey),
    /// An uncompressed SEC1 point on P-256.
    EcdsaP256(Vec<u8>),
}

impl AkPublicKey {
    /// The key of a certificate's SubjectPublicKeyInfo: rsaEncryption, or id-ecPublicKey on
    /// P-256. Nothing about the certificate itself is checked here.
    pub fn from_spki(spki: &SubjectPublicKeyInfo) -> Result<AkPublicKey, TpmError> {
        match spki_key(spki) {
            Ok(SpkiKey::Rsa(key)) => Ok(AkPublicKey::Rsa(key)),
            Ok(SpkiKey::P256) => Ok(AkPublicKey::EcdsaP256(
                spki.subject_public_key.data.to_vec(),
            )),
            Err(SpkiKeyError::UndecodableRsa) => Err(TpmError::AkCertificate(
                "RSA public key cannot be decoded".into(),
            )),
            Err(SpkiKeyError::Unsupported(found)) => Err(TpmError::UnsupportedKey(found)),
        }
    }

    /// The key of a DER certificate (the `ak_cert` a quote comes with). Its chain is the
    /// caller's to verify.
    pub fn from_certificate(der: &[u8]) -> Result<AkPublicKey, TpmError> {
        let certificate = match X509Certificate::from_der(der) {
            Ok((&[], certificate)) => certificate,
            Ok(_) => return Err(TpmError::AkCertificate("trailing bytes".into())),
            Err(error) => return Err(TpmError::AkCertificate(error.to_string())),
        };
        AkPublicKey::from_spki(certificate.public_key())
    }

    fn kind(&self) -> &'static str {
        match self {
            AkPublicKey::Rsa(_) => "RSA",
            AkPublicKey::EcdsaP256(_) => "ECC P-256",
        }
    }

    /// Verifies `signature` over `message` (hashed here with SHA-256, as the TPM did).
    pub fn verify(&self, message: &[u8], signature: &TpmSignature) -> Result<(), TpmError> {
        match (self, signature) {
            (AkPublicKey::Rsa(key), TpmSignature::Rsassa { signature }) => {
                Ok(crypto::verify_rsa_pkcs1_sha256(key, message, signature)?)
            }
            (AkPublicKey::EcdsaP256(point), TpmSignature::Ecdsa { r, s }) => {
                let mut raw = [0u8; 2 * P256_SCALAR_LEN];
                raw[..P256_SCALAR_LEN].copy_from_slice(r);
                raw[P256_SCALAR_LEN..].copy_from_slice(s);
                Ok(crypto::verify(
                    Curve::P256,
                    point,
                    message,
                    &raw,
                    SignatureEncoding::RawRs,
                )?)
            }
            (key, signature) => Err(TpmError::KeyMismatch {
                key: key.kind(),
                signature: match signature {
                    TpmSignature::Rsassa { .. } => "RSASSA",
                    TpmSignature::Ecdsa { .. } => "ECDSA",
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::test_support::{tpmt_ecdsa, tpmt_rsassa, AkKey, RESPONSE_AUTH_AREA};

    #[test]
    fn both_schemes_parse_and_trailing_bytes_are_ignored() {
        let rsa = [tpmt_rsassa(&[9; 256]), RESPONSE_AUTH_AREA.to_vec()].concat();
        assert_eq!(
            TpmSignature::parse(&rsa).unwrap(),
            TpmSignature::Rsassa {
                signature: vec![9; 256]
            }
        );
        let ecdsa = [tpmt_ecdsa(&[1; 32], &[2; 32]), vec![0xff; 40]].concat();
        let parsed = TpmSignature::parse(&ecdsa).unwrap();
        assert_eq!(
            parsed,
            TpmSignature::Ecdsa {
                r: [1; 32],
                s: [2; 32]
            }
        );
        assert_eq!(parsed.scheme().as_str(), "ecdsa-p256-sha256");
    }

    #[test]
    fn ecdsa_scalars_must_be_exactly_32_bytes() {
        let mut padded_r = vec![0];
        padded_r.extend_from_slice(&[1; 32]);
        for (r, s, which, len) in [
            (&padded_r[..], &[2u8; 32][..], "r", 33),
            (&[1u8; 32][..], &[2u8; 31][..], "s", 31),
            (&[1u8; 31][..], &[2u8; 33][..], "r", 31),
        ] {
            let err = TpmSignature::parse(&tpmt_ecdsa(r, s)).unwrap_err();
            assert_eq!(err, TpmError::EcdsaScalarLength { which, len });
            assert_eq!(err.kind().as_str(), "signature");
        }
    }

    #[test]
    fn other_schemes_hashes_and_truncations_are_refused() {
        let mut pss = tpmt_rsassa(&[9; 256]);
        pss[1] = 0x16; // TPM_ALG_RSAPSS
        let mut sha1 = tpmt_ecdsa(&[1; 32], &[2; 32]);
        sha1[3] = 0x04;
        for (bytes, expected) in [
            (pss, TpmError::UnsupportedScheme(0x0016)),
            (sha1, TpmError::UnsupportedHash(0x0004)),
        ] {
            let err = TpmSignature::parse(&bytes).unwrap_err();
            assert_eq!(err, expected);
            assert_eq!(err.kind().as_str(), "algorithm");
        }
        let ecdsa = tpmt_ecdsa(&[1; 32], &[2; 32]);
        for len in 0..ecdsa.len() {
            let err = TpmSignature::parse(&ecdsa[..len]).unwrap_err();
            assert!(matches!(err, TpmError::Truncated { .. }), "{len}: {err}");
            assert_eq!(err.kind().as_str(), "malformed");
        }
    }

    #[test]
    fn attestation_keys_come_from_rsa_and_p256_certificates_only() {
        let ecc = AkKey::ecc();
        let key = AkPublicKey::from_certificate(&ecc.bare_certificate()).unwrap();
        assert!(matches!(&key, AkPublicKey::EcdsaP256(point) if point.len() == 65));

        let p384 = AkKey {
            key_pair: rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
        };
        let err = AkPublicKey::from_certificate(&p384.bare_certificate()).unwrap_err();
        assert!(matches!(err, TpmError::UnsupportedKey(_)), "{err}");
        assert_eq!(err.kind().as_str(), "algorithm");

        let mut trailing = ecc.bare_certificate();
        trailing.push(0);
        for bytes in [&b"not a certificate"[..], &trailing] {
            let err = AkPublicKey::from_certificate(bytes).unwrap_err();
            assert!(matches!(err, TpmError::AkCertificate(_)), "{err}");
            assert_eq!(err.kind().as_str(), "malformed");
        }
    }

    fn sample_certificate(name: &str) -> Option<Vec<u8>> {
        let dir = crate::tpm::samples::samples_dir();
        let pem = std::fs::read(dir.join("gcp").join(name)).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        Some(pem.contents)
    }

    /// Google's real chain is RSA-4096 signing with sha256WithRSAEncryption: its links verify
    /// through `crypto` (under either backend) with keys read as attestation keys are.
    #[test]
    fn real_google_links_verify_through_crypto() {
        let (Some(root), Some(intermediate), Some(leaf)) = (
            sample_certificate("google_ekak_ca_root.pem"),
            sample_certificate("salrashid_ak_intermediate.pem"),
            sample_certificate("salrashid_akcert.pem"),
        ) else {
            return;
        };
        let key = |der: &[u8]| match AkPublicKey::from_certificate(der).unwrap() {
            AkPublicKey::Rsa(key) => key,
            other => panic!("not RSA: {other:?}"),
        };
        assert_eq!(key(&root).bits(), 4096);
        assert_eq!(key(&intermediate).bits(), 4096);
        assert_eq!(key(&leaf).bits(), 2048);
        for (child, parent) in [
            (&leaf, &intermediate),
            (&intermediate, &root),
            (&root, &root),
        ] {
            let (_, cert) = X509Certificate::from_der(child).unwrap();
            crypto::verify_rsa_pkcs1_sha256(
                &key(parent),
                cert.tbs_certificate.as_ref(),
                &cert.signature_value.data,
            )
            .unwrap();
        }
        let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
        let err = crypto::verify_rsa_pkcs1_sha256(
            &key(&root),
            cert.tbs_certificate.as_ref(),
            &cert.signature_value.data,
        )
        .unwrap_err();
        assert_eq!(err.kind().as_str(), "signature");
    }
}
