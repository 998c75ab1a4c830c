//! ECDSA verification over NIST P-256/SHA-256 and P-384/SHA-384, the only two algorithms any
//! attestation we accept uses. The backend is aws-lc-rs by default (4–5× faster here than the
//! pure-Rust one); `--features rustcrypto` switches to RustCrypto's `p256`/`p384`.
//!
//! Neither backend enforces low-S: about half of the real Nitro documents carry high-S signatures.

use crate::error::ErrorKind;
use thiserror::Error;

/// A curve together with the hash it is always paired with in our formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Curve {
    /// NIST P-256 with SHA-256 (Intel SGX/TDX PKI, quote and QE report signatures).
    P256,
    /// NIST P-384 with SHA-384 (AWS Nitro PKI and COSE ES384).
    P384,
}

impl Curve {
    /// Length of one scalar (r or s) and one affine coordinate, in bytes.
    pub const fn scalar_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }
}

/// Why a signature did not verify.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// The public key bytes are not a point on the curve.
    #[error("public key is not a valid {0:?} point")]
    InvalidPublicKey(Curve),
    /// The signature bytes are not a valid encoding for the curve (wrong length, bad DER, r or s
    /// out of range).
    #[error("signature encoding is invalid for {0:?}")]
    InvalidSignatureEncoding(Curve),
    /// The signature is well-formed but does not verify over the message.
    #[error("ECDSA signature does not verify")]
    BadSignature,
}

impl CryptoError {
    /// The class of the failure: `Malformed` for a bad public key, `Signature` for any signature
    /// failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CryptoError::InvalidPublicKey(_) => ErrorKind::Malformed,
            CryptoError::InvalidSignatureEncoding(_) | CryptoError::BadSignature => {
                ErrorKind::Signature
            }
        }
    }
}

/// How the signature bytes are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SignatureEncoding {
    /// Fixed-width big-endian r‖s (COSE, TDX quotes, Intel collateral JSON).
    RawRs,
    /// ASN.1 DER `SEQUENCE { r INTEGER, s INTEGER }` (X.509 certificates and CRLs).
    Der,
}

/// Verifies `signature` over `message` (hashed here with the curve's hash) under `public_key`,
/// an uncompressed SEC1 point (`0x04 ‖ X ‖ Y`).
pub(crate) fn verify(
    curve: Curve,
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
    encoding: SignatureEncoding,
) -> Result<(), CryptoError> {
    if encoding == SignatureEncoding::RawRs && signature.len() != 2 * curve.scalar_len() {
        return Err(CryptoError::InvalidSignatureEncoding(curve));
    }
    if public_key.len() != 1 + 2 * curve.scalar_len() || public_key.first() != Some(&0x04) {
        return Err(CryptoError::InvalidPublicKey(curve));
    }
    backend::verify(curve, public_key, message, signature, encoding)
}

/// Prefixes a raw `X ‖ Y` point (as TDX quotes carry it) with the SEC1 uncompressed tag.
pub(crate) fn sec1_from_xy(xy: &[u8]) -> Vec<u8> {
    let mut point = Vec::with_capacity(1 + xy.len());
    point.push(0x04);
    point.extend_from_slice(xy);
    point
}

#[cfg(not(feature = "rustcrypto"))]
mod backend {
    use super::{CryptoError, Curve, SignatureEncoding};
    use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};

    pub(super) fn verify(
        curve: Curve,
        public_key: &[u8],
        message: &[u8],
        sig: &[u8],
        encoding: SignatureEncoding,
    ) -> Result<(), CryptoError> {
        let algorithm: &'static dyn VerificationAlgorithm = match (curve, encoding) {
            (Curve::P256, SignatureEncoding::RawRs) => &signature::ECDSA_P256_SHA256_FIXED,
            (Curve::P256, SignatureEncoding::Der) => &signature::ECDSA_P256_SHA256_ASN1,
            (Curve::P384, SignatureEncoding::RawRs) => &signature::ECDSA_P384_SHA384_FIXED,
            (Curve::P384, SignatureEncoding::Der) => &signature::ECDSA_P384_SHA384_ASN1,
        };
        // aws-lc-rs folds "bad point", "bad encoding" and "wrong signature" into one opaque
        // error; the point and raw length were checked by the caller, so report a bad signature.
        UnparsedPublicKey::new(algorithm, public_key)
            .verify(message, sig)
            .map_err(|_| CryptoError::BadSignature)
    }
}

#[cfg(feature = "rustcrypto")]
mod backend {
    use super::{CryptoError, Curve, SignatureEncoding};
    use p256::ecdsa::signature::Verifier;

    macro_rules! verify_with {
        ($curve_mod:ident, $curve:expr, $key:expr, $msg:expr, $sig:expr, $enc:expr) => {{
            let key = $curve_mod::ecdsa::VerifyingKey::from_sec1_bytes($key)
                .map_err(|_| CryptoError::InvalidPublicKey($curve))?;
            let sig = match $enc {
                SignatureEncoding::RawRs => $curve_mod::ecdsa::Signature::from_slice($sig),
                SignatureEncoding::Der => $curve_mod::ecdsa::Signature::from_der($sig),
            }
            .map_err(|_| CryptoError::InvalidSignatureEncoding($curve))?;
            key.verify($msg, &sig)
                .map_err(|_| CryptoError::BadSignature)
        }};
    }

