//! A Google-shaped vTPM test PKI and TPM quote factory, shared by the library's TPM tests, the GCP
//! integration tests and `examples/gcp_fixtures.rs`. It uses only external crates, so the library
//! can include it too.
//!
//! The PKI mirrors Google's (platforms.md §1.4): an RSA-4096 "EK/AK CA Root", an RSA-4096 "EK/AK
//! CA Intermediate" (keyCertSign/cRLSign, EKU 2.23.133.8.1, AIA and CRL distribution point), CRLs
//! by both, and AK leaves in ECC P-256 or RSA-2048 named `L=<zone>, O=Google Compute Engine,
//! OU=<project>, CN=<instance id>` with Google's instance-identity extension.
#![allow(dead_code)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    CustomExtension, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, RsaKeySize, SerialNumber,
    PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The fixtures' reference time (2026-02-19T00:00:00Z): when the real TDX quote's real collateral
/// (`../shared/samples/tdx/dcap-qvl_fmspc90c06f_collateral.json`) is valid, so the GCP
/// attestations built around that quote verify end to end.
pub(crate) const NOW: u64 = 1_771_459_200;
pub(crate) const DAY: i64 = 86_400;
const YEAR: i64 = 365 * DAY;

/// `tcg-kp-EKCertificate`, the EKU Google's CAs carry.
pub(crate) const TCG_KP_EK_CERTIFICATE: [u64; 5] = [2, 23, 133, 8, 1];
/// Google's instance-identity extension on AK certificates.
pub(crate) const GOOGLE_INSTANCE_EXTENSION: [u64; 10] = [1, 3, 6, 1, 4, 1, 11129, 2, 1, 21];
/// authorityInfoAccess.
const AIA_EXTENSION: [u64; 9] = [1, 3, 6, 1, 5, 5, 7, 1, 1];
/// id-ad-caIssuers, DER-encoded.
const CA_ISSUERS_OID_DER: [u8; 10] = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02];

const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
pub(crate) const TPM_ALG_SHA1: u16 = 0x0004;
pub(crate) const TPM_ALG_SHA256: u16 = 0x000b;
const TPM_ALG_RSASSA: u16 = 0x0014;
const TPM_ALG_ECDSA: u16 = 0x0018;

pub(crate) fn at(offset: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW as i64 + offset).unwrap()
}

// ---------------------------------------------------------------------------------------------
// TPM structures

/// The fields of a quote TPMS_ATTEST, laid out by [`AttestSpec::encode`].
#[derive(Clone, Debug)]
pub(crate) struct AttestSpec {
    pub(crate) magic: u32,
    pub(crate) attest_type: u16,
    /// A TPM2B_NAME: nameAlg SHA-256 and a digest.
    pub(crate) qualified_signer: Vec<u8>,
    pub(crate) extra_data: Vec<u8>,
    pub(crate) firmware_version: u64,
    /// (bank, PCR indices) per TPMS_PCR_SELECTION, a 3-byte bitmap each.
    pub(crate) selections: Vec<(u16, Vec<u32>)>,
    pub(crate) pcr_digest: Vec<u8>,
}

impl AttestSpec {
    /// A quote of `pcrs` (in the SHA-256 bank, in that order) over `extra_data`, as a vTPM makes it.
    pub(crate) fn quote(extra_data: &[u8], pcrs: &[(u32, [u8; 32])]) -> AttestSpec {
        let mut qualified_signer = TPM_ALG_SHA256.to_be_bytes().to_vec();
        qualified_signer.extend_from_slice(&[0x5e; 32]);
        let mut hasher = Sha256::new();
        pcrs.iter().for_each(|(_, value)| hasher.update(value));
        AttestSpec {
            magic: TPM_GENERATED_VALUE,
            attest_type: TPM_ST_ATTEST_QUOTE,
            qualified_signer,
            extra_data: extra_data.to_vec(),
            // The Google vTPM's firmwareVersion.
            firmware_version: 0x2016_0511_0016_2800,
            selections: vec![(
                TPM_ALG_SHA256,
                pcrs.iter().map(|(index, _)| *index).collect(),
            )],
            pcr_digest: hasher.finalize().to_vec(),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.magic.to_be_bytes());
        out.extend_from_slice(&self.attest_type.to_be_bytes());
        push_tpm2b(&mut out, &self.qualified_signer);
        push_tpm2b(&mut out, &self.extra_data);
        out.extend_from_slice(&0x054d_d1efu64.to_be_bytes()); // clock
        out.extend_from_slice(&16u32.to_be_bytes()); // resetCount
        out.extend_from_slice(&0u32.to_be_bytes()); // restartCount
        out.push(1); // safe
        out.extend_from_slice(&self.firmware_version.to_be_bytes());
        out.extend_from_slice(&(self.selections.len() as u32).to_be_bytes());
        for (bank, pcrs) in &self.selections {
            out.extend_from_slice(&bank.to_be_bytes());
            let mut bitmap = [0u8; 3];
            for pcr in pcrs {
                bitmap[*pcr as usize / 8] |= 1 << (pcr % 8);
            }
            out.push(bitmap.len() as u8);
            out.extend_from_slice(&bitmap);
        }
        push_tpm2b(&mut out, &self.pcr_digest);
        out
    }
}

