//! AWS Nitro Enclaves attestation documents: COSE_Sign1 (ES384) over a CBOR payload, signed by a
//! 3-hour leaf that chains through the document's `cabundle` to the pinned AWS Nitro Enclaves
//! Root G1.
//!
//! [`NitroVerifier::verify`] runs, in order:
//! 1. structure: size bound, COSE envelope (tag 18 or none, protected header exactly ES384, empty
//!    unprotected map, payload present) and every payload field rule ([`parse_document`]);
//! 2. the chain `certificate → cabundle[n-1] → … → cabundle[0]` at `now`, with `cabundle[0]` the
//!    pinned root (the crate's X.509 chain walker, which caches only time-independent work);
//! 3. the COSE signature with the leaf key over the received bytes (high-S accepted);
//! 4. freshness of the signed timestamp, the caller's bindings (nonce, user_data, public_key),
//!    and last the debug-enclave refusal, so that verdict is only given for an authentic document.

mod cose;
mod document;
mod error;

pub use crate::cbor::CborError;
pub use cose::{MAX_DOCUMENT_LEN, MAX_PAYLOAD_LEN};
pub use document::{
    os_image_hash, AttestationDocument, DEBUG_OS_IMAGE_HASH, MAX_FIELD_LEN, MAX_PCRS,
};
pub use error::NitroError;

use crate::crypto::{self, Curve, SignatureEncoding};
use crate::x509::{ChainCacheCounts, ChainPolicy, ChainVerifier, SignatureAlgorithm};
use cose::Envelope;
use sha2::{Digest, Sha256};

/// AWS Nitro Enclaves Root G1 (`CN=aws.nitro-enclaves`, valid 2019-10-28 → 2049-10-28), DER.
pub const AWS_NITRO_ROOT_G1_DER: &[u8] = include_bytes!("aws_nitro_root_g1.der");

/// SHA-256 of [`AWS_NITRO_ROOT_G1_DER`]: the pin (not the hash of AWS's ZIP or of a PEM file).
pub const AWS_NITRO_ROOT_G1_SHA256: [u8; 32] = [
    0x64, 0x1a, 0x03, 0x21, 0xa3, 0xe2, 0x44, 0xef, 0xe4, 0x56, 0x46, 0x31, 0x95, 0xd6, 0x06, 0x31,
    0x7e, 0xd7, 0xcd, 0xcc, 0x3c, 0x17, 0x56, 0xe0, 0x98, 0x93, 0xf3, 0xc6, 0x8f, 0x79, 0xbb, 0x5b,
];

/// How far the document timestamp may run ahead of `now`: clock skew between us and AWS.
pub const MAX_FUTURE_SKEW_SECS: u64 = 300;

/// What the caller requires beyond authenticity. The default binds nothing, sets no maximum age
/// (a timestamp more than [`MAX_FUTURE_SKEW_SECS`] after `now` is always refused) and refuses
/// debug enclaves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expectations {
    /// Each `Some` value must be present in the document (not null) and equal byte for byte.
    /// The nonce should be one the caller issued for this request and never accepts twice.
    pub nonce: Option<Vec<u8>>,
    /// Expected `user_data`.
    pub user_data: Option<Vec<u8>>,
    /// Expected `public_key`.
    pub public_key: Option<Vec<u8>>,
    /// Maximum age of the document's signed timestamp at `now`.
    pub max_age_secs: Option<u64>,
    /// Accept debug-mode enclaves (PCR0..2 all zero). Only for development.
    pub allow_debug: bool,
}

/// A document that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedDocument {
    /// The document's fields.
    pub document: AttestationDocument,
    /// sha256(PCR0 ‖ PCR1 ‖ PCR2).
    pub os_image_hash: [u8; 32],
    /// The earliest notAfter of the certificate chain (unix seconds): this verification holds no
    /// later.
    pub valid_until: u64,
}

/// Verifies Nitro documents against one pinned root. Cheap to clone; clones share the chain cache
/// and its counters.
#[derive(Clone)]
pub struct NitroVerifier {
    chain: ChainVerifier,
}

impl Default for NitroVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl NitroVerifier {
    /// Pins the AWS Nitro Enclaves Root G1.
    pub fn new() -> Self {
        Self::with_root_sha256(AWS_NITRO_ROOT_G1_SHA256)
    }

    /// Pins another root, given as DER (a private or test PKI; the service's `--nitro-root`).
    pub fn with_root_der(root_der: &[u8]) -> Self {
        Self::with_root_sha256(Sha256::digest(root_der).into())
    }

    fn with_root_sha256(root_sha256: [u8; 32]) -> Self {
        let policy = ChainPolicy {
            algorithm: SignatureAlgorithm::EcdsaP384Sha384,
            root_sha256,
        };
        NitroVerifier {
            chain: ChainVerifier::new(policy),
        }
    }

    /// Hits and misses of the chain walker's caches, its only caches: one certificate lookup per
    /// certificate of each chain walked (leaf, cabundle), one link lookup per link.
    pub fn cache_counts(&self) -> ChainCacheCounts {
        self.chain.cache_counts()
    }

