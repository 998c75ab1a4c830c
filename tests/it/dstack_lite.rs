//! dstack parity through the product: the TDX-lite OS image bound in verification reports
//! (library pipeline, CLI, gRPC), stripped logs, `--allow-tdx-lite`, VersionedAttestation V1 beside
//! V0, and RA-TLS certificates as evidence.
//!
//! The real TDX-lite sample has no Intel collateral, so a quote of the test PKI
//! (`support::tdx`) is signed over the sample's MRTD, RTMR0-3 and a chosen report_data; the sample's
//! event log and vm_config then bind it exactly as they bind the real quote.

use crate::support::cli::{cli, json};
use crate::support::samples;
use crate::support::service::{write_file, Service};
use crate::support::tdx::{Keys, Spec, NOW};
use rcgen::{CertificateParams, CustomExtension, KeyPair, PublicKeyData, PKCS_ECDSA_P256_SHA256};
use serde_json::{json as value, Value};
use sha2::{Digest, Sha512};
use tee_verifier::dstack::OsImagePolicy;
use tee_verifier::evidence::{
    EvidenceInput, EvidenceVerifier, Expectations, Unauthorizable, Verified,
};
use tee_verifier::nitro::NitroVerifier;
use tee_verifier::service::proto::{self, verify_request::Evidence};
use tee_verifier::tdx::{Quote, TdxVerifier};

const LITE: &str = "dstack/dstack-verifier-tdx-lite-getquote.json";
const LEGACY: &str = "dstack/dstack-verifier-quote-report.json";
const LEGACY_COLLATERAL: &str = "tdx/dcap-qvl_fmspc90c06f_collateral.json";
const LEGACY_NOW: &str = "1771459200";
const ATTESTATION_OID: [u64; 9] = [1, 3, 6, 1, 4, 1, 62397, 1, 8];

fn sample(path: &str) -> Vec<u8> {
    std::fs::read(samples::samples_dir().join(path)).unwrap()
}

/// A quote report of the test PKI over the lite sample's registers, with `report_data`.
struct LiteFixture {
    report: Value,
    collateral: Vec<u8>,
    root_der: Vec<u8>,
}

impl LiteFixture {
    fn new(report_data: [u8; 64]) -> LiteFixture {
        let sample: Value = serde_json::from_slice(&sample(LITE)).unwrap();
        let quote = hex::decode(sample["quote"].as_str().unwrap()).unwrap();
        let body = Quote::parse(&quote).unwrap().body;
        let mut spec = Spec::default();
        spec.td.mr_td = body.mr_td;
        spec.td.rtmr = body.rtmr;
        spec.td.report_data = report_data;
        let built = spec.build(&Keys::generate());
        let report = value!({
            "quote": hex::encode(&built.quote),
            "event_log": sample["event_log"],
            "vm_config": sample["vm_config"],
        });
        LiteFixture {
            collateral: built.collateral_json(),
            root_der: built.root_der,
            report,
        }
    }

    fn verifier(&self) -> EvidenceVerifier {
        EvidenceVerifier::new(
            NitroVerifier::new(),
            TdxVerifier::with_root_der(&self.root_der),
        )
    }

    fn verify(&self, evidence: &[u8], expect: &Expectations) -> Result<Verified, String> {
        self.verifier()
            .verify(
                &EvidenceInput {
                    evidence,
                    collateral: Some(&self.collateral),
                    ..EvidenceInput::default()
                },
                NOW,
                expect,
            )
            .map_err(|e| e.kind().as_str().to_owned())
    }

    fn with_event_log(&self, event_log: String) -> Vec<u8> {
        let mut report = self.report.clone();
        report["event_log"] = Value::String(event_log);
        serde_json::to_vec(&report).unwrap()
    }
}

fn lite_off() -> Expectations {
    Expectations {
        os_image: Some(OsImagePolicy { allow_lite: false }),
        ..Expectations::default()
    }
}

