//! The committed generated GCP fixtures (`fixtures/gcp/`, from `cargo run --example gcp_fixtures`):
//! their TPM quotes verify under their AK certificates, are bound to the real TDX evidence they
//! name, and their PKI has the shape of Google's real one (every link an RSA signature).

use crate::support::gcp as gcp_support;
use crate::support::samples;

use gcp_support::{GOOGLE_INSTANCE_EXTENSION, INTERMEDIATE_SERIAL, NOW, TCG_KP_EK_CERTIFICATE};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tee_verifier::dstack::gcp::{qualified_data, RuntimePcr, GCE_TDX_PCR0};
use tee_verifier::dstack::RuntimeEventVersion;
use tee_verifier::tpm::{
    verify_quote, AkPublicKey, PcrValue, RsaPublicKey, TpmError, TpmEvent, TpmQuote, TpmSignature,
};
use x509_parser::prelude::*;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/gcp")
}

fn manifest() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap()
}

fn hex_field(value: &Value) -> Vec<u8> {
    hex::decode(value.as_str().unwrap()).unwrap()
}

/// A fixture `TpmQuote` (hex JSON) as the TPM room takes it, with its AK certificate.
fn tpm_quote(file: &str) -> (TpmQuote, Vec<u8>) {
    let json: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join(file)).unwrap()).unwrap();
    assert_eq!(json["platform"], "gcp");
    let pcr_values = json["pcr_values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pcr| {
            assert_eq!(pcr["algorithm"], "sha256");
            PcrValue::new(
                pcr["index"].as_u64().unwrap() as u32,
                &hex_field(&pcr["value"]),
            )
            .unwrap()
        })
        .collect();
    let event_log = json["event_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            TpmEvent::new(
                event["pcr_index"].as_u64().unwrap() as u32,
                &hex_field(&event["digest"]),
            )
            .unwrap()
        })
        .collect();
    let quote = TpmQuote {
        message: hex_field(&json["message"]),
        signature: hex_field(&json["signature"]),
        pcr_values,
        event_log,
    };
    (quote, hex_field(&json["ak_cert"]))
}

#[test]
fn tpm_quotes_verify_under_their_ak_certificates() {
    let manifest = manifest();
    let qualified = hex_field(&manifest["qualified_data"]);
    let quotes = manifest["quotes"].as_array().unwrap();
    assert_eq!(quotes.len(), 2);
    for entry in quotes {
        let file = entry["file"].as_str().unwrap();
        let (quote, ak_cert) = tpm_quote(file);
        assert_eq!(
            std::fs::read(fixtures().join(entry["ak_cert"].as_str().unwrap())).unwrap(),
            ak_cert
        );
        let ak = AkPublicKey::from_certificate(&ak_cert).unwrap();
        let verified =
            verify_quote(&quote, &ak, &qualified).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            verified.signature_scheme.as_str(),
            entry["signature_scheme"],
            "{file}"
        );
        assert_eq!(verified.replayed, [0, 2], "{file}");
        assert_eq!(verified.pcr(0), Some(&GCE_TDX_PCR0));
        for (index, value) in manifest["pcrs"].as_object().unwrap() {
            let index: u32 = index.parse().unwrap();
            assert_eq!(
                verified.pcr(index).unwrap()[..],
                hex_field(value)[..],
                "{file}"
            );
        }
        let uki = verified.replayed_events(2).unwrap()[2];
        assert_eq!(uki[..], hex_field(&manifest["uki_auth"])[..]);

        let err = verify_quote(&quote, &ak, &[0; 32]).unwrap_err();
        assert_eq!(err.kind().as_str(), "binding_mismatch", "{file}");
    }
}

