//! Helpers shared by the TDX integration tests: reading sample quotes and re-laying a v4 quote
//! out as v5.
#![allow(dead_code)]

use std::path::Path;

/// Header length and TD 1.0 body end in a v4 quote.
pub(crate) const V4_HEADER_LEN: usize = 48;
pub(crate) const V4_SIGNED_LEN: usize = 632;

/// The raw quote of an `expected.json` entry: the `.bin` file, or the hex `quote` field of a
/// dstack report JSON.
pub(crate) fn sample_quote(dir: &Path, entry: &serde_json::Value) -> Vec<u8> {
    let file = entry["file"].as_str().expect("entry file");
    let bytes = std::fs::read(dir.join(file)).expect("read sample");
    match entry["kind"].as_str() {
        Some("tdx-quote") => bytes,
        Some("dstack-quote-report") => {
            let json: serde_json::Value = serde_json::from_slice(&bytes).expect("report JSON");
            hex::decode(json["quote"].as_str().expect("quote field")).expect("quote hex")
        }
        other => panic!("not a TDX entry: {other:?}"),
    }
}

/// Entries of `expected.json` that carry a TDX quote.
pub(crate) fn tdx_entries(entries: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    entries
        .iter()
        .filter(|e| {
            matches!(
                e["kind"].as_str(),
                Some("tdx-quote" | "dstack-quote-report")
            )
        })
        .collect()
}

/// Re-lays a v4 quote out as v5 with the given body type: version 5, the 6-byte body descriptor
/// after the header, `extension` appended to the TD 1.0 body, the signature data unchanged.
/// The quote signature no longer verifies (the signed region changed); parsing does not care.
pub(crate) fn v4_to_v5(v4: &[u8], body_type: u16, extension: &[u8]) -> Vec<u8> {
    let body_len = (V4_SIGNED_LEN - V4_HEADER_LEN + extension.len()) as u32;
    let mut v5 = Vec::with_capacity(v4.len() + 6 + extension.len());
    v5.extend_from_slice(&5u16.to_le_bytes());
    v5.extend_from_slice(&v4[2..V4_HEADER_LEN]);
    v5.extend_from_slice(&body_type.to_le_bytes());
    v5.extend_from_slice(&body_len.to_le_bytes());
    v5.extend_from_slice(&v4[V4_HEADER_LEN..V4_SIGNED_LEN]);
    v5.extend_from_slice(extension);
    v5.extend_from_slice(&v4[V4_SIGNED_LEN..]);
    v5
}

// ---------------------------------------------------------------------------------------------
// An Intel-like test PKI and quote factory: root CA, PCK Platform CA, PCK leaf with the SGX
// extension, TCB signing certificate, both CRLs, signed TCB Info / QE Identity, and v4/v5 quotes
// signed by a fresh attestation key. Every knob is a plain field a test can change before
// `build()`.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The fixtures' reference time (2025-06-15T14:13:20Z).
pub(crate) const NOW: u64 = 1_750_000_000;
pub(crate) const DAY: i64 = 86_400;

pub(crate) const QE_MRSIGNER: [u8; 32] = [0xdc; 32];
pub(crate) const FMSPC: [u8; 6] = [0x90, 0xc0, 0x6f, 0, 0, 0];
/// TD attributes of a production TD: only SEPT_VE_DISABLE.
pub(crate) const SEPT_VE_DISABLE: u64 = 1 << 28;

fn at(offset: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(NOW as i64 + offset).unwrap()
}

