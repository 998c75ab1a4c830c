//! Regenerates `fixtures/gcp/`: a Google-shaped vTPM PKI (RSA-4096 root and intermediate, CRLs,
//! AK certificates in ECC P-256 and RSA-2048) and TPM quotes signed by those AKs, each bound to a
//! real dstack TDX quote: qualified_data is sha256 of the quote in
//! `../shared/samples/dstack/dstack-verifier-quote-report.json`, PCR14 the SHA-256 replay of its
//! runtime events, and PCR0/PCR2 (with their events) come from the real GCE event log.
//! GCP attestations (V0 SCALE and V1 msgpack) are built around them
//! (`tests/it/support/gcp_attestation.rs`), verifiable with the real TDX collateral at `now`.
//!
//! `cargo run --example gcp_fixtures` (keys are fresh each run, so every file changes).

#[path = "../tests/it/support/gcp.rs"]
mod gcp;
#[path = "../tests/it/support/gcp_attestation.rs"]
mod gcp_attestation;
#[path = "../tests/it/support/samples.rs"]
mod samples;

use gcp::{pem, AkKey, GooglePki, Instance, DAY, INTERMEDIATE_SERIAL, NOW};
use gcp_attestation::{Parts, RealTdx, Spec, TDX_COLLATERAL, TDX_REPORT};
use serde_json::json;
use std::path::Path;
use tee_verifier::dstack::gcp::{qualified_data, GCP_PCRS};
use tee_verifier::tpm::TpmEvent;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let samples = samples::samples_dir();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/gcp");
    std::fs::create_dir_all(&dir)?;

    let real = RealTdx::load(&samples);
    let pcr14 = real.pcr14();
    let qualified = qualified_data(&real.quote);

    let pki = GooglePki::generate();
    std::fs::write(dir.join("root.der"), &pki.root_der)?;
    std::fs::write(dir.join("foreign_root.der"), GooglePki::foreign_root())?;
    let current = (-DAY, 6 * DAY);
    let bundle = |intermediate: &[u8], revoked: &[u64], (this, next): (i64, i64)| {
        pem("CERTIFICATE", &[intermediate])
            + &pem(
                "X509 CRL",
                &[
                    &pki.root_crl(revoked, this, next),
                    &pki.intermediate_crl(&[], this, next),
                ],
            )
    };
    let bundles = [
        (
            "ca_bundle.pem",
            bundle(&pki.intermediate_der, &[], current),
            "valid",
        ),
        (
            "ca_bundle_revoked.pem",
            bundle(&pki.intermediate_der, &[INTERMEDIATE_SERIAL], current),
            "revoked",
        ),
        (
            "ca_bundle_stale_crl.pem",
            bundle(&pki.intermediate_der, &[], (-8 * DAY, -DAY)),
            "collateral_expired",
        ),
        (
            "ca_bundle_expired_intermediate.pem",
            bundle(
                &pki.intermediate_with_window(-3 * 365 * DAY, -DAY),
                &[],
                current,
            ),
            "expired",
        ),
    ];
    for (file, text, _) in &bundles {
        std::fs::write(dir.join(file), text)?;
    }

    let mut quotes = Vec::new();
    let mut attestations = Vec::new();
    let mut pcrs = Vec::new();
    for (name, ak, serial) in [("ecc", AkKey::ecc(), 0x0ecc), ("rsa", AkKey::rsa(), 0x02a5)] {
        let ak_cert = pki.ak_certificate(&ak, &Instance::default(), serial);
        std::fs::write(dir.join(format!("ak_{name}.der")), &ak_cert)?;
        let parts = Parts::build(&real, &ak, &ak_cert, &Spec::default());
        assert_eq!(
            parts.pcrs.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            GCP_PCRS
        );
        pcrs.clone_from(&parts.pcrs);
        let quote = json!({
            "message": hex::encode(&parts.message),
            "signature": hex::encode(&parts.signature),
            "pcr_values": parts.pcrs.iter().map(|(index, value)| json!({
                "index": index, "algorithm": "sha256", "value": hex::encode(value),
            })).collect::<Vec<_>>(),
            "ak_cert": hex::encode(&ak_cert),
            "platform": "gcp",
            "event_log": parts.tpm_events.iter().map(|TpmEvent { pcr_index, digest }| json!({
                "pcr_index": pcr_index, "digest": hex::encode(digest),
            })).collect::<Vec<_>>(),
        });
        let file = format!("tpm_quote_{name}.json");
        std::fs::write(
            dir.join(&file),
            serde_json::to_string_pretty(&quote)? + "\n",
        )?;
        quotes.push(json!({
            "file": file, "ak_cert": format!("ak_{name}.der"),
            "signature_scheme": if ak.is_rsa() { "rsassa-pkcs1v15-sha256" } else { "ecdsa-p256-sha256" },
        }));
        for (form, bytes) in [("v0.bin", parts.v0()), ("v1.msgpack", parts.v1())] {
            let file = format!("attestation_{name}_{form}");
            std::fs::write(dir.join(&file), bytes)?;
            attestations.push(json!({ "file": file, "ak_cert": format!("ak_{name}.der") }));
        }
    }

    let manifest = json!({
        "now": NOW,
        "root": "root.der",
        "foreign_root": "foreign_root.der",
        "ca_bundles": bundles.iter().map(|(file, _, expect)| json!({
            "file": file, "expect": expect,
        })).collect::<Vec<_>>(),
        "tdx_evidence": TDX_REPORT,
        "tdx_collateral": TDX_COLLATERAL,
        "qualified_data": hex::encode(qualified),
        "pcrs": pcrs.iter().map(|(index, value)| (index.to_string(), json!(hex::encode(value))))
            .collect::<serde_json::Map<_, _>>(),
        "pcr14_boot_time": hex::encode(pcr14.boot_time),
        "uki_auth": hex::encode(real.uki()),
        "quotes": quotes,
        "attestations": attestations,
    });
    std::fs::write(
        dir.join("expected.json"),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    std::fs::write(dir.join("README.md"), README)?;
    println!("wrote {}", dir.display());
    Ok(())
}