fn sources(report: &Value) -> [&str; 4] {
    ["mr_td", "rtmr0", "rtmr1", "rtmr2"].map(|r| report["register_sources"][r].as_str().unwrap())
}

/// dstack's `strip_tdx_lite_event_log`: the RTMR0 ACPI DATA events keep digest and payload,
/// runtime events lose their digest, everything else is dropped.
fn stripped(event_log: &str) -> String {
    let acpi_payload = hex::encode(b"ACPI DATA");
    let log: Vec<Value> = serde_json::from_str(event_log).unwrap();
    let kept: Vec<Value> = log
        .into_iter()
        .filter_map(|mut event| {
            let acpi = event["imr"] == 0 && event["event_payload"] == acpi_payload.as_str();
            if event["imr"] == 3 {
                event["digest"] = Value::String(String::new());
            }
            (acpi || event["imr"] == 3).then_some(event)
        })
        .collect();
    serde_json::to_string(&kept).unwrap()
}

/// The quote report as a VersionedAttestation V1 (dstack's lossless conversion for the dstack
/// stack): bytes as integer arrays, maps keyed by field name.
fn to_v1(report: &Value) -> Vec<u8> {
    let bytes = |hex_text: &str| hex::decode(hex_text).unwrap();
    let log: Vec<Value> = serde_json::from_str(report["event_log"].as_str().unwrap()).unwrap();
    let event_log: Vec<Value> = log
        .iter()
        .map(|event| {
            value!({
                "imr": event["imr"],
                "event_type": event["event_type"],
                "digest": bytes(event["digest"].as_str().unwrap()),
                "event": event["event"],
                "event_payload": bytes(event["event_payload"].as_str().unwrap()),
            })
        })
        .collect();
    let runtime_events: Vec<Value> = log
        .iter()
        .filter(|event| event["imr"] == 3)
        .map(|event| {
            value!({
                "event": event["event"],
                "payload": bytes(event["event_payload"].as_str().unwrap()),
            })
        })
        .collect();
    let quote = bytes(report["quote"].as_str().unwrap());
    let report_data = Quote::parse(&quote).unwrap().body.report_data.to_vec();
    let attestation = value!({
        "version": 1,
        "platform": { "kind": "tdx", "data": { "quote": quote, "event_log": event_log } },
        "stack": { "kind": "dstack", "data": {
            "report_data": report_data,
            "runtime_events": runtime_events,
            "config": report["vm_config"].as_str().unwrap_or_default(),
        } },
    });
    rmp_serde::to_vec_named(&attestation).unwrap()
}

fn key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
}

fn ratls_report_data(key: &KeyPair) -> [u8; 64] {
    let mut hasher = Sha512::new();
    hasher.update(b"ratls-cert:");
    hasher.update(key.subject_public_key_info());
    hasher.finalize().into()
}

/// A certificate for `key` carrying `attestation` in extension 1.3.6.1.4.1.62397.1.8.
fn ratls_certificate(key: &KeyPair, attestation: &[u8]) -> rcgen::Certificate {
    let mut octets = vec![0x04, 0x83];
    octets.extend_from_slice(&(attestation.len() as u32).to_be_bytes()[1..]);
    octets.extend_from_slice(attestation);
    let mut params = CertificateParams::new(vec!["ratls.example".into()]).unwrap();
    params
        .custom_extensions
        .push(CustomExtension::from_oid_content(&ATTESTATION_OID, octets));
    params.self_signed(key).unwrap()
}