fn push_tpm2b(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// TPMT_SIGNATURE with RSASSA/SHA-256.
pub(crate) fn tpmt_rsassa(signature: &[u8]) -> Vec<u8> {
    let mut out = TPM_ALG_RSASSA.to_be_bytes().to_vec();
    out.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    push_tpm2b(&mut out, signature);
    out
}

/// TPMT_SIGNATURE with ECDSA/SHA-256 and the scalars as given.
pub(crate) fn tpmt_ecdsa(r: &[u8], s: &[u8]) -> Vec<u8> {
    let mut out = TPM_ALG_ECDSA.to_be_bytes().to_vec();
    out.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    push_tpm2b(&mut out, r);
    push_tpm2b(&mut out, s);
    out
}

/// What a TPM2_Quote response carries after the signature: a session's auth area, which the
/// guest passes along and verifiers ignore.
pub(crate) const RESPONSE_AUTH_AREA: [u8; 5] = [0x00, 0x00, 0x01, 0x00, 0x00];

/// An attestation key, ECC P-256 or RSA-2048 as Google provisions them.
pub(crate) struct AkKey {
    pub(crate) key_pair: KeyPair,
}

impl AkKey {
    pub(crate) fn ecc() -> AkKey {
        AkKey {
            key_pair: KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
        }
    }

    pub(crate) fn rsa() -> AkKey {
        AkKey {
            key_pair: KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap(),
        }
    }

    pub(crate) fn is_rsa(&self) -> bool {
        self.key_pair.algorithm() == &PKCS_RSA_SHA256
    }

    /// The TPMT_SIGNATURE a TPM makes over `message` with this key (no trailing bytes).
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        let pkcs8 = self.key_pair.serialized_der();
        if self.is_rsa() {
            let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8).unwrap();
            let mut signature = vec![0; pair.public_modulus_len()];
            pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
                .unwrap();
            tpmt_rsassa(&signature)
        } else {
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).unwrap();
            let signature = pair.sign(&rng, message).unwrap();
            let (r, s) = signature.as_ref().split_at(32);
            tpmt_ecdsa(r, s)
        }
    }

    /// A self-signed certificate for the key alone, for tests that need only its SPKI.
    pub(crate) fn bare_certificate(&self) -> Vec<u8> {
        let params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.self_signed(&self.key_pair).unwrap().der().to_vec()
    }
}

// ---------------------------------------------------------------------------------------------
// The PKI

/// Names built as Google's are: PrintableString attributes, in this order.
fn name(attributes: &[(DnType, &str)]) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    for (kind, value) in attributes {
        name.push(
            kind.clone(),
            DnValue::PrintableString((*value).try_into().unwrap()),
        );
    }
    name
}

fn google_name(common_name: &str) -> DistinguishedName {
    name(&[
        (DnType::CountryName, "US"),
        (DnType::StateOrProvinceName, "California"),
        (DnType::LocalityName, "Mountain View"),
        (DnType::OrganizationName, "Google LLC"),
        (DnType::OrganizationalUnitName, "Google Cloud"),
        (DnType::CommonName, common_name),
    ])
}

fn ca_params(common_name: &str, serial: u64, not_before: i64, not_after: i64) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = google_name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(
        TCG_KP_EK_CERTIFICATE.to_vec(),
    )];
    params.not_before = at(not_before);
    params.not_after = at(not_after);
    params.serial_number = Some(SerialNumber::from(serial));
    params.key_identifier_method = KeyIdMethod::Sha256;
    params.use_authority_key_identifier_extension = true;
    params
}