    /// Verifies `document` (raw COSE_Sign1 bytes) at `now` (Unix seconds).
    pub fn verify(
        &self,
        document: &[u8],
        now: u64,
        expect: &Expectations,
    ) -> Result<VerifiedDocument, NitroError> {
        let (envelope, document) = decode(document)?;
        let os_image_hash = document.os_image_hash()?;

        // cabundle is root first; the walker takes leaf first, root last.
        let chain: Vec<&[u8]> = std::iter::once(document.certificate.as_slice())
            .chain(document.cabundle.iter().rev().map(Vec::as_slice))
            .collect();
        let leaf = self.chain.verify(&chain, now, &[])?;
        crypto::verify(
            Curve::P384,
            &leaf.public_key,
            &envelope.to_be_signed(),
            &envelope.signature,
            SignatureEncoding::RawRs,
        )?;

        check_freshness(document.timestamp_ms, now, expect.max_age_secs)?;
        check_binding("nonce", expect.nonce.as_deref(), document.nonce.as_deref())?;
        check_binding(
            "user_data",
            expect.user_data.as_deref(),
            document.user_data.as_deref(),
        )?;
        check_binding(
            "public_key",
            expect.public_key.as_deref(),
            document.public_key.as_deref(),
        )?;
        if !expect.allow_debug && document.is_debug()? {
            return Err(NitroError::DebugEnclave);
        }
        Ok(VerifiedDocument {
            document,
            os_image_hash,
            valid_until: leaf.chain_not_after,
        })
    }
}

/// Checks the envelope and the payload field rules, without signature or chain: for previews of
/// a document's contents. Nothing it returns is authenticated.
pub fn parse_document(document: &[u8]) -> Result<AttestationDocument, NitroError> {
    decode(document).map(|(_, document)| document)
}

fn decode(document: &[u8]) -> Result<(Envelope, AttestationDocument), NitroError> {
    let envelope = Envelope::decode(document)?;
    let document = document::parse_payload(&envelope.payload)?;
    Ok((envelope, document))
}

/// The signed timestamp must not be older than `max_age_secs` (when given) nor lie more than
/// [`MAX_FUTURE_SKEW_SECS`] after `now`. Compared in milliseconds, the document's unit.
fn check_freshness(
    timestamp_ms: u64,
    now: u64,
    max_age_secs: Option<u64>,
) -> Result<(), NitroError> {
    let now_ms = now.saturating_mul(1000);
    if timestamp_ms > now_ms.saturating_add(MAX_FUTURE_SKEW_SECS * 1000) {
        return Err(NitroError::DocumentFromFuture {
            timestamp_ms,
            now,
            max_skew_secs: MAX_FUTURE_SKEW_SECS,
        });
    }
    let age_ms = now_ms.saturating_sub(timestamp_ms);
    match max_age_secs {
        Some(max_age_secs) if age_ms > max_age_secs.saturating_mul(1000) => {
            Err(NitroError::DocumentTooOld {
                age_secs: age_ms / 1000,
                max_age_secs,
            })
        }
        _ => Ok(()),
    }
}

/// An expected value must be present in the document and equal (compared in constant time).
fn check_binding(
    field: &'static str,
    expected: Option<&[u8]>,
    found: Option<&[u8]>,
) -> Result<(), NitroError> {
    match (expected, found) {
        (None, _) => Ok(()),
        (Some(expected), Some(found))
            if aws_lc_rs::constant_time::verify_slices_are_equal(expected, found).is_ok() =>
        {
            Ok(())
        }
        _ => Err(NitroError::BindingMismatch(field)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_root_matches_the_pin() {
        let digest: [u8; 32] = Sha256::digest(AWS_NITRO_ROOT_G1_DER).into();
        assert_eq!(digest, AWS_NITRO_ROOT_G1_SHA256);
        assert_eq!(
            hex::encode(AWS_NITRO_ROOT_G1_SHA256),
            "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
        );
    }

    #[test]
    fn freshness_window_edges() {
        let now = 1_700_000_000;
        let ts = now * 1000;
        check_freshness(ts, now, None).unwrap();
        check_freshness(ts - 60_000, now, Some(60)).unwrap();
        check_freshness(ts + MAX_FUTURE_SKEW_SECS * 1000, now, Some(0)).unwrap();
        assert!(matches!(
            check_freshness(ts - 60_001, now, Some(60)),
            Err(NitroError::DocumentTooOld {
                age_secs: 60,
                max_age_secs: 60
            })
        ));
        let future = check_freshness(ts + MAX_FUTURE_SKEW_SECS * 1000 + 1, now, None).unwrap_err();
        assert!(matches!(future, NitroError::DocumentFromFuture { .. }));
        assert_eq!(future.kind().as_str(), "stale_document");
        // No overflow at the extremes.
        check_freshness(1, u64::MAX, None).unwrap();
        assert!(check_freshness(u64::MAX, 0, None).is_err());
    }

    #[test]
    fn bindings_need_presence_and_equality() {
        check_binding("nonce", None, None).unwrap();
        check_binding("nonce", None, Some(b"x")).unwrap();
        check_binding("nonce", Some(b""), Some(b"")).unwrap();
        check_binding("nonce", Some(b"abc"), Some(b"abc")).unwrap();
        for found in [None, Some(&b"abd"[..]), Some(b"ab"), Some(b"abcd")] {
            let err = check_binding("nonce", Some(b"abc"), found).unwrap_err();
            assert_eq!(err.kind().as_str(), "binding_mismatch");
        }
        // An expected empty value is not satisfied by an absent one.
        assert!(check_binding("user_data", Some(b""), None).is_err());
    }
}
