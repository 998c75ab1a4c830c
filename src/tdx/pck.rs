//! The Intel SGX extension of a PCK leaf certificate (OID 1.2.840.113741.1.13.1): the platform's
//! identity (PPID, PCE-ID, FMSPC) and its certified TCB (component SVNs, PCESVN, CPUSVN).

use super::error::TdxError;
use crate::x509::der::{self, Element};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

/// DER content bytes of OID 1.2.840.113741.1.13.1.
const SGX_EXTENSION_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01];
/// Arcs under the SGX extension OID.
const PPID: u8 = 1;
const TCB: u8 = 2;
const PCE_ID: u8 = 3;
const FMSPC: u8 = 4;
/// Arcs under `TCB`: 1..=16 are the SGX TCB component SVNs.
const PCESVN: u8 = 17;
const CPUSVN: u8 = 18;

/// What the PCK certificate certifies about the platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PckInfo {
    /// Platform Provisioning ID, as the certificate carries it (16 bytes from Intel's PCS).
    pub ppid: Vec<u8>,
    /// SGX TCB component SVNs 1..=16, compared with the TCB Info `sgxtcbcomponents`.
    pub tcb_components: [u8; 16],
    /// PCE security version certified for this platform.
    pub pce_svn: u16,
    /// CPU SVN certified for this platform; equal to `tcb_components` (checked when read).
    pub cpu_svn: [u8; 16],
    /// PCE ID (2 bytes, big-endian as in the certificate).
    pub pce_id: [u8; 2],
    /// Family-Model-Stepping-Platform-CustomSKU: selects the TCB Info that applies.
    pub fmspc: [u8; 6],
}

fn invalid(what: impl Into<String>) -> TdxError {
    TdxError::PckExtension(what.into())
}

impl PckInfo {
    /// Reads the SGX extension of a PCK leaf certificate (DER).
    pub fn from_certificate(leaf_der: &[u8]) -> Result<PckInfo, TdxError> {
        let (_, cert) = X509Certificate::from_der(leaf_der)
            .map_err(|e| invalid(format!("PCK certificate does not parse: {e}")))?;
        let extension = cert
            .extensions()
            .iter()
            .find(|ext| ext.oid.as_bytes() == SGX_EXTENSION_OID)
            .ok_or_else(|| invalid("missing"))?;
        PckInfo::from_extension(extension.value)
    }

    /// Reads the SGX extension of a PCK leaf the chain walker verified, from its DER, without
    /// parsing the certificate a second time.
    pub(crate) fn from_verified_certificate(leaf_der: &[u8]) -> Result<PckInfo, TdxError> {
        let value = crate::x509::verified_extension_value(leaf_der, SGX_EXTENSION_OID)
            .map_err(|e| invalid(format!("PCK certificate does not parse: {e}")))?
            .ok_or_else(|| invalid("missing"))?;
        PckInfo::from_extension(value)
    }

    /// Reads the SGX extension's value (its extnValue contents), which must be canonical DER
    /// throughout (the certificate's own DER check stops at the extnValue OCTET STRING).
    fn from_extension(value: &[u8]) -> Result<PckInfo, TdxError> {
        let (root, rest) = der::element(value).map_err(invalid)?;
        if !rest.is_empty() {
            return Err(invalid("trailing bytes"));
        }
        der::check_canonical(value).map_err(invalid)?;
        let entries = oid_entries(&root, SGX_EXTENSION_OID)?;
        let tcb_entries = match find(&entries, TCB)? {
            Some(tcb) => oid_entries(&tcb, &[SGX_EXTENSION_OID, &[TCB]].concat())?,
            None => return Err(invalid("no TCB")),
        };
        let mut tcb_components = [0u8; 16];
        for (arc, svn) in (1u8..).zip(tcb_components.iter_mut()) {
            *svn = u8::try_from(integer(&required(&tcb_entries, arc, "TCB component")?)?)
                .map_err(|_| invalid(format!("TCB component {arc} exceeds 255")))?;
        }
        let cpu_svn = fixed(&required(&tcb_entries, CPUSVN, "CPUSVN")?, "CPUSVN")?;
        // CPUSVN is the 16 component SVNs side by side; Intel's QVL matches the components and
        // dcap-qvl the CPUSVN, so a certificate where they differ has no single meaning.
        if cpu_svn != tcb_components {
            return Err(invalid("CPUSVN differs from the TCB component SVNs"));
        }
        let pce_svn = u16::try_from(integer(&required(&tcb_entries, PCESVN, "PCESVN")?)?)
            .map_err(|_| invalid("PCESVN exceeds 65535"))?;
        Ok(PckInfo {
            ppid: octets(&required(&entries, PPID, "PPID")?)?.to_vec(),
            tcb_components,
            pce_svn,
            cpu_svn,
            pce_id: fixed(&required(&entries, PCE_ID, "PCE-ID")?, "PCE-ID")?,
            fmspc: fixed(&required(&entries, FMSPC, "FMSPC")?, "FMSPC")?,
        })
    }
}