/// DER length octets.
fn der_len(len: usize) -> Vec<u8> {
    match len {
        0..=0x7f => vec![len as u8],
        0x80..=0xff => vec![0x81, len as u8],
        _ => vec![0x82, (len >> 8) as u8, len as u8],
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(content.len()));
    out.extend_from_slice(content);
    out
}

/// A DER INTEGER of a non-negative value.
fn der_uint(value: u64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(7);
    let mut content = bytes[start..].to_vec();
    if content[0] & 0x80 != 0 {
        content.insert(0, 0);
    }
    der(0x02, &content)
}

/// authorityInfoAccess with one caIssuers URI.
fn aia(url: &str) -> CustomExtension {
    let mut access = CA_ISSUERS_OID_DER.to_vec();
    access.extend(der(0x86, url.as_bytes()));
    let content = der(0x30, &der(0x30, &access));
    CustomExtension::from_oid_content(&AIA_EXTENSION, content)
}

/// Where the AK lives, as its certificate names it.
#[derive(Clone, Debug)]
pub(crate) struct Instance {
    pub(crate) zone: String,
    pub(crate) project_id: String,
    pub(crate) project_number: u64,
    pub(crate) instance_id: u64,
    pub(crate) instance_name: String,
}

impl Default for Instance {
    fn default() -> Self {
        Instance {
            zone: "us-central1-a".into(),
            project_id: "dstack-kms".into(),
            project_number: 993_725_620_412,
            instance_id: 6_524_697_943_022_743_941,
            instance_name: "kms-0".into(),
        }
    }
}

impl Instance {
    /// Google's 1.3.6.1.4.1.11129.2.1.21 content: zone, project number and id, instance id and
    /// name, then the security properties (here: Secure Boot off, vTPM and integrity monitoring on).
    fn extension(&self) -> CustomExtension {
        let mut fields = der(0x0c, self.zone.as_bytes());
        fields.extend(der_uint(self.project_number));
        fields.extend(der(0x0c, self.project_id.as_bytes()));
        fields.extend(der_uint(self.instance_id));
        fields.extend(der(0x0c, self.instance_name.as_bytes()));
        let mut security = der(0xa0, &der_uint(0));
        security.extend(der(0xa1, &[0x01, 0x01, 0xff]));
        security.extend(der(0xa2, &[0x01, 0x01, 0xff]));
        security.extend(der(0xa3, &[0x01, 0x01, 0x00]));
        fields.extend(der(0xa0, &der(0x30, &security)));
        CustomExtension::from_oid_content(&GOOGLE_INSTANCE_EXTENSION, der(0x30, &fields))
    }
}

/// Google's root names its own key as the authority too.
fn root_params() -> CertificateParams {
    ca_params("EK/AK CA Root", 0xa65d, -4 * YEAR, 96 * YEAR)
}

fn intermediate_params(not_before: i64, not_after: i64) -> CertificateParams {
    let mut params = ca_params(
        "EK/AK CA Intermediate",
        INTERMEDIATE_SERIAL,
        not_before,
        not_after,
    );
    params.custom_extensions = vec![aia(&format!("{INTERMEDIATE_BASE_URL}/root/ca.crt"))];
    params.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![format!("{INTERMEDIATE_BASE_URL}/root/crl.crl")],
    }];
    params
}

/// Root and intermediate of a Google-shaped PKI, with their keys.
pub(crate) struct GooglePki {
    pub(crate) root_der: Vec<u8>,
    pub(crate) intermediate_der: Vec<u8>,
    root_params: CertificateParams,
    root_key: KeyPair,
    intermediate_params: CertificateParams,
    intermediate_key: KeyPair,
}

pub(crate) const INTERMEDIATE_SERIAL: u64 = 0x2a;
pub(crate) const INTERMEDIATE_BASE_URL: &str =
    "http://privateca-content-00000000-0000-0000-0000-000000000000.storage.googleapis.com/test";

