//! RA-TLS certificates generated with rcgen: each attestation form, PEM and DER, and a key the
//! attestation was not made for.

use super::*;
use crate::dstack::test_support::{sample, Scale, LITE_SAMPLE};
use crate::dstack::{tdx_identity, MrMode, TdRegisters, TdxTcb};
use rcgen::{CertificateParams, CustomExtension, KeyPair, PublicKeyData, PKCS_ECDSA_P256_SHA256};
use std::io::Write;

/// The OID arcs of an extension.
fn arcs(oid: &Oid<'_>) -> Vec<u64> {
    oid.iter().expect("small arcs").collect()
}

/// DER OCTET STRING around `content`, as upstream's `add_ext` (yasna `write_bytes`) writes it.
fn octet_string(content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut der = vec![0x04];
    match len {
        0..=0x7f => der.push(len as u8),
        0x80..=0xff => der.extend([0x81, len as u8]),
        0x100..=0xffff => der.extend([0x82, (len >> 8) as u8, len as u8]),
        _ => der.extend([0x83, (len >> 16) as u8, (len >> 8) as u8, len as u8]),
    }
    der.extend_from_slice(content);
    der
}

fn certificate(key: &KeyPair, extensions: &[(&Oid<'_>, Vec<u8>)]) -> rcgen::Certificate {
    let mut params = CertificateParams::new(vec!["ratls.example".into()]).unwrap();
    for (oid, value) in extensions {
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(&arcs(oid), value.clone()));
    }
    params.self_signed(key).unwrap()
}

fn key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
}

fn bound_to(key: &KeyPair) -> [u8; 64] {
    content_report_data(RATLS_CERT_TAG, &key.subject_public_key_info())
}

/// A V0 Nitro attestation whose report_data is `report_data`.
fn nitro_v0(report_data: &[u8; 64]) -> Vec<u8> {
    Scale::default()
        .raw(&[0, 2])
        .bytes(b"\x84cose")
        .runtime_events(&[("app-id", &[1; 20])])
        .tail(report_data, "")
}

/// The same attestation as V1 (keys in serde_json's sorted order, bytes as integer arrays).
fn nitro_v1(report_data: &[u8; 64]) -> Vec<u8> {
    let app_id = [1u8; 20].to_vec();
    let value = serde_json::json!({
        "version": 1,
        "platform": { "kind": "nitro-enclave", "data": { "nsm_quote": b"\x84cose" } },
        "stack": { "kind": "dstack", "data": {
            "report_data": report_data.to_vec(),
            "runtime_events": [{ "event": "app-id", "payload": app_id }],
            "config": "",
        } },
    });
    rmp_serde::to_vec(&value).unwrap()
}

#[test]
fn the_extension_oids() {
    let dstack = [1, 3, 6, 1, 4, 1, 62397, 1];
    for (oid, last) in [
        (&ATTESTATION_OID, 8),
        (&LEGACY_QUOTE_OID, 1),
        (&LEGACY_EVENT_LOG_OID, 2),
    ] {
        assert_eq!(arcs(oid), [&dstack[..], &[last]].concat());
    }
}

#[test]
fn the_attestation_extension_in_pem_or_der() {
    let key = key();
    for attestation in [nitro_v0(&bound_to(&key)), nitro_v1(&bound_to(&key))] {
        let cert = certificate(&key, &[(&ATTESTATION_OID, octet_string(&attestation))]);
        let from_der = from_certificate(cert.der()).unwrap();
        assert_eq!(from_der.form, RaTlsForm::Attestation);
        assert_eq!(from_der.public_key, key.subject_public_key_info());
        assert_eq!(from_der.evidence, Evidence::parse(&attestation).unwrap());
        let pem = format!("\n{}", cert.pem());
        assert_eq!(from_certificate(pem.as_bytes()).unwrap(), from_der);
    }
}

#[test]
fn an_attestation_for_another_key_is_a_binding_mismatch() {
    let key = key();
    let other = self::key();
    for attestation in [nitro_v0(&bound_to(&other)), nitro_v1(&bound_to(&other))] {
        let cert = certificate(&key, &[(&ATTESTATION_OID, octet_string(&attestation))]);
        let err = from_certificate(cert.der()).unwrap_err();
        assert!(
            matches!(err, DstackError::CertificateKeyMismatch { .. }),
            "{err}"
        );
        assert_eq!(err.kind().as_str(), "binding_mismatch");
    }
}

