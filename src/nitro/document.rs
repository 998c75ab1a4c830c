//! The attestation document carried in the COSE payload, and AWS's field rules for it (the
//! nsm-api attestation process's CDDL schema, with the corrections real NSM output forces): a
//! CBOR map with `module_id`, `digest` ("SHA384"), `timestamp`, `pcrs`, `certificate`,
//! `cabundle` required and `public_key`, `user_data`, `nonce` optional (null allowed).
//!
//! Unknown keys are rejected. AWS's schema is closed and has not changed since 2020; every field we
//! ignore would be a field whose meaning (a future debug flag, a different PCR bank) we silently
//! drop from an authorization decision. Failing closed makes a format change loud, and keeps the
//! parser free of a generic "skip any value" path.

use super::error::NitroError;
use crate::cbor::{CborError, Reader};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Upper bound of `certificate`, each `cabundle` entry and each optional field. The CDDL says 1024;
/// the prose's 512 for user_data/nonce rejects real documents that carry 1024 bytes in all three.
pub const MAX_FIELD_LEN: usize = 1024;
/// PCR indices are `0..MAX_PCRS`, and a document holds at most this many.
pub const MAX_PCRS: usize = 32;
/// PCR values are SHA-256, SHA-384 or SHA-512 sized.
const PCR_LENGTHS: [usize; 3] = [32, 48, 64];
/// The only PCR bank digest NSM documents use.
const DIGEST: &str = "SHA384";

/// sha256 of 144 zero bytes: the OS_IMAGE_HASH of a debug-mode enclave, whose PCR0..2 are 48 zero
/// bytes each. Never put it on an allowlist.
pub const DEBUG_OS_IMAGE_HASH: [u8; 32] = [
    0x81, 0xc6, 0x11, 0xf3, 0x5b, 0xff, 0x79, 0x49, 0x15, 0x38, 0xb2, 0xf7, 0xcf, 0x20, 0x1c, 0x75,
    0x97, 0xa6, 0x61, 0xa5, 0xc5, 0x49, 0x63, 0x35, 0x41, 0xc6, 0x2b, 0xdc, 0x8a, 0xf1, 0x61, 0x3f,
];

/// The fields of an NSM attestation document, after the syntactic rules have passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationDocument {
    /// The enclave's module id, `i-<instance>-enc<id>` in practice (1..=1024 bytes of text).
    pub module_id: String,
    /// Milliseconds since the Unix epoch (UTC), > 0.
    pub timestamp_ms: u64,
    /// 1..=32 PCRs, index < 32, each 32, 48 or 64 bytes (48 in practice).
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// DER leaf certificate (1..=1024 bytes).
    pub certificate: Vec<u8>,
    /// DER CA certificates, root first (`[ROOT, INTERM_1, …, INTERM_N]`), each 1..=1024 bytes.
    pub cabundle: Vec<Vec<u8>>,
    /// `None` when the key is absent or CBOR null; `Some(empty)` is a present, zero-length value.
    pub public_key: Option<Vec<u8>>,
    /// `user_data` the enclave asked to be attested; `None` when absent or null (dstack puts its
    /// 64-byte report data here).
    pub user_data: Option<Vec<u8>>,
    /// `nonce` the enclave asked to be attested; `None` when absent or null.
    pub nonce: Option<Vec<u8>>,
}

impl AttestationDocument {
    /// OS_IMAGE_HASH = sha256(PCR0 ‖ PCR1 ‖ PCR2).
    pub fn os_image_hash(&self) -> Result<[u8; 32], NitroError> {
        let [pcr0, pcr1, pcr2] = self.boot_pcrs()?;
        Ok(os_image_hash(pcr0, pcr1, pcr2))
    }

    /// Whether this is a debug-mode enclave: PCR0, PCR1 and PCR2 all zero (whatever their length).
    pub fn is_debug(&self) -> Result<bool, NitroError> {
        let pcrs = self.boot_pcrs()?;
        Ok(pcrs.iter().all(|pcr| pcr.iter().all(|&byte| byte == 0)))
    }

