//! Canonical DER, checked before a certificate or CRL is parsed. x509-parser is lenient where
//! the encoding is not signed (the outer SEQUENCE's header, the outer signatureAlgorithm, the
//! signature BIT STRING), so one certificate would have many accepted encodings. Here every
//! element must be in DER's one form: definite minimal lengths, low tag numbers, SEQUENCE and SET
//! constructed, primitive types primitive, minimal INTEGERs, BOOLEANs 0x00/0xFF; the outer
//! skeleton must be `SEQUENCE { SEQUENCE, AlgorithmIdentifier, BIT STRING }`; the unsigned
//! signatureAlgorithm must be byte for byte the signed one inside the TBS; and an ECDSA
//! signature inside the BIT STRING must be canonical DER too (an RSA one is a plain integer).

/// OBJECT IDENTIFIER's tag.
pub(crate) const OBJECT_IDENTIFIER: u8 = 0x06;
/// 1.2.840.10045.4, the arc of the ecdsa-with-SHA* signature algorithms (RFC 5758), as encoded.
const ECDSA_SIGNATURE_ARC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];

/// Deepest nesting walked (real certificates nest about 10 levels).
const MAX_DEPTH: usize = 32;

pub(crate) const BOOLEAN: u8 = 0x01;
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const BIT_STRING: u8 = 0x03;
pub(crate) const SEQUENCE: u8 = 0x30;
const CONSTRUCTED: u8 = 0x20;
const CLASS_MASK: u8 = 0xc0;
const UNIVERSAL: u8 = 0x00;

/// One element: its identifier octet, its contents, and the whole element's bytes.
#[derive(Clone, Copy)]
pub(crate) struct Element<'a> {
    pub(crate) tag: u8,
    pub(crate) contents: &'a [u8],
    pub(crate) encoded: &'a [u8],
}

/// Checks a certificate or a CRL (same outer shape) whose encoding must be canonical DER.
pub(super) fn check_signed_object(der: &[u8]) -> Result<(), String> {
    let (outer, rest) = element(der)?;
    if !rest.is_empty() {
        return Err("trailing bytes after the outer SEQUENCE".into());
    }
    expect_tag(&outer, SEQUENCE, "the outer element")?;
    walk(outer.contents, 1)?;
    let (tbs, rest) = element(outer.contents)?;
    expect_tag(&tbs, SEQUENCE, "the signed part")?;
    let (algorithm, rest) = element(rest)?;
    expect_tag(&algorithm, SEQUENCE, "signatureAlgorithm")?;
    let (signature, rest) = element(rest)?;
    expect_tag(&signature, BIT_STRING, "signatureValue")?;
    if !rest.is_empty() {
        return Err("the outer SEQUENCE has more than three elements".into());
    }
    // RFC 5280 §4.1.1.2 / §5.1.1.2: the same identifier as the signed one. A certificate's TBS
    // starts with an optional [0] version, then the serial; a CRL's with an optional INTEGER
    // version. Either way the signed AlgorithmIdentifier is the first SEQUENCE.
    let mut fields = tbs.contents;
    let signed_algorithm = loop {
        let (field, rest) = element(fields)?;
        if field.tag == SEQUENCE {
            break field;
        }
        fields = rest;
    };
    if signed_algorithm.encoded != algorithm.encoded {
        return Err("signatureAlgorithm differs from the signed one".into());
    }
    let Some((&0, value)) = signature.contents.split_first() else {
        return Err("signatureValue has unused bits".into());
    };
    // An ECDSA signature is itself DER: SEQUENCE { INTEGER r, INTEGER s }, canonical too. An RSA
    // signature is a fixed-width integer the signature check judges.
    let (oid, _) = element(algorithm.contents)?;
    if oid.tag != OBJECT_IDENTIFIER || !oid.contents.starts_with(ECDSA_SIGNATURE_ARC) {
        return Ok(());
    }
    let (value, rest) = element(value)?;
    if !rest.is_empty() {
        return Err("trailing bytes after the signature".into());
    }
    expect_tag(&value, SEQUENCE, "the ECDSA signature")?;
    walk(value.contents, 1)?;
    let (r, rest) = element(value.contents)?;
    let (s, rest) = element(rest)?;
    expect_tag(&r, INTEGER, "the signature's r")?;
    expect_tag(&s, INTEGER, "the signature's s")?;
    if !rest.is_empty() {
        return Err("the ECDSA signature has more than two integers".into());
    }
    Ok(())
}

