//! Test PKI and document generator shaped like AWS Nitro's, with a knob for every negative case.
//!
//! PKI: P-384 root (no pathLen) → regional (pathLen 2) → zonal (pathLen 1) → instance (pathLen 0,
//! keyCertSign only) → 3-hour leaf (critical CA=false, non-critical digitalSignature), all
//! ecdsa-with-SHA384, times fixed around [`T0`]. basicConstraints and keyUsage are written as raw
//! extensions so criticality and contents are fully controllable ([`Extension`]).
//!
//! Documents: a hand-rolled CBOR encoder ([`Cbor`]) so payloads can carry what a strict decoder
//! must refuse (duplicate keys, indefinite maps, trailing bytes, wrong types), wrapped in a
//! COSE_Sign1 signed by the leaf key with aws-lc-rs, tagged or not, with high or low S.
//! Keys are fresh on every build; times, names and payload contents are deterministic.
#![allow(dead_code)] // each test crate and the fixtures example use a different part

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, EcdsaSigningAlgorithm, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, Issuer, KeyPair,
    PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
};
use tee_verifier::nitro::{Expectations, NitroError, NitroVerifier, VerifiedDocument};
use time::OffsetDateTime;

/// Signed timestamp (seconds) of every generated document.
pub(crate) const T0: u64 = 1_750_000_000;
/// A verification time inside every certificate's window and one minute after the document.
pub(crate) const NOW: u64 = T0 + 60;
pub(crate) const HOUR: u64 = 3600;
pub(crate) const DAY: u64 = 24 * HOUR;
/// The leaf's window, as AWS issues it: 3 s before the document to 3 h after.
pub(crate) const LEAF_NOT_BEFORE: u64 = T0 - 3;
pub(crate) const LEAF_NOT_AFTER: u64 = T0 + 3 * HOUR;

/// `{1: -35}`: the only protected header NSM emits.
pub(crate) const ES384_PROTECTED: [u8; 4] = [0xa1, 0x01, 0x38, 0x22];

/// keyUsage bits, as the first byte of the BIT STRING.
pub(crate) const DIGITAL_SIGNATURE: u8 = 0x80;
pub(crate) const KEY_CERT_SIGN: u8 = 0x04;
pub(crate) const CRL_SIGN: u8 = 0x02;

/// Order of the P-384 group, big-endian.
const P384_ORDER: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
    0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

// ------------------------------------------------------------------------------------------------
// PKI

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyAlg {
    P384,
    P256,
}

/// A raw X.509 extension.
#[derive(Clone, Debug)]
pub(crate) struct Extension {
    pub oid: Vec<u64>,
    pub critical: bool,
    pub value: Vec<u8>,
}

impl Extension {
    /// Critical basicConstraints.
    pub(crate) fn basic_constraints(ca: bool, path_len: Option<u8>) -> Self {
        let mut body = Vec::new();
        if ca {
            body.extend_from_slice(&[0x01, 0x01, 0xff]);
        }
        if let Some(path_len) = path_len {
            assert!(path_len < 0x80);
            body.extend_from_slice(&[0x02, 0x01, path_len]);
        }
        let mut value = vec![0x30, body.len() as u8];
        value.extend_from_slice(&body);
        Extension {
            oid: vec![2, 5, 29, 19],
            critical: true,
            value,
        }
    }

    /// keyUsage with the given first-byte bits (see [`DIGITAL_SIGNATURE`] etc.).
    pub(crate) fn key_usage(bits: u8, critical: bool) -> Self {
        let value = if bits == 0 {
            vec![0x03, 0x01, 0x00]
        } else {
            vec![0x03, 0x02, bits.trailing_zeros() as u8, bits]
        };
        Extension {
            oid: vec![2, 5, 29, 15],
            critical,
            value,
        }
    }

    /// An extension nobody knows (a private OID holding NULL).
    pub(crate) fn unknown(critical: bool) -> Self {
        Extension {
            oid: vec![1, 3, 6, 1, 4, 1, 99999, 7],
            critical,
            value: vec![0x05, 0x00],
        }
    }

    fn to_rcgen(&self) -> CustomExtension {
        let mut ext = CustomExtension::from_oid_content(&self.oid, self.value.clone());
        ext.set_criticality(self.critical);
        ext
    }
}