/// The elements of `contents`, in order.
fn elements(mut contents: &[u8]) -> impl Iterator<Item = Result<Element<'_>, TdxError>> {
    std::iter::from_fn(move || {
        if contents.is_empty() {
            return None;
        }
        Some(
            der::element(contents)
                .map_err(invalid)
                .map(|(found, rest)| {
                    contents = rest;
                    found
                }),
        )
    })
}

/// The `SEQUENCE OF SEQUENCE { OID, value }` under `parent`, as (last arc, value) pairs; every
/// OID must be a direct child of `parent`.
fn oid_entries<'a>(
    sequence: &Element<'a>,
    parent: &[u8],
) -> Result<Vec<(u8, Element<'a>)>, TdxError> {
    if sequence.tag != der::SEQUENCE {
        return Err(invalid("not a SEQUENCE"));
    }
    elements(sequence.contents)
        .map(|item| {
            let item = item?;
            if item.tag != der::SEQUENCE {
                return Err(invalid("entry is not a SEQUENCE"));
            }
            let pair = elements(item.contents).collect::<Result<Vec<_>, _>>()?;
            let [oid, value] = pair[..] else {
                return Err(invalid("entry is not an (OID, value) pair"));
            };
            if oid.tag != der::OBJECT_IDENTIFIER {
                return Err(invalid("entry has no OID"));
            }
            match oid.contents.strip_prefix(parent) {
                // Single-byte arcs: every arc Intel defines here is below 128.
                Some(&[arc]) if arc < 0x80 => Ok((arc, value)),
                _ => Err(invalid("entry OID is not under the SGX extension")),
            }
        })
        .collect()
}

fn find<'a>(entries: &[(u8, Element<'a>)], arc: u8) -> Result<Option<Element<'a>>, TdxError> {
    let mut matches = entries.iter().filter(|(a, _)| *a == arc).map(|(_, v)| *v);
    let first = matches.next();
    if matches.next().is_some() {
        return Err(invalid(format!("arc {arc} appears twice")));
    }
    Ok(first)
}

fn required<'a>(
    entries: &[(u8, Element<'a>)],
    arc: u8,
    what: &str,
) -> Result<Element<'a>, TdxError> {
    find(entries, arc)?.ok_or_else(|| invalid(format!("no {what} (arc {arc})")))
}

fn octets<'a>(value: &Element<'a>) -> Result<&'a [u8], TdxError> {
    if value.tag == der::OCTET_STRING {
        Ok(value.contents)
    } else {
        Err(invalid("value is not an OCTET STRING"))
    }
}

fn fixed<const N: usize>(value: &Element<'_>, what: &str) -> Result<[u8; N], TdxError> {
    octets(value)?
        .try_into()
        .map_err(|_| invalid(format!("{what} is not {N} bytes")))
}

