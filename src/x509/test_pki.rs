//! A test PKI issued with rcgen: certificates from specs, CRLs, and a walker pinned to its root.

use super::chain::VerifiedLeaf;
use super::{ChainPolicy, ChainVerifier, SignatureAlgorithm, X509Error};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber, PKCS_ECDSA_P384_SHA384,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

pub(super) const NOW: u64 = 1_750_000_000;
pub(super) const DAY: i64 = 86_400;

pub(super) fn at(offset: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW as i64 + offset).unwrap()
}

/// One certificate to issue: its name, role and window, and knobs for broken variants.
pub(super) struct Spec {
    pub(super) name: &'static str,
    pub(super) ca: IsCa,
    pub(super) usages: Vec<KeyUsagePurpose>,
    pub(super) not_before: i64,
    pub(super) not_after: i64,
    pub(super) serial: u64,
    pub(super) extra: Vec<CustomExtension>,
}

impl Spec {
    pub(super) fn ca(name: &'static str, path_len: Option<u8>) -> Self {
        Spec {
            name,
            ca: IsCa::Ca(path_len.map_or(
                BasicConstraints::Unconstrained,
                BasicConstraints::Constrained,
            )),
            usages: vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
            not_before: -10 * DAY,
            not_after: 10 * DAY,
            serial: 1,
            extra: vec![],
        }
    }

    pub(super) fn leaf(name: &'static str) -> Self {
        Spec {
            name,
            ca: IsCa::ExplicitNoCa,
            usages: vec![KeyUsagePurpose::DigitalSignature],
            not_before: -3600,
            not_after: 3600,
            serial: 7,
            extra: vec![],
        }
    }

    fn params(&self) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, self.name);
        params.distinguished_name = dn;
        params.is_ca = self.ca;
        params.key_usages = self.usages.clone();
        params.not_before = at(self.not_before);
        params.not_after = at(self.not_after);
        params.serial_number = Some(SerialNumber::from(self.serial));
        params.custom_extensions = self.extra.clone();
        params.key_identifier_method = KeyIdMethod::Sha256;
        params
    }
}

pub(super) struct Pki {
    pub(super) ders: Vec<Vec<u8>>,
    pub(super) keys: Vec<KeyPair>,
    pub(super) params: Vec<CertificateParams>,
}

impl Pki {
    /// Issues `specs` root first, each signed by the previous one.
    pub(super) fn issue(specs: &[Spec], alg: &'static rcgen::SignatureAlgorithm) -> Pki {
        let mut pki = Pki {
            ders: vec![],
            keys: vec![],
            params: vec![],
        };
        for (i, spec) in specs.iter().enumerate() {
            let key = KeyPair::generate_for(alg).unwrap();
            let mut params = spec.params();
            if !matches!(spec.ca, IsCa::ExplicitNoCa) {
                // Distinct serials per level: the root is 1, the next CA 2, and so on.
                params.serial_number = Some(SerialNumber::from(i as u64 + 1));
            }
            let der = if i == 0 {
                params.self_signed(&key).unwrap().der().to_vec()
            } else {
                let issuer = Issuer::from_params(&pki.params[i - 1], &pki.keys[i - 1]);
                params.signed_by(&key, &issuer).unwrap().der().to_vec()
            };
            pki.ders.push(der);
            pki.keys.push(key);
            pki.params.push(params);
        }
        pki
    }

    pub(super) fn standard() -> Pki {
        Pki::issue(
            &[
                Spec::ca("root", None),
                Spec::ca("intermediate", Some(0)),
                Spec::leaf("leaf"),
            ],
            &PKCS_ECDSA_P384_SHA384,
        )
    }

    /// Leaf first, root last, as the walker takes it.
    pub(super) fn chain(&self) -> Vec<&[u8]> {
        self.ders.iter().rev().map(Vec::as_slice).collect()
    }

    pub(super) fn verifier(&self) -> ChainVerifier {
        verifier_for(&self.ders[0], SignatureAlgorithm::EcdsaP384Sha384)
    }

    pub(super) fn crl(
        &self,
        issuer: usize,
        revoked: &[u64],
        this_update: i64,
        next_update: i64,
    ) -> Vec<u8> {
        let params = CertificateRevocationListParams {
            this_update: at(this_update),
            next_update: at(next_update),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|&serial| RevokedCertParams {
                    serial_number: SerialNumber::from(serial),
                    revocation_time: at(-DAY),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        // rcgen refuses issuers without cRLSign; the walker must catch those, so sign with
        // the same name and key regardless of what the issued certificate says.
        let mut signer = self.params[issuer].clone();
        signer.key_usages.push(KeyUsagePurpose::CrlSign);
        let issuer = Issuer::from_params(&signer, &self.keys[issuer]);
        params.signed_by(&issuer).unwrap().der().to_vec()
    }
}

pub(super) fn verifier_for(root: &[u8], algorithm: SignatureAlgorithm) -> ChainVerifier {
    ChainVerifier::new(ChainPolicy {
        algorithm,
        root_sha256: Sha256::digest(root).into(),
    })
}

pub(super) fn kind(result: Result<VerifiedLeaf, X509Error>) -> &'static str {
    result.map(|_| ()).unwrap_err().kind().as_str()
}