/// qualified_data and PCR14 come from the real TDX evidence the manifest names.
#[test]
fn quotes_are_bound_to_the_real_tdx_evidence() {
    let samples = samples::samples_dir();
    let manifest = manifest();
    let report: Value = serde_json::from_slice(
        &std::fs::read(samples.join(manifest["tdx_evidence"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let tdx_quote = hex::decode(report["quote"].as_str().unwrap()).unwrap();
    assert_eq!(
        qualified_data(&tdx_quote)[..],
        hex_field(&manifest["qualified_data"])[..]
    );
    let events: Vec<Value> = serde_json::from_str(report["event_log"].as_str().unwrap()).unwrap();
    let runtime: Vec<(String, Vec<u8>)> = events
        .iter()
        .filter(|event| event["imr"] == 3)
        .map(|event| {
            (
                event["event"].as_str().unwrap().to_owned(),
                hex::decode(event["event_payload"].as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    assert!(runtime.len() > 5);
    let replay = RuntimePcr::replay(
        runtime
            .iter()
            .map(|(name, payload)| (RuntimeEventVersion::V1, name.as_str(), payload.as_slice())),
    );
    assert_eq!(replay.full[..], hex_field(&manifest["pcrs"]["14"])[..]);
    assert_eq!(
        replay.boot_time[..],
        hex_field(&manifest["pcr14_boot_time"])[..]
    );
}

fn certificate(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = X509Certificate::from_der(der).unwrap();
    assert!(rest.is_empty());
    cert
}

fn rsa_key(cert: &X509Certificate) -> RsaPublicKey {
    match cert.public_key().parsed().unwrap() {
        x509_parser::public_key::PublicKey::RSA(rsa) => {
            RsaPublicKey::new(rsa.modulus, rsa.exponent).unwrap()
        }
        other => panic!("not RSA: {other:?}"),
    }
}

/// Checks an RSASSA-PKCS1-v1.5/SHA-256 certificate or CRL signature through the AK key type,
/// which verifies that same scheme.
fn rsa_verify(key: &RsaPublicKey, message: &[u8], signature: &[u8]) -> Result<(), TpmError> {
    let signature = TpmSignature::Rsassa {
        signature: signature.to_vec(),
    };
    AkPublicKey::Rsa(key.clone()).verify(message, &signature)
}

/// (OID, critical) of every extension, sorted: the shape compared with Google's certificates.
fn extension_shape(cert: &X509Certificate) -> Vec<(String, bool)> {
    let mut shape: Vec<_> = cert
        .extensions()
        .iter()
        .map(|ext| (ext.oid.to_id_string(), ext.critical))
        .collect();
    shape.sort();
    shape
}

fn has_tcg_eku(cert: &X509Certificate) -> bool {
    let expected = x509_parser::oid_registry::Oid::from(&TCG_KP_EK_CERTIFICATE).unwrap();
    cert.extended_key_usage()
        .unwrap()
        .is_some_and(|eku| eku.value.other.contains(&expected))
}

/// PEM blocks of a CA bundle as (label, DER).
fn bundle(file: &str) -> Vec<(String, Vec<u8>)> {
    let text = std::fs::read(fixtures().join(file)).unwrap();
    x509_parser::pem::Pem::iter_from_buffer(&text)
        .map(|pem| {
            let pem = pem.unwrap();
            (pem.label, pem.contents)
        })
        .collect()
}

fn sample_certificate(dir: &Path, name: &str) -> Vec<u8> {
    let pem = std::fs::read(dir.join("gcp").join(name)).unwrap();
    x509_parser::pem::parse_x509_pem(&pem).unwrap().1.contents
}

#[test]
fn the_pki_has_googles_shape_and_rsa_links() {
    let manifest = manifest();
    let root_der = std::fs::read(fixtures().join("root.der")).unwrap();
    let root = certificate(&root_der);
    let root_key = rsa_key(&root);
    assert_eq!(root_key.bits(), 4096);
    assert_eq!(
        root.subject().to_string(),
        "C=US, ST=California, L=Mountain View, O=Google LLC, OU=Google Cloud, CN=EK/AK CA Root"
    );
    assert!(root.is_ca() && has_tcg_eku(&root));
    rsa_verify(
        &root_key,
        root.tbs_certificate.as_ref(),
        &root.signature_value.data,
    )
    .unwrap();
    let foreign = std::fs::read(fixtures().join("foreign_root.der")).unwrap();
    let foreign = certificate(&foreign);
    assert_eq!(foreign.subject(), root.subject());

    let bundles = manifest["ca_bundles"].as_array().unwrap();
    assert_eq!(bundles.len(), 4);
    let mut intermediate_key = None;
    for entry in bundles {
        let file = entry["file"].as_str().unwrap();
        let blocks = bundle(file);
        let labels: Vec<&str> = blocks.iter().map(|(label, _)| label.as_str()).collect();
        assert_eq!(labels, ["CERTIFICATE", "X509 CRL", "X509 CRL"], "{file}");
        let intermediate = certificate(&blocks[0].1);
        assert_eq!(intermediate.issuer(), root.subject(), "{file}");
        assert!(intermediate.is_ca() && has_tcg_eku(&intermediate), "{file}");
        assert_eq!(intermediate.raw_serial(), [INTERMEDIATE_SERIAL as u8]);
        let tbs = intermediate.tbs_certificate.as_ref();
        rsa_verify(&root_key, tbs, &intermediate.signature_value.data).unwrap();
        // Another root with the same name signs nothing here.
        let err =
            rsa_verify(&rsa_key(&foreign), tbs, &intermediate.signature_value.data).unwrap_err();
        assert_eq!(err.kind().as_str(), "signature");
        let key = rsa_key(&intermediate);
        assert_eq!(key.bits(), 4096);
        let now = NOW as i64;
        let validity = intermediate.validity();
        let expired = validity.not_after.timestamp() < now;
        assert_eq!(expired, entry["expect"] == "expired", "{file}");

        for (index, (_, der)) in blocks[1..].iter().enumerate() {
            let (_, crl) = CertificateRevocationList::from_der(der).unwrap();
            let signer = if index == 0 { &root_key } else { &key };
            rsa_verify(
                signer,
                crl.tbs_cert_list.as_ref(),
                &crl.signature_value.data,
            )
            .unwrap();
            let stale = crl.next_update().unwrap().timestamp() < now;
            assert_eq!(stale, entry["expect"] == "collateral_expired", "{file}");
            let revoked: Vec<_> = crl
                .iter_revoked_certificates()
                .map(|r| r.raw_serial().to_vec())
                .collect();
            assert_eq!(
                index == 0 && entry["expect"] == "revoked",
                revoked == [vec![INTERMEDIATE_SERIAL as u8]],
                "{file}"
            );
        }
        intermediate_key.get_or_insert(key);
    }

    let intermediate_key = intermediate_key.unwrap();
    let instance = x509_parser::oid_registry::Oid::from(&GOOGLE_INSTANCE_EXTENSION).unwrap();
    for (file, bits) in [("ak_ecc.der", None), ("ak_rsa.der", Some(2048))] {
        let der = std::fs::read(fixtures().join(file)).unwrap();
        let ak = certificate(&der);
        rsa_verify(
            &intermediate_key,
            ak.tbs_certificate.as_ref(),
            &ak.signature_value.data,
        )
        .unwrap();
        assert_eq!(
            ak.subject().to_string(),
            "L=us-central1-a, O=Google Compute Engine, OU=dstack-kms, CN=6524697943022743941",
            "{file}"
        );
        assert!(!ak.is_ca());
        assert!(ak.extended_key_usage().unwrap().is_none(), "{file}");
        let ext = ak.get_extension_unique(&instance).unwrap().unwrap();
        assert!(!ext.critical);
        match (AkPublicKey::from_certificate(&der).unwrap(), bits) {
            (AkPublicKey::Rsa(key), Some(bits)) => assert_eq!(key.bits(), bits),
            (AkPublicKey::EcdsaP256(_), None) => {}
            (key, _) => panic!("{file}: {key:?}"),
        }
    }

    // Extension by extension (OID and criticality), the shape of Google's real certificates.
    let samples = samples::samples_dir();
    let first_bundle = bundle("ca_bundle.pem");
    let ak_rsa = std::fs::read(fixtures().join("ak_rsa.der")).unwrap();
    for (generated, real) in [
        (root_der.clone(), "google_ekak_ca_root.pem"),
        (first_bundle[0].1.clone(), "salrashid_ak_intermediate.pem"),
        (ak_rsa, "salrashid_akcert.pem"),
    ] {
        let real = sample_certificate(&samples, real);
        assert_eq!(
            extension_shape(&certificate(&generated)),
            extension_shape(&certificate(&real)),
            "{real:?}"
        );
    }
    let real_root = sample_certificate(&samples, "google_ekak_ca_root.pem");
    assert_eq!(certificate(&real_root).subject(), root.subject());
}

/// The committed V0 and V1 attestations verify through the CLI with the committed root and
/// bundle, and each bundle variant gives the verdict the manifest names.
#[test]
fn committed_attestations_verify_through_the_cli() {
    use crate::support::cli::{cli, json};
    let samples = samples::samples_dir();
    let manifest = manifest();
    let path = |name: &str| fixtures().join(name).to_str().unwrap().to_owned();
    let collateral = samples
        .join(manifest["tdx_collateral"].as_str().unwrap())
        .to_str()
        .unwrap()
        .to_owned();
    let now = manifest["now"].to_string();
    let root = path(manifest["root"].as_str().unwrap());
    let attestations = manifest["attestations"].as_array().unwrap();
    assert_eq!(attestations.len(), 4);
    for entry in attestations {
        let file = path(entry["file"].as_str().unwrap());
        for bundle in manifest["ca_bundles"].as_array().unwrap() {
            let bundle_file = path(bundle["file"].as_str().unwrap());
            let out = cli(&[
                "verify",
                "--json",
                "--now",
                &now,
                "--collateral",
                &collateral,
                "--gcp-root",
                &root,
                "--gcp-ca-bundle",
                &bundle_file,
                &file,
            ]);
            let report = json(&out);
            match bundle["expect"].as_str().unwrap() {
                "valid" => {
                    assert_eq!(out.status.code(), Some(0), "{file}: {report}");
                    assert_eq!(report["platform"], "gcp-tdx");
                    assert_eq!(report["os_image_variant"], "gcp");
                    assert_eq!(
                        report["tpm"]["pcrs"]["14"],
                        format!("0x{}", manifest["pcrs"]["14"].as_str().unwrap())
                    );
                }
                kind => {
                    assert_eq!(out.status.code(), Some(1), "{file}: {report}");
                    assert_eq!(report["error"]["kind"], kind, "{file} {bundle_file}");
                }
            }
        }
        // Google's own root pinned (the default): this test PKI is another root.
        let out = cli(&[
            "verify",
            "--json",
            "--now",
            &now,
            "--collateral",
            &collateral,
            "--gcp-ca-bundle",
            &path("ca_bundle.pem"),
            &file,
        ]);
        assert_eq!(json(&out)["error"]["kind"], "untrusted_root", "{file}");
    }
}
