//! A CRL's fields read straight from its DER (RFC 5280 §5.1), for a CRL that already passed
//! [`check_signed_object`](super::der::check_signed_object): every element is canonical, so this
//! reads the skeleton in one pass and allocates only the list of revoked serials. A general
//! X.509 parser would build every name, extension and entry as objects first, which was most of
//! a cold TDX verification outside its signatures.
//!
//! ```text
//! CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue BIT STRING }
//! TBSCertList ::= SEQUENCE {
//!     version INTEGER OPTIONAL (v2 = 1), signature AlgorithmIdentifier, issuer Name,
//!     thisUpdate Time, nextUpdate Time OPTIONAL,
//!     revokedCertificates SEQUENCE OF SEQUENCE {
//!         userCertificate INTEGER, revocationDate Time, crlEntryExtensions Extensions OPTIONAL
//!     } OPTIONAL,
//!     crlExtensions [0] EXPLICIT Extensions OPTIONAL }
//! Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
//! ```

use super::der::{
    element, expect_tag, Element, BIT_STRING, BOOLEAN, INTEGER, OBJECT_IDENTIFIER, OCTET_STRING,
    SEQUENCE,
};
use super::facts::to_unix;

const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// tbsCertList's `[0] EXPLICIT Extensions`.
const CRL_EXTENSIONS: u8 = 0xa0;

/// The fields of a CRL that its verification reads.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CrlFields<'a> {
    /// The signed tbsCertList, as encoded.
    pub(crate) signed: &'a [u8],
    /// The OID contents of the signed signature algorithm (the DER check made the outer one the
    /// same bytes).
    pub(crate) algorithm: &'a [u8],
    /// The signatureValue's bits.
    pub(crate) signature: &'a [u8],
    /// The issuer Name, as encoded (compared byte for byte with its issuer's subject).
    pub(crate) issuer: &'a [u8],
    pub(crate) this_update: u64,
    pub(crate) next_update: Option<u64>,
    /// userCertificate INTEGER contents, in CRL order.
    pub(crate) revoked_serials: Vec<&'a [u8]>,
    /// The OID contents of the first critical extension, list-level or of an entry.
    pub(crate) critical_extension: Option<&'a [u8]>,
}

/// Reads the fields of a DER CRL. It reads, not judges, encodings: a verifier runs
/// [`check_signed_object`](super::der::check_signed_object) first; read alone (to choose or
/// schedule a CRL, never to trust it) it is still bounded and total on any input.
pub(crate) fn read_crl(der: &[u8]) -> Result<CrlFields<'_>, String> {
    let (outer, rest) = element(der)?;
    if !rest.is_empty() {
        return Err("trailing bytes after the CRL".into());
    }
    let mut parts = Fields(outer.contents);
    let tbs = parts.next("tbsCertList")?;
    parts.next("signatureAlgorithm")?;
    let signature = parts.next("signatureValue")?;
    parts.end("the CRL")?;
    expect_tag(&signature, BIT_STRING, "signatureValue")?;
    let signature = signature
        .contents
        .get(1..)
        .ok_or("signatureValue is empty")?;

    let mut fields = Fields(tbs.contents);
    let mut next = fields.next("signature")?;
    if next.tag == INTEGER {
        if next.contents != [1] {
            return Err("version is not v2".into());
        }
        next = fields.next("signature")?;
    }
    expect_tag(&next, SEQUENCE, "signature")?;
    let (algorithm, _) = element(next.contents)?;
    expect_tag(&algorithm, OBJECT_IDENTIFIER, "the signature algorithm")?;
    let issuer = fields.next("issuer")?;
    expect_tag(&issuer, SEQUENCE, "issuer")?;
    let this_update = time(&fields.next("thisUpdate")?, "thisUpdate")?;
    let mut next = fields.optional()?;
    let mut next_update = None;
    if let Some(found) = next.filter(|found| matches!(found.tag, UTC_TIME | GENERALIZED_TIME)) {
        next_update = Some(time(&found, "nextUpdate")?);
        next = fields.optional()?;
    }
    let mut revoked_serials = Vec::new();
    let mut critical_extension = None;
    if let Some(list) = next.filter(|found| found.tag == SEQUENCE) {
        let mut entries = Fields(list.contents);
        while let Some(entry) = entries.optional()? {
            expect_tag(&entry, SEQUENCE, "a revoked entry")?;
            let mut parts = Fields(entry.contents);
            let serial = parts.next("userCertificate")?;
            expect_tag(&serial, INTEGER, "userCertificate")?;
            time(&parts.next("revocationDate")?, "revocationDate")?;
            if let Some(extensions) = parts.optional()? {
                critical_extension = critical_extension.or(critical(&extensions)?);
            }
            parts.end("a revoked entry")?;
            revoked_serials.push(serial.contents);
        }
        next = fields.optional()?;
    }
    if let Some(wrapper) = next {
        expect_tag(&wrapper, CRL_EXTENSIONS, "crlExtensions")?;
        let mut inner = Fields(wrapper.contents);
        let extensions = inner.next("crlExtensions")?;
        inner.end("crlExtensions")?;
        critical_extension = critical(&extensions)?.or(critical_extension);
    }
    fields.end("tbsCertList")?;
    Ok(CrlFields {
        signed: tbs.encoded,
        algorithm: algorithm.contents,
        signature,
        issuer: issuer.encoded,
        this_update,
        next_update,
        revoked_serials,
        critical_extension,
    })
}