#[test]
fn a_lite_image_binds_mrtd_and_rtmr0_2_and_authorizes_without_the_claim() {
    let fixture = LiteFixture::new([0x42; 64]);
    let complete = serde_json::to_vec(&fixture.report).unwrap();
    let verified = fixture.verify(&complete, &Expectations::default()).unwrap();
    let report = serde_json::to_value(verified.report()).unwrap();
    assert_eq!(report["os_image_hash_bound"], true);
    assert_eq!(report["os_image_variant"], "lite");
    assert_eq!(report["acpi_tables_verified"], false);
    assert_eq!(sources(&report), ["os_image"; 4]);
    assert_eq!(report["unbound_fields"], value!([]));
    assert!(verified.authorizable_boot_info(false).is_ok());

    // --allow-tdx-lite false: verified, but the image stays the host's claim; the complete log
    // still binds RTMR0-2, nothing binds MRTD.
    let verified = fixture.verify(&complete, &lite_off()).unwrap();
    let report = serde_json::to_value(verified.report()).unwrap();
    assert_eq!(report["os_image_hash_bound"], false);
    assert_eq!(report["os_image_variant"], "lite");
    assert_eq!(
        sources(&report),
        ["unbound", "event_log", "event_log", "event_log"]
    );
    assert_eq!(report["unbound_fields"], value!(["os_image_hash"]));
    assert_eq!(
        verified.authorizable_boot_info(false),
        Err(Unauthorizable::UnmeasuredOsImage)
    );

    // The same lite boot with the verifier's own policy off, as `serve --allow-tdx-lite false`.
    let off = fixture
        .verifier()
        .with_os_image_policy(OsImagePolicy { allow_lite: false })
        .verify(
            &EvidenceInput {
                evidence: &complete,
                collateral: Some(&fixture.collateral),
                ..EvidenceInput::default()
            },
            NOW,
            &Expectations::default(),
        )
        .unwrap();
    assert!(!off.dstack().unwrap().os_image_hash_bound());
}

#[test]
fn a_stripped_log_is_bound_per_register_by_the_image_alone() {
    let fixture = LiteFixture::new([0x42; 64]);
    let complete = fixture
        .verify(
            &serde_json::to_vec(&fixture.report).unwrap(),
            &Expectations::default(),
        )
        .unwrap();
    let log = stripped(fixture.report["event_log"].as_str().unwrap());
    let verified = fixture
        .verify(
            &fixture.with_event_log(log.clone()),
            &Expectations::default(),
        )
        .unwrap();
    assert_eq!(verified.report(), complete.report());
    assert!(verified.authorizable_boot_info(false).is_ok());

    // Without the image binding nothing binds RTMR0-2 of a stripped log: said, never guessed.
    let verified = fixture
        .verify(&fixture.with_event_log(log), &lite_off())
        .unwrap();
    let report = serde_json::to_value(verified.report()).unwrap();
    assert_eq!(sources(&report), ["unbound"; 4]);
    assert_eq!(report["os_image_hash_bound"], false);
}

#[test]
fn a_lite_image_or_log_that_does_not_compute_is_rejected_with_its_kind() {
    let fixture = LiteFixture::new([0x42; 64]);
    // Another memory size predicts another TD HOB, so another RTMR0.
    let mut vm_config: Value =
        serde_json::from_str(fixture.report["vm_config"].as_str().unwrap()).unwrap();
    vm_config["memory_size"] = value!(vm_config["memory_size"].as_u64().unwrap() * 2);
    let mut report = fixture.report.clone();
    report["vm_config"] = Value::String(vm_config.to_string());
    let evidence = serde_json::to_vec(&report).unwrap();
    assert_eq!(
        fixture.verify(&evidence, &Expectations::default()).err(),
        Some("os_image_mismatch".into())
    );
    // Lite binding off: the same vm_config is not computed, and verifies unbound.
    assert!(fixture.verify(&evidence, &lite_off()).is_ok());

    // A complete log is still replayed: a changed RTMR1 digest is an event_log_mismatch.
    let mut log: Vec<Value> =
        serde_json::from_str(fixture.report["event_log"].as_str().unwrap()).unwrap();
    let event = log.iter_mut().find(|event| event["imr"] == 1).unwrap();
    event["digest"] = Value::String("00".repeat(48));
    let evidence = fixture.with_event_log(serde_json::to_string(&log).unwrap());
    assert_eq!(
        fixture.verify(&evidence, &Expectations::default()).err(),
        Some("event_log_mismatch".into())
    );
}

