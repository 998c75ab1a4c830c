//! CRLs: a CRL verified against its issuer's chain at `now`, and revocation of a certificate by
//! the verified CRLs of its issuer.

use super::chain::{chain_window, Role};
use super::facts::{normalized_serial, CertFacts};
use super::revocation_list::read_crl;
use super::rsa::verify_signed_by;
use super::{ChainVerifier, X509Error, MAX_CRL_LEN};
use std::ops::Range;
use x509_parser::oid_registry::Oid;

/// A CRL whose signature, issuer and window were verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VerifiedCrl {
    issuer: Vec<u8>,
    issuer_name: String,
    revoked: RevokedSerials,
    pub this_update: u64,
    pub next_update: u64,
    /// When the issuer's chain is valid (latest notBefore, earliest notAfter).
    pub issuer_chain_not_before: u64,
    pub issuer_chain_not_after: u64,
}

impl VerifiedCrl {
    /// Whether this CRL was issued by the CA named `issuer` (raw DER name).
    pub(crate) fn issued_by(&self, issuer: &[u8]) -> bool {
        self.issuer == issuer
    }

    pub(super) fn check_window(&self, now: u64) -> Result<(), X509Error> {
        if now < self.this_update {
            return Err(X509Error::CrlNotYetValid {
                issuer: self.issuer_name.clone(),
                this_update: self.this_update,
                now,
            });
        }
        if now > self.next_update {
            return Err(X509Error::CrlExpired {
                issuer: self.issuer_name.clone(),
                next_update: self.next_update,
                now,
            });
        }
        Ok(())
    }
}

/// A CRL's revoked serials without DER's sign-padding zeros, back to back in one buffer and
/// searched in order: one allocation for the whole list, where Intel's PCK CRLs list dozens.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RevokedSerials {
    bytes: Vec<u8>,
    /// Where each serial lies in `bytes`, sorted by the serial's bytes.
    spans: Vec<Range<usize>>,
}

impl RevokedSerials {
    fn new(serials: &[&[u8]]) -> Self {
        let mut bytes = Vec::with_capacity(serials.iter().map(|serial| serial.len()).sum());
        let mut spans = Vec::with_capacity(serials.len());
        for serial in serials {
            let serial = normalized_serial(serial);
            spans.push(bytes.len()..bytes.len() + serial.len());
            bytes.extend_from_slice(serial);
        }
        spans.sort_unstable_by(|a, b| bytes[a.clone()].cmp(&bytes[b.clone()]));
        RevokedSerials { bytes, spans }
    }

    /// Whether `serial` (already without sign padding) is listed.
    fn contains(&self, serial: &[u8]) -> bool {
        self.spans
            .binary_search_by(|span| self.bytes[span.clone()].cmp(serial))
            .is_ok()
    }
}

impl ChainVerifier {
    /// Verifies a DER CRL issued by `issuer_chain[0]` (a CA with cRLSign, chaining to the pinned
    /// root through the rest of `issuer_chain`), its signature, and its window at `now`.
    pub(crate) fn verify_crl(
        &self,
        crl_der: &[u8],
        issuer_chain: &[&[u8]],
        now: u64,
    ) -> Result<VerifiedCrl, X509Error> {
        let facts = self.walk(issuer_chain, now, &[], Role::CrlIssuer)?;
        let issuer = facts.first().ok_or(X509Error::ChainLength)?;
        if crl_der.len() > MAX_CRL_LEN {
            return Err(X509Error::CrlInvalid("larger than allowed".into()));
        }
        // Canonical DER first: the reader below relies on it and reads, not judges, encodings.
        super::der::check_signed_object(crl_der).map_err(X509Error::CrlNotDer)?;
        let crl = read_crl(crl_der).map_err(X509Error::CrlInvalid)?;
        let expected = self.policy.algorithm.signature_oid();
        if crl.algorithm != expected.as_bytes() {
            return Err(X509Error::CrlInvalid(format!(
                "signature algorithm {} is not {expected}",
                Oid::new(crl.algorithm.into())
            )));
        }
        if crl.issuer != issuer.subject.as_slice() {
            return Err(X509Error::CrlInvalid(format!(
                "issuer is not {}",
                issuer.label
            )));
        }
        // A critical issuingDistributionPoint would scope the CRL (partial or indirect): we only
        // accept complete CRLs, so every critical extension, list-level or per entry, is refused.
        if let Some(oid) = crl.critical_extension {
            return Err(X509Error::CrlInvalid(format!(
                "critical extension {} is not supported",
                Oid::new(oid.into())
            )));
        }
        verify_signed_by(
            self.policy.algorithm,
            issuer,
            crl.signed,
            crl.signature,
            || X509Error::CrlInvalid(format!("signature by {} does not verify", issuer.label)),
        )?;
        let next_update = crl
            .next_update
            .ok_or_else(|| X509Error::CrlInvalid("no nextUpdate".into()))?;
        let (issuer_chain_not_before, issuer_chain_not_after) = chain_window(&facts);
        let verified = VerifiedCrl {
            issuer: issuer.subject.clone(),
            issuer_name: issuer.label.clone(),
            revoked: RevokedSerials::new(&crl.revoked_serials),
            this_update: crl.this_update,
            next_update,
            issuer_chain_not_before,
            issuer_chain_not_after,
        };
        verified.check_window(now)?;
        // A CA listing itself in its own CRL (Intel's root CA CRL may list the root) is revoked.
        check_revocation(issuer, &[&verified])?;
        Ok(verified)
    }
}