/// The lite sample's quote with its REPORTDATA set (unsigned: extraction does not verify), and
/// the sample report.
fn patched_quote(report_data: &[u8; 64]) -> Option<(Vec<u8>, serde_json::Value)> {
    let report: serde_json::Value = serde_json::from_slice(&sample(LITE_SAMPLE)?).unwrap();
    let mut quote = hex::decode(report["quote"].as_str().unwrap()).unwrap();
    quote[568..632].copy_from_slice(report_data);
    assert_eq!(
        crate::tdx::Quote::parse(&quote).unwrap().body.report_data,
        *report_data
    );
    Some((quote, report))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    [EVENT_LOG_GZIP_MAGIC, &encoder.finish().unwrap()].concat()
}

#[test]
fn the_legacy_quote_and_event_log_extensions() {
    let key = key();
    let Some((quote, report)) = patched_quote(&bound_to(&key)) else {
        return;
    };
    let log = report["event_log"].as_str().unwrap().as_bytes();
    let plain = certificate(
        &key,
        &[
            (&LEGACY_QUOTE_OID, octet_string(&quote)),
            (&LEGACY_EVENT_LOG_OID, octet_string(log)),
        ],
    );
    let extracted = from_certificate(plain.der()).unwrap();
    assert_eq!(extracted.form, RaTlsForm::LegacyQuote);
    let Evidence::Tdx(tdx) = &extracted.evidence else {
        panic!("not TDX")
    };
    assert_eq!(tdx.report_data, Some(bound_to(&key)));
    assert_eq!(tdx.vm_config, None);
    assert_eq!(
        tdx.event_log,
        EventLog::from_json(std::str::from_utf8(log).unwrap()).unwrap()
    );

    let compressed = certificate(
        &key,
        &[
            (&LEGACY_QUOTE_OID, octet_string(&quote)),
            (&LEGACY_EVENT_LOG_OID, octet_string(&gzip(log))),
        ],
    );
    assert_eq!(from_certificate(compressed.der()).unwrap(), extracted);

    // The quote binds the certificate's key once verified; here, its registers replay.
    let registers = TdRegisters::from(&crate::tdx::Quote::parse(&quote).unwrap().body);
    let identity = tdx_identity(&registers, tdx, TdxTcb::default(), MrMode::Runtime).unwrap();
    assert_eq!(identity.replay.unwrap().checked, [true; 4]);
    // No vm_config travels in the legacy form: the image stays unbound.
    assert!(!identity.os_image_hash_bound);
}

#[test]
fn legacy_failures() {
    let key = key();
    let Some((quote, report)) = patched_quote(&bound_to(&key)) else {
        return;
    };
    let log = report["event_log"].as_str().unwrap().as_bytes();
    let with = |extensions: &[(&Oid<'_>, Vec<u8>)]| {
        from_certificate(certificate(&key, extensions).der()).unwrap_err()
    };

    let (other_quote, _) = patched_quote(&[0; 64]).unwrap();
    let err = with(&[
        (&LEGACY_QUOTE_OID, octet_string(&other_quote)),
        (&LEGACY_EVENT_LOG_OID, octet_string(log)),
    ]);
    assert_eq!(err.kind().as_str(), "binding_mismatch");

    let bomb = gzip(&vec![b' '; MAX_INFLATED_EVENT_LOG + 1]);
    let err = with(&[
        (&LEGACY_QUOTE_OID, octet_string(&quote)),
        (&LEGACY_EVENT_LOG_OID, octet_string(&bomb)),
    ]);
    assert!(matches!(err, DstackError::TooLarge { .. }), "{err}");

    let cases = [
        vec![(&LEGACY_QUOTE_OID, octet_string(&quote))],
        vec![
            (&LEGACY_QUOTE_OID, octet_string(&quote)),
            (&LEGACY_EVENT_LOG_OID, octet_string(b"ELGZv1 not gzip")),
        ],
        vec![
            (&LEGACY_QUOTE_OID, octet_string(b"not a quote")),
            (&LEGACY_EVENT_LOG_OID, octet_string(log)),
        ],
        vec![
            (&LEGACY_QUOTE_OID, quote.clone()),
            (&LEGACY_EVENT_LOG_OID, octet_string(log)),
        ],
        vec![],
    ];
    for extensions in cases {
        assert_eq!(with(&extensions).kind().as_str(), "malformed");
    }
}

#[test]
fn inputs_that_are_not_certificates() {
    let key = key();
    let attestation = nitro_v0(&bound_to(&key));
    let cert = certificate(&key, &[(&ATTESTATION_OID, octet_string(&attestation))]);
    let mut trailing = cert.der().to_vec();
    trailing.push(0);
    let not_octets = certificate(&key, &[(&ATTESTATION_OID, attestation.clone())]);
    for bytes in [
        &b""[..],
        b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        &cert.der()[..100],
        &trailing,
        not_octets.der(),
    ] {
        let err = from_certificate(bytes).unwrap_err();
        assert_eq!(err.kind().as_str(), "malformed", "{err}");
    }
}
