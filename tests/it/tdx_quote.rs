//! Quote parsing on the real samples: every TDX quote in `expected.json` parses by its declared
//! lengths, and the same bytes re-laid out as v5 (body types 2, 3, 4) parse to the same fields.

use crate::support::samples;
use crate::support::tdx as tdx_support;

use tdx_support::{sample_quote, tdx_entries, v4_to_v5};
use tee_verifier::tdx::quote::{CertDataType, INTEL_QE_VENDOR_ID};
use tee_verifier::tdx::{Quote, TdReportKind, TdxError};

fn sample_quotes() -> Vec<(String, Vec<u8>)> {
    let dir = samples::samples_dir();
    let entries = samples::expected_entries(&dir);
    let quotes: Vec<_> = tdx_entries(&entries)
        .into_iter()
        .map(|e| {
            (
                e["file"].as_str().unwrap().to_owned(),
                sample_quote(&dir, e),
            )
        })
        .collect();
    assert!(quotes.len() >= 4, "expected.json lost its TDX quotes");
    quotes
}

#[test]
fn every_sample_quote_parses() {
    for (file, bytes) in sample_quotes() {
        let quote = Quote::parse(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(quote.version(), 4, "{file}");
        assert_eq!(quote.header.qe_vendor_id, INTEL_QE_VENDOR_ID, "{file}");
        assert_eq!(quote.body.kind, TdReportKind::Td10, "{file}");
        assert_eq!(quote.signed_region, bytes[..632], "{file}");
        let sig = &quote.signature_data;
        assert_eq!(sig.qe_auth_data.len(), 32, "{file}");
        assert_eq!(
            sig.certification.data_type,
            CertDataType::PckCertChain,
            "{file}"
        );
        let pem = std::str::from_utf8(&sig.certification.data).unwrap();
        assert_eq!(
            pem.matches("-----BEGIN CERTIFICATE-----").count(),
            3,
            "{file}"
        );
        // All dstack and dcap-qvl quotes carry 70 unsigned zero bytes after the signature data.
        let end = 632 + 4 + u32::from_le_bytes(bytes[632..636].try_into().unwrap()) as usize;
        assert_eq!(bytes.len() - end, 70, "{file}");
        assert!(bytes[end..].iter().all(|&b| b == 0), "{file}");
    }
}

#[test]
fn dcap_qvl_sample_fields() {
    let dir = samples::samples_dir();
    let bytes = std::fs::read(dir.join("tdx/dcap-qvl_tdx_quote.bin")).unwrap();
    let quote = Quote::parse(&bytes).unwrap();
    let body = &quote.body;
    assert_eq!(
        hex::encode(body.tee_tcb_svn),
        "06010300000000000000000000000000"
    );
    assert_eq!(
        hex::encode(body.mr_td),
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
    assert_eq!(hex::encode(body.td_attributes), "0000001000000000");
    assert_eq!(body.rtmr[3], [0; 48]);
    assert_eq!(
        hex::encode(body.report_data),
        "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20"
    );
    let qe = &quote.signature_data.qe_report;
    assert_eq!((qe.isv_prod_id, qe.isv_svn), (2, 6));
    assert_eq!(
        hex::encode(qe.mr_signer),
        "dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5"
    );
    assert_eq!(quote.signature_data.certification.data.len(), 3678);
}

#[test]
fn sample_relaid_as_v5_parses_for_every_body_type() {
    for (file, v4_bytes) in sample_quotes() {
        let v4 = Quote::parse(&v4_bytes).unwrap();
        let svn2 = [7u8; 16];
        let service_td = [9u8; 48];
        let td15_tail = [&svn2[..], &service_td[..]].concat();
        let ex_tail: Vec<u8> = (0..237u32).map(|i| i as u8).collect();
        let cases: [(u16, Vec<u8>, TdReportKind); 3] = [
            (2, Vec::new(), TdReportKind::Td10),
            (3, td15_tail.clone(), TdReportKind::Td15),
            (
                4,
                [td15_tail.clone(), ex_tail.clone()].concat(),
                TdReportKind::Td15Ex,
            ),
        ];
        for (body_type, extension, kind) in cases {
            let v5_bytes = v4_to_v5(&v4_bytes, body_type, &extension);
            let v5 = Quote::parse(&v5_bytes).unwrap_or_else(|e| panic!("{file} {kind:?}: {e}"));
            assert_eq!(v5.version(), 5);
            assert_eq!(v5.body.kind, kind);
            assert_eq!(v5.signed_region.len(), 54 + kind.body_len());
            assert_eq!(v5.signature_data, v4.signature_data, "{file} {kind:?}");
            assert_eq!(v5.body.mr_td, v4.body.mr_td);
            assert_eq!(v5.body.rtmr, v4.body.rtmr);
            assert_eq!(v5.body.report_data, v4.body.report_data);
            if kind == TdReportKind::Td10 {
                assert_eq!(v5.body, v4.body);
            } else {
                assert_eq!(v5.body.tee_tcb_svn2, Some(svn2));
                assert_eq!(v5.body.mr_service_td, Some(service_td));
            }
            if kind == TdReportKind::Td15Ex {
                let ex = v5.body.td15_ex.as_ref().unwrap();
                assert_eq!(ex.vm_id, 0);
                assert_eq!(ex.td_id[0], 1);
                assert_eq!(ex.dev_info[0], 33);
                assert_eq!(ex.init_service_td_hash[0], 81);
                assert_eq!(ex.init_service_td_attributes[0], 129);
                assert_eq!(ex.init_cpu_svn[0], 137);
                assert_eq!(ex.init_tee_tcb_svn[0], 153);
                assert_eq!(ex.init_tee_fmspc[0], 169);
                assert_eq!(ex.cur_service_td_hash[0], 181);
                assert_eq!(ex.cur_service_td_attributes[7], 236);
            }
        }
    }
}

#[test]
fn v5_with_wrong_body_size_or_type_is_rejected() {
    for (_, v4_bytes) in sample_quotes().into_iter().take(1) {
        // TD 1.5 type but only a TD 1.0 body: declared size says 584, layout needs 648.
        let bad = v4_to_v5(&v4_bytes, 3, &[]);
        assert_eq!(
            Quote::parse(&bad).unwrap_err(),
            TdxError::BodySizeMismatch {
                body_type: 3,
                declared: 584,
                expected: 648
            }
        );
        let sgx_body = v4_to_v5(&v4_bytes, 1, &[]);
        assert_eq!(
            Quote::parse(&sgx_body).unwrap_err().kind().as_str(),
            "malformed"
        );
    }
}

#[test]
fn truncated_sample_is_rejected() {
    for (file, bytes) in sample_quotes() {
        let end = 632 + 4 + u32::from_le_bytes(bytes[632..636].try_into().unwrap()) as usize;
        Quote::parse(&bytes[..end]).unwrap_or_else(|e| panic!("{file}: {e}"));
        for len in [0, 47, 48, 631, 635, 700, 1153, 1219, end - 1] {
            let err = Quote::parse(&bytes[..len]).unwrap_err();
            assert!(
                matches!(err, TdxError::Truncated { .. }),
                "{file} len {len}: {err}"
            );
        }
    }
}