/// The elements of one SEQUENCE's contents, in order.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn optional(&mut self) -> Result<Option<Element<'a>>, String> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let (found, rest) = element(self.0)?;
        self.0 = rest;
        Ok(Some(found))
    }

    fn next(&mut self, what: &str) -> Result<Element<'a>, String> {
        self.optional()?.ok_or_else(|| format!("{what} is missing"))
    }

    fn end(&self, what: &str) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!("{what} has unexpected fields after its last one"))
        }
    }
}

/// The OID contents of the first critical extension of an `Extensions` SEQUENCE.
fn critical<'a>(extensions: &Element<'a>) -> Result<Option<&'a [u8]>, String> {
    expect_tag(extensions, SEQUENCE, "Extensions")?;
    let mut list = Fields(extensions.contents);
    let mut first = None;
    while let Some(extension) = list.optional()? {
        expect_tag(&extension, SEQUENCE, "an extension")?;
        let mut parts = Fields(extension.contents);
        let id = parts.next("extnID")?;
        expect_tag(&id, OBJECT_IDENTIFIER, "extnID")?;
        let mut value = parts.next("extnValue")?;
        // DER omits a FALSE default, so a present BOOLEAN is TRUE (the DER check made it 0xFF).
        let is_critical = value.tag == BOOLEAN;
        if is_critical {
            value = parts.next("extnValue")?;
        }
        expect_tag(&value, OCTET_STRING, "extnValue")?;
        parts.end("an extension")?;
        if is_critical && first.is_none() {
            first = Some(id.contents);
        }
    }
    Ok(first)
}

/// Unix seconds of an X.509 Time (RFC 5280 §4.1.2.5): UTCTime `YYMMDDHHMMSSZ` (years 1950–2049)
/// or GeneralizedTime `YYYYMMDDHHMMSSZ`, in UTC with seconds and no fraction, the only forms
/// RFC 5280 allows.
fn time(found: &Element<'_>, what: &str) -> Result<u64, String> {
    let invalid = || format!("{what} is not an RFC 5280 time");
    let (year, rest) = match (found.tag, found.contents.len()) {
        (UTC_TIME, 13) => {
            let short = digits(&found.contents[..2]).ok_or_else(invalid)?;
            (
                if short < 50 { 2000 } else { 1900 } + short,
                &found.contents[2..],
            )
        }
        (GENERALIZED_TIME, 15) => (
            digits(&found.contents[..4]).ok_or_else(invalid)?,
            &found.contents[4..],
        ),
        _ => return Err(invalid()),
    };
    let [a, b, c, d, e, f, g, h, i, j, b'Z'] = *rest else {
        return Err(invalid());
    };
    let field = |pair: [u8; 2]| digits(&pair).and_then(|n| u8::try_from(n).ok());
    let (Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        field([a, b]),
        field([c, d]),
        field([e, f]),
        field([g, h]),
        field([i, j]),
    ) else {
        return Err(invalid());
    };
    let month = time::Month::try_from(month).map_err(|_| invalid())?;
    let year = i32::try_from(year).map_err(|_| invalid())?;
    let date = time::Date::from_calendar_date(year, month, day).map_err(|_| invalid())?;
    let clock = time::Time::from_hms(hour, minute, second).map_err(|_| invalid())?;
    Ok(to_unix(date.with_time(clock).assume_utc().unix_timestamp()))
}