/// A non-negative INTEGER up to `u32::MAX` (canonical: the DER check refused padding).
fn integer(value: &Element<'_>) -> Result<u32, TdxError> {
    if value.tag != der::INTEGER {
        return Err(invalid("value is not an INTEGER"));
    }
    match value.contents {
        [first, ..] if first & 0x80 != 0 => Err(invalid("negative INTEGER")),
        [0, magnitude @ ..] | magnitude if magnitude.len() <= 4 => Ok(magnitude
            .iter()
            .fold(0, |value, &byte| (value << 8) | u32::from(byte))),
        _ => Err(invalid("INTEGER out of range")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tdx");
        std::fs::read(dir.join(name)).unwrap()
    }

    #[test]
    fn the_verified_leaf_reading_equals_the_full_parse() {
        let quote = super::super::Quote::parse(&fixture("quote_v4.bin")).unwrap();
        let chain = quote.pck_chain().unwrap().unwrap();
        assert_eq!(
            PckInfo::from_verified_certificate(&chain[0]).unwrap(),
            PckInfo::from_certificate(&chain[0]).unwrap()
        );
    }

    /// An SGX extension value whose first TCB component SVN is encoded as `first_svn` (the
    /// contents of its value element, tag included).
    fn extension_with(first_svn: &[u8]) -> Vec<u8> {
        use crate::x509::der::tests::minimal;
        let entry = |arcs: &[u8], value: Vec<u8>| {
            let oid = minimal(der::OBJECT_IDENTIFIER, &[SGX_EXTENSION_OID, arcs].concat());
            minimal(der::SEQUENCE, &[oid, value].concat())
        };
        let mut tcb = vec![entry(&[TCB, 1], first_svn.to_vec())];
        tcb.extend((2..=16).map(|arc| entry(&[TCB, arc], vec![0x02, 0x01, 0x01])));
        let mut cpu_svn = [1u8; 16];
        cpu_svn[0] = 5;
        tcb.push(entry(&[TCB, PCESVN], vec![0x02, 0x02, 0x00, 0x80]));
        tcb.push(entry(&[TCB, CPUSVN], minimal(der::OCTET_STRING, &cpu_svn)));
        minimal(
            der::SEQUENCE,
            &[
                entry(&[PPID], minimal(der::OCTET_STRING, &[7; 16])),
                entry(&[TCB], minimal(der::SEQUENCE, &tcb.concat())),
                entry(&[PCE_ID], minimal(der::OCTET_STRING, &[0, 1])),
                entry(&[FMSPC], minimal(der::OCTET_STRING, &[1, 2, 3, 4, 5, 6])),
            ]
            .concat(),
        )
    }

    #[test]
    fn extension_values_are_canonical_der_and_in_range() {
        let info = PckInfo::from_extension(&extension_with(&[0x02, 0x01, 0x05])).unwrap();
        assert_eq!((info.tcb_components[0], info.pce_svn), (5, 128));
        assert_eq!((info.pce_id, info.fmspc), ([0, 1], [1, 2, 3, 4, 5, 6]));
        for (first_svn, why) in [
            (&[0x02, 0x02, 0x00, 0x05][..], "a padded INTEGER is not DER"),
            (&[0x02, 0x01, 0x85], "negative INTEGER"),
            (&[0x02, 0x02, 0x01, 0x05], "exceeds 255"),
            (&[0x02, 0x06, 0x01, 0, 0, 0, 0, 5], "INTEGER out of range"),
            (&[0x04, 0x01, 0x05], "not an INTEGER"),
        ] {
            let err = PckInfo::from_extension(&extension_with(first_svn)).unwrap_err();
            assert!(matches!(err, TdxError::PckExtension(_)), "{why}: {err}");
            assert_eq!(err.kind().as_str(), "certificate_invalid", "{why}");
        }
        let mut trailing = extension_with(&[0x02, 0x01, 0x05]);
        trailing.push(0);
        assert!(PckInfo::from_extension(&trailing).is_err());
    }

    #[test]
    fn a_leaf_without_the_extension_or_unreadable_is_refused() {
        // The root CA has no SGX extension; junk has no certificate skeleton.
        let root = fixture("root_ca.der");
        for der in [&root[..], b"\x30\x03\x02\x01\x01", b""] {
            for result in [
                PckInfo::from_verified_certificate(der),
                PckInfo::from_certificate(der),
            ] {
                let err = result.unwrap_err();
                assert!(matches!(err, TdxError::PckExtension(_)), "{err}");
                assert_eq!(err.kind().as_str(), "certificate_invalid");
            }
        }
    }
}
