//! The SGX extension of PCK certificates: the real samples' values, and every malformed shape
//! rejected as `certificate_invalid`.

use crate::support::samples;
use crate::support::tdx as tdx_support;

use tdx_support::{der_uint, entry, tlv, Keys, SgxExtension, Spec, NOW};
use tee_verifier::tdx::{Collateral, PckInfo, Quote, TdxPolicy, TdxVerifier};

#[test]
fn sample_pck_certificates() {
    let dir = samples::samples_dir();
    let entries = samples::expected_entries(&dir);
    let mut checked = 0;
    for entry in tdx_support::tdx_entries(&entries) {
        let quote = Quote::parse(&tdx_support::sample_quote(&dir, entry)).unwrap();
        let pem = String::from_utf8(quote.signature_data.certification.data.clone()).unwrap();
        let leaf_b64: String = pem
            .split("-----BEGIN CERTIFICATE-----")
            .nth(1)
            .and_then(|block| block.split("-----END").next())
            .unwrap()
            .split_whitespace()
            .collect();
        use base64::Engine as _;
        let leaf = base64::engine::general_purpose::STANDARD
            .decode(leaf_b64)
            .unwrap();
        let pck = PckInfo::from_certificate(&leaf).unwrap();
        assert_eq!(pck.cpu_svn, pck.tcb_components);
        assert_eq!(pck.pce_id, [0, 0]);
        assert_eq!(pck.ppid.len(), 16);
        if let Some(ppid) = entry["ppid"].as_str() {
            assert_eq!(hex::encode(&pck.ppid), ppid);
        }
        let fmspc = hex::encode_upper(pck.fmspc);
        assert!(
            ["B0C06F000000", "90C06F000000"].contains(&fmspc.as_str()),
            "{fmspc}"
        );
        checked += 1;
    }
    assert!(checked >= 4);
}

fn parse(extension: Vec<u8>) -> Result<PckInfo, String> {
    let keys = Keys::generate();
    let built = Spec {
        sgx_extension_der: Some(extension),
        ..Spec::default()
    }
    .build(&keys);
    PckInfo::from_certificate(&built.pck_chain[0]).map_err(|e| {
        assert_eq!(e.kind().as_str(), "certificate_invalid", "{e}");
        e.to_string()
    })
}

fn default_sgx() -> SgxExtension {
    Spec::default().sgx
}

/// The extension body (entries inside the outer SEQUENCE) with `edit` applied to the entries.
fn with_entries(edit: impl FnOnce(&mut Vec<Vec<u8>>)) -> Vec<u8> {
    let sgx = default_sgx();
    let mut tcb = Vec::new();
    for (arc, svn) in (1u64..).zip(sgx.tcb_components) {
        tcb.extend(entry(&[2, arc], der_uint(svn.into())));
    }
    tcb.extend(entry(&[2, 17], der_uint(sgx.pce_svn.into())));
    tcb.extend(entry(&[2, 18], tlv(0x04, &sgx.cpu_svn)));
    let mut entries = vec![
        entry(&[1], tlv(0x04, &sgx.ppid)),
        entry(&[2], tlv(0x30, &tcb)),
        entry(&[3], tlv(0x04, &sgx.pce_id)),
        entry(&[4], tlv(0x04, &sgx.fmspc)),
        entry(&[5], tlv(0x0a, &[0])),
    ];
    edit(&mut entries);
    tlv(0x30, &entries.concat())
}

/// A TCB SEQUENCE with component 1 replaced by `value`.
fn tcb_with_first(value: Vec<u8>) -> Vec<u8> {
    let sgx = default_sgx();
    let mut tcb = entry(&[2, 1], value);
    for (arc, svn) in (2u64..).zip(&sgx.tcb_components[1..]) {
        tcb.extend(entry(&[2, arc], der_uint((*svn).into())));
    }
    tcb.extend(entry(&[2, 17], der_uint(sgx.pce_svn.into())));
    tcb.extend(entry(&[2, 18], tlv(0x04, &sgx.cpu_svn)));
    tlv(0x30, &tcb)
}

#[test]
fn well_formed_extension() {
    let pck = parse(with_entries(|_| {})).unwrap();
    let sgx = default_sgx();
    assert_eq!(
        (
            pck.ppid.as_slice(),
            pck.tcb_components,
            pck.pce_svn,
            pck.cpu_svn,
            pck.pce_id,
            pck.fmspc
        ),
        (
            &sgx.ppid[..],
            sgx.tcb_components,
            sgx.pce_svn,
            sgx.cpu_svn,
            sgx.pce_id,
            sgx.fmspc
        )
    );
    // Extra, unknown arcs (platform instance ID, configuration) are fine.
    parse(with_entries(|e| e.push(entry(&[6], tlv(0x04, &[1; 16]))))).unwrap();
}