/// tbsCertificate's `[3] EXPLICIT Extensions`.
const EXTENSIONS: u8 = 0xa3;
pub(crate) const OCTET_STRING: u8 = 0x04;

/// The extnValue contents of the extension whose OID contents are `oid`, in a certificate that
/// already parsed and passed [`check_signed_object`] (so it is read, not judged, here); `None`
/// when it has no such extension. A walk of the skeleton, not a second parse.
pub(super) fn extension_value<'a>(cert: &'a [u8], oid: &[u8]) -> Result<Option<&'a [u8]>, String> {
    let (outer, _) = element(cert)?;
    let (tbs, _) = element(outer.contents)?;
    let mut fields = tbs.contents;
    while !fields.is_empty() {
        let (field, rest) = element(fields)?;
        fields = rest;
        if field.tag != EXTENSIONS {
            continue;
        }
        let (extensions, _) = element(field.contents)?;
        let mut list = extensions.contents;
        while !list.is_empty() {
            let (extension, rest) = element(list)?;
            list = rest;
            let (id, after_id) = element(extension.contents)?;
            if id.tag != OBJECT_IDENTIFIER || id.contents != oid {
                continue;
            }
            // extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING.
            let (mut value, after_value) = element(after_id)?;
            if value.tag == BOOLEAN {
                (value, _) = element(after_value)?;
            }
            expect_tag(&value, OCTET_STRING, "extnValue")?;
            return Ok(Some(value.contents));
        }
    }
    Ok(None)
}

pub(super) fn expect_tag(element: &Element<'_>, tag: u8, what: &str) -> Result<(), String> {
    if element.tag == tag {
        Ok(())
    } else {
        Err(format!(
            "{what} has tag {:#04x}, not {tag:#04x}",
            element.tag
        ))
    }
}

/// Checks that `contents`, a run of elements (a certificate extension's value, say), is
/// canonical DER throughout.
pub(crate) fn check_canonical(contents: &[u8]) -> Result<(), String> {
    walk(contents, 1)
}

/// Checks every element of `contents` (and, if constructed, theirs).
fn walk(mut contents: &[u8], depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH}"));
    }
    while !contents.is_empty() {
        let (element, rest) = element(contents)?;
        check_form(&element)?;
        if element.tag & CONSTRUCTED != 0 {
            walk(element.contents, depth + 1)?;
        }
        contents = rest;
    }
    Ok(())
}

/// The rules of one element's own encoding.
fn check_form(element: &Element<'_>) -> Result<(), String> {
    let Element { tag, contents, .. } = *element;
    if tag & CLASS_MASK != UNIVERSAL {
        return Ok(());
    }
    let number = tag & 0x1f;
    let constructed = tag & CONSTRUCTED != 0;
    match number {
        // SEQUENCE and SET are always constructed; everything else universal is primitive in DER.
        0x10 | 0x11 if !constructed => Err(format!("{tag:#04x} is a primitive SEQUENCE or SET")),
        0x10 | 0x11 => Ok(()),
        _ if constructed => Err(format!("{tag:#04x} is a constructed primitive type")),
        n if n == BOOLEAN => match contents {
            [0x00] | [0xff] => Ok(()),
            _ => Err("a BOOLEAN that is not one byte 0x00 or 0xFF".into()),
        },
        n if n == INTEGER => match contents {
            [] => Err("an empty INTEGER".into()),
            [0x00, next, ..] if next & 0x80 == 0 => Err("an INTEGER with a leading zero".into()),
            [0xff, next, ..] if next & 0x80 != 0 => Err("an INTEGER with a leading 0xFF".into()),
            _ => Ok(()),
        },
        n if n == BIT_STRING => match contents {
            [] => Err("a BIT STRING without its unused-bits byte".into()),
            [unused, ..] if *unused > 7 => Err("a BIT STRING with more than 7 unused bits".into()),
            [unused] if *unused != 0 => Err("an empty BIT STRING with unused bits".into()),
            _ => Ok(()),
        },
        // NULL
        0x05 if !contents.is_empty() => Err("a NULL with contents".into()),
        _ => Ok(()),
    }
}