/// One certificate of the test PKI.
#[derive(Clone, Debug)]
pub(crate) struct CertSpec {
    pub common_name: String,
    pub not_before: u64,
    pub not_after: u64,
    pub key: KeyAlg,
    pub extensions: Vec<Extension>,
}

impl CertSpec {
    fn ca(
        common_name: &str,
        not_before: u64,
        not_after: u64,
        path_len: Option<u8>,
        usage: u8,
    ) -> Self {
        CertSpec {
            common_name: common_name.to_owned(),
            not_before,
            not_after,
            key: KeyAlg::P384,
            extensions: vec![
                Extension::basic_constraints(true, path_len),
                Extension::key_usage(usage, true),
            ],
        }
    }
}

/// The certificates to issue: CAs root first, then the leaf.
#[derive(Clone, Debug)]
pub(crate) struct PkiSpec {
    pub cas: Vec<CertSpec>,
    pub leaf: CertSpec,
}

/// Index of each level in [`PkiSpec::level_mut`] for the AWS shape.
pub(crate) const ROOT: usize = 0;
pub(crate) const REGIONAL: usize = 1;
pub(crate) const ZONAL: usize = 2;
pub(crate) const INSTANCE: usize = 3;
pub(crate) const LEAF: usize = 4;
pub(crate) const LEVEL_NAMES: [&str; 5] = ["root", "regional", "zonal", "instance", "leaf"];

impl PkiSpec {
    /// AWS's chain shape and lifetimes around [`T0`].
    pub(crate) fn aws_like() -> Self {
        let all = DIGITAL_SIGNATURE | KEY_CERT_SIGN | CRL_SIGN;
        PkiSpec {
            cas: vec![
                CertSpec::ca(
                    "aws.nitro-enclaves",
                    T0 - 5 * 365 * DAY,
                    T0 + 25 * 365 * DAY,
                    None,
                    all,
                ),
                CertSpec::ca(
                    "0123456789abcdef.us-east-1.aws.nitro-enclaves",
                    T0 - 10 * DAY,
                    T0 + 10 * DAY,
                    Some(2),
                    all,
                ),
                CertSpec::ca(
                    "fedcba9876543210.zonal.us-east-1.aws.nitro-enclaves",
                    T0 - 3 * DAY,
                    T0 + 3 * DAY,
                    Some(1),
                    all,
                ),
                CertSpec::ca(
                    "i-0123456789abcdef0.us-east-1.aws.nitro-enclaves",
                    T0 - 12 * HOUR,
                    T0 + 12 * HOUR,
                    Some(0),
                    KEY_CERT_SIGN,
                ),
            ],
            leaf: CertSpec {
                common_name: "i-0123456789abcdef0-enc0123456789abcdef.us-east-1.aws".to_owned(),
                not_before: LEAF_NOT_BEFORE,
                not_after: LEAF_NOT_AFTER,
                key: KeyAlg::P384,
                extensions: vec![
                    Extension::basic_constraints(false, None),
                    Extension::key_usage(DIGITAL_SIGNATURE, false),
                ],
            },
        }
    }

    /// Level `index` counted from the root (the leaf is last): see [`ROOT`] … [`LEAF`].
    pub(crate) fn level_mut(&mut self, index: usize) -> &mut CertSpec {
        if index == self.cas.len() {
            &mut self.leaf
        } else {
            &mut self.cas[index]
        }
    }

    pub(crate) fn build(&self) -> TestPki {
        let mut issuers: Vec<(CertificateParams, KeyPair)> = Vec::new();
        let mut cas = Vec::new();
        for spec in &self.cas {
            let (params, key) = (params_for(spec), key_for(spec.key));
            let der = match issuers.last() {
                None => params.self_signed(&key),
                Some((parent, parent_key)) => {
                    params.signed_by(&key, &Issuer::from_params(parent, parent_key))
                }
            }
            .expect("issue CA certificate")
            .der()
            .to_vec();
            cas.push(der);
            issuers.push((params, key));
        }
        let (parent, parent_key) = issuers.last().expect("at least a root");
        let leaf_key = key_for(self.leaf.key);
        let leaf = params_for(&self.leaf)
            .signed_by(&leaf_key, &Issuer::from_params(parent, parent_key))
            .expect("issue leaf certificate")
            .der()
            .to_vec();
        TestPki {
            cas,
            leaf,
            leaf_key: leaf_key.serialize_der(),
            leaf_alg: self.leaf.key,
        }
    }
}