pub(super) fn check_revocation(cert: &CertFacts, crls: &[&VerifiedCrl]) -> Result<(), X509Error> {
    let revoked = crls
        .iter()
        .any(|crl| crl.issuer == cert.issuer && crl.revoked.contains(&cert.serial));
    if revoked {
        return Err(X509Error::Revoked {
            subject: cert.label.clone(),
            serial: crate::encoding::hex(&cert.serial),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::x509::test_pki::{at, kind, Pki, Spec, DAY, NOW};
    use rcgen::{
        CertificateRevocationListParams, Issuer, KeyIdMethod, KeyUsagePurpose, SerialNumber,
        PKCS_ECDSA_P384_SHA384,
    };

    #[test]
    fn crls_revoke_and_must_be_current_and_genuine() {
        let pki = Pki::standard();
        let verifier = pki.verifier();
        let issuer_chain = [pki.ders[1].as_slice(), pki.ders[0].as_slice()];
        let revoking = verifier
            .verify_crl(&pki.crl(1, &[7], -DAY, DAY), &issuer_chain, NOW)
            .unwrap();
        assert_eq!(
            kind(verifier.verify(&pki.chain(), NOW, &[&revoking])),
            "revoked"
        );

        let clean = verifier
            .verify_crl(&pki.crl(1, &[8], -DAY, DAY), &issuer_chain, NOW)
            .unwrap();
        verifier.verify(&pki.chain(), NOW, &[&clean]).unwrap();
        // A verified CRL is re-checked against the time of each use.
        assert_eq!(
            kind(verifier.verify(&pki.chain(), NOW + 2 * DAY as u64, &[&clean])),
            "collateral_expired"
        );

        assert_eq!(
            (clean.issuer_chain_not_before, clean.issuer_chain_not_after),
            (NOW - 10 * DAY as u64, NOW + 10 * DAY as u64)
        );
        // A CA listed in its own CRL is revoked.
        let root_only = [pki.ders[0].as_slice()];
        let err = verifier
            .verify_crl(&pki.crl(0, &[1], -DAY, DAY), &root_only, NOW)
            .unwrap_err();
        assert_eq!(err.kind().as_str(), "revoked");
        // The root's CRL revokes the intermediate.
        let root_crl = verifier
            .verify_crl(&pki.crl(0, &[2], -DAY, DAY), &root_only, NOW)
            .unwrap();
        assert_eq!(
            kind(verifier.verify(&pki.chain(), NOW, &[&root_crl])),
            "revoked"
        );

        let crl_err = |der: Vec<u8>, chain: &[&[u8]]| {
            verifier
                .verify_crl(&der, chain, NOW)
                .unwrap_err()
                .kind()
                .as_str()
        };
        assert_eq!(
            crl_err(pki.crl(1, &[], -DAY, -1), &issuer_chain),
            "collateral_expired"
        );
        assert_eq!(
            crl_err(pki.crl(1, &[], 1, DAY), &issuer_chain),
            "collateral_not_yet_valid"
        );
        // Signed by the intermediate but presented as the root's.
        assert_eq!(
            crl_err(pki.crl(1, &[], -DAY, DAY), &[pki.ders[0].as_slice()]),
            "collateral_invalid"
        );
        let mut tampered = pki.crl(1, &[], -DAY, DAY);
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(crl_err(tampered, &issuer_chain), "collateral_invalid");
        // Not DER at all is malformed; canonical DER that is not a CRL (a certificate) is not a
        // valid CRL.
        assert_eq!(crl_err(b"junk".to_vec(), &issuer_chain), "malformed");
        assert_eq!(
            crl_err(pki.ders[2].clone(), &issuer_chain),
            "collateral_invalid"
        );
    }

    #[test]
    fn crl_issuer_needs_crl_sign() {
        let mut mid = Spec::ca("intermediate", Some(0));
        mid.usages = vec![KeyUsagePurpose::KeyCertSign];
        let pki = Pki::issue(
            &[Spec::ca("root", None), mid, Spec::leaf("leaf")],
            &PKCS_ECDSA_P384_SHA384,
        );
        let err = pki
            .verifier()
            .verify_crl(
                &pki.crl(1, &[], -DAY, DAY),
                &[pki.ders[1].as_slice(), pki.ders[0].as_slice()],
                NOW,
            )
            .unwrap_err();
        assert_eq!(err.kind().as_str(), "certificate_invalid");
    }

    #[test]
    fn crls_with_critical_extensions_are_refused() {
        let pki = Pki::standard();
        let issuer_chain = [pki.ders[1].as_slice(), pki.ders[0].as_slice()];
        let params = CertificateRevocationListParams {
            this_update: at(-DAY),
            next_update: at(DAY),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: Some(rcgen::CrlIssuingDistributionPoint {
                distribution_point: rcgen::CrlDistributionPoint {
                    uris: vec!["http://crl.example/ca.crl".into()],
                },
                scope: Some(rcgen::CrlScope::UserCertsOnly),
            }),
            revoked_certs: vec![],
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let mut signer = pki.params[1].clone();
        signer.key_usages.push(KeyUsagePurpose::CrlSign);
        let der = params
            .signed_by(&Issuer::from_params(&signer, &pki.keys[1]))
            .unwrap()
            .der()
            .to_vec();
        let err = pki
            .verifier()
            .verify_crl(&der, &issuer_chain, NOW)
            .unwrap_err();
        assert_eq!(err.kind().as_str(), "collateral_invalid", "{err}");
    }
}
