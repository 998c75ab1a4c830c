//! The Intel SGX extension of a PCK leaf certificate (OID 1.2.840.113741.1.13.1): the platform's
//! identity (PPID, PCE-ID, FMSPC) and its certified TCB (component SVNs, PCESVN, CPUSVN).

use super::error::TdxError;
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::ber::BerObjectContent;
use x509_parser::der_parser::der::{parse_der, DerObject};
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

    /// Reads the SGX extension's value (its extnValue contents).
    fn from_extension(value: &[u8]) -> Result<PckInfo, TdxError> {
        let (rest, root) = parse_der(value).map_err(|e| invalid(e.to_string()))?;
        if !rest.is_empty() {
            return Err(invalid("trailing bytes"));
        }
        let entries = oid_entries(&root, SGX_EXTENSION_OID)?;
        let tcb_entries = match find(&entries, TCB)? {
            Some(tcb) => oid_entries(tcb, &[SGX_EXTENSION_OID, &[TCB]].concat())?,
            None => return Err(invalid("no TCB")),
        };
        let mut tcb_components = [0u8; 16];
        for (arc, svn) in (1u8..).zip(tcb_components.iter_mut()) {
            *svn = u8::try_from(integer(required(&tcb_entries, arc, "TCB component")?)?)
                .map_err(|_| invalid(format!("TCB component {arc} exceeds 255")))?;
        }
        let cpu_svn = fixed(required(&tcb_entries, CPUSVN, "CPUSVN")?, "CPUSVN")?;
        // CPUSVN is the 16 component SVNs side by side; Intel's QVL matches the components and
        // dcap-qvl the CPUSVN, so a certificate where they differ has no single meaning.
        if cpu_svn != tcb_components {
            return Err(invalid("CPUSVN differs from the TCB component SVNs"));
        }
        let pce_svn = u16::try_from(integer(required(&tcb_entries, PCESVN, "PCESVN")?)?)
            .map_err(|_| invalid("PCESVN exceeds 65535"))?;
        Ok(PckInfo {
            ppid: octets(required(&entries, PPID, "PPID")?)?.to_vec(),
            tcb_components,
            pce_svn,
            cpu_svn,
            pce_id: fixed(required(&entries, PCE_ID, "PCE-ID")?, "PCE-ID")?,
            fmspc: fixed(required(&entries, FMSPC, "FMSPC")?, "FMSPC")?,
        })
    }
}

/// The `SEQUENCE OF SEQUENCE { OID, value }` under `parent`, as (last arc, value) pairs; every
/// OID must be a direct child of `parent`.
fn oid_entries<'a>(
    sequence: &'a DerObject<'a>,
    parent: &[u8],
) -> Result<Vec<(u8, &'a DerObject<'a>)>, TdxError> {
    let items = sequence
        .as_sequence()
        .map_err(|_| invalid("not a SEQUENCE"))?;
    items
        .iter()
        .map(|item| {
            let pair = item
                .as_sequence()
                .map_err(|_| invalid("entry is not a SEQUENCE"))?;
            let [oid, value] = pair.as_slice() else {
                return Err(invalid("entry is not an (OID, value) pair"));
            };
            let oid = oid
                .as_oid()
                .map_err(|_| invalid("entry has no OID"))?
                .as_bytes();
            match oid.strip_prefix(parent) {
                // Single-byte arcs: every arc Intel defines here is below 128.
                Some(&[arc]) if arc < 0x80 => Ok((arc, value)),
                _ => Err(invalid("entry OID is not under the SGX extension")),
            }
        })
        .collect()
}

fn find<'a>(
    entries: &[(u8, &'a DerObject<'a>)],
    arc: u8,
) -> Result<Option<&'a DerObject<'a>>, TdxError> {
    let mut matches = entries.iter().filter(|(a, _)| *a == arc).map(|(_, v)| *v);
    let first = matches.next();
    if matches.next().is_some() {
        return Err(invalid(format!("arc {arc} appears twice")));
    }
    Ok(first)
}

fn required<'a>(
    entries: &[(u8, &'a DerObject<'a>)],
    arc: u8,
    what: &str,
) -> Result<&'a DerObject<'a>, TdxError> {
    find(entries, arc)?.ok_or_else(|| invalid(format!("no {what} (arc {arc})")))
}

fn octets<'a>(value: &DerObject<'a>) -> Result<&'a [u8], TdxError> {
    match value.content {
        BerObjectContent::OctetString(bytes) => Ok(bytes),
        _ => Err(invalid("value is not an OCTET STRING")),
    }
}

fn fixed<const N: usize>(value: &DerObject<'_>, what: &str) -> Result<[u8; N], TdxError> {
    octets(value)?
        .try_into()
        .map_err(|_| invalid(format!("{what} is not {N} bytes")))
}

fn integer(value: &DerObject<'_>) -> Result<u32, TdxError> {
    match value.content {
        BerObjectContent::Integer(bytes) if bytes.first().is_some_and(|b| b & 0x80 != 0) => {
            Err(invalid("negative INTEGER"))
        }
        BerObjectContent::Integer(_) => value.as_u32().map_err(|_| invalid("INTEGER out of range")),
        _ => Err(invalid("value is not an INTEGER")),
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
