//! Writes `fixtures/nitro/`: a test root shaped like AWS's Nitro PKI, documents signed under it,
//! a `manifest.json` saying how each must verify, and a README. Run:
//!
//! ```text
//! cargo run --example nitro_fixtures
//! ```
//!
//! Keys are fresh on every run (so the bytes change); names, times and payloads are fixed.

#[path = "../tests/it/support/nitro.rs"]
mod nitro_support;

use anyhow::Context;
use nitro_support::*;
use serde_json::{json, Value};
use std::path::Path;
use tee_verifier::nitro::{Expectations, NitroVerifier};

/// One manifest entry: a document, the time and expectations to verify it with, and the outcome.
struct Case {
    file: &'static str,
    why: &'static str,
    now: u64,
    expect: Expectations,
    document: Vec<u8>,
    /// `None` if the document must verify, else the error kind it must be refused with.
    rejection: Option<&'static str>,
}

fn main() -> anyhow::Result<()> {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/nitro");
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;

    let pki = TestPki::aws_like();
    let base = Document::new(&pki);
    let sign = |change: &dyn Fn(&mut Document)| {
        let mut doc = base.clone();
        change(&mut doc);
        doc.sign(&pki)
    };
    let valid = sign(&|_| {});
    let (nonce, user_data, public_key) =
        (b"fixture-nonce".to_vec(), vec![0xab; 64], vec![0x04; 65]);
    let bound = sign(&|doc| {
        doc.payload.set("nonce", Cbor::bytes(&nonce));
        doc.payload.set("user_data", Cbor::bytes(&user_data));
        doc.payload.set("public_key", Cbor::bytes(&public_key));
    });
    let bindings = Expectations {
        nonce: Some(nonce.clone()),
        user_data: Some(user_data.clone()),
        public_key: Some(public_key.clone()),
        ..Default::default()
    };
    let mut bad_signature = valid.clone();
    if let Some(last) = bad_signature.last_mut() {
        *last ^= 1;
    }
    let debug_pcrs: Vec<_> = default_pcrs()
        .into_iter()
        .map(|(index, value)| (index, if index < 3 { vec![0; 48] } else { value }))
        .collect();
    let foreign = TestPki::aws_like();

    let none = Expectations::default;
    let at_now = |file, why, document: &Vec<u8>, rejection| Case {
        file,
        why,
        now: NOW,
        expect: none(),
        document: document.clone(),
        rejection,
    };
    let cases = vec![
        at_now(
            "valid.cbor",
            "production shape: untagged, 16 PCRs, optionals null",
            &valid,
            None,
        ),
        at_now(
            "valid_tagged.cbor",
            "COSE tag 18",
            &sign(&|doc| doc.tagged = true),
            None,
        ),
        at_now(
            "valid_high_s.cbor",
            "high-S signature (s > n/2)",
            &sign(&|doc| doc.s_value = SValue::High),
            None,
        ),
        at_now(
            "valid_indefinite_map.cbor",
            "indefinite-length payload map",
            &sign(&|doc| doc.payload.indefinite = true),
            None,
        ),
        Case {
            expect: bindings.clone(),
            ..at_now(
                "valid_bindings.cbor",
                "nonce, user_data and public_key bound",
                &bound,
                None,
            )
        },
        Case {
            now: LEAF_NOT_AFTER + 1,
            ..at_now(
                "valid.cbor",
                "verified 1 s after the leaf's notAfter",
                &valid,
                Some("expired"),
            )
        },
        Case {
            expect: Expectations {
                max_age_secs: Some(30),
                ..none()
            },
            ..at_now(
                "valid.cbor",
                "older than max_age_secs",
                &valid,
                Some("stale_document"),
            )
        },
        Case {
            expect: Expectations {
                nonce: Some(b"other-nonce".to_vec()),
                ..bindings.clone()
            },
            ..at_now(
                "valid_bindings.cbor",
                "another nonce expected",
                &bound,
                Some("binding_mismatch"),
            )
        },
        at_now(
            "debug_enclave.cbor",
            "PCR0..2 all zero",
            &sign(&|doc| {
                doc.payload.set("pcrs", pcrs(&debug_pcrs));
            }),
            Some("debug_enclave"),
        ),
        at_now(
            "bad_signature.cbor",
            "last signature byte flipped",
            &bad_signature,
            Some("signature"),
        ),
        at_now(
            "wrong_alg.cbor",
            "protected header {1: -7} (ES256)",
            &sign(&|doc| doc.protected = vec![0xa1, 0x01, 0x26]),
            Some("algorithm"),
        ),
        at_now(
            "foreign_root.cbor",
            "chains to another root than root.der",
            &Document::new(&foreign).sign(&foreign),
            Some("untrusted_root"),
        ),
        at_now(
            "duplicate_key.cbor",
            "nonce appears twice",
            &sign(&|doc| {
                doc.payload.push(Cbor::text("nonce"), Cbor::Null);
            }),
            Some("malformed"),
        ),
        at_now(
            "trailing_bytes.cbor",
            "a byte after the payload map",
            &sign(&|doc| doc.payload.trailing = vec![0]),
            Some("malformed"),
        ),
    ];

    let verifier = NitroVerifier::with_root_der(pki.root());
    let mut manifest = Vec::new();
    for case in &cases {
        manifest.push(manifest_entry(case, &verifier)?);
        std::fs::write(out.join(case.file), &case.document)?;
    }
    std::fs::write(out.join("root.der"), pki.root())?;
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    std::fs::write(out.join("README.md"), README)?;
    println!("wrote {} cases to {}", manifest.len(), out.display());
    Ok(())
}