    fn boot_pcrs(&self) -> Result<[&[u8]; 3], NitroError> {
        let pcr = |index: u8| {
            self.pcrs
                .get(&index)
                .map(Vec::as_slice)
                .ok_or(NitroError::MissingPcr(index))
        };
        Ok([pcr(0)?, pcr(1)?, pcr(2)?])
    }
}

/// OS_IMAGE_HASH over raw PCR values: sha256(pcr0 ‖ pcr1 ‖ pcr2).
pub fn os_image_hash(pcr0: &[u8], pcr1: &[u8], pcr2: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(pcr0);
    hasher.update(pcr1);
    hasher.update(pcr2);
    hasher.finalize().into()
}

/// The nine keys AWS defines, in the order NSM writes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    ModuleId,
    Digest,
    Timestamp,
    Pcrs,
    Certificate,
    Cabundle,
    PublicKey,
    UserData,
    Nonce,
}

impl Field {
    const ALL: [Field; 9] = [
        Field::ModuleId,
        Field::Digest,
        Field::Timestamp,
        Field::Pcrs,
        Field::Certificate,
        Field::Cabundle,
        Field::PublicKey,
        Field::UserData,
        Field::Nonce,
    ];

    fn name(self) -> &'static str {
        match self {
            Field::ModuleId => "module_id",
            Field::Digest => "digest",
            Field::Timestamp => "timestamp",
            Field::Pcrs => "pcrs",
            Field::Certificate => "certificate",
            Field::Cabundle => "cabundle",
            Field::PublicKey => "public_key",
            Field::UserData => "user_data",
            Field::Nonce => "nonce",
        }
    }

    fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|field| field.name() == name)
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// Attaches the field being read to a CBOR error.
fn in_field(field: &'static str) -> impl Fn(CborError) -> NitroError {
    move |source| NitroError::Cbor { field, source }
}

/// Parses the payload map and applies every syntactic rule. `payload` is the content of the COSE
/// payload bstr; it must hold exactly one map (definite or indefinite length) and nothing else.
pub(super) fn parse_payload(payload: &[u8]) -> Result<AttestationDocument, NitroError> {
    let mut reader = Reader::new(payload);
    let mut entries = reader.map().map_err(in_field("map"))?;
    let mut seen = 0u16;
    let mut module_id = None;
    let mut timestamp_ms = None;
    let mut pcrs = None;
    let mut certificate = None;
    let mut cabundle = None;
    let (mut public_key, mut user_data, mut nonce) = (None, None, None);

    while reader.next_item(&mut entries).map_err(in_field("map"))? {
        let key = reader.text().map_err(in_field("key"))?;
        let field =
            Field::from_name(key).ok_or_else(|| NitroError::UnknownField(key.to_owned()))?;
        if seen & field.bit() != 0 {
            return Err(NitroError::DuplicateField(field.name()));
        }
        seen |= field.bit();
        let name = field.name();
        match field {
            Field::ModuleId => {
                let text = reader.text().map_err(in_field(name))?;
                if text.is_empty() {
                    return Err(NitroError::FieldValue {
                        field: name,
                        reason: "is empty",
                    });
                }
                module_id = Some(text.to_owned());
            }
            Field::Digest => {
                if reader.text().map_err(in_field(name))? != DIGEST {
                    return Err(NitroError::FieldValue {
                        field: name,
                        reason: "is not \"SHA384\"",
                    });
                }
            }
            Field::Timestamp => {
                let value = reader.unsigned().map_err(in_field(name))?;
                if value == 0 {
                    return Err(NitroError::FieldValue {
                        field: name,
                        reason: "is zero",
                    });
                }
                timestamp_ms = Some(value);
            }
            Field::Pcrs => pcrs = Some(read_pcrs(&mut reader)?),
            Field::Certificate => {
                let der = reader.bytes().map_err(in_field(name))?;
                certificate = Some(bounded(name, der, 1)?);
            }
            Field::Cabundle => cabundle = Some(read_cabundle(&mut reader)?),
            Field::PublicKey => public_key = read_optional(&mut reader, name)?,
            Field::UserData => user_data = read_optional(&mut reader, name)?,
            Field::Nonce => nonce = read_optional(&mut reader, name)?,
        }
    }
    reader.finish().map_err(in_field("map"))?;

    if seen & Field::Digest.bit() == 0 {
        return Err(NitroError::MissingField(Field::Digest.name()));
    }
    let required = |field: Field| NitroError::MissingField(field.name());
    Ok(AttestationDocument {
        module_id: module_id.ok_or(required(Field::ModuleId))?,
        timestamp_ms: timestamp_ms.ok_or(required(Field::Timestamp))?,
        pcrs: pcrs.ok_or(required(Field::Pcrs))?,
        certificate: certificate.ok_or(required(Field::Certificate))?,
        cabundle: cabundle.ok_or(required(Field::Cabundle))?,
        public_key,
        user_data,
        nonce,
    })
}

