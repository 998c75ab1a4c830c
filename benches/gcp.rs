//! GCP TDX verification cost, warm, through the evidence pipeline: the committed GCP attestations
//! (the real TDX quote with its real collateral, a vTPM quote, an AK chain through the committed
//! CA bundle with CRLs), beside the same pipeline on the TDX quote report of the same quote, and one
//! RSA-2048 PKCS#1 verification for scale. Target: GCP warm ≤ 1.3 × (TDX warm + one RSA-2048
//! verification): with its chain and CRLs cached, a GCP attestation costs one TDX verification
//! plus the AK's signature.

#[path = "../tests/it/support/samples.rs"]
mod samples;

use aws_lc_rs::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::path::Path;
use tee_verifier::dstack::gcp_ak::{GcpAkVerifier, GcpCaBundle};
use tee_verifier::evidence::{EvidenceInput, EvidenceVerifier, Expectations};
use x509_parser::prelude::FromDer;

const TDX_REPORT: &str = "dstack/dstack-verifier-quote-report.json";
const TDX_COLLATERAL: &str = "tdx/dcap-qvl_fmspc90c06f_collateral.json";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/gcp")
            .join(name),
    )
    .expect("read fixture")
}

fn input<'a>(evidence: &'a [u8], collateral: &'a [u8]) -> EvidenceInput<'a> {
    EvidenceInput {
        evidence,
        collateral: Some(collateral),
        ..EvidenceInput::default()
    }
}

fn bench(c: &mut Criterion) {
    let dir = samples::samples_dir();
    let manifest: serde_json::Value = serde_json::from_slice(&fixture("expected.json")).unwrap();
    let now = manifest["now"].as_u64().unwrap();
    let collateral = std::fs::read(dir.join(TDX_COLLATERAL)).unwrap();
    let report = std::fs::read(dir.join(TDX_REPORT)).unwrap();
    let bundle = GcpCaBundle::from_pem(&fixture("ca_bundle.pem")).unwrap();
    assert_eq!(bundle.crls.len(), 2);
    let verifier = EvidenceVerifier::default()
        .with_gcp(GcpAkVerifier::with_root_der(&fixture("root.der")), bundle);
    let expect = Expectations::default();

    let tdx = input(&report, &collateral);
    verifier.verify(&tdx, now, &expect).expect("TDX verifies");
    c.bench_function("gcp/tdx_quote_report_warm", |b| {
        b.iter(|| verifier.verify(black_box(&tdx), now, &expect).unwrap())
    });
    for name in ["rsa", "ecc"] {
        let bytes = fixture(&format!("attestation_{name}_v0.bin"));
        let attestation = input(&bytes, &collateral);
        verifier
            .verify(&attestation, now, &expect)
            .expect("GCP verifies");
        c.bench_function(&format!("gcp/attestation_{name}_warm"), |b| {
            b.iter(|| {
                verifier
                    .verify(black_box(&attestation), now, &expect)
                    .unwrap()
            })
        });
    }

    // One RSA-2048 PKCS#1 v1.5/SHA-256 verification: the RSA AK's signature over its quote.
    let quote: serde_json::Value = serde_json::from_slice(&fixture("tpm_quote_rsa.json")).unwrap();
    let message = hex::decode(quote["message"].as_str().unwrap()).unwrap();
    let tpmt = hex::decode(quote["signature"].as_str().unwrap()).unwrap();
    let signature = &tpmt[6..6 + 256];
    let cert = fixture("ak_rsa.der");
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&cert).unwrap();
    let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = cert.public_key().parsed() else {
        panic!("the RSA AK has an RSA key")
    };
    let modulus = rsa.modulus;
    let key = RsaPublicKeyComponents {
        n: &modulus[modulus.iter().position(|b| *b != 0).unwrap_or(0)..],
        e: rsa.exponent,
    };
    key.verify(&RSA_PKCS1_2048_8192_SHA256, &message, signature)
        .unwrap();
    c.bench_function("crypto/rsa2048_verify", |b| {
        b.iter(|| {
            key.verify(&RSA_PKCS1_2048_8192_SHA256, black_box(&message), signature)
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
