//! Signature verification for the algorithms the attestations we accept use: ECDSA over NIST
//! P-256/SHA-256 and P-384/SHA-384 (Nitro, Intel), and RSASSA-PKCS1-v1.5 with SHA-256 (Google's
//! vTPM PKI and its RSA attestation keys). The backend is aws-lc-rs by default (4–5× faster here
//! than the pure-Rust one); `--features rustcrypto` switches to RustCrypto's `p256`/`p384`/`rsa`.
//!
//! Neither backend enforces low-S: about half of the real Nitro documents carry high-S signatures.
//! RSA keys are checked here, before either backend sees them, so both accept the same keys.

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
    #[error("signature does not verify")]
    BadSignature,
    /// The RSA public key is outside what both backends accept (size, parity, exponent).
    #[error("RSA public key is refused: {0}")]
    InvalidRsaKey(&'static str),
    /// An RSA signature whose length is not the modulus length.
    #[error("RSA signature is {len} bytes, the modulus {expected}")]
    RsaSignatureLength {
        /// Bytes in the signature.
        len: usize,
        /// Bytes in the modulus.
        expected: usize,
    },
}

impl CryptoError {
    /// The class of the failure: `Malformed` for a bad public key (EC point or RSA key),
    /// `Signature` for any signature failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CryptoError::InvalidPublicKey(_) | CryptoError::InvalidRsaKey(_) => {
                ErrorKind::Malformed
            }
            CryptoError::InvalidSignatureEncoding(_)
            | CryptoError::BadSignature
            | CryptoError::RsaSignatureLength { .. } => ErrorKind::Signature,
        }
    }
}

/// Smallest RSA modulus accepted, in bits (Google's AK keys).
pub(crate) const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (Google's EK/AK CA keys).
pub(crate) const RSA_MAX_BITS: usize = 4096;
/// Largest RSA public exponent accepted, the bound both backends share.
const RSA_MAX_EXPONENT: u64 = (1 << 33) - 1;

/// An RSA public key both backends accept: a modulus of 2048 to 4096 bits,
/// odd, and an odd exponent in 3..2³³, both big-endian without leading zeros.
// API through `tpm::RsaPublicKey`; a build without `tpm` has it crate-internal.
#[cfg_attr(not(feature = "tpm"), allow(unreachable_pub))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RsaPublicKey {
    modulus: Vec<u8>,
    exponent: Vec<u8>,
}

#[cfg_attr(not(feature = "tpm"), allow(unreachable_pub))]
impl RsaPublicKey {
    /// Checks and keeps a key given as its big-endian modulus and exponent (DER INTEGER contents:
    /// a leading sign byte of zero is dropped).
    pub fn new(modulus: &[u8], exponent: &[u8]) -> Result<RsaPublicKey, CryptoError> {
        let modulus = strip_leading_zeros(modulus);
        let exponent = strip_leading_zeros(exponent);
        let bits = bit_len(modulus);
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
            return Err(CryptoError::InvalidRsaKey(
                "modulus size is outside 2048-4096 bits",
            ));
        }
        if modulus.last().is_some_and(|byte| byte & 1 == 0) {
            return Err(CryptoError::InvalidRsaKey("modulus is even"));
        }
        let value = (exponent.len() <= 8).then(|| {
            exponent
                .iter()
                .fold(0u64, |value, byte| (value << 8) | u64::from(*byte))
        });
        match value {
            Some(e) if (3..=RSA_MAX_EXPONENT).contains(&e) && e & 1 == 1 => {}
            _ => {
                return Err(CryptoError::InvalidRsaKey(
                    "exponent is not odd and in 3..2^33",
                ))
            }
        }
        Ok(RsaPublicKey {
            modulus: modulus.to_vec(),
            exponent: exponent.to_vec(),
        })
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        bit_len(&self.modulus)
    }

    /// The modulus size in bytes: the length of every signature under this key.
    pub fn modulus_len(&self) -> usize {
        self.modulus.len()
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|byte| *byte != 0)
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// Bits of a big-endian integer without leading zero bytes.
fn bit_len(bytes: &[u8]) -> usize {
    bytes.first().map_or(0, |first| {
        8 * (bytes.len() - 1) + (8 - first.leading_zeros() as usize)
    })
}

/// Verifies an RSASSA-PKCS1-v1.5 signature with SHA-256 (hashed here) over `message`. The
/// signature must be exactly as long as the modulus (RFC 8017 §8.2.2).
pub(crate) fn verify_rsa_pkcs1_sha256(
    public_key: &RsaPublicKey,
    message: &[u8],
    signature: &[u8],
) -> Result<(), CryptoError> {
    if signature.len() != public_key.modulus_len() {
        return Err(CryptoError::RsaSignatureLength {
            len: signature.len(),
            expected: public_key.modulus_len(),
        });
    }
    backend::verify_rsa_pkcs1_sha256(public_key, message, signature)
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
    use super::{CryptoError, Curve, RsaPublicKey, SignatureEncoding};
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

    pub(super) fn verify_rsa_pkcs1_sha256(
        key: &RsaPublicKey,
        message: &[u8],
        sig: &[u8],
    ) -> Result<(), CryptoError> {
        signature::RsaPublicKeyComponents {
            n: &key.modulus,
            e: &key.exponent,
        }
        .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
        .map_err(|_| CryptoError::BadSignature)
    }
}