/// RFC 3339 spelling of `NOW + offset`, as Intel writes dates.
pub(crate) fn date(offset: i64) -> String {
    let t = at(offset);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A certificate's window (offsets from `NOW`) and serial.
#[derive(Clone, Debug)]
pub(crate) struct CertSpec {
    pub not_before: i64,
    pub not_after: i64,
    pub serial: u64,
}

/// A CRL's window (offsets from `NOW`) and revoked serials.
#[derive(Clone, Debug)]
pub(crate) struct CrlSpec {
    pub this_update: i64,
    pub next_update: i64,
    pub revoked: Vec<u64>,
}

/// The SGX extension of the PCK leaf.
#[derive(Clone, Debug)]
pub(crate) struct SgxExtension {
    pub ppid: [u8; 16],
    pub tcb_components: [u8; 16],
    pub pce_svn: u16,
    pub cpu_svn: [u8; 16],
    pub pce_id: [u8; 2],
    pub fmspc: [u8; 6],
}

/// The QE report fields a test may change.
#[derive(Clone, Debug)]
pub(crate) struct QeReportSpec {
    pub cpu_svn: [u8; 16],
    pub misc_select: u32,
    pub attributes: [u8; 16],
    pub mr_signer: [u8; 32],
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    /// `None`: the correct binding SHA-256(attestation key ‖ auth data) ‖ 32 zero bytes.
    pub report_data: Option<[u8; 64]>,
}

/// The TD report fields a test may change.
#[derive(Clone, Debug)]
pub(crate) struct TdSpec {
    /// 4, or 5 with `body_type` 2, 3 or 4.
    pub version: u16,
    pub body_type: u16,
    pub tee_tcb_svn: [u8; 16],
    pub tee_tcb_svn2: [u8; 16],
    pub mr_signer_seam: [u8; 48],
    pub seam_attributes: [u8; 8],
    pub td_attributes: u64,
    pub mr_td: [u8; 48],
    pub mr_service_td: [u8; 48],
    /// RTMR0..3.
    pub rtmr: [[u8; 48]; 4],
    pub report_data: [u8; 64],
    pub qe_vendor_id: [u8; 16],
}

/// Everything the factory turns into a quote and its collateral.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub root: CertSpec,
    pub pck_ca: CertSpec,
    pub pck_leaf: CertSpec,
    pub tcb_signer: CertSpec,
    /// Issue the TCB signing certificate from the PCK CA instead of the root.
    pub tcb_signer_under_pck_ca: bool,
    pub root_crl: CrlSpec,
    pub pck_crl: CrlSpec,
    pub sgx: SgxExtension,
    /// Raw SGX extension content replacing the one built from `sgx`.
    pub sgx_extension_der: Option<Vec<u8>>,
    pub td: TdSpec,
    pub qe: QeReportSpec,
    pub qe_auth_data: Vec<u8>,
    /// Inner certification data type; 5 embeds the PEM PCK chain, others carry `[0; 16]`.
    pub cert_data_type: u16,
    /// Put the PCK chain in the collateral's `pck_certificate_chain`.
    pub pck_chain_in_collateral: bool,
    pub tcb_info: Value,
    pub qe_identity: Value,
}