const README: &str = "\
# Generated GCP (vTPM) fixtures

Made by `cargo run --example gcp_fixtures` (generator: `tests/it/support/gcp.rs`); do not edit by
hand. `tests/it/gcp_fixtures.rs` checks them. Keys are fresh on each run, so every byte changes.

- `root.der`: the root of a test PKI shaped like Google's \"EK/AK CA Root\" (RSA-4096,
  sha256WithRSAEncryption, keyCertSign/cRLSign, EKU 2.23.133.8.1). It is NOT Google's root: pin
  this file. `foreign_root.der` has the same name and another key (a chain to another root).
- `ca_bundle*.pem`: what `--gcp-ca-bundle` takes: the \"EK/AK CA Intermediate\" (RSA-4096, AIA,
  CRL distribution point) and two CRLs (the root's over intermediates, the intermediate's over
  AKs), valid for the week around `now`. Variants: the root's CRL revokes the intermediate
  (`_revoked`), both CRLs expired a day before `now` (`_stale_crl`), the intermediate (same key)
  expired a day before `now` (`_expired_intermediate`). `expected.json` names the verdict of each.
- `ak_ecc.der`, `ak_rsa.der`: AK certificates (ECC P-256, RSA-2048) named
  `L=<zone>, O=Google Compute Engine, OU=<project>, CN=<instance id>` with Google's
  1.3.6.1.4.1.11129.2.1.21 instance extension.
- `tpm_quote_*.json`: dstack `TpmQuote`s (hex fields) signed by those AKs over PCR0, PCR2 and PCR14
  (SHA-256 bank). PCR0/PCR2 and `event_log` are the real GCE TDX vTPM log
  (`../shared/samples/gcp/dstack_gce_tdx_tpm_eventlog.bin`); `qualified_data` is sha256 of the real
  TDX quote of `tdx_evidence` and PCR14 the SHA-256 replay of that evidence's runtime events, so
  qualified_data, PCR14 and RTMR3 agree.
- `attestation_*_v0.bin`, `attestation_*_v1.msgpack`: dstack GCP TDX attestations (V0 SCALE
  discriminant 1, V1 msgpack `gcp-tdx`) of that quote, its events and a TPM quote, with a
  vm_config binding the OS image (`gcp_measurement` of the real UKI digest). They verify at `now`
  with `--collateral ../shared/samples/tdx/dcap-qvl_fmspc90c06f_collateral.json --gcp-root
  root.der --gcp-ca-bundle ca_bundle.pem`.
";