/// Splits the first element off `input`: low-tag-number identifier, definite minimal length.
pub(crate) fn element(input: &[u8]) -> Result<(Element<'_>, &[u8]), String> {
    let (&tag, rest) = input
        .split_first()
        .ok_or("truncated: an element expected")?;
    if tag & 0x1f == 0x1f {
        return Err(format!("{tag:#04x} uses the high tag number form"));
    }
    let (&first, rest) = rest.split_first().ok_or("truncated: a length expected")?;
    let (length, rest) = match first {
        short @ 0..=0x7f => (usize::from(short), rest),
        0x80 => return Err("an indefinite length".into()),
        long => {
            let count = usize::from(long & 0x7f);
            if count > std::mem::size_of::<u32>() {
                return Err("a length of more than four bytes".into());
            }
            let digits = rest.get(..count).ok_or("truncated length")?;
            if digits[0] == 0 {
                return Err("a length with a leading zero byte".into());
            }
            let length = digits
                .iter()
                .fold(0usize, |length, &digit| (length << 8) | usize::from(digit));
            if length < 0x80 {
                return Err("a long-form length under 128".into());
            }
            (length, &rest[count..])
        }
    };
    let contents = rest
        .get(..length)
        .ok_or("truncated: contents shorter than their length")?;
    let header_len = input.len() - rest.len();
    let element = Element {
        tag,
        contents,
        encoded: &input[..header_len + length],
    };
    Ok((element, &rest[length..]))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The real AWS Nitro root (P-384) and the Intel SGX root (P-256).
    fn real_roots() -> [&'static [u8]; 2] {
        [
            include_bytes!("../nitro/aws_nitro_root_g1.der"),
            crate::tdx::INTEL_SGX_ROOT_CA_DER,
        ]
    }

    #[test]
    fn real_certificates_are_canonical() {
        for root in real_roots() {
            check_signed_object(root).expect("a real root");
        }
    }

    #[test]
    fn rsa_signed_certificates_keep_their_signature_a_plain_integer() {
        // Google's AK CA root and the generated AK leaves under RSA intermediates: the RSA
        // signature's bytes are not DER and must not be read as such.
        for der in [
            &include_bytes!("../../fixtures/gcp/root.der")[..],
            &include_bytes!("../../fixtures/gcp/ak_ecc.der")[..],
            &include_bytes!("../../fixtures/gcp/ak_rsa.der")[..],
        ] {
            check_signed_object(der).expect("an RSA-signed certificate");
        }
        let mut truncated = include_bytes!("../../fixtures/gcp/ak_rsa.der").to_vec();
        truncated.pop();
        assert!(check_signed_object(&truncated).is_err());
    }

    #[test]
    fn extension_values_are_found_by_oid() {
        use x509_parser::prelude::{FromDer, X509Certificate};
        // Every extension of both real roots, critical or not, read as x509-parser reads it.
        for root in real_roots() {
            let (_, cert) = X509Certificate::from_der(root).unwrap();
            assert!(!cert.extensions().is_empty());
            for ext in cert.extensions() {
                assert_eq!(
                    extension_value(root, ext.oid.as_bytes()),
                    Ok(Some(ext.value)),
                    "{}",
                    ext.oid
                );
            }
            assert_eq!(extension_value(root, &[0x2a, 0x03]), Ok(None));
        }
        assert!(extension_value(b"\x30\x03\x02\x01", &[0x2a]).is_err());
    }

    #[test]
    fn non_canonical_encodings_of_a_real_certificate_are_refused() {
        for root in real_roots() {
            for (what, variant) in non_canonical_variants(root) {
                assert!(
                    check_signed_object(&variant).is_err(),
                    "{what} was accepted"
                );
            }
        }
    }

    /// The encodings of `der` that a lenient parser reads as the same certificate.
    pub(crate) fn non_canonical_variants(der: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
        let (outer, _) = element(der).unwrap();
        let header = outer.encoded.len() - outer.contents.len();
        let (tbs, rest) = element(outer.contents).unwrap();
        let algorithm_at = header + tbs.encoded.len();
        let (algorithm, _) = element(rest).unwrap();
        let signature_at = algorithm_at + algorithm.encoded.len();
        let mut variants = Vec::new();
        let mut primitive_outer = der.to_vec();
        primitive_outer[0] = 0x10;
        variants.push(("a primitive outer SEQUENCE (0x10)", primitive_outer));
        let mut primitive_algorithm = der.to_vec();
        primitive_algorithm[algorithm_at] = 0x10;
        variants.push((
            "a primitive signatureAlgorithm SEQUENCE (0x10)",
            primitive_algorithm,
        ));
        let mut set_algorithm = der.to_vec();
        set_algorithm[algorithm_at] = 0x31;
        variants.push(("signatureAlgorithm as a SET", set_algorithm));
        let mut context_algorithm = der.to_vec();
        context_algorithm[algorithm_at] = 0xa0;
        variants.push(("signatureAlgorithm retagged [0]", context_algorithm));
        let mut retagged_signature = der.to_vec();
        retagged_signature[signature_at] = 0x04;
        variants.push(("signatureValue as an OCTET STRING", retagged_signature));
        // Lengths one byte longer than they need be (a leading zero length byte).
        let parts = [tbs.encoded, algorithm.encoded, &der[signature_at..]].concat();
        variants.push((
            "a non-minimal outer length",
            padded_length(SEQUENCE, &parts),
        ));
        let long_algorithm = [
            tbs.encoded,
            &padded_length(SEQUENCE, algorithm.contents),
            &der[signature_at..],
        ]
        .concat();
        variants.push((
            "a long-form signatureAlgorithm length",
            minimal(SEQUENCE, &long_algorithm),
        ));
        let (signature, _) = element(&der[signature_at..]).unwrap();
        let (ecdsa, _) = element(&signature.contents[1..]).unwrap();
        let padded_ecdsa = [&[0u8][..], &padded_length(SEQUENCE, ecdsa.contents)].concat();
        let long_ecdsa = [
            tbs.encoded,
            algorithm.encoded,
            &minimal(BIT_STRING, &padded_ecdsa),
        ]
        .concat();
        variants.push((
            "a long-form length inside the ECDSA signature",
            minimal(SEQUENCE, &long_ecdsa),
        ));
        let mut trailing = der.to_vec();
        trailing.push(0);
        variants.push(("a trailing byte", trailing));
        variants
    }

    #[test]
    fn chains_and_crls_re_encoded_are_malformed() {
        use crate::x509::test_pki::{kind, Pki, NOW};
        let pki = Pki::standard();
        let verifier = pki.verifier();
        let chain = pki.chain();
        verifier
            .verify(&chain, NOW, &[])
            .expect("the canonical chain");
        for position in [0, 1] {
            for (what, variant) in non_canonical_variants(chain[position]) {
                let mut altered = chain.clone();
                altered[position] = &variant;
                let found = kind(verifier.verify(&altered, NOW, &[]));
                eprintln!("certificate {position}, {what}: {found}");
                assert!(
                    matches!(found, "malformed" | "certificate_invalid"),
                    "{what}: {found}"
                );
                if what.contains("(0x10)") || what.contains("length") {
                    assert_eq!(found, "malformed", "certificate {position}, {what}");
                }
            }
        }
        let crl = pki.crl(1, &[], -3600, 3600);
        let issuer = &chain[1..];
        verifier
            .verify_crl(&crl, issuer, NOW)
            .expect("the canonical CRL");
        for (what, variant) in non_canonical_variants(&crl) {
            let found = verifier
                .verify_crl(&variant, issuer, NOW)
                .map(|_| ())
                .unwrap_err()
                .kind()
                .as_str();
            eprintln!("CRL, {what}: {found}");
            assert!(
                matches!(found, "malformed" | "collateral_invalid"),
                "{what}: {found}"
            );
            if what.contains("(0x10)") || what.contains("length") {
                assert_eq!(found, "malformed", "CRL, {what}");
            }
        }
    }

    /// `tag`, `contents`, with a minimal length.
    pub(crate) fn minimal(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut encoded = vec![tag];
        match contents.len() {
            short @ 0..=0x7f => encoded.push(short as u8),
            long => {
                let digits: Vec<u8> = long
                    .to_be_bytes()
                    .into_iter()
                    .skip_while(|&digit| digit == 0)
                    .collect();
                encoded.push(0x80 | digits.len() as u8);
                encoded.extend(digits);
            }
        }
        encoded.extend_from_slice(contents);
        encoded
    }

    /// `tag`, `contents`, with a long-form length led by a zero byte.
    fn padded_length(tag: u8, contents: &[u8]) -> Vec<u8> {
        let minimal = minimal(tag, contents);
        let (digits, rest) = match minimal[1] {
            0..=0x7f => (&minimal[1..2], &minimal[2..]),
            long => minimal[2..].split_at(usize::from(long & 0x7f)),
        };
        let mut encoded = vec![tag, 0x80 | (digits.len() as u8 + 1), 0];
        encoded.extend_from_slice(digits);
        encoded.extend_from_slice(rest);
        encoded
    }

    #[test]
    fn element_rules() {
        assert!(element(&[0x02, 0x80]).is_err(), "indefinite length");
        assert!(
            element(&[0x02, 0x81, 0x05, 1, 2, 3, 4, 5]).is_err(),
            "long form under 128"
        );
        assert!(element(&[0x1f, 0x01, 0x00]).is_err(), "high tag number");
        assert!(
            element(&[0x04, 0x85, 1, 0, 0, 0, 0]).is_err(),
            "five length bytes"
        );
        assert!(element(&[0x04, 0x05, 1]).is_err(), "truncated contents");
        let form = |bytes: &[u8]| check_form(&element(bytes).unwrap().0);
        assert!(form(&[0x02, 0x02, 0x00, 0x7f]).is_err());
        assert!(form(&[0x02, 0x02, 0x00, 0x80]).is_ok());
        assert!(form(&[0x02, 0x02, 0xff, 0x80]).is_err());
        assert!(form(&[0x01, 0x01, 0x01]).is_err());
        assert!(form(&[0x01, 0x01, 0xff]).is_ok());
        assert!(form(&[0x23, 0x00]).is_err(), "constructed BIT STRING");
        assert!(form(&[0x03, 0x01, 0x08]).is_err());
        assert!(form(&[0x05, 0x01, 0x00]).is_err());
        assert!(walk(&[0x30, 0x00].repeat(200), 1).is_ok(), "long, not deep");
        let mut deep = Vec::new();
        for _ in 0..40 {
            let mut outer = vec![0x30, deep.len() as u8];
            outer.extend(deep);
            deep = outer;
        }
        assert!(walk(&deep, 1).is_err(), "too deep");
    }
}