/// Copies `bytes` if its length is within `min..=MAX_FIELD_LEN`.
fn bounded(field: &'static str, bytes: &[u8], min: usize) -> Result<Vec<u8>, NitroError> {
    if (min..=MAX_FIELD_LEN).contains(&bytes.len()) {
        Ok(bytes.to_vec())
    } else {
        Err(NitroError::FieldLength {
            field,
            len: bytes.len(),
            min,
            max: MAX_FIELD_LEN,
        })
    }
}

/// An optional bstr: CBOR null means absent; a zero-length bstr is present and empty.
fn read_optional(
    reader: &mut Reader<'_>,
    field: &'static str,
) -> Result<Option<Vec<u8>>, NitroError> {
    reader
        .bytes_or_null()
        .map_err(in_field(field))?
        .map(|bytes| bounded(field, bytes, 0))
        .transpose()
}

fn read_pcrs(reader: &mut Reader<'_>) -> Result<BTreeMap<u8, Vec<u8>>, NitroError> {
    let field = Field::Pcrs.name();
    let mut entries = reader.map().map_err(in_field(field))?;
    let mut pcrs = BTreeMap::new();
    while reader.next_item(&mut entries).map_err(in_field(field))? {
        if pcrs.len() == MAX_PCRS {
            return Err(NitroError::PcrCount);
        }
        let raw_index = reader.unsigned().map_err(in_field(field))?;
        let index = u8::try_from(raw_index)
            .ok()
            .filter(|&index| usize::from(index) < MAX_PCRS)
            .ok_or(NitroError::PcrIndex(raw_index))?;
        let value = reader.bytes().map_err(in_field(field))?;
        if !PCR_LENGTHS.contains(&value.len()) {
            return Err(NitroError::PcrLength {
                index,
                len: value.len(),
            });
        }
        if pcrs.insert(index, value.to_vec()).is_some() {
            return Err(NitroError::DuplicatePcr(index));
        }
    }
    if pcrs.is_empty() {
        return Err(NitroError::PcrCount);
    }
    Ok(pcrs)
}

fn read_cabundle(reader: &mut Reader<'_>) -> Result<Vec<Vec<u8>>, NitroError> {
    let field = Field::Cabundle.name();
    let mut entries = reader.array().map_err(in_field(field))?;
    let mut cabundle = Vec::new();
    while reader.next_item(&mut entries).map_err(in_field(field))? {
        let der = reader.bytes().map_err(in_field(field))?;
        cabundle.push(bounded(field, der, 1)?);
    }
    if cabundle.is_empty() {
        return Err(NitroError::FieldValue {
            field,
            reason: "holds no certificate",
        });
    }
    Ok(cabundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hash_is_sha256_of_144_zero_bytes() {
        assert_eq!(
            os_image_hash(&[0; 48], &[0; 48], &[0; 48]),
            DEBUG_OS_IMAGE_HASH
        );
    }

    #[test]
    fn os_image_hash_concatenates_raw_pcrs() {
        let expected: [u8; 32] =
            Sha256::digest([&[1u8; 48][..], &[2; 48], &[3; 48]].concat()).into();
        assert_eq!(os_image_hash(&[1; 48], &[2; 48], &[3; 48]), expected);
    }
}
