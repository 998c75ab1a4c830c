//! Nitro verification against a generated AWS-shaped PKI: every rule, every rejection kind.

use crate::support::nitro as nitro_support;

use nitro_support::*;
use tee_verifier::nitro::{
    os_image_hash, parse_document, Expectations, NitroVerifier, AWS_NITRO_ROOT_G1_DER,
    DEBUG_OS_IMAGE_HASH, MAX_DOCUMENT_LEN, MAX_FUTURE_SKEW_SECS,
};

fn expect_none() -> Expectations {
    Expectations::default()
}

/// The kind of rejecting a document built by `change` from the default fixture.
fn rejected_after(change: impl FnOnce(&mut Document)) -> &'static str {
    let mut fixture = Fixture::aws_like();
    change(&mut fixture.doc);
    fixture.rejection()
}

/// The kind of rejecting a document whose PKI was built by `change` from the AWS shape.
fn rejected_with_pki(change: impl FnOnce(&mut PkiSpec)) -> &'static str {
    let mut spec = PkiSpec::aws_like();
    change(&mut spec);
    Fixture::with_pki(&spec).rejection()
}

// ------------------------------------------------------------------------------------------------
// Accepted documents

#[test]
fn production_like_document_verifies() {
    let fixture = Fixture::aws_like();
    let verified = fixture.verify(NOW, &expect_none()).unwrap();
    let doc = &verified.document;
    assert_eq!(doc.module_id, MODULE_ID);
    assert_eq!(doc.timestamp_ms, TIMESTAMP_MS);
    assert_eq!(doc.pcrs.len(), 16);
    assert_eq!(doc.pcrs[&0], pcr_value(0));
    assert_eq!(doc.certificate, fixture.pki.leaf);
    assert_eq!(doc.cabundle, fixture.pki.cas);
    assert!(doc.public_key.is_none() && doc.user_data.is_none() && doc.nonce.is_none());
    let expected = os_image_hash(&pcr_value(0), &pcr_value(1), &pcr_value(2));
    assert_eq!(verified.os_image_hash, expected);
    assert_eq!(doc.os_image_hash().unwrap(), expected);
}

#[test]
fn verifies_inside_the_leaf_window_edges() {
    let fixture = Fixture::aws_like();
    let (verifier, bytes) = (fixture.pki.verifier(), fixture.bytes());
    // The leaf starts 3 s before the document; the future-skew bound allows that.
    verifier
        .verify(&bytes, LEAF_NOT_BEFORE, &expect_none())
        .unwrap();
    verifier
        .verify(&bytes, LEAF_NOT_AFTER, &expect_none())
        .unwrap();
}

#[test]
fn tagged_and_untagged_envelopes_both_verify() {
    let mut fixture = Fixture::aws_like();
    let untagged = fixture.bytes();
    assert_eq!(untagged[0], 0x84);
    fixture.doc.tagged = true;
    let tagged = fixture.bytes();
    assert_eq!(tagged[0], 0xd2);
    let verifier = fixture.pki.verifier();
    verifier.verify(&untagged, NOW, &expect_none()).unwrap();
    verifier.verify(&tagged, NOW, &expect_none()).unwrap();
}

#[test]
fn high_s_and_low_s_both_verify() {
    let mut fixture = Fixture::aws_like();
    for s_value in [SValue::High, SValue::Low] {
        fixture.doc.s_value = s_value;
        let bytes = fixture.bytes();
        let signature = &bytes[bytes.len() - 96..];
        assert_eq!(is_high_s(signature), s_value == SValue::High);
        fixture
            .pki
            .verifier()
            .verify(&bytes, NOW, &expect_none())
            .unwrap();
    }
}

#[test]
fn indefinite_length_collections_verify() {
    let mut fixture = Fixture::aws_like();
    fixture.doc.payload.indefinite = true;
    let pcrs = default_pcrs()
        .into_iter()
        .map(|(i, v)| (Cbor::Uint(i), Cbor::Bytes(v)))
        .collect();
    fixture.doc.payload.set("pcrs", Cbor::IndefiniteMap(pcrs));
    let cabundle = fixture.pki.cas.iter().map(|der| Cbor::bytes(der)).collect();
    fixture
        .doc
        .payload
        .set("cabundle", Cbor::IndefiniteArray(cabundle));
    let bytes = fixture.bytes();
    let verified = fixture
        .pki
        .verifier()
        .verify(&bytes, NOW, &expect_none())
        .unwrap();
    assert_eq!(verified.document.pcrs.len(), 16);
    assert_eq!(verified.document.cabundle.len(), 4);
}

