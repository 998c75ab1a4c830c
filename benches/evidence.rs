//! The evidence pipeline as the service and the CLI run it, on the real dstack quote report
//! (`{quote, event_log, report_data, vm_config}`) with its real Intel collateral JSON: cold (a
//! fresh verifier, every cache empty), warm (the same verifier: verified collateral and QE cached,
//! the quote signature checked, the evidence and event log parsed and replayed), repeat (the same
//! evidence again through the result cache: windows re-checked at `now`, nothing else redone), and
//! beside them one P-256 ECDSA verification for scale. Targets: warm ≤ 1.5× one P-256
//! verification; repeat ≤ 5 µs.

#[path = "../tests/it/support/samples.rs"]
mod samples;

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;
use tee_verifier::dstack::Evidence;
use tee_verifier::evidence::{EvidenceInput, EvidenceVerifier, Expectations};
use tee_verifier::tdx::Quote;

const REPORT: &str = "dstack/dstack-verifier-quote-report.json";

fn bench(c: &mut Criterion) {
    let dir = samples::samples_dir();
    let entry = samples::expected_entries(&dir)
        .into_iter()
        .find(|entry| entry["file"] == REPORT)
        .expect("sample listed in expected.json");
    let now = entry["now"].as_u64().expect("now");
    let evidence = std::fs::read(dir.join(REPORT)).expect("read the quote report");
    let collateral =
        std::fs::read(dir.join(entry["collateral"].as_str().unwrap())).expect("read collateral");
    let input = EvidenceInput {
        evidence: &evidence,
        collateral: Some(&collateral),
        ..EvidenceInput::default()
    };
    let expect = Expectations::default();
    let verified = EvidenceVerifier::default()
        .verify(&input, now, &expect)
        .expect("the sample verifies");
    assert!(verified.dstack().is_some(), "a dstack identity is rebuilt");

    c.bench_function("evidence/cold", |b| {
        b.iter_batched_ref(
            EvidenceVerifier::default,
            |verifier| verifier.verify(black_box(&input), now, &expect).unwrap(),
            BatchSize::SmallInput,
        )
    });

    let warm = EvidenceVerifier::default();
    warm.verify(&input, now, &expect).unwrap();
    c.bench_function("evidence/warm", |b| {
        b.iter(|| warm.verify(black_box(&input), now, &expect).unwrap())
    });

    let repeat = EvidenceVerifier::default().with_result_cache(1024, 64 << 20);
    repeat.verify(&input, now, &expect).unwrap();
    c.bench_function("evidence/repeat", |b| {
        b.iter(|| repeat.verify(black_box(&input), now, &expect).unwrap())
    });
    assert_eq!(
        repeat
            .cache_stats()
            .into_iter()
            .find(|(name, _)| *name == "evidence_results")
            .map(|(_, counts)| counts.misses),
        Some(1),
        "every repeat was a hit"
    );

    // The quote's own signature: one P-256/SHA-256 verification by aws-lc-rs, the verifier's
    // backend, over the quote's signed region.
    let Evidence::Tdx(tdx) = Evidence::parse(&evidence).unwrap() else {
        panic!("{REPORT} is TDX evidence");
    };
    let quote = Quote::parse(&tdx.quote).unwrap();
    let sec1 = [&[0x04][..], &quote.signature_data.attestation_key[..]].concat();
    let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &sec1);
    let signature = quote.signature_data.signature;
    c.bench_function("crypto/p256_verify", |b| {
        b.iter(|| {
            key.verify(black_box(&quote.signed_region), &signature)
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