#[cfg(feature = "rustcrypto")]
mod backend {
    use super::{CryptoError, Curve, RsaPublicKey, SignatureEncoding};
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

    pub(super) fn verify_rsa_pkcs1_sha256(
        key: &RsaPublicKey,
        message: &[u8],
        sig: &[u8],
    ) -> Result<(), CryptoError> {
        use rsa::pkcs1v15::{Signature, VerifyingKey};
        use rsa::BigUint;
        // The key was checked by RsaPublicKey::new, within the rsa crate's own 4096-bit bound.
        let key = rsa::RsaPublicKey::new(
            BigUint::from_bytes_be(&key.modulus),
            BigUint::from_bytes_be(&key.exponent),
        )
        .map_err(|_| CryptoError::InvalidRsaKey("rejected by the rsa crate"))?;
        let sig = Signature::try_from(sig).map_err(|_| CryptoError::BadSignature)?;
        VerifyingKey::<sha2::Sha256>::new(key)
            .verify(message, &sig)
            .map_err(|_| CryptoError::BadSignature)
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

    /// A fresh RSA key (aws-lc-rs signs for both verify backends) and its checked public key.
    fn rsa_key(size: aws_lc_rs::rsa::KeySize) -> (aws_lc_rs::rsa::KeyPair, RsaPublicKey) {
        use x509_parser::prelude::FromDer;
        let pair = aws_lc_rs::rsa::KeyPair::generate(size).unwrap();
        let pkcs1 = pair.public_key().as_ref().to_vec();
        let (_, parsed) = x509_parser::public_key::RSAPublicKey::from_der(&pkcs1).unwrap();
        let public = RsaPublicKey::new(parsed.modulus, parsed.exponent).unwrap();
        (pair, public)
    }

    fn rsa_sign(pair: &aws_lc_rs::rsa::KeyPair, msg: &[u8]) -> Vec<u8> {
        let mut sig = vec![0; pair.public_modulus_len()];
        pair.sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            msg,
            &mut sig,
        )
        .unwrap();
        sig
    }

    #[test]
    fn rsa_2048_and_4096_pkcs1_sha256_verify() {
        use aws_lc_rs::rsa::KeySize;
        for (size, bits) in [(KeySize::Rsa2048, 2048), (KeySize::Rsa4096, 4096)] {
            let (pair, public) = rsa_key(size);
            assert_eq!(public.bits(), bits);
            let msg = b"TPMS_ATTEST";
            let sig = rsa_sign(&pair, msg);
            verify_rsa_pkcs1_sha256(&public, msg, &sig).unwrap();

            assert_eq!(
                verify_rsa_pkcs1_sha256(&public, b"TPMS_ATTESt", &sig),
                Err(CryptoError::BadSignature)
            );
            let mut tampered = sig.clone();
            tampered[7] ^= 1;
            let err = verify_rsa_pkcs1_sha256(&public, msg, &tampered).unwrap_err();
            assert_eq!(
                (err.clone(), err.kind()),
                (CryptoError::BadSignature, ErrorKind::Signature)
            );
            // RFC 8017: a signature shorter or longer than the modulus is refused unread.
            let mut padded = vec![0];
            padded.extend_from_slice(&sig);
            for wrong in [&sig[1..], &padded[..]] {
                let err = verify_rsa_pkcs1_sha256(&public, msg, wrong).unwrap_err();
                assert!(matches!(err, CryptoError::RsaSignatureLength { .. }));
                assert_eq!(err.kind(), ErrorKind::Signature);
            }
        }
    }

    #[test]
    fn rsa_keys_outside_the_accepted_shape_are_refused() {
        let (_, public) = rsa_key(aws_lc_rs::rsa::KeySize::Rsa2048);
        let (n, e) = (public.modulus.clone(), public.exponent.clone());
        // DER's sign byte is dropped.
        let mut signed_n = vec![0];
        signed_n.extend_from_slice(&n);
        assert_eq!(RsaPublicKey::new(&signed_n, &e).unwrap(), public);

        let mut even = n.clone();
        *even.last_mut().unwrap() &= 0xfe;
        let too_long = [0xffu8; 513];
        let cases: [(&[u8], &[u8]); 8] = [
            (&n[..127], &e),
            (&n[1..], &e),
            (&too_long, &e),
            (&even, &e),
            (&n, &[1]),
            (&n, &[0x01, 0x00, 0x00]),
            (&n, &[0x02, 0x00, 0x00, 0x00, 0x01]),
            (&n, &[]),
        ];
        for (modulus, exponent) in cases {
            let err = RsaPublicKey::new(modulus, exponent).unwrap_err();
            assert!(matches!(err, CryptoError::InvalidRsaKey(_)), "{err}");
            assert_eq!(err.kind(), ErrorKind::Malformed);
        }
        // 2^33 - 1 is the largest exponent either backend takes.
        RsaPublicKey::new(&n, &[0x01, 0xff, 0xff, 0xff, 0xff]).unwrap();
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