pub(crate) fn default_tcb_info() -> Value {
    let components = |svns: &[u8]| -> Value {
        let mut all = [0u8; 16];
        all[..svns.len()].copy_from_slice(svns);
        Value::Array(all.iter().map(|svn| json!({ "svn": svn })).collect())
    };
    let module_signer = "00".repeat(48);
    json!({
        "id": "TDX",
        "version": 3,
        "issueDate": date(-DAY),
        "nextUpdate": date(29 * DAY),
        "fmspc": hex::encode_upper(FMSPC),
        "pceId": "0000",
        "tcbType": 0,
        "tcbEvaluationDataNumber": 17,
        "tdxModule": {
            "mrsigner": module_signer,
            "attributes": "0000000000000000",
            "attributesMask": "FFFFFFFFFFFFFFFF"
        },
        "tdxModuleIdentities": [
            {
                "id": "TDX_03",
                "mrsigner": module_signer,
                "attributes": "0000000000000000",
                "attributesMask": "FFFFFFFFFFFFFFFF",
                "tcbLevels": [
                    { "tcb": { "isvsvn": 3 }, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate" }
                ]
            },
            {
                "id": "TDX_01",
                "mrsigner": module_signer,
                "attributes": "0000000000000000",
                "attributesMask": "FFFFFFFFFFFFFFFF",
                "tcbLevels": [
                    { "tcb": { "isvsvn": 4 }, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate" },
                    { "tcb": { "isvsvn": 2 }, "tcbDate": "2023-08-09T00:00:00Z", "tcbStatus": "OutOfDate",
                      "advisoryIDs": ["INTEL-SA-01036"] }
                ]
            }
        ],
        "tcbLevels": [
            {
                "tcb": {
                    "sgxtcbcomponents": components(&[2, 2, 2, 2, 3, 1, 0, 5]),
                    "pcesvn": 11,
                    "tdxtcbcomponents": components(&[5, 0, 2])
                },
                "tcbDate": "2024-03-13T00:00:00Z",
                "tcbStatus": "UpToDate"
            },
            {
                "tcb": {
                    "sgxtcbcomponents": components(&[2, 2, 2, 2, 3, 1, 0, 5]),
                    "pcesvn": 5,
                    "tdxtcbcomponents": components(&[5, 0, 2])
                },
                "tcbDate": "2018-01-04T00:00:00Z",
                "tcbStatus": "OutOfDate",
                "advisoryIDs": ["INTEL-SA-00106", "INTEL-SA-00115"]
            },
            {
                "tcb": {
                    "sgxtcbcomponents": components(&[1, 1, 1, 1, 1, 1, 0, 1]),
                    "pcesvn": 3,
                    "tdxtcbcomponents": components(&[1, 0, 1])
                },
                "tcbDate": "2017-01-04T00:00:00Z",
                "tcbStatus": "Revoked",
                "advisoryIDs": ["INTEL-SA-00001"]
            }
        ]
    })
}

pub(crate) fn default_qe_identity() -> Value {
    json!({
        "id": "TD_QE",
        "version": 2,
        "issueDate": date(-DAY),
        "nextUpdate": date(29 * DAY),
        "tcbEvaluationDataNumber": 17,
        "miscselect": "00000000",
        "miscselectMask": "FFFFFFFF",
        "attributes": "11000000000000000000000000000000",
        "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
        "mrsigner": hex::encode_upper(QE_MRSIGNER),
        "isvprodid": 2,
        "tcbLevels": [
            { "tcb": { "isvsvn": 4 }, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate" },
            { "tcb": { "isvsvn": 2 }, "tcbDate": "2021-11-10T00:00:00Z", "tcbStatus": "OutOfDate",
              "advisoryIDs": ["INTEL-SA-00615"] }
        ]
    })
}

impl Default for Spec {
    fn default() -> Self {
        let ca = |serial| CertSpec {
            not_before: -365 * DAY,
            not_after: 3650 * DAY,
            serial,
        };
        let mut tee_tcb_svn = [0u8; 16];
        tee_tcb_svn[..3].copy_from_slice(&[6, 1, 3]);
        let mut qe_attributes = [0u8; 16];
        qe_attributes[0] = 0x11;
        let mut sgx_components = [0u8; 16];
        sgx_components[..8].copy_from_slice(&[2, 2, 2, 2, 3, 1, 0, 5]);
        Spec {
            root: ca(1),
            pck_ca: ca(2),
            pck_leaf: CertSpec {
                not_before: -30 * DAY,
                not_after: 365 * DAY,
                serial: 0x1234,
            },
            tcb_signer: CertSpec {
                not_before: -30 * DAY,
                not_after: 365 * DAY,
                serial: 3,
            },
            tcb_signer_under_pck_ca: false,
            root_crl: CrlSpec {
                this_update: -DAY,
                next_update: 30 * DAY,
                revoked: vec![99],
            },
            pck_crl: CrlSpec {
                this_update: -DAY,
                next_update: 30 * DAY,
                revoked: vec![0x777],
            },
            sgx: SgxExtension {
                ppid: [0x81; 16],
                tcb_components: sgx_components,
                pce_svn: 13,
                cpu_svn: sgx_components,
                pce_id: [0, 0],
                fmspc: FMSPC,
            },
            sgx_extension_der: None,
            td: TdSpec {
                version: 4,
                body_type: 2,
                tee_tcb_svn,
                tee_tcb_svn2: tee_tcb_svn,
                mr_signer_seam: [0; 48],
                seam_attributes: [0; 8],
                td_attributes: SEPT_VE_DISABLE,
                mr_td: [0x7d; 48],
                mr_service_td: [0; 48],
                rtmr: [[1; 48], [2; 48], [3; 48], [4; 48]],
                report_data: [0x42; 64],
                qe_vendor_id: tee_verifier::tdx::quote::INTEL_QE_VENDOR_ID,
            },
            qe: QeReportSpec {
                cpu_svn: sgx_components,
                misc_select: 0,
                attributes: qe_attributes,
                mr_signer: QE_MRSIGNER,
                isv_prod_id: 2,
                isv_svn: 4,
                report_data: None,
            },
            qe_auth_data: (0u8..32).collect(),
            cert_data_type: 5,
            pck_chain_in_collateral: false,
            tcb_info: default_tcb_info(),
            qe_identity: default_qe_identity(),
        }
    }
}

/// The keys of one test PKI; certificates are issued at `build()` from a `Spec`.
pub(crate) struct Keys {
    root: KeyPair,
    pck_ca: KeyPair,
    pck_leaf: KeyPair,
    tcb_signer: KeyPair,
    attestation: EcdsaKeyPair,
}

impl Keys {
    pub(crate) fn generate() -> Keys {
        let key = || KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let attestation = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        Keys {
            root: key(),
            pck_ca: key(),
            pck_leaf: key(),
            tcb_signer: key(),
            attestation,
        }
    }
}

/// A built quote and collateral, plus the root to pin.
pub(crate) struct Built {
    pub quote: Vec<u8>,
    /// `QuoteCollateralV3` JSON as a value, so tests can tamper with it after signing.
    pub collateral: Value,
    pub root_der: Vec<u8>,
    /// DER PCK chain, leaf first.
    pub pck_chain: Vec<Vec<u8>>,
}

impl Built {
    pub(crate) fn collateral_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.collateral).unwrap()
    }
}

fn params(name: &str, spec: &CertSpec, ca: Option<u8>) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "Test Corporation");
    params.distinguished_name = dn;
    params.not_before = at(spec.not_before);
    params.not_after = at(spec.not_after);
    params.serial_number = Some(SerialNumber::from(spec.serial));
    params.key_identifier_method = KeyIdMethod::Sha256;
    match ca {
        Some(path_len) => {
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        }
        None => {
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::ContentCommitment,
            ];
        }
    }
    params
}