/// The value of ASCII decimal digits, `None` if any byte is not one.
fn digits(text: &[u8]) -> Option<u32> {
    text.iter().try_fold(0u32, |value, &byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + u32::from(byte - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x509::der::check_signed_object;
    use crate::x509::der::tests::minimal;
    use crate::x509::test_pki::{Pki, DAY};
    use x509_parser::prelude::FromDer;
    use x509_parser::revocation_list::CertificateRevocationList;

    /// Real CRLs (Intel's root CA and PCK CRLs from both TDX samples, Google's AK intermediate
    /// CRL), the project's TDX fixture CRLs, and a generated one with revoked entries.
    fn crls() -> Vec<(String, Vec<u8>)> {
        let dir = crate::tpm::samples::samples_dir();
        let mut crls = Vec::new();
        let tdx_collaterals = [
            dir.join("tdx/dcap-qvl_tdx_quote_collateral.json"),
            dir.join("tdx/dcap-qvl_fmspc90c06f_collateral.json"),
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/tdx/collateral.json"),
        ];
        for path in tdx_collaterals {
            let json = std::fs::read(&path).unwrap();
            let collateral = crate::tdx::Collateral::from_json(&json).unwrap();
            let name = path.display();
            crls.push((
                format!("{name} root CA CRL"),
                collateral.root_ca_crl().to_vec(),
            ));
            crls.push((format!("{name} PCK CRL"), collateral.pck_crl().to_vec()));
        }
        let google = dir.join("gcp/salrashid_intermediate.crl");
        crls.push((google.display().to_string(), std::fs::read(google).unwrap()));
        let pki = Pki::standard();
        crls.push((
            "generated".into(),
            pki.crl(1, &[7, 0x80, 1 << 40], -DAY, DAY),
        ));
        crls
    }

    #[test]
    fn reads_what_a_general_parser_reads() {
        for (name, der) in crls() {
            check_signed_object(&der).unwrap_or_else(|e| panic!("{name}: {e}"));
            let fields = read_crl(&der).unwrap_or_else(|e| panic!("{name}: {e}"));
            let (rest, parsed) = CertificateRevocationList::from_der(&der).unwrap();
            assert!(rest.is_empty());
            let tbs = &parsed.tbs_cert_list;
            assert_eq!(fields.signed, tbs.as_ref(), "{name}");
            assert_eq!(
                fields.algorithm,
                tbs.signature.algorithm.as_bytes(),
                "{name}"
            );
            assert_eq!(fields.signature, &parsed.signature_value.data[..], "{name}");
            assert_eq!(fields.issuer, tbs.issuer.as_raw(), "{name}");
            let unix = |time: x509_parser::time::ASN1Time| time.timestamp() as u64;
            assert_eq!(fields.this_update, unix(tbs.this_update), "{name}");
            assert_eq!(fields.next_update, tbs.next_update.map(unix), "{name}");
            let serials: Vec<&[u8]> = parsed
                .iter_revoked_certificates()
                .map(|entry| entry.raw_serial())
                .collect();
            assert_eq!(fields.revoked_serials, serials, "{name}");
            assert_eq!(fields.critical_extension, None, "{name}");
        }
    }

    const ALGORITHM: &[u8] = &[
        0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
    ];

    fn utc(text: &str) -> Vec<u8> {
        minimal(UTC_TIME, text.as_bytes())
    }

    /// A CRL whose tbsCertList holds `fields` after the version and signature algorithm.
    fn crl_with(fields: &[Vec<u8>]) -> Vec<u8> {
        let tbs = [&[0x02, 0x01, 0x01][..], ALGORITHM, &fields.concat()].concat();
        let signature = minimal(BIT_STRING, &[0, 0x30, 0x00]);
        minimal(
            SEQUENCE,
            &[minimal(SEQUENCE, &tbs), ALGORITHM.to_vec(), signature].concat(),
        )
    }

    fn extension(critical: bool) -> Vec<u8> {
        let id = minimal(OBJECT_IDENTIFIER, &[0x55, 0x1d, 0x1c]);
        let flag = if critical {
            minimal(BOOLEAN, &[0xff])
        } else {
            Vec::new()
        };
        minimal(
            SEQUENCE,
            &[id, flag, minimal(OCTET_STRING, &[0x30, 0x00])].concat(),
        )
    }

    #[test]
    fn structure() {
        let issuer = minimal(SEQUENCE, &[]);
        let now = utc("250101000000Z");
        let entry = |extensions: Vec<u8>| {
            minimal(
                SEQUENCE,
                &[minimal(INTEGER, &[7]), now.clone(), extensions].concat(),
            )
        };
        let plain = crl_with(&[issuer.clone(), now.clone()]);
        let plain = read_crl(&plain).unwrap();
        assert_eq!((plain.next_update, plain.revoked_serials.len()), (None, 0));
        let listed = [
            issuer.clone(),
            now.clone(),
            now.clone(),
            minimal(SEQUENCE, &entry(vec![])),
        ];
        let full = crl_with(&listed);
        let full = read_crl(&full).unwrap();
        assert_eq!(full.next_update, Some(1_735_689_600));
        assert_eq!(full.revoked_serials, [&[7u8][..]]);

        let critical_entry = minimal(SEQUENCE, &entry(minimal(SEQUENCE, &extension(true))));
        let with_entry = crl_with(&[issuer.clone(), now.clone(), critical_entry]);
        let fields = read_crl(&with_entry).unwrap();
        assert_eq!(fields.critical_extension, Some(&[0x55, 0x1d, 0x1c][..]));
        let list_level = |critical| {
            let extensions = minimal(SEQUENCE, &extension(critical));
            let wrapped = minimal(CRL_EXTENSIONS, &extensions);
            let der = crl_with(&[issuer.clone(), now.clone(), wrapped]);
            read_crl(&der)
                .unwrap()
                .critical_extension
                .map(<[u8]>::to_vec)
        };
        assert_eq!(list_level(false), None);
        assert_eq!(list_level(true), Some(vec![0x55, 0x1d, 0x1c]));

        let refused = |fields: &[Vec<u8>]| read_crl(&crl_with(fields)).unwrap_err();
        assert!(refused(std::slice::from_ref(&issuer)).contains("thisUpdate is missing"));
        assert!(refused(std::slice::from_ref(&now)).contains("issuer"));
        let trailing = [issuer.clone(), now.clone(), minimal(INTEGER, &[1])];
        assert!(refused(&trailing).contains("crlExtensions"));
        let after_extensions = [
            issuer.clone(),
            now.clone(),
            minimal(CRL_EXTENSIONS, &minimal(SEQUENCE, &[])),
            minimal(INTEGER, &[1]),
        ];
        assert!(refused(&after_extensions).contains("unexpected fields"));
        let four_parts = [minimal(SEQUENCE, &[]), now.clone()].concat();
        let entry_extra = minimal(SEQUENCE, &entry(four_parts));
        assert!(refused(&[issuer.clone(), now.clone(), entry_extra]).contains("revoked entry"));

        let mut v3 = crl_with(&[issuer, now]);
        let version_at = v3.windows(3).position(|w| w == [0x02, 0x01, 0x01]).unwrap();
        v3[version_at + 2] = 2;
        assert_eq!(read_crl(&v3).unwrap_err(), "version is not v2");
    }

    #[test]
    fn times() {
        let at = |tag, text: &str| time(&element(&minimal(tag, text.as_bytes())).unwrap().0, "t");
        assert_eq!(at(UTC_TIME, "250101000000Z"), Ok(1_735_689_600));
        assert_eq!(at(GENERALIZED_TIME, "20250101000000Z"), Ok(1_735_689_600));
        // UTCTime's two-digit years: 00–49 are 20xx, 50–99 are 19xx (before 1970 clamps to 0).
        assert_eq!(at(UTC_TIME, "491231235959Z"), Ok(2_524_607_999));
        assert_eq!(at(UTC_TIME, "700101000001Z"), Ok(1));
        assert_eq!(at(UTC_TIME, "500101000000Z"), Ok(0));
        assert_eq!(at(GENERALIZED_TIME, "20240229120000Z"), Ok(1_709_208_000));
        for (tag, text) in [
            (UTC_TIME, "2501010000Z"),
            (UTC_TIME, "250101000000"),
            (UTC_TIME, "2501010000000"),
            (UTC_TIME, "250101000000+0000"),
            (UTC_TIME, "251301000000Z"),
            (UTC_TIME, "250230000000Z"),
            (UTC_TIME, "250101240000Z"),
            (UTC_TIME, "250101006000Z"),
            (UTC_TIME, "250101000060Z"),
            (UTC_TIME, "2501010000-0Z"),
            (UTC_TIME, "20250101000000Z"),
            (GENERALIZED_TIME, "250101000000Z"),
            (GENERALIZED_TIME, "20250101000000.5Z"),
            (GENERALIZED_TIME, "20230229000000Z"),
            (0x13, "250101000000Z"),
        ] {
            assert!(at(tag, text).is_err(), "{tag:#04x} {text:?}");
        }
    }
}