#[test]
fn optional_fields_null_absent_empty_and_full() {
    let mut fixture = Fixture::aws_like();
    fixture.doc.payload.remove("public_key");
    fixture
        .doc
        .payload
        .set("user_data", Cbor::Bytes(Vec::new()));
    fixture.doc.payload.set("nonce", Cbor::Null);
    let doc = fixture.verify(NOW, &expect_none()).unwrap().document;
    assert_eq!(doc.public_key, None, "absent");
    assert_eq!(doc.user_data, Some(Vec::new()), "empty is present");
    assert_eq!(doc.nonce, None, "null is absent");

    // 1024 bytes in all three at once, as real NSM output can hold.
    for key in ["public_key", "user_data", "nonce"] {
        fixture.doc.payload.set(key, Cbor::Bytes(vec![7; 1024]));
    }
    let doc = fixture.verify(NOW, &expect_none()).unwrap().document;
    assert_eq!(doc.nonce.map(|n| n.len()), Some(1024));
}

#[test]
fn field_order_does_not_matter_and_all_pcr_sizes_work() {
    let mut fixture = Fixture::aws_like();
    fixture.doc.payload.entries.reverse();
    fixture.doc.payload.set(
        "pcrs",
        pcrs(&[
            (2, vec![3; 64]),
            (0, vec![1; 32]),
            (1, vec![2; 48]),
            (31, vec![0; 48]),
        ]),
    );
    let verified = fixture.verify(NOW, &expect_none()).unwrap();
    assert_eq!(
        verified.os_image_hash,
        os_image_hash(&[1; 32], &[2; 48], &[3; 64])
    );
}

#[test]
fn parse_document_previews_without_trusting() {
    let fixture = Fixture::aws_like();
    // Not chained to anything pinned, and parsed at no particular time: still readable.
    let doc = parse_document(&fixture.bytes()).unwrap();
    assert_eq!(doc.module_id, MODULE_ID);
    assert_eq!(
        NitroVerifier::new()
            .verify(&fixture.bytes(), NOW, &expect_none())
            .unwrap_err()
            .kind()
            .as_str(),
        "untrusted_root"
    );
    // Structure errors are the same as verify's.
    let mut broken = fixture.bytes();
    broken.push(0);
    assert_eq!(
        parse_document(&broken).unwrap_err().kind().as_str(),
        "malformed"
    );
}

#[test]
fn verifier_is_shareable_across_threads() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    assert_traits::<NitroVerifier>();
    let fixture = Fixture::aws_like();
    let verifier = fixture.pki.verifier();
    let bytes = fixture.bytes();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let (verifier, bytes) = (verifier.clone(), &bytes);
            scope.spawn(move || {
                verifier
                    .verify(bytes, NOW, &Expectations::default())
                    .unwrap()
            });
        }
    });
}

#[test]
fn embedded_root_is_the_aws_root() {
    // The pinned default verifier refuses a test PKI; the embedded DER parses as the AWS root.
    let (_, cert) = x509_parser::parse_x509_certificate(AWS_NITRO_ROOT_G1_DER).unwrap();
    assert_eq!(
        cert.subject().to_string(),
        "C=US, O=Amazon, OU=AWS, CN=aws.nitro-enclaves"
    );
}

// ------------------------------------------------------------------------------------------------
// COSE envelope

#[test]
fn other_algorithms_are_refused() {
    // ES256, ES512, and no alg at all.
    for protected in [
        &[0xa1, 0x01, 0x26][..],
        &[0xa1, 0x01, 0x38, 0x23],
        &[0xa0],
        &[],
    ] {
        assert_eq!(
            rejected_after(|doc| doc.protected = protected.to_vec()),
            "algorithm",
            "{protected:02x?}"
        );
    }
}

#[test]
fn protected_header_must_be_exactly_es384() {
    // ES384 plus a kid, and ES384 with a non-shortest encoding of -35.
    for protected in [
        &[0xa2, 0x01, 0x38, 0x22, 0x04, 0x41, 0x01][..],
        &[0xa1, 0x01, 0x39, 0x00, 0x22],
    ] {
        assert_eq!(
            rejected_after(|doc| doc.protected = protected.to_vec()),
            "malformed",
            "{protected:02x?}"
        );
    }
}

#[test]
fn unprotected_header_must_be_empty() {
    // coset would read {4: h''} as an empty header; the raw map is checked.
    for unprotected in [
        Cbor::Map(vec![(Cbor::Uint(4), Cbor::Bytes(Vec::new()))]),
        Cbor::Map(vec![(Cbor::Uint(1), Cbor::Negative(34))]),
        Cbor::Null,
    ] {
        assert_eq!(
            rejected_after(|doc| doc.unprotected = unprotected),
            "malformed"
        );
    }
}