fn crl(spec: &CrlSpec, issuer: &Issuer<'_, &KeyPair>) -> Vec<u8> {
    CertificateRevocationListParams {
        this_update: at(spec.this_update),
        next_update: at(spec.next_update),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: spec
            .revoked
            .iter()
            .map(|&serial| RevokedCertParams {
                serial_number: SerialNumber::from(serial),
                revocation_time: at(spec.this_update),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)
    .unwrap()
    .der()
    .to_vec()
}

pub(crate) fn pem(ders: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for der in ders {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// ECDSA P-256 r‖s over `message` with an rcgen key.
fn sign_with(key: &KeyPair, message: &[u8]) -> Vec<u8> {
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der()).unwrap();
    pair.sign(&SystemRandom::new(), message)
        .unwrap()
        .as_ref()
        .to_vec()
}

// --- minimal DER writer for the SGX extension ---

pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        len if len < 0x80 => out.push(len as u8),
        len if len < 0x100 => out.extend_from_slice(&[0x81, len as u8]),
        len => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
    }
    out.extend_from_slice(content);
    out
}

pub(crate) fn der_oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
    for &arc in &arcs[2..] {
        let mut groups = vec![(arc & 0x7f) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            groups.push((rest & 0x7f) as u8 | 0x80);
            rest >>= 7;
        }
        body.extend(groups.iter().rev());
    }
    tlv(0x06, &body)
}