fn key_for(alg: KeyAlg) -> KeyPair {
    KeyPair::generate_for(match alg {
        KeyAlg::P384 => &PKCS_ECDSA_P384_SHA384,
        KeyAlg::P256 => &PKCS_ECDSA_P256_SHA256,
    })
    .expect("generate key")
}

fn at(unix_seconds: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix_seconds as i64).expect("representable time")
}

fn params_for(spec: &CertSpec) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.not_before = at(spec.not_before);
    params.not_after = at(spec.not_after);
    let mut name = DistinguishedName::new();
    name.push(DnType::CountryName, "US");
    name.push(DnType::OrganizationName, "Amazon");
    name.push(DnType::OrganizationalUnitName, "AWS");
    name.push(DnType::CommonName, spec.common_name.as_str());
    params.distinguished_name = name;
    params.custom_extensions = spec.extensions.iter().map(Extension::to_rcgen).collect();
    params
}

/// An issued test PKI.
pub(crate) struct TestPki {
    /// DER CA certificates, root first (the order of `cabundle`).
    pub cas: Vec<Vec<u8>>,
    pub leaf: Vec<u8>,
    /// PKCS#8 of the leaf key.
    leaf_key: Vec<u8>,
    leaf_alg: KeyAlg,
}

impl TestPki {
    pub(crate) fn aws_like() -> Self {
        PkiSpec::aws_like().build()
    }

    pub(crate) fn root(&self) -> &[u8] {
        &self.cas[0]
    }

    pub(crate) fn verifier(&self) -> NitroVerifier {
        NitroVerifier::with_root_der(self.root())
    }

    /// Raw r‖s signature by the leaf key.
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        let alg: &'static EcdsaSigningAlgorithm = match self.leaf_alg {
            KeyAlg::P384 => &ECDSA_P384_SHA384_FIXED_SIGNING,
            KeyAlg::P256 => &ECDSA_P256_SHA256_FIXED_SIGNING,
        };
        let key = EcdsaKeyPair::from_pkcs8(alg, &self.leaf_key).expect("leaf key");
        key.sign(&SystemRandom::new(), message)
            .expect("sign")
            .as_ref()
            .to_vec()
    }
}

// ------------------------------------------------------------------------------------------------
// CBOR

/// A CBOR item, encoded with shortest heads. `Raw` splices bytes in as they are.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cbor {
    Uint(u64),
    /// The integer `-1 - n`.
    Negative(u64),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Cbor>),
    IndefiniteArray(Vec<Cbor>),
    Map(Vec<(Cbor, Cbor)>),
    IndefiniteMap(Vec<(Cbor, Cbor)>),
    Tag(u64, Box<Cbor>),
    Null,
    Raw(Vec<u8>),
}

impl Cbor {
    pub(crate) fn text(text: &str) -> Self {
        Cbor::Text(text.to_owned())
    }

    pub(crate) fn bytes(bytes: &[u8]) -> Self {
        Cbor::Bytes(bytes.to_vec())
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Cbor::Uint(n) => head(out, 0, *n),
            Cbor::Negative(n) => head(out, 1, *n),
            Cbor::Bytes(bytes) => {
                head(out, 2, bytes.len() as u64);
                out.extend_from_slice(bytes);
            }
            Cbor::Text(text) => {
                head(out, 3, text.len() as u64);
                out.extend_from_slice(text.as_bytes());
            }
            Cbor::Array(items) => {
                head(out, 4, items.len() as u64);
                items.iter().for_each(|item| item.write(out));
            }
            Cbor::IndefiniteArray(items) => {
                out.push(0x9f);
                items.iter().for_each(|item| item.write(out));
                out.push(0xff);
            }
            Cbor::Map(entries) => {
                head(out, 5, entries.len() as u64);
                write_entries(entries, out);
            }
            Cbor::IndefiniteMap(entries) => {
                out.push(0xbf);
                write_entries(entries, out);
                out.push(0xff);
            }
            Cbor::Tag(tag, item) => {
                head(out, 6, *tag);
                item.write(out);
            }
            Cbor::Null => out.push(0xf6),
            Cbor::Raw(bytes) => out.extend_from_slice(bytes),
        }
    }
}

