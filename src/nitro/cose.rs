//! The COSE_Sign1 envelope (RFC 9052 §4.2) around an NSM document, decoded with coset.
//!
//! NSM writes it untagged; the AWS doc shows tag 18. Both are accepted. The protected header is
//! pinned to the exact bytes NSM emits, so the algorithm never comes from the key or the input.

use super::error::NitroError;
use coset::cbor::value::Value;
use coset::{
    iana, sig_structure_data, Algorithm, AsCborValue, CborSerializable, CoseSign1, ProtectedHeader,
    SignatureContext,
};

/// Bound on the whole document, checked before any decoding. The payload is held to 16 KiB below;
/// this leaves room for the envelope with any (even non-shortest) CBOR heads.
pub const MAX_DOCUMENT_LEN: usize = 32 * 1024;
/// The COSE payload is `bstr .size (1..16384)` in AWS's CDDL.
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024;
/// `{1: -35}` (alg = ES384), as NSM serialises it.
const ES384_PROTECTED_HEADER: [u8; 4] = [0xa1, 0x01, 0x38, 0x22];
const COSE_SIGN1_TAG: u64 = 18;

/// A decoded COSE_Sign1 whose headers passed the checks; the payload is not parsed yet.
pub(super) struct Envelope {
    protected: ProtectedHeader,
    pub(super) payload: Vec<u8>,
    pub(super) signature: Vec<u8>,
}

impl Envelope {
    pub(super) fn decode(document: &[u8]) -> Result<Envelope, NitroError> {
        if document.len() > MAX_DOCUMENT_LEN {
            return Err(NitroError::DocumentTooLarge {
                len: document.len(),
                max: MAX_DOCUMENT_LEN,
            });
        }
        // Rejects trailing bytes; ciborium caps nesting at 256 levels while building the value.
        let value = Value::from_slice(document).map_err(NitroError::Envelope)?;
        let value = match value {
            Value::Tag(COSE_SIGN1_TAG, inner) => *inner,
            Value::Tag(tag, _) => return Err(NitroError::UnexpectedTag(tag)),
            untagged => untagged,
        };
        // coset reads a map such as {4: h''} as an empty header, so look at the raw map instead.
        let unprotected_is_empty = matches!(
            value.as_array().and_then(|items| items.get(1)),
            Some(Value::Map(entries)) if entries.is_empty()
        );
        let sign1 = CoseSign1::from_cbor_value(value).map_err(NitroError::Envelope)?;

        if sign1.protected.original_data.as_deref() != Some(&ES384_PROTECTED_HEADER[..]) {
            let alg = &sign1.protected.header.alg;
            return Err(
                if *alg == Some(Algorithm::Assigned(iana::Algorithm::ES384)) {
                    NitroError::ProtectedHeader
                } else {
                    NitroError::Algorithm(
                        alg.as_ref()
                            .map_or("no algorithm".to_owned(), |alg| format!("{alg:?}")),
                    )
                },
            );
        }
        if !unprotected_is_empty {
            return Err(NitroError::UnprotectedHeader);
        }
        let payload = sign1.payload.ok_or(NitroError::PayloadAbsent)?;
        if payload.is_empty() || payload.len() > MAX_PAYLOAD_LEN {
            return Err(NitroError::PayloadSize {
                len: payload.len(),
                max: MAX_PAYLOAD_LEN,
            });
        }
        Ok(Envelope {
            protected: sign1.protected,
            payload,
            signature: sign1.signature,
        })
    }

    /// `Sig_structure = ["Signature1", protected, h'', payload]` over the received protected and
    /// payload bytes (coset reuses `original_data`; nothing is re-encoded).
    pub(super) fn to_be_signed(&self) -> Vec<u8> {
        sig_structure_data(
            SignatureContext::CoseSign1,
            self.protected.clone(),
            None,
            &[],
            &self.payload,
        )
    }
}
