//! Real NSM documents from `../shared/samples` (entries of expected.json with "kind": "nitro"),
//! verified against the embedded AWS Nitro Enclaves Root G1 at each entry's `now`.

use crate::support::nitro as nitro_support;
use crate::support::samples;

use serde_json::Value;
use std::path::{Path, PathBuf};
use tee_verifier::nitro::{
    parse_document, Expectations, NitroVerifier, AWS_NITRO_ROOT_G1_DER, DEBUG_OS_IMAGE_HASH,
};
use tee_verifier::{decode_input, InputEncoding};

struct Sample {
    name: String,
    entry: Value,
    bytes: Vec<u8>,
    now: u64,
}

impl Sample {
    fn str(&self, key: &str) -> Option<&str> {
        self.entry[key].as_str()
    }
}

/// The samples folder and the nitro entries of its expected.json.
fn nitro_samples() -> (PathBuf, Vec<Sample>) {
    let dir = samples::samples_dir();
    let samples: Vec<Sample> = samples::expected_entries(&dir)
        .into_iter()
        .filter(|entry| entry["kind"] == "nitro")
        .map(|entry| load(&dir, entry))
        .collect();
    assert!(!samples.is_empty(), "expected.json lists no nitro samples");
    (dir, samples)
}

fn load(dir: &Path, entry: Value) -> Sample {
    let name = entry["file"].as_str().expect("file").to_owned();
    let raw = std::fs::read(dir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let encoding = match entry["format"].as_str() {
        Some("cbor") => InputEncoding::Raw,
        Some("base64") => InputEncoding::Base64,
        other => panic!("{name}: unknown format {other:?}"),
    };
    let bytes = decode_input(&raw, encoding).expect("decode sample");
    let now = entry["now"].as_u64().expect("now");
    Sample {
        name,
        entry,
        bytes,
        now,
    }
}

fn valid(samples: &[Sample]) -> impl Iterator<Item = &Sample> {
    samples.iter().filter(|s| s.str("expect") == Some("valid"))
}

/// notAfter of the document's leaf certificate.
fn leaf_not_after(document: &[u8]) -> u64 {
    let doc = parse_document(document).expect("parse");
    let (_, leaf) = x509_parser::parse_x509_certificate(&doc.certificate).expect("leaf");
    leaf.validity().not_after.timestamp() as u64
}

#[test]
fn valid_samples_verify_with_their_os_image_hash() {
    let (_, samples) = nitro_samples();
    let verifier = NitroVerifier::new();
    let mut count = 0;
    for sample in valid(&samples) {
        let verified = verifier
            .verify(&sample.bytes, sample.now, &Expectations::default())
            .unwrap_or_else(|e| panic!("{}: {e} ({})", sample.name, e.kind()));
        assert_eq!(
            hex::encode(verified.os_image_hash),
            sample.str("os_image_hash").expect("os_image_hash"),
            "{}",
            sample.name
        );
        if let Some(timestamp) = sample.entry["doc_timestamp_ms"].as_u64() {
            assert_eq!(verified.document.timestamp_ms, timestamp, "{}", sample.name);
        }
        assert_eq!(parse_document(&sample.bytes).unwrap(), verified.document);
        count += 1;
    }
    assert!(count >= 5, "only {count} valid nitro samples");
}

#[test]
fn reject_samples_are_rejected_with_the_listed_kind() {
    let (_, samples) = nitro_samples();
    let verifier = NitroVerifier::new();
    for sample in samples.iter().filter(|s| s.str("expect") == Some("reject")) {
        let allowed: Vec<&str> = sample
            .str("reject_kind")
            .expect("reject_kind")
            .split(" or ")
            .collect();
        let kind = nitro_support::rejection(verifier.verify(
            &sample.bytes,
            sample.now,
            &Expectations::default(),
        ));
        assert!(
            allowed.contains(&kind),
            "{}: got {kind}, expected {allowed:?}",
            sample.name
        );
    }
}

#[test]
fn debug_sample_is_genuine_and_only_refused_by_policy() {
    let (_, samples) = nitro_samples();
    let debug = samples
        .iter()
        .filter(|s| s.str("reject_kind") == Some("debug_enclave"));
    for sample in debug {
        let allow = Expectations {
            allow_debug: true,
            ..Default::default()
        };
        let verified = NitroVerifier::new()
            .verify(&sample.bytes, sample.now, &allow)
            .unwrap();
        assert_eq!(
            verified.os_image_hash, DEBUG_OS_IMAGE_HASH,
            "{}",
            sample.name
        );
    }
}

#[test]
fn valid_samples_expire_one_second_after_their_leaf() {
    let (_, samples) = nitro_samples();
    for sample in valid(&samples) {
        let not_after = leaf_not_after(&sample.bytes);
        // Same verifier, warm from a successful verification: the cache must not extend trust.
        let verifier = NitroVerifier::new();
        verifier
            .verify(&sample.bytes, sample.now, &Expectations::default())
            .unwrap();
        verifier
            .verify(&sample.bytes, not_after, &Expectations::default())
            .unwrap();
        let kind = nitro_support::rejection(verifier.verify(
            &sample.bytes,
            not_after + 1,
            &Expectations::default(),
        ));
        assert_eq!(kind, "expired", "{}", sample.name);
    }
}

#[test]
fn flipping_a_payload_byte_breaks_the_signature() {
    let (_, samples) = nitro_samples();
    for sample in valid(&samples) {
        // Flip a bit inside PCR0's value: the document stays well-formed.
        let pcr0 = parse_document(&sample.bytes).unwrap().pcrs[&0].clone();
        let at = sample
            .bytes
            .windows(pcr0.len())
            .position(|w| w == pcr0)
            .expect("PCR0 bytes");
        let mut tampered = sample.bytes.clone();
        tampered[at + 7] ^= 0x20;
        let kind = nitro_support::rejection(NitroVerifier::new().verify(
            &tampered,
            sample.now,
            &Expectations::default(),
        ));
        assert_eq!(kind, "signature", "{}", sample.name);
    }
}

#[test]
fn high_s_sample_verifies_in_both_s_forms() {
    let (_, samples) = nitro_samples();
    let sample = samples
        .iter()
        .find(|s| s.name.ends_with("signal_test_cose_sign1_02.cbor"))
        .expect("the signal sample is listed");
    let bytes = &sample.bytes;
    let (body, signature) = bytes.split_at(bytes.len() - 96);
    assert!(nitro_support::is_high_s(signature), "the sample is high-S");
    NitroVerifier::new()
        .verify(bytes, sample.now, &Expectations::default())
        .unwrap();
    // n − s is the other valid signature of the same message.
    let low_s = [
        body,
        &signature[..48],
        &nitro_support::negate_s(&signature[48..]),
    ]
    .concat();
    NitroVerifier::new()
        .verify(&low_s, sample.now, &Expectations::default())
        .unwrap();
}

#[test]
fn real_documents_verify_with_tag_18_too() {
    let (_, samples) = nitro_samples();
    for sample in valid(&samples) {
        assert_eq!(
            sample.bytes.first(),
            Some(&0x84),
            "{} is untagged",
            sample.name
        );
        let tagged = [&[0xd2][..], &sample.bytes].concat();
        NitroVerifier::new()
            .verify(&tagged, sample.now, &Expectations::default())
            .unwrap();
    }
}

#[test]
fn embedded_root_is_the_sample_root() {
    let (dir, _) = nitro_samples();
    let pem = std::fs::read_to_string(dir.join("roots/aws_nitro_root_g1.pem")).unwrap();
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let der = decode_input(body.as_bytes(), InputEncoding::Base64).unwrap();
    assert_eq!(der, AWS_NITRO_ROOT_G1_DER);
}