#[test]
fn envelope_shape_is_enforced() {
    assert_eq!(
        rejected_after(|doc| doc.detached = true),
        "malformed",
        "detached payload"
    );
    let fixture = Fixture::aws_like();
    let bytes = fixture.bytes();
    let verifier = fixture.pki.verifier();
    let kind = |input: &[u8]| rejection(verifier.verify(input, NOW, &expect_none()));

    let mut trailing = bytes.clone();
    trailing.push(0x00);
    assert_eq!(
        kind(&trailing),
        "malformed",
        "trailing bytes after the envelope"
    );
    assert_eq!(kind(&bytes[..bytes.len() - 1]), "malformed", "truncated");
    assert_eq!(kind(&[]), "malformed", "empty input");
    let mut other_tag = vec![0xd1]; // tag 17 = COSE_Mac0
    other_tag.extend_from_slice(&bytes);
    assert_eq!(kind(&other_tag), "malformed", "tag 17");
    let mut double_tag = vec![0xd2, 0xd2];
    double_tag.extend_from_slice(&bytes);
    assert_eq!(kind(&double_tag), "malformed", "tag 18 twice");
    let mut three_items = bytes.clone();
    three_items[0] = 0x83;
    assert_eq!(kind(&three_items), "malformed", "three-item array");
    assert_eq!(
        kind(&Cbor::Map(Vec::new()).encode()),
        "malformed",
        "not an array"
    );
    // Deep nesting in the unprotected slot is refused without exhausting the stack.
    let mut deep = vec![0x84, 0x44, 0xa1, 0x01, 0x38, 0x22];
    deep.extend(std::iter::repeat_n(0x81, 10_000));
    assert_eq!(kind(&deep), "malformed", "deep nesting");
    // Declared lengths far beyond the input are refused without allocating them.
    let huge_bstr = [0x84, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(kind(&huge_bstr), "malformed", "huge bstr length");
    let huge_array = [0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00];
    assert_eq!(kind(&huge_array), "malformed", "huge array length");
}

#[test]
fn size_bounds_are_enforced_before_decoding() {
    let fixture = Fixture::aws_like();
    let verifier = fixture.pki.verifier();
    let huge = vec![0u8; MAX_DOCUMENT_LEN + 1];
    assert_eq!(
        rejection(verifier.verify(&huge, NOW, &expect_none())),
        "malformed"
    );
    // A payload over 16 KiB inside a document under the total bound.
    assert_eq!(
        rejected_after(|doc| {
            doc.payload
                .push(Cbor::text("padding"), Cbor::Bytes(vec![0; 16 * 1024]));
        }),
        "malformed"
    );
}

#[test]
fn tampered_signature_or_payload_is_refused() {
    let fixture = Fixture::aws_like();
    let verifier = fixture.pki.verifier();
    let bytes = fixture.bytes();

    let mut bad_signature = bytes.clone();
    let last = bad_signature.len() - 1;
    bad_signature[last] ^= 0x01;
    assert_eq!(
        rejection(verifier.verify(&bad_signature, NOW, &expect_none())),
        "signature"
    );

    // Flip a byte inside PCR0's value: still well-formed, no longer signed.
    let pcr0 = pcr_value(0);
    let at = bytes.windows(pcr0.len()).position(|w| w == pcr0).unwrap();
    let mut bad_payload = bytes.clone();
    bad_payload[at] ^= 0x01;
    assert_eq!(
        rejection(verifier.verify(&bad_payload, NOW, &expect_none())),
        "signature"
    );
}

#[test]
fn signature_must_be_96_raw_bytes() {
    let fixture = Fixture::aws_like();
    let bytes = fixture.bytes();
    let verifier = fixture.pki.verifier();
    // The signature is the last item: 0x58 0x60 + 96 bytes. Re-encode it 95 and 97 bytes long.
    let body = &bytes[..bytes.len() - 98];
    let signature = &bytes[bytes.len() - 96..];
    for len in [95, 97, 0] {
        let mut resized = signature.to_vec();
        resized.resize(len, 0);
        let mut input = body.to_vec();
        input.extend_from_slice(&Cbor::Bytes(resized).encode());
        assert_eq!(
            rejection(verifier.verify(&input, NOW, &expect_none())),
            "signature",
            "{len} bytes"
        );
    }
}

#[test]
fn document_signed_by_another_key_is_refused() {
    let fixture = Fixture::aws_like();
    let impostor = TestPki::aws_like();
    // The document names the real chain but is signed with another leaf key.
    let bytes = fixture.doc.sign(&impostor);
    assert_eq!(
        rejection(fixture.pki.verifier().verify(&bytes, NOW, &expect_none())),
        "signature"
    );
}

// ------------------------------------------------------------------------------------------------
// Payload rules (all `malformed`)

/// Asserts that the fixture's document is refused as `malformed` by both `parse_document` and
/// `verify`, with an error message containing `fragment` (so it fails for the intended reason).
fn assert_malformed(fixture: &Fixture, case: &str, fragment: &str) {
    let bytes = fixture.bytes();
    let parse_error = parse_document(&bytes).unwrap_err();
    assert_eq!(
        parse_error.kind().as_str(),
        "malformed",
        "{case}: {parse_error}"
    );
    assert!(
        parse_error.to_string().contains(fragment),
        "{case}: {parse_error}"
    );
    let verify_error = fixture.verify(NOW, &expect_none()).unwrap_err();
    assert_eq!(verify_error.to_string(), parse_error.to_string(), "{case}");
}

#[test]
fn payload_field_values_are_checked() {
    let zeros = |len| Cbor::Bytes(vec![0; len]);
    let pcr_map = |key: Cbor, value: Cbor| Cbor::Map(vec![(key, value)]);
    let too_many_pcrs: Vec<_> = (0..33).map(|i| (i % 32, vec![0; 48])).collect();
    // (case, field, replacement value, fragment of the error message)
    #[rustfmt::skip]
    let cases = [
        ("empty module_id", "module_id", Cbor::text(""), "module_id is empty"),
        ("module_id as bytes", "module_id", Cbor::bytes(b"i-1"), "module_id: expected text string, found byte string"),
        ("null module_id", "module_id", Cbor::Null, "module_id: expected text string, found null"),
        ("digest SHA256", "digest", Cbor::text("SHA256"), "digest is not"),
        ("lowercase digest", "digest", Cbor::text("sha384"), "digest is not"),
        ("digest as integer", "digest", Cbor::Uint(384), "digest: expected text string"),
        ("zero timestamp", "timestamp", Cbor::Uint(0), "timestamp is zero"),
        ("negative timestamp", "timestamp", Cbor::Negative(5), "found negative integer"),
        ("timestamp as text", "timestamp", Cbor::text("1750000000123"), "found text string"),
        ("tagged timestamp", "timestamp", Cbor::Tag(1, Box::new(Cbor::Uint(T0))), "found tag"),
        ("no PCRs", "pcrs", Cbor::Map(Vec::new()), "1..=32 entries"),
        ("pcrs as array", "pcrs", Cbor::Array(Vec::new()), "pcrs: expected map, found array"),
        ("33 PCRs", "pcrs", pcrs(&too_many_pcrs), "1..=32 entries"),
        ("PCR index 32", "pcrs", pcrs(&[(0, vec![0; 48]), (32, vec![0; 48])]), "PCR index 32"),
        ("PCR index 256", "pcrs", pcrs(&[(256, vec![0; 48])]), "PCR index 256"),
        ("negative PCR index", "pcrs", pcr_map(Cbor::Negative(0), zeros(48)), "found negative integer"),
        ("PCR index as text", "pcrs", pcr_map(Cbor::text("0"), zeros(48)), "found text string"),
        ("47-byte PCR", "pcrs", pcrs(&[(0, vec![0; 47])]), "PCR0 is 47 bytes"),
        ("empty PCR", "pcrs", pcrs(&[(0, Vec::new())]), "PCR0 is 0 bytes"),
        ("96-byte PCR", "pcrs", pcrs(&[(0, vec![0; 96])]), "PCR0 is 96 bytes"),
        ("duplicate PCR", "pcrs", pcrs(&[(0, vec![1; 48]), (1, vec![1; 48]), (0, vec![2; 48])]), "PCR0 appears twice"),
        ("null PCR value", "pcrs", pcr_map(Cbor::Uint(0), Cbor::Null), "found null"),
        ("empty certificate", "certificate", zeros(0), "certificate is 0 bytes"),
        ("1025-byte certificate", "certificate", zeros(1025), "certificate is 1025 bytes"),
        ("null certificate", "certificate", Cbor::Null, "certificate: expected byte string, found null"),
        ("empty cabundle", "cabundle", Cbor::Array(Vec::new()), "cabundle holds no certificate"),
        ("null cabundle", "cabundle", Cbor::Null, "cabundle: expected array, found null"),
        ("cabundle as bytes", "cabundle", zeros(1), "cabundle: expected array, found byte string"),
        ("empty cabundle entry", "cabundle", Cbor::Array(vec![zeros(0)]), "cabundle is 0 bytes"),
        ("1025-byte cabundle entry", "cabundle", Cbor::Array(vec![zeros(1025)]), "cabundle is 1025 bytes"),
        ("1025-byte public_key", "public_key", zeros(1025), "public_key is 1025 bytes"),
        ("1025-byte user_data", "user_data", zeros(1025), "user_data is 1025 bytes"),
        ("1025-byte nonce", "nonce", zeros(1025), "nonce is 1025 bytes"),
        ("nonce as text", "nonce", Cbor::text("abc"), "nonce: expected byte string, found text string"),
        ("undefined user_data", "user_data", Cbor::Raw(vec![0xf7]), "found undefined"),
        ("public_key false", "public_key", Cbor::Raw(vec![0xf4]), "found boolean"),
        ("chunked nonce", "nonce", Cbor::Raw(vec![0x5f, 0x41, 1, 0x41, 2, 0xff]), "chunked"),
    ];
    for (case, field, value, fragment) in cases {
        let mut fixture = Fixture::aws_like();
        fixture.doc.payload.set(field, value);
        assert_malformed(&fixture, case, fragment);
    }
}

#[test]
fn payload_keys_are_checked() {
    for field in [
        "module_id",
        "digest",
        "timestamp",
        "pcrs",
        "certificate",
        "cabundle",
    ] {
        let mut fixture = Fixture::aws_like();
        fixture.doc.payload.remove(field);
        assert_malformed(&fixture, field, &format!("{field} is missing"));
    }
    // (case, extra entry, fragment of the error message)
    #[rustfmt::skip]
    let cases = [
        ("duplicate optional", Cbor::text("nonce"), Cbor::Null, "nonce appears twice"),
        ("duplicate module_id", Cbor::text("module_id"), Cbor::text("i-other"), "module_id appears twice"),
        ("unknown key", Cbor::text("debug"), Cbor::Null, "unknown payload field \"debug\""),
        ("integer key", Cbor::Uint(1), Cbor::Null, "key: expected text string"),
    ];
    for (case, key, value, fragment) in cases {
        let mut fixture = Fixture::aws_like();
        fixture.doc.payload.push(key, value);
        assert_malformed(&fixture, case, fragment);
    }
    for (case, trailing) in [("trailing byte", vec![0x00]), ("second map", vec![0xa0])] {
        let mut fixture = Fixture::aws_like();
        fixture.doc.payload.trailing = trailing;
        assert_malformed(&fixture, case, "1 trailing byte");
    }
}

#[test]
fn payload_must_be_a_single_terminated_map() {
    let fixture = Fixture::aws_like();
    let verifier = fixture.pki.verifier();
    let mut unterminated = Cbor::IndefiniteMap(fixture.doc.payload.entries.clone()).encode();
    unterminated.pop();
    let payloads = [
        (Cbor::Array(Vec::new()).encode(), "array"),
        (Cbor::text("x").encode(), "text"),
        (Cbor::Null.encode(), "null"),
        (
            Cbor::Tag(24, Box::new(Cbor::Map(Vec::new()))).encode(),
            "tagged map",
        ),
        (unterminated, "indefinite map without its break byte"),
        (Vec::new(), "empty payload"),
    ];
    for (payload, name) in payloads {
        let bytes = sign_raw_payload(&fixture.pki, &payload);
        assert_eq!(
            rejection(verifier.verify(&bytes, NOW, &expect_none())),
            "malformed",
            "{name}"
        );
    }
}

/// Signs an arbitrary payload bstr content.
fn sign_raw_payload(pki: &TestPki, payload: &[u8]) -> Vec<u8> {
    let to_be_signed = Cbor::Array(vec![
        Cbor::text("Signature1"),
        Cbor::bytes(&ES384_PROTECTED),
        Cbor::Bytes(Vec::new()),
        Cbor::bytes(payload),
    ])
    .encode();
    Cbor::Array(vec![
        Cbor::bytes(&ES384_PROTECTED),
        Cbor::Map(Vec::new()),
        Cbor::bytes(payload),
        Cbor::Bytes(pki.sign(&to_be_signed)),
    ])
    .encode()
}

#[test]
fn os_image_hash_needs_pcr0_to_pcr2() {
    for missing in 0..3u64 {
        let mut fixture = Fixture::aws_like();
        let entries: Vec<_> = default_pcrs()
            .into_iter()
            .filter(|(i, _)| *i != missing)
            .collect();
        fixture.doc.payload.set("pcrs", pcrs(&entries));
        // Structurally valid (AWS allows any 1..32 PCRs), but no OS_IMAGE_HASH can be computed.
        let doc = parse_document(&fixture.bytes()).unwrap();
        assert_eq!(
            doc.os_image_hash().unwrap_err().kind().as_str(),
            "malformed"
        );
        assert_eq!(fixture.rejection(), "malformed", "PCR{missing} missing");
    }
}

// ------------------------------------------------------------------------------------------------
// Certificate chain

#[test]
fn broken_chain_order_is_refused() {
    let mut fixture = Fixture::aws_like();
    let cas = fixture.pki.cas.clone();
    let bundle =
        |order: &[usize]| Cbor::Array(order.iter().map(|&i| Cbor::bytes(&cas[i])).collect());

    fixture.doc.payload.set("cabundle", bundle(&[0, 2, 1, 3]));
    assert_eq!(
        fixture.rejection(),
        "certificate_invalid",
        "regional and zonal swapped"
    );
    fixture.doc.payload.set("cabundle", bundle(&[3, 2, 1, 0]));
    assert_eq!(
        fixture.rejection(),
        "untrusted_root",
        "leaf-first order (root last)"
    );
    fixture.doc.payload.set("cabundle", bundle(&[0, 1, 3]));
    assert_eq!(fixture.rejection(), "certificate_invalid", "zonal missing");
    fixture.doc.payload.set("cabundle", bundle(&[1, 2, 3]));
    assert_eq!(fixture.rejection(), "untrusted_root", "root missing");
    fixture.doc.payload.set("cabundle", bundle(&[0]));
    assert_eq!(fixture.rejection(), "certificate_invalid", "root only");
}

#[test]
fn foreign_root_is_untrusted() {
    let fixture = Fixture::aws_like();
    let other = TestPki::aws_like();
    assert_eq!(
        rejection(
            other
                .verifier()
                .verify(&fixture.bytes(), NOW, &expect_none())
        ),
        "untrusted_root"
    );
}

#[test]
fn every_link_must_be_inside_its_window() {
    for level in [ROOT, REGIONAL, ZONAL, INSTANCE, LEAF] {
        let name = LEVEL_NAMES[level];
        assert_eq!(
            rejected_with_pki(|spec| spec.level_mut(level).not_after = NOW - 1),
            "expired",
            "{name}"
        );
        assert_eq!(
            rejected_with_pki(|spec| spec.level_mut(level).not_before = NOW + 1),
            "not_yet_valid",
            "{name}"
        );
    }
    let fixture = Fixture::aws_like();
    let (verifier, bytes) = (fixture.pki.verifier(), fixture.bytes());
    assert_eq!(
        rejection(verifier.verify(&bytes, LEAF_NOT_AFTER + 1, &expect_none())),
        "expired"
    );
    assert_eq!(
        rejection(verifier.verify(&bytes, LEAF_NOT_BEFORE - 1, &expect_none())),
        "not_yet_valid"
    );
}

#[test]
fn ca_flags_and_key_usage_are_enforced() {
    let all = DIGITAL_SIGNATURE | KEY_CERT_SIGN | CRL_SIGN;
    for level in [ROOT, REGIONAL, ZONAL, INSTANCE] {
        let name = LEVEL_NAMES[level];
        let cases: [(&str, Vec<Extension>); 5] = [
            (
                "CA=false",
                vec![
                    Extension::basic_constraints(false, None),
                    Extension::key_usage(all, true),
                ],
            ),
            ("no basicConstraints", vec![Extension::key_usage(all, true)]),
            ("non-critical basicConstraints", {
                let mut bc = Extension::basic_constraints(true, Some(3));
                bc.critical = false;
                vec![bc, Extension::key_usage(all, true)]
            }),
            (
                "no keyCertSign",
                vec![
                    Extension::basic_constraints(true, None),
                    Extension::key_usage(DIGITAL_SIGNATURE | CRL_SIGN, true),
                ],
            ),
            (
                "no keyUsage",
                vec![Extension::basic_constraints(true, None)],
            ),
        ];
        for (case, extensions) in cases {
            assert_eq!(
                rejected_with_pki(|spec| spec.level_mut(level).extensions = extensions),
                "certificate_invalid",
                "{name}: {case}"
            );
        }
    }
    let leaf_cases: [(&str, Vec<Extension>); 4] = [
        (
            "leaf is a CA",
            vec![
                Extension::basic_constraints(true, None),
                Extension::key_usage(DIGITAL_SIGNATURE, false),
            ],
        ),
        (
            "leaf with pathLen",
            vec![
                Extension::basic_constraints(false, Some(0)),
                Extension::key_usage(DIGITAL_SIGNATURE, false),
            ],
        ),
        (
            "leaf without digitalSignature",
            vec![
                Extension::basic_constraints(false, None),
                Extension::key_usage(KEY_CERT_SIGN, false),
            ],
        ),
        (
            "leaf without keyUsage",
            vec![Extension::basic_constraints(false, None)],
        ),
    ];
    for (case, extensions) in leaf_cases {
        assert_eq!(
            rejected_with_pki(|spec| spec.leaf.extensions = extensions),
            "certificate_invalid",
            "{case}"
        );
    }
}

#[test]
fn unknown_critical_extensions_are_refused_at_every_level() {
    for level in [ROOT, REGIONAL, ZONAL, INSTANCE, LEAF] {
        let name = LEVEL_NAMES[level];
        let kind = rejected_with_pki(|spec| {
            spec.level_mut(level)
                .extensions
                .push(Extension::unknown(true))
        });
        assert_eq!(kind, "certificate_invalid", "{name}");
        // The same extension, non-critical, is fine.
        let mut spec = PkiSpec::aws_like();
        spec.level_mut(level)
            .extensions
            .push(Extension::unknown(false));
        Fixture::with_pki(&spec)
            .verify(NOW, &expect_none())
            .unwrap();
    }
}

#[test]
fn path_length_constraints_are_enforced() {
    // A fifth CA below the instance CA (pathLen 0).
    let kind = rejected_with_pki(|spec| {
        let mut extra = spec.cas[INSTANCE].clone();
        extra.common_name = "extra.aws.nitro-enclaves".to_owned();
        spec.cas.push(extra);
    });
    assert_eq!(kind, "certificate_invalid", "CA under pathLen 0");
    // The regional CA allows no CA below it, yet zonal and instance follow.
    let kind = rejected_with_pki(|spec| {
        let all = DIGITAL_SIGNATURE | KEY_CERT_SIGN | CRL_SIGN;
        spec.cas[REGIONAL].extensions = vec![
            Extension::basic_constraints(true, Some(0)),
            Extension::key_usage(all, true),
        ];
    });
    assert_eq!(kind, "certificate_invalid", "regional pathLen 0");
}

#[test]
fn algorithms_are_pinned_in_the_chain() {
    assert_eq!(
        rejected_with_pki(|spec| spec.leaf.key = KeyAlg::P256),
        "algorithm",
        "P-256 leaf key"
    );
    // A P-256 instance CA signs the leaf with ecdsa-with-SHA256.
    assert_eq!(
        rejected_with_pki(|spec| spec.cas[INSTANCE].key = KeyAlg::P256),
        "algorithm",
        "P-256 intermediate"
    );
}

#[test]
fn warm_verifier_never_trusts_past_not_after() {
    let fixture = Fixture::aws_like();
    let verifier = fixture.pki.verifier();
    let bytes = fixture.bytes();
    verifier.verify(&bytes, NOW, &expect_none()).unwrap();
    verifier.verify(&bytes, NOW + 1, &expect_none()).unwrap();
    assert_eq!(
        rejection(verifier.verify(&bytes, LEAF_NOT_AFTER + 1, &expect_none())),
        "expired"
    );
    // And an intermediate expiring later than the leaf is still checked on the warm path.
    let mut spec = PkiSpec::aws_like();
    spec.cas[ZONAL].not_after = NOW + 10;
    let fixture = Fixture::with_pki(&spec);
    let (verifier, bytes) = (fixture.pki.verifier(), fixture.bytes());
    verifier.verify(&bytes, NOW, &expect_none()).unwrap();
    assert_eq!(
        rejection(verifier.verify(&bytes, NOW + 11, &expect_none())),
        "expired"
    );
    // A valid document after a rejected one: the cache holds no verdicts, only verified work.
    verifier.verify(&bytes, NOW + 5, &expect_none()).unwrap();
}

// ------------------------------------------------------------------------------------------------
// Freshness, bindings, debug

#[test]
fn max_age_bounds_the_signed_timestamp() {
    let fixture = Fixture::aws_like();
    let (verifier, bytes) = (fixture.pki.verifier(), fixture.bytes());
    let within = Expectations {
        max_age_secs: Some(60),
        ..Default::default()
    };
    // The document is 59.877 s old at NOW, 60.877 s a second later.
    verifier.verify(&bytes, NOW, &within).unwrap();
    assert_eq!(
        rejection(verifier.verify(&bytes, NOW + 1, &within)),
        "stale_document"
    );
    let zero = Expectations {
        max_age_secs: Some(0),
        ..Default::default()
    };
    verifier.verify(&bytes, T0, &zero).unwrap();
    assert_eq!(
        rejection(verifier.verify(&bytes, T0 + 1, &zero)),
        "stale_document"
    );
}

#[test]
fn future_dated_documents_are_refused() {
    // Certificates valid long before the document, so only the timestamp is at fault.
    let mut spec = PkiSpec::aws_like();
    spec.leaf.not_before = T0 - HOUR;
    let fixture = Fixture::with_pki(&spec);
    let (verifier, bytes) = (fixture.pki.verifier(), fixture.bytes());
    // The timestamp is T0 + 0.123 s: T0 − 299 s is within the skew, T0 − 300 s is not.
    let earliest = T0 - MAX_FUTURE_SKEW_SECS + 1;
    verifier.verify(&bytes, earliest, &expect_none()).unwrap();
    assert_eq!(
        rejection(verifier.verify(&bytes, earliest - 1, &expect_none())),
        "stale_document"
    );
}

#[test]
fn bindings_must_match() {
    let mut fixture = Fixture::aws_like();
    fixture.doc.payload.set("nonce", Cbor::bytes(b"nonce-1"));
    fixture.doc.payload.set("user_data", Cbor::bytes(b"user"));
    fixture
        .doc
        .payload
        .set("public_key", Cbor::Bytes(Vec::new()));
    let (verifier, bytes) = (fixture.pki.verifier(), fixture.bytes());
    let all = Expectations {
        nonce: Some(b"nonce-1".to_vec()),
        user_data: Some(b"user".to_vec()),
        public_key: Some(Vec::new()),
        ..Default::default()
    };
    verifier.verify(&bytes, NOW, &all).unwrap();

    let mismatches = [
        Expectations {
            nonce: Some(b"nonce-2".to_vec()),
            ..all.clone()
        },
        Expectations {
            nonce: Some(b"nonce-".to_vec()),
            ..all.clone()
        },
        Expectations {
            user_data: Some(b"USER".to_vec()),
            ..all.clone()
        },
        Expectations {
            public_key: Some(vec![0]),
            ..all.clone()
        },
    ];
    for expect in &mismatches {
        assert_eq!(
            rejection(verifier.verify(&bytes, NOW, expect)),
            "binding_mismatch",
            "{expect:?}"
        );
    }
    // Expected but absent (null) in the document.
    let mut fixture = Fixture::aws_like();
    fixture.doc.payload.set("nonce", Cbor::Null);
    let expect = Expectations {
        nonce: Some(b"nonce-1".to_vec()),
        ..Default::default()
    };
    assert_eq!(rejection(fixture.verify(NOW, &expect)), "binding_mismatch");
}

#[test]
fn debug_enclaves_are_refused_unless_allowed() {
    let mut fixture = Fixture::aws_like();
    let mut entries = default_pcrs();
    for (index, value) in entries.iter_mut().take(3) {
        assert!(*index < 3);
        *value = vec![0; 48];
    }
    fixture.doc.payload.set("pcrs", pcrs(&entries));
    assert_eq!(fixture.rejection(), "debug_enclave");
    let allowed = fixture
        .verify(
            NOW,
            &Expectations {
                allow_debug: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(allowed.os_image_hash, DEBUG_OS_IMAGE_HASH);

    // The debug verdict is only given for an authentic document.
    let verifier = fixture.pki.verifier();
    let mut forged = fixture.bytes();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(
        rejection(verifier.verify(&forged, NOW, &expect_none())),
        "signature"
    );
    assert_eq!(
        rejection(verifier.verify(&fixture.bytes(), LEAF_NOT_AFTER + 1, &expect_none())),
        "expired"
    );

    // Only PCR0..2 count: a zero PCR0 alone is not debug mode.
    let mut fixture = Fixture::aws_like();
    let mut entries = default_pcrs();
    entries[0].1 = vec![0; 48];
    fixture.doc.payload.set("pcrs", pcrs(&entries));
    fixture.verify(NOW, &expect_none()).unwrap();
}

// ------------------------------------------------------------------------------------------------
// Committed fixtures (written by `cargo run --example nitro_fixtures`)

#[test]
fn committed_fixtures_match_their_manifest() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/nitro");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let manifest: Vec<serde_json::Value> =
        serde_json::from_slice(&read("manifest.json")).expect("manifest JSON");
    let verifier = NitroVerifier::with_root_der(&read("root.der"));
    let hex_field = |entry: &serde_json::Value, key: &str| {
        entry[key]
            .as_str()
            .map(|hex| hex::decode(hex).expect("hex"))
    };
    for entry in &manifest {
        let file = entry["file"].as_str().expect("file");
        let expect = Expectations {
            nonce: hex_field(entry, "nonce"),
            user_data: hex_field(entry, "user_data"),
            public_key: hex_field(entry, "public_key"),
            max_age_secs: entry["max_age_secs"].as_u64(),
            allow_debug: false,
        };
        let now = entry["now"].as_u64().expect("now");
        let result = verifier.verify(&read(file), now, &expect);
        match entry["expect"].as_str() {
            Some("valid") => {
                let verified = result.unwrap_or_else(|e| panic!("{file}: {e}"));
                let hash = hex::encode(verified.os_image_hash);
                assert_eq!(
                    Some(hash.as_str()),
                    entry["os_image_hash"].as_str(),
                    "{file}"
                );
            }
            _ => assert_eq!(
                Some(rejection(result)),
                entry["reject_kind"].as_str(),
                "{file}"
            ),
        }
    }
}