#[test]
fn v1_and_v0_forms_of_one_boot_give_identical_reports() {
    let fixture = LiteFixture::new([0x42; 64]);
    let from_report = fixture
        .verify(
            &serde_json::to_vec(&fixture.report).unwrap(),
            &Expectations::default(),
        )
        .unwrap();
    let from_v1 = fixture
        .verify(&to_v1(&fixture.report), &Expectations::default())
        .unwrap();
    assert_eq!(from_v1.report(), from_report.report());

    // Through the CLI, on the real legacy sample with its real collateral: V1 bytes, as a file,
    // give the same report as the quote report JSON.
    let dir = samples::samples_dir();
    let legacy: Value = serde_json::from_slice(&sample(LEGACY)).unwrap();
    let files = tempfile::tempdir().unwrap();
    let v1_path = files.path().join("attestation-v1.bin");
    std::fs::write(&v1_path, to_v1(&legacy)).unwrap();
    let collateral = dir.join(LEGACY_COLLATERAL);
    let verify = |file: &std::path::Path| {
        let out = cli(&[
            "verify",
            "--json",
            "--now",
            LEGACY_NOW,
            "--collateral",
            collateral.to_str().unwrap(),
            file.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        json(&out)
    };
    let mut from_json = verify(&dir.join(LEGACY));
    let from_v1 = verify(&v1_path);
    // The quote report JSON declares its report_data; V1 always carries it: the same value.
    assert_eq!(from_json["report_data"], from_v1["report_data"]);
    from_json["report_data"] = from_v1["report_data"].clone();
    assert_eq!(from_v1, from_json);
    assert_eq!(from_v1["os_image_variant"], "legacy");
    assert_eq!(
        sources(&from_v1),
        ["unbound", "event_log", "event_log", "event_log"]
    );
    assert_eq!(from_v1["unbound_fields"], value!(["os_image_hash"]));
}

#[test]
fn an_ratls_certificate_is_evidence_bound_to_its_key() {
    let certificate_key = key();
    let fixture = LiteFixture::new(ratls_report_data(&certificate_key));
    let stripped_report = {
        let mut report = fixture.report.clone();
        report["event_log"] = Value::String(stripped(report["event_log"].as_str().unwrap()));
        report
    };
    let certificate = ratls_certificate(&certificate_key, &to_v1(&stripped_report));
    for form in [certificate.der().to_vec(), certificate.pem().into_bytes()] {
        let verified = fixture.verify(&form, &Expectations::default()).unwrap();
        assert_eq!(
            verified.certificate_key(),
            Some(certificate_key.subject_public_key_info().as_slice())
        );
        let report = serde_json::to_value(verified.report()).unwrap();
        assert_eq!(
            report["ratls_public_key"],
            format!(
                "0x{}",
                hex::encode(certificate_key.subject_public_key_info())
            )
        );
        assert_eq!(report["os_image_hash_bound"], true);
        assert_eq!(sources(&report), ["os_image"; 4]);
    }

    // The same attestation in a certificate for another key.
    let other = ratls_certificate(&key(), &to_v1(&stripped_report));
    for form in [other.der().to_vec(), other.pem().into_bytes()] {
        assert_eq!(
            fixture.verify(&form, &Expectations::default()).err(),
            Some("binding_mismatch".into())
        );
    }
}

#[test]
fn cli_measure_shows_the_lite_computation_beside_the_quote() {
    let dir = samples::samples_dir();
    let out = cli(&["measure", "--json", dir.join(LITE).to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = json(&out);
    let os_image = &report["os_image"];
    assert_eq!(os_image["variant"], "lite");
    assert_eq!(os_image["error"], Value::Null);
    for register in ["mr_td", "rtmr0", "rtmr1", "rtmr2"] {
        assert_eq!(os_image["computed"][register], os_image["quoted"][register]);
        assert_eq!(os_image["quoted"][register], report[register], "{register}");
        assert_eq!(os_image["matches"][register], true);
    }

    // A vm_config for another memory size: the preview shows which register differs.
    let mut sample: Value = serde_json::from_slice(&sample(LITE)).unwrap();
    let mut vm_config: Value = serde_json::from_str(sample["vm_config"].as_str().unwrap()).unwrap();
    vm_config["memory_size"] = value!(vm_config["memory_size"].as_u64().unwrap() * 2);
    sample["vm_config"] = Value::String(vm_config.to_string());
    let files = tempfile::tempdir().unwrap();
    let path = write_file(files.path(), "lite.json", &sample.to_string());
    let out = cli(&["measure", "--json", &path]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let os_image = &json(&out)["os_image"];
    // The TD HOB describes the memory, and RTMR0 measures the TD HOB.
    assert_eq!(
        os_image["matches"],
        value!({"mr_td": true, "rtmr0": false, "rtmr1": true, "rtmr2": true})
    );
    assert_ne!(os_image["computed"]["rtmr0"], os_image["quoted"]["rtmr0"]);
}

#[test]
fn cli_verify_reads_ratls_certificates_and_refuses_another_key() {
    let lite = sample(LITE);
    let report: Value = serde_json::from_slice(&lite).unwrap();
    // The real quote's report_data binds no key of ours.
    let certificate = ratls_certificate(&key(), &to_v1(&report));
    let files = tempfile::tempdir().unwrap();
    let pem = write_file(files.path(), "client.pem", &certificate.pem());
    let der = files.path().join("client.der");
    std::fs::write(&der, certificate.der()).unwrap();
    for path in [pem.as_str(), der.to_str().unwrap()] {
        let out = cli(&["verify", "--json", path]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert_eq!(json(&out)["error"]["kind"], "binding_mismatch", "{out:?}");
    }
    // --allow-tdx-lite takes a boolean.
    let out = cli(&["verify", "--allow-tdx-lite", "maybe", &pem]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[tokio::test]
async fn grpc_verify_takes_ratls_certificates_and_allow_tdx_lite() {
    let certificate_key = key();
    let fixture = LiteFixture::new(ratls_report_data(&certificate_key));
    let files = tempfile::tempdir().unwrap();
    let root = files.path().join("root.der");
    std::fs::write(&root, &fixture.root_der).unwrap();
    let now = NOW.to_string();
    let service = Service::start(&[
        "--intel-root",
        root.to_str().unwrap(),
        "--dangerous-fixed-now",
        &now,
        // Collateral comes inline; a test root names no CRL to fetch.
        "--no-collateral-fetch",
    ]);
    let certificate = ratls_certificate(&certificate_key, &to_v1(&fixture.report));
    let request = |certificate: Vec<u8>, allow_tdx_lite: Option<bool>| proto::VerifyRequest {
        evidence: Some(Evidence::RatlsCertificate(proto::RatlsCertificate {
            certificate,
            collateral: Some(String::from_utf8(fixture.collateral.clone()).unwrap()),
        })),
        allow_tdx_lite,
        ..Default::default()
    };
    let mut client = service.client().await;
    let response = client
        .verify(request(certificate.pem().into_bytes(), None))
        .await
        .unwrap()
        .into_inner();
    assert!(response.verified, "{:?}", response.error);
    let attested = response.attested.unwrap();
    assert_eq!(
        attested.ratls_public_key,
        Some(format!(
            "0x{}",
            hex::encode(certificate_key.subject_public_key_info())
        ))
    );
    let dstack = attested.dstack.unwrap();
    assert!(dstack.os_image_hash_bound);
    assert_eq!(dstack.os_image_variant.as_deref(), Some("lite"));
    assert!(!dstack.acpi_tables_verified);
    assert_eq!(dstack.register_sources["mr_td"], "os_image");
    assert!(dstack.unbound_fields.is_empty());

    let response = client
        .verify(request(certificate.der().to_vec(), Some(false)))
        .await
        .unwrap()
        .into_inner();
    let dstack = response.attested.unwrap().dstack.unwrap();
    assert!(!dstack.os_image_hash_bound);
    assert_eq!(dstack.register_sources["mr_td"], "unbound");
    assert_eq!(dstack.unbound_fields, ["os_image_hash"]);

    let other = ratls_certificate(&key(), &to_v1(&fixture.report));
    let response = client
        .verify(request(other.der().to_vec(), None))
        .await
        .unwrap()
        .into_inner();
    assert!(!response.verified);
    assert_eq!(response.error.unwrap().kind, "binding_mismatch");

    // A certificate is only a ratls_certificate; a quote report is not one.
    let status = client
        .verify(proto::VerifyRequest {
            evidence: Some(Evidence::DstackAttestation(proto::DstackAttestation {
                attestation: certificate.der().to_vec(),
                collateral: Some(String::from_utf8(fixture.collateral.clone()).unwrap()),
            })),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn grpc_authorization_uses_a_bound_lite_image_without_accepting_the_claim() {
    let fixture = LiteFixture::new([0x42; 64]);
    let evidence = serde_json::to_string(&fixture.report).unwrap();
    let verified = fixture
        .verify(evidence.as_bytes(), &Expectations::default())
        .unwrap();
    let boot = &serde_json::to_value(verified.report()).unwrap()["boot_info"];
    let files = tempfile::tempdir().unwrap();
    let registry = write_file(
        files.path(),
        "registry.toml",
        &format!(
            "block = 3\ngateway_app_id = \"\"\nos_images = [\"{}\"]\nkms_aggregated_mrs = []\n\
             kms_device_ids = []\n\n[[apps]]\napp_id = \"{}\"\ncompose_hashes = [\"{}\"]\n\
             device_ids = []\nallow_any_device = true\nrequire_tcb_up_to_date = false\n\
             code = \"known\"\n",
            boot["osImageHash"].as_str().unwrap(),
            boot["appId"].as_str().unwrap(),
            boot["composeHash"].as_str().unwrap(),
        ),
    );
    let root = files.path().join("root.der");
    std::fs::write(&root, &fixture.root_der).unwrap();
    let now = NOW.to_string();
    let service = Service::start(&[
        "--registry",
        &registry,
        "--intel-root",
        root.to_str().unwrap(),
        "--dangerous-fixed-now",
        &now,
        // Collateral comes inline; a test root names no CRL to fetch.
        "--no-collateral-fetch",
    ]);
    let request = |allow_tdx_lite: Option<bool>| proto::VerifyRequest {
        evidence: Some(Evidence::DstackQuoteReport(proto::DstackQuoteReport {
            json: evidence.clone(),
            collateral: Some(String::from_utf8(fixture.collateral.clone()).unwrap()),
        })),
        authorize: proto::Authorize::App.into(),
        allow_tdx_lite,
        ..Default::default()
    };
    let mut client = service.client().await;
    let response = client.verify(request(None)).await.unwrap().into_inner();
    let decision = response.authorization.expect("authorization");
    assert!(decision.is_allowed, "{decision:?}");
    assert_eq!(decision.block, 3);

    // Lite binding off: the same boot is the host's claim, denied at no block.
    let response = client
        .verify(request(Some(false)))
        .await
        .unwrap()
        .into_inner();
    let decision = response.authorization.expect("authorization");
    assert!(!decision.is_allowed);
    assert!(decision.reason.contains("not bound"), "{}", decision.reason);
}