pub(crate) fn der_uint(value: u64) -> Vec<u8> {
    let mut bytes: Vec<u8> = value
        .to_be_bytes()
        .iter()
        .copied()
        .skip_while(|&b| b == 0)
        .collect();
    if bytes.first().is_none_or(|b| b & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    tlv(0x02, &bytes)
}

pub(crate) const SGX_OID: [u64; 7] = [1, 2, 840, 113741, 1, 13, 1];

pub(crate) fn entry(arcs: &[u64], value: Vec<u8>) -> Vec<u8> {
    let oid: Vec<u64> = SGX_OID.iter().chain(arcs).copied().collect();
    tlv(0x30, &[der_oid(&oid), value].concat())
}

/// The SGX extension content as Intel lays it out.
pub(crate) fn sgx_extension_der(sgx: &SgxExtension) -> Vec<u8> {
    let mut tcb = Vec::new();
    for (arc, svn) in (1u64..).zip(sgx.tcb_components) {
        tcb.extend(entry(&[2, arc], der_uint(svn.into())));
    }
    tcb.extend(entry(&[2, 17], der_uint(sgx.pce_svn.into())));
    tcb.extend(entry(&[2, 18], tlv(0x04, &sgx.cpu_svn)));
    let body = [
        entry(&[1], tlv(0x04, &sgx.ppid)),
        entry(&[2], tlv(0x30, &tcb)),
        entry(&[3], tlv(0x04, &sgx.pce_id)),
        entry(&[4], tlv(0x04, &sgx.fmspc)),
        entry(&[5], tlv(0x0a, &[0])),
    ]
    .concat();
    tlv(0x30, &body)
}

impl Spec {
    /// The platform's certified SGX TCB: component SVNs and the equal CPUSVN.
    pub(crate) fn set_platform_svns(&mut self, components: [u8; 16]) {
        self.sgx.tcb_components = components;
        self.sgx.cpu_svn = components;
    }

    /// Issues the PKI, signs the collateral and lays out the quote.
    pub(crate) fn build(&self, keys: &Keys) -> Built {
        let root_params = params("Test SGX Root CA", &self.root, Some(1));
        let root_der = root_params.self_signed(&keys.root).unwrap().der().to_vec();
        let root = Issuer::from_params(&root_params, &keys.root);

        let ca_params = params("Test SGX PCK Platform CA", &self.pck_ca, Some(0));
        let ca_der = ca_params
            .signed_by(&keys.pck_ca, &root)
            .unwrap()
            .der()
            .to_vec();
        let pck_ca = Issuer::from_params(&ca_params, &keys.pck_ca);

        let mut leaf_params = params("Test SGX PCK Certificate", &self.pck_leaf, None);
        let extension =
            (self.sgx_extension_der.clone()).unwrap_or_else(|| sgx_extension_der(&self.sgx));
        leaf_params.custom_extensions =
            vec![CustomExtension::from_oid_content(&SGX_OID, extension)];
        let leaf_der = leaf_params
            .signed_by(&keys.pck_leaf, &pck_ca)
            .unwrap()
            .der()
            .to_vec();

        let signer_params = params("Test SGX TCB Signing", &self.tcb_signer, None);
        let signer_chain = if self.tcb_signer_under_pck_ca {
            let der = signer_params
                .signed_by(&keys.tcb_signer, &pck_ca)
                .unwrap()
                .der()
                .to_vec();
            vec![der, ca_der.clone(), root_der.clone()]
        } else {
            let der = signer_params
                .signed_by(&keys.tcb_signer, &root)
                .unwrap()
                .der()
                .to_vec();
            vec![der, root_der.clone()]
        };

        let root_crl = crl(&self.root_crl, &root);
        let pck_crl = crl(&self.pck_crl, &pck_ca);
        let pck_chain = vec![leaf_der, ca_der.clone(), root_der.clone()];

        let tcb_info = self.tcb_info.to_string();
        let qe_identity = self.qe_identity.to_string();
        let mut collateral = json!({
            "pck_crl_issuer_chain": pem(&[ca_der, root_der.clone()]),
            "root_ca_crl": hex::encode(root_crl),
            "pck_crl": hex::encode(pck_crl),
            "tcb_info_issuer_chain": pem(&signer_chain),
            "tcb_info_signature": hex::encode(sign_with(&keys.tcb_signer, tcb_info.as_bytes())),
            "tcb_info": tcb_info,
            "qe_identity_issuer_chain": pem(&signer_chain),
            "qe_identity_signature": hex::encode(sign_with(&keys.tcb_signer, qe_identity.as_bytes())),
            "qe_identity": qe_identity,
        });
        if self.pck_chain_in_collateral {
            collateral["pck_certificate_chain"] = Value::String(pem(&pck_chain));
        }
        let quote = self.quote(keys, &pck_chain);
        Built {
            quote,
            collateral,
            root_der,
            pck_chain,
        }
    }

    fn td_body(&self) -> Vec<u8> {
        let td = &self.td;
        let mut body = Vec::new();
        body.extend_from_slice(&td.tee_tcb_svn);
        body.extend_from_slice(&[0x5e; 48]); // MRSEAM
        body.extend_from_slice(&td.mr_signer_seam);
        body.extend_from_slice(&td.seam_attributes);
        body.extend_from_slice(&td.td_attributes.to_le_bytes());
        body.extend_from_slice(&0xe7u64.to_le_bytes()); // XFAM
        body.extend_from_slice(&td.mr_td);
        body.extend_from_slice(&[0; 48 * 3]); // MRCONFIGID, MROWNER, MROWNERCONFIG
        for rtmr in &td.rtmr {
            body.extend_from_slice(rtmr);
        }
        body.extend_from_slice(&td.report_data);
        if td.version == 5 && td.body_type >= 3 {
            body.extend_from_slice(&td.tee_tcb_svn2);
            body.extend_from_slice(&td.mr_service_td);
        }
        if td.version == 5 && td.body_type == 4 {
            body.extend_from_slice(&[0; 237]);
        }
        body
    }

    /// A quote under an already issued PKI (`pck_chain` leaf first), signed by `keys`.
    pub(crate) fn quote(&self, keys: &Keys, pck_chain: &[Vec<u8>]) -> Vec<u8> {
        let td = &self.td;
        let mut quote = Vec::new();
        quote.extend_from_slice(&td.version.to_le_bytes());
        quote.extend_from_slice(&2u16.to_le_bytes());
        quote.extend_from_slice(&0x81u32.to_le_bytes());
        quote.extend_from_slice(&[0; 4]);
        quote.extend_from_slice(&td.qe_vendor_id);
        quote.extend_from_slice(&[0xee; 20]);
        let body = self.td_body();
        if td.version == 5 {
            quote.extend_from_slice(&td.body_type.to_le_bytes());
            quote.extend_from_slice(&(body.len() as u32).to_le_bytes());
        }
        quote.extend_from_slice(&body);

        let rng = SystemRandom::new();
        let signature = keys.attestation.sign(&rng, &quote).unwrap();
        let attestation_key = &keys.attestation.public_key().as_ref()[1..];

        let qe_report = self.qe_report(attestation_key);
        let mut outer = qe_report.clone();
        outer.extend(sign_with(&keys.pck_leaf, &qe_report));
        outer.extend_from_slice(&(self.qe_auth_data.len() as u16).to_le_bytes());
        outer.extend_from_slice(&self.qe_auth_data);
        let inner = if self.cert_data_type == 5 {
            let mut chain = pem(pck_chain).into_bytes();
            chain.push(0); // Intel's TDQE NUL-terminates the PEM chain.
            chain
        } else {
            vec![0; 16]
        };
        outer.extend_from_slice(&self.cert_data_type.to_le_bytes());
        outer.extend_from_slice(&(inner.len() as u32).to_le_bytes());
        outer.extend_from_slice(&inner);

        let mut signature_data = Vec::new();
        signature_data.extend_from_slice(signature.as_ref());
        signature_data.extend_from_slice(attestation_key);
        signature_data.extend_from_slice(&6u16.to_le_bytes());
        signature_data.extend_from_slice(&(outer.len() as u32).to_le_bytes());
        signature_data.extend_from_slice(&outer);
        quote.extend_from_slice(&(signature_data.len() as u32).to_le_bytes());
        quote.extend_from_slice(&signature_data);
        quote.extend_from_slice(&[0; 70]); // unsigned padding, as real quotes carry
        quote
    }

    fn qe_report(&self, attestation_key: &[u8]) -> Vec<u8> {
        let qe = &self.qe;
        let mut report = vec![0u8; 384];
        report[0..16].copy_from_slice(&qe.cpu_svn);
        report[16..20].copy_from_slice(&qe.misc_select.to_le_bytes());
        report[48..64].copy_from_slice(&qe.attributes);
        report[64..96].copy_from_slice(&[0x3e; 32]); // MRENCLAVE
        report[128..160].copy_from_slice(&qe.mr_signer);
        report[256..258].copy_from_slice(&qe.isv_prod_id.to_le_bytes());
        report[258..260].copy_from_slice(&qe.isv_svn.to_le_bytes());
        let report_data = qe.report_data.unwrap_or_else(|| {
            let mut data = [0u8; 64];
            let hash = Sha256::new()
                .chain_update(attestation_key)
                .chain_update(&self.qe_auth_data)
                .finalize();
            data[..32].copy_from_slice(&hash);
            data
        });
        report[320..384].copy_from_slice(&report_data);
        report
    }
}