impl GooglePki {
    /// Fresh RSA-4096 root and intermediate (a few seconds of key generation).
    pub(crate) fn generate() -> GooglePki {
        let root_key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_4096).unwrap();
        let root_params = root_params();
        let root_der = root_params.self_signed(&root_key).unwrap().der().to_vec();
        let intermediate_key =
            KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_4096).unwrap();
        let mut pki = GooglePki {
            root_der,
            intermediate_der: Vec::new(),
            root_params,
            root_key,
            intermediate_params: intermediate_params(-3 * YEAR, 90 * YEAR),
            intermediate_key,
        };
        pki.intermediate_der = pki.sign_intermediate(&pki.intermediate_params);
        pki
    }

    /// The intermediate again, same name, serial and key, valid from `not_before` to
    /// `not_after` (seconds relative to [`NOW`]): an expired one, say.
    pub(crate) fn intermediate_with_window(&self, not_before: i64, not_after: i64) -> Vec<u8> {
        self.sign_intermediate(&intermediate_params(not_before, not_after))
    }

    /// The intermediate again with another extended key usage (same name, serial and key).
    pub(crate) fn intermediate_with_eku(&self, eku: &[u64]) -> Vec<u8> {
        let mut params = intermediate_params(-3 * YEAR, 90 * YEAR);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(eku.to_vec())];
        self.sign_intermediate(&params)
    }

    fn sign_intermediate(&self, params: &CertificateParams) -> Vec<u8> {
        let root = Issuer::from_params(&self.root_params, &self.root_key);
        params
            .signed_by(&self.intermediate_key, &root)
            .unwrap()
            .der()
            .to_vec()
    }

    /// A root with Google's name but a key of its own: what a forged chain ends in.
    pub(crate) fn foreign_root() -> Vec<u8> {
        let key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_4096).unwrap();
        root_params().self_signed(&key).unwrap().der().to_vec()
    }

    /// The AK certificate of `ak` for `instance`, issued by the intermediate, valid for 30 years
    /// from a year before [`NOW`] (as Google's are).
    pub(crate) fn ak_certificate(&self, ak: &AkKey, instance: &Instance, serial: u64) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = name(&[
            (DnType::LocalityName, &instance.zone),
            (DnType::OrganizationName, "Google Compute Engine"),
            (DnType::OrganizationalUnitName, &instance.project_id),
            (DnType::CommonName, &instance.instance_id.to_string()),
        ]);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = at(-YEAR);
        params.not_after = at(29 * YEAR);
        params.serial_number = Some(SerialNumber::from(serial));
        params.key_identifier_method = KeyIdMethod::Sha256;
        params.use_authority_key_identifier_extension = true;
        params.custom_extensions = vec![
            aia(&format!("{INTERMEDIATE_BASE_URL}/intermediate/ca.crt")),
            instance.extension(),
        ];
        let issuer = Issuer::from_params(&self.intermediate_params, &self.intermediate_key);
        params
            .signed_by(&ak.key_pair, &issuer)
            .unwrap()
            .der()
            .to_vec()
    }

    /// The root's CRL over the intermediates (Google's last 7 days), revoking `revoked` serials.
    pub(crate) fn root_crl(&self, revoked: &[u64], this_update: i64, next_update: i64) -> Vec<u8> {
        crl(
            &Issuer::from_params(&self.root_params, &self.root_key),
            revoked,
            this_update,
            next_update,
        )
    }

    /// The intermediate's CRL over AK certificates.
    pub(crate) fn intermediate_crl(
        &self,
        revoked: &[u64],
        this_update: i64,
        next_update: i64,
    ) -> Vec<u8> {
        crl(
            &Issuer::from_params(&self.intermediate_params, &self.intermediate_key),
            revoked,
            this_update,
            next_update,
        )
    }
}

fn crl(
    issuer: &Issuer<'_, &KeyPair>,
    revoked: &[u64],
    this_update: i64,
    next_update: i64,
) -> Vec<u8> {
    let params = CertificateRevocationListParams {
        this_update: at(this_update),
        next_update: at(next_update),
        crl_number: SerialNumber::from(669u64),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|&serial| RevokedCertParams {
                serial_number: SerialNumber::from(serial),
                revocation_time: at(this_update),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    params.signed_by(issuer).unwrap().der().to_vec()
}

/// PEM of DER blocks with the given label (`CERTIFICATE`, `X509 CRL`).
pub(crate) fn pem(label: &str, blocks: &[&[u8]]) -> String {
    use base64::Engine as _;
    let mut out = String::new();
    for block in blocks {
        out.push_str(&format!("-----BEGIN {label}-----\n"));
        let text = base64::engine::general_purpose::STANDARD.encode(block);
        for line in text.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap());
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
    }
    out
}