    pub(super) fn verify(
        curve: Curve,
        public_key: &[u8],
        message: &[u8],
        sig: &[u8],
        encoding: SignatureEncoding,
    ) -> Result<(), CryptoError> {
        match curve {
            Curve::P256 => verify_with!(p256, curve, public_key, message, sig, encoding),
            Curve::P384 => verify_with!(p384, curve, public_key, message, sig, encoding),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{
        EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
        ECDSA_P384_SHA384_ASN1_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
    };

    /// Signs with aws-lc-rs (always available as the test signer) so both verify backends are
    /// exercised against the same independent signatures.
    fn sign(
        alg: &'static aws_lc_rs::signature::EcdsaSigningAlgorithm,
        msg: &[u8],
    ) -> (Vec<u8>, Vec<u8>) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap();
        let sig = pair.sign(&rng, msg).unwrap();
        (pair.public_key().as_ref().to_vec(), sig.as_ref().to_vec())
    }

    /// n − s for a raw r‖s signature: the other, equally valid, signature (high-S ↔ low-S).
    fn flip_s(curve: Curve, sig: &[u8]) -> Vec<u8> {
        let order: &[u8] = match curve {
            Curve::P256 => &hex_lit("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"),
            Curve::P384 => &hex_lit("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973"),
        };
        let n = curve.scalar_len();
        let (r, s) = sig.split_at(n);
        let mut out = r.to_vec();
        let mut diff = vec![0u8; n];
        let mut borrow = 0i16;
        for i in (0..n).rev() {
            let v = order[i] as i16 - s[i] as i16 - borrow;
            borrow = i16::from(v < 0);
            diff[i] = (v + 256 * borrow) as u8;
        }
        out.extend_from_slice(&diff);
        out
    }

    fn hex_lit(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn p384_raw_and_der_verify() {
        let msg = b"attestation document";
        let (key, sig) = sign(&ECDSA_P384_SHA384_FIXED_SIGNING, msg);
        verify(Curve::P384, &key, msg, &sig, SignatureEncoding::RawRs).unwrap();
        let (key, sig) = sign(&ECDSA_P384_SHA384_ASN1_SIGNING, msg);
        verify(Curve::P384, &key, msg, &sig, SignatureEncoding::Der).unwrap();
    }

    #[test]
    fn p256_raw_and_der_verify() {
        let msg = b"td quote";
        let (key, sig) = sign(&ECDSA_P256_SHA256_FIXED_SIGNING, msg);
        verify(Curve::P256, &key, msg, &sig, SignatureEncoding::RawRs).unwrap();
        let (key, sig) = sign(&ECDSA_P256_SHA256_ASN1_SIGNING, msg);
        verify(Curve::P256, &key, msg, &sig, SignatureEncoding::Der).unwrap();
    }

    #[test]
    fn both_s_values_verify() {
        for (curve, alg) in [
            (Curve::P256, &ECDSA_P256_SHA256_FIXED_SIGNING),
            (Curve::P384, &ECDSA_P384_SHA384_FIXED_SIGNING),
        ] {
            let msg = b"high-S is valid ECDSA";
            let (key, sig) = sign(alg, msg);
            let flipped = flip_s(curve, &sig);
            verify(curve, &key, msg, &sig, SignatureEncoding::RawRs).unwrap();
            verify(curve, &key, msg, &flipped, SignatureEncoding::RawRs).unwrap();
        }
    }

    #[test]
    fn tampered_message_or_signature_is_rejected() {
        let msg = b"payload";
        let (key, mut sig) = sign(&ECDSA_P384_SHA384_FIXED_SIGNING, msg);
        assert_eq!(
            verify(
                Curve::P384,
                &key,
                b"payloaD",
                &sig,
                SignatureEncoding::RawRs
            ),
            Err(CryptoError::BadSignature)
        );
        sig[10] ^= 1;
        assert_eq!(
            verify(Curve::P384, &key, msg, &sig, SignatureEncoding::RawRs)
                .unwrap_err()
                .kind()
                .as_str(),
            "signature"
        );
    }

    #[test]
    fn wrong_lengths_and_curves_are_rejected() {
        let msg = b"m";
        let (key, sig) = sign(&ECDSA_P384_SHA384_FIXED_SIGNING, msg);
        assert_eq!(
            verify(Curve::P384, &key, msg, &sig[..95], SignatureEncoding::RawRs),
            Err(CryptoError::InvalidSignatureEncoding(Curve::P384))
        );
        assert_eq!(
            verify(Curve::P256, &key, msg, &sig[..64], SignatureEncoding::RawRs),
            Err(CryptoError::InvalidPublicKey(Curve::P256))
        );
        let mut off_curve = key.clone();
        off_curve[5] ^= 0xff;
        assert!(verify(Curve::P384, &off_curve, msg, &sig, SignatureEncoding::RawRs).is_err());
        assert!(verify(Curve::P384, &key, msg, b"\x30\x00", SignatureEncoding::Der).is_err());
    }
}