fn write_entries(entries: &[(Cbor, Cbor)], out: &mut Vec<u8>) {
    for (key, value) in entries {
        key.write(out);
        value.write(out);
    }
}

fn head(out: &mut Vec<u8>, major: u8, argument: u64) {
    let major = major << 5;
    match argument {
        0..=23 => out.push(major | argument as u8),
        24..=0xff => out.extend_from_slice(&[major | 24, argument as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(argument as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend_from_slice(&(argument as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&argument.to_be_bytes());
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Documents

/// PCR `index` of a generated document: distinct non-zero bytes for 0..=2 (and 8), zero for the
/// rest, like a real production enclave.
pub(crate) fn pcr_value(index: u64) -> Vec<u8> {
    match index {
        0..=2 | 8 => vec![0x10 + index as u8; 48],
        _ => vec![0; 48],
    }
}

/// A `pcrs` map with the given entries.
pub(crate) fn pcrs(entries: &[(u64, Vec<u8>)]) -> Cbor {
    Cbor::Map(
        entries
            .iter()
            .map(|(index, value)| (Cbor::Uint(*index), Cbor::Bytes(value.clone())))
            .collect(),
    )
}

/// The 16 PCRs NSM reports.
pub(crate) fn default_pcrs() -> Vec<(u64, Vec<u8>)> {
    (0..16).map(|index| (index, pcr_value(index))).collect()
}

/// The payload map, entry by entry (so duplicates and odd keys can be expressed).
#[derive(Clone, Debug)]
pub(crate) struct Payload {
    pub entries: Vec<(Cbor, Cbor)>,
    /// Encode the top-level map with indefinite length (0xbf … 0xff).
    pub indefinite: bool,
    /// Bytes appended after the map.
    pub trailing: Vec<u8>,
}

pub(crate) const MODULE_ID: &str = "i-0123456789abcdef0-enc0123456789abcdef";
pub(crate) const TIMESTAMP_MS: u64 = T0 * 1000 + 123;

impl Payload {
    /// All nine keys in NSM's order, unused optionals as null (as real NSM output).
    pub(crate) fn for_pki(pki: &TestPki) -> Self {
        let entries = vec![
            (Cbor::text("module_id"), Cbor::text(MODULE_ID)),
            (Cbor::text("digest"), Cbor::text("SHA384")),
            (Cbor::text("timestamp"), Cbor::Uint(TIMESTAMP_MS)),
            (Cbor::text("pcrs"), pcrs(&default_pcrs())),
            (Cbor::text("certificate"), Cbor::bytes(&pki.leaf)),
            (
                Cbor::text("cabundle"),
                Cbor::Array(pki.cas.iter().map(|der| Cbor::bytes(der)).collect()),
            ),
            (Cbor::text("public_key"), Cbor::Null),
            (Cbor::text("user_data"), Cbor::Null),
            (Cbor::text("nonce"), Cbor::Null),
        ];
        Payload {
            entries,
            indefinite: false,
            trailing: Vec::new(),
        }
    }

    /// Replaces the value of `key` (appends the entry if absent).
    pub(crate) fn set(&mut self, key: &str, value: Cbor) -> &mut Self {
        match self.entries.iter_mut().find(|(k, _)| *k == Cbor::text(key)) {
            Some((_, slot)) => *slot = value,
            None => self.entries.push((Cbor::text(key), value)),
        }
        self
    }

    pub(crate) fn remove(&mut self, key: &str) -> &mut Self {
        self.entries.retain(|(k, _)| *k != Cbor::text(key));
        self
    }

    /// Appends an entry as is (duplicates and non-text keys included).
    pub(crate) fn push(&mut self, key: Cbor, value: Cbor) -> &mut Self {
        self.entries.push((key, value));
        self
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let map = if self.indefinite {
            Cbor::IndefiniteMap(self.entries.clone())
        } else {
            Cbor::Map(self.entries.clone())
        };
        let mut out = map.encode();
        out.extend_from_slice(&self.trailing);
        out
    }
}

/// Which of the two valid S values the COSE signature carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SValue {
    AsSigned,
    /// s > n/2 (as about half of real documents).
    High,
    Low,
}

/// A COSE_Sign1 document to encode and sign.
#[derive(Clone, Debug)]
pub(crate) struct Document {
    pub payload: Payload,
    /// Content of the protected-header bstr.
    pub protected: Vec<u8>,
    pub unprotected: Cbor,
    /// Wrap in tag 18.
    pub tagged: bool,
    /// Put null where the payload bstr goes (detached payload); the signature still covers it.
    pub detached: bool,
    pub s_value: SValue,
}

impl Document {
    pub(crate) fn new(pki: &TestPki) -> Self {
        Document {
            payload: Payload::for_pki(pki),
            protected: ES384_PROTECTED.to_vec(),
            unprotected: Cbor::Map(Vec::new()),
            tagged: false,
            detached: false,
            s_value: SValue::AsSigned,
        }
    }

    /// Encodes and signs with the leaf key of `pki`.
    pub(crate) fn sign(&self, pki: &TestPki) -> Vec<u8> {
        let payload = self.payload.encode();
        let to_be_signed = Cbor::Array(vec![
            Cbor::text("Signature1"),
            Cbor::bytes(&self.protected),
            Cbor::Bytes(Vec::new()),
            Cbor::bytes(&payload),
        ])
        .encode();
        let signature = with_s_value(pki.sign(&to_be_signed), self.s_value);
        let envelope = Cbor::Array(vec![
            Cbor::bytes(&self.protected),
            self.unprotected.clone(),
            if self.detached {
                Cbor::Null
            } else {
                Cbor::Bytes(payload)
            },
            Cbor::Bytes(signature),
        ]);
        if self.tagged {
            Cbor::Tag(18, Box::new(envelope)).encode()
        } else {
            envelope.encode()
        }
    }
}

/// Replaces s by n − s when needed to get the requested S half (P-384 signatures only).
fn with_s_value(signature: Vec<u8>, wanted: SValue) -> Vec<u8> {
    if wanted == SValue::AsSigned {
        return signature;
    }
    let (r, s) = signature.split_at(48);
    let negated = negate_s(s);
    let is_high = s > negated.as_slice();
    if (wanted == SValue::High) == is_high {
        return signature;
    }
    [r, &negated].concat()
}

/// n − s over big-endian 48-byte integers.
pub(crate) fn negate_s(s: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 48];
    let mut borrow = 0i16;
    for i in (0..48).rev() {
        let mut digit = i16::from(P384_ORDER[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(digit < 0);
        digit += 256 * borrow;
        out[i] = digit as u8;
    }
    out
}

/// Whether the S half of a raw P-384 r‖s signature is above n/2.
pub(crate) fn is_high_s(signature: &[u8]) -> bool {
    let s = &signature[48..96];
    s > negate_s(s).as_slice()
}

// ------------------------------------------------------------------------------------------------
// Fixture = PKI + document

pub(crate) struct Fixture {
    pub pki: TestPki,
    pub doc: Document,
}

impl Fixture {
    /// The AWS-shaped PKI and a production-like document.
    pub(crate) fn aws_like() -> Self {
        Fixture::with_pki(&PkiSpec::aws_like())
    }

    pub(crate) fn with_pki(spec: &PkiSpec) -> Self {
        let pki = spec.build();
        let doc = Document::new(&pki);
        Fixture { pki, doc }
    }

    pub(crate) fn bytes(&self) -> Vec<u8> {
        self.doc.sign(&self.pki)
    }

    /// Verifies the signed document with a fresh verifier pinned to this PKI's root.
    pub(crate) fn verify(
        &self,
        now: u64,
        expect: &Expectations,
    ) -> Result<VerifiedDocument, NitroError> {
        self.pki.verifier().verify(&self.bytes(), now, expect)
    }

    /// The error kind of verifying at [`NOW`] with default expectations (panics if it verifies).
    pub(crate) fn rejection(&self) -> &'static str {
        rejection(self.verify(NOW, &Expectations::default()))
    }
}

/// The error kind of a verification that must fail.
pub(crate) fn rejection(result: Result<VerifiedDocument, NitroError>) -> &'static str {
    match result {
        Ok(verified) => panic!(
            "expected a rejection, got a verified document: {:?}",
            verified.document.module_id
        ),
        Err(error) => error.kind().as_str(),
    }
}
