//! Nitro verification cost on a real NSM document: cold (fresh verifier, empty cache), warm (same
//! verifier), and one P-384 ECDSA verification for scale. Targets: warm ≤ 1.3×, cold ≤ 6× one
//! P-384 verification (a cold document needs 5: four chain links and the COSE signature).

#[path = "../tests/it/support/samples.rs"]
mod samples;

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_ASN1};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;
use tee_verifier::nitro::{parse_document, Expectations, NitroVerifier};

/// A production document with all optionals null (the common shape).
const SAMPLE: &str = "nitro/marlin_oyster_aws.cbor";

fn bench(c: &mut Criterion) {
    let dir = samples::samples_dir();
    let entry = samples::expected_entries(&dir)
        .into_iter()
        .find(|entry| entry["file"] == SAMPLE)
        .expect("sample listed in expected.json");
    let now = entry["now"].as_u64().expect("now");
    let document = std::fs::read(dir.join(SAMPLE)).expect("read sample");
    let expect = Expectations::default();
    NitroVerifier::new()
        .verify(&document, now, &expect)
        .expect("sample verifies");

    c.bench_function("nitro/verify_cold", |b| {
        b.iter_batched_ref(
            NitroVerifier::new,
            |verifier| verifier.verify(black_box(&document), now, &expect).unwrap(),
            BatchSize::SmallInput,
        )
    });

    let warm = NitroVerifier::new();
    warm.verify(&document, now, &expect).unwrap();
    c.bench_function("nitro/verify_warm", |b| {
        b.iter(|| warm.verify(black_box(&document), now, &expect).unwrap())
    });

    // The leaf certificate's signature by the instance CA: one P-384/SHA-384 verification.
    let parsed = parse_document(&document).unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(&parsed.certificate).unwrap();
    let issuer_der = parsed.cabundle.last().unwrap();
    let (_, issuer) = x509_parser::parse_x509_certificate(issuer_der).unwrap();
    let issuer_key = issuer.public_key().subject_public_key.data.to_vec();
    let (tbs, signature) = (
        leaf.tbs_certificate.as_ref(),
        leaf.signature_value.data.as_ref(),
    );
    // The baseline is aws-lc-rs itself, the backend the verifier uses.
    let issuer_key = UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, &issuer_key);
    issuer_key.verify(tbs, signature).unwrap();
    c.bench_function("crypto/p384_verify", |b| {
        b.iter(|| issuer_key.verify(black_box(tbs), signature).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