#[test]
fn malformed_extensions() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not a SEQUENCE", tlv(0x04, &[1, 2, 3])),
        ("trailing bytes", [with_entries(|_| {}), vec![0]].concat()),
        ("no PPID", with_entries(|e| drop(e.remove(0)))),
        ("no TCB", with_entries(|e| drop(e.remove(1)))),
        ("no FMSPC", with_entries(|e| drop(e.remove(3)))),
        (
            "FMSPC twice",
            with_entries(|e| e.push(entry(&[4], tlv(0x04, &[0; 6])))),
        ),
        (
            "short FMSPC",
            with_entries(|e| e[3] = entry(&[4], tlv(0x04, &[0; 5]))),
        ),
        (
            "long PCE-ID",
            with_entries(|e| e[2] = entry(&[3], tlv(0x04, &[0; 3]))),
        ),
        (
            "PPID not OCTET STRING",
            with_entries(|e| e[0] = entry(&[1], der_uint(5))),
        ),
        (
            "foreign OID",
            with_entries(|e| {
                e.push(tlv(
                    0x30,
                    &[tdx_support::der_oid(&[1, 2, 3]), tlv(0x05, &[])].concat(),
                ))
            }),
        ),
        (
            "entry not a pair",
            with_entries(|e| {
                e.push(tlv(
                    0x30,
                    &tdx_support::der_oid(&[1, 2, 840, 113741, 1, 13, 1, 9]),
                ))
            }),
        ),
        (
            "component 256",
            with_entries(|e| e[1] = entry(&[2], tcb_with_first(der_uint(256)))),
        ),
        (
            "negative component",
            with_entries(|e| e[1] = entry(&[2], tcb_with_first(tlv(0x02, &[0xff])))),
        ),
        (
            "component not INTEGER",
            with_entries(|e| e[1] = entry(&[2], tcb_with_first(tlv(0x04, &[2])))),
        ),
        ("CPUSVN differs from the components", {
            let mut sgx = default_sgx();
            sgx.cpu_svn[3] ^= 1;
            tdx_support::sgx_extension_der(&sgx)
        }),
        ("PCESVN above 65535", {
            let sgx = default_sgx();
            let mut tcb = Vec::new();
            for (arc, svn) in (1u64..).zip(sgx.tcb_components) {
                tcb.extend(entry(&[2, arc], der_uint(svn.into())));
            }
            tcb.extend(entry(&[2, 17], der_uint(70_000)));
            tcb.extend(entry(&[2, 18], tlv(0x04, &sgx.cpu_svn)));
            with_entries(|e| e[1] = entry(&[2], tlv(0x30, &tcb)))
        }),
    ];
    let expected = |what: &str| match what {
        "not a SEQUENCE" => "not a SEQUENCE",
        "trailing bytes" => "trailing bytes",
        "no PPID" => "no PPID",
        "no TCB" => "no TCB",
        "no FMSPC" => "no FMSPC",
        "FMSPC twice" => "appears twice",
        "short FMSPC" => "FMSPC is not 6 bytes",
        "long PCE-ID" => "PCE-ID is not 2 bytes",
        "PPID not OCTET STRING" => "not an OCTET STRING",
        "foreign OID" => "not under the SGX extension",
        "entry not a pair" => "not an (OID, value) pair",
        "component 256" => "exceeds 255",
        "negative component" => "negative INTEGER",
        "component not INTEGER" => "not an INTEGER",
        "CPUSVN differs from the components" => "CPUSVN differs",
        "PCESVN above 65535" => "PCESVN exceeds 65535",
        _ => unreachable!(),
    };
    for (what, extension) in cases {
        let err = parse(extension).expect_err(what);
        assert!(err.contains(expected(what)), "{what}: {err}");
    }
}

#[test]
fn a_leaf_without_the_extension_or_a_bad_one_fails_verification() {
    let keys = Keys::generate();
    let built = Spec::default().build(&keys);
    let err = PckInfo::from_certificate(&built.pck_chain[1]).unwrap_err();
    assert_eq!(err.kind().as_str(), "certificate_invalid");
    let built = Spec {
        sgx_extension_der: Some(tlv(0x30, &[])),
        ..Spec::default()
    }
    .build(&keys);
    let collateral = Collateral::from_json(&built.collateral_json()).unwrap();
    let err = TdxVerifier::with_root_der(&built.root_der)
        .verify(&built.quote, &collateral, NOW, &TdxPolicy::default())
        .unwrap_err();
    assert_eq!(err.kind().as_str(), "certificate_invalid", "{err}");
}