/// The manifest entry of `case`, after checking that the library gives the intended outcome.
fn manifest_entry(case: &Case, verifier: &NitroVerifier) -> anyhow::Result<Value> {
    let mut entry = json!({
        "file": case.file,
        "kind": "nitro",
        "format": "cbor",
        "root": "root.der",
        "now": case.now,
        "why": case.why,
    });
    let expect = &case.expect;
    for (key, value) in [
        ("nonce", &expect.nonce),
        ("user_data", &expect.user_data),
        ("public_key", &expect.public_key),
    ] {
        if let Some(value) = value {
            entry[key] = json!(hex::encode(value));
        }
    }
    if let Some(max_age) = expect.max_age_secs {
        entry["max_age_secs"] = json!(max_age);
    }
    match (
        verifier.verify(&case.document, case.now, expect),
        case.rejection,
    ) {
        (Ok(verified), None) => {
            entry["expect"] = json!("valid");
            entry["os_image_hash"] = json!(hex::encode(verified.os_image_hash));
            entry["doc_timestamp_ms"] = json!(verified.document.timestamp_ms);
        }
        (Err(error), Some(kind)) if error.kind().as_str() == kind => {
            entry["expect"] = json!("reject");
            entry["reject_kind"] = json!(kind);
        }
        (outcome, intended) => anyhow::bail!(
            "{} ({}): intended {intended:?}, got {:?}",
            case.file,
            case.why,
            outcome.map(|_| ()).map_err(|e| e.kind().as_str())
        ),
    }
    Ok(entry)
}

const README: &str = "\
# Nitro test fixtures (generated)

Written by `cargo run --example nitro_fixtures` (source: `examples/nitro_fixtures.rs`, generator:
`tests/it/support/nitro.rs`). Do not edit by hand; rerun the example instead.

- `root.der`: the root of a test PKI shaped like AWS's: P-384 root (no pathLen) → regional
  (pathLen 2) → zonal (pathLen 1) → instance (pathLen 0, keyCertSign only) → 3-hour leaf
  (critical CA=false, non-critical digitalSignature), all ecdsa-with-SHA384. It is NOT the AWS
  root: verify these documents with the root pinned to this file.
- `*.cbor`: raw COSE_Sign1 documents signed by the leaf (timestamp 1750000000123 ms).
- `manifest.json`: one entry per verification, in the shape of the real samples' `expected.json`
  (`now`, `expect` valid/reject, `os_image_hash` or `reject_kind`), plus the expectations to pass
  (`nonce`, `user_data`, `public_key` as hex, `max_age_secs`). A file can appear in several entries
  (for example `valid.cbor` after its leaf expired). The example checks every outcome with the
  library before writing anything.

Keys are generated fresh on each run, so regenerating changes every byte; names, validity times
and payload contents are fixed.
";
