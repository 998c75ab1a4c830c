//! The chain walk: from the pinned root down to the leaf, every link's names, signature, window,
//! CA constraints and revocation, at `now`, on every call.

use super::chain_cache::{ChainCacheCounts, ChainCaches, DerHash};
use super::crl::{check_revocation, VerifiedCrl};
use super::facts::CertFacts;
use super::rsa::{check_eku, verify_signed_by};
use super::{ChainPolicy, X509Error, MAX_CHAIN_LEN};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use x509_parser::oid_registry::Oid;

/// The end-entity certificate of a verified chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VerifiedLeaf {
    /// Uncompressed SEC1 point on the policy's curve (an RSA PKI's leaf: its SPKI's
    /// subjectPublicKey bits, a PKCS#1 RSAPublicKey or a P-256 point).
    pub public_key: Vec<u8>,
    pub not_before: u64,
    pub not_after: u64,
    /// Latest notBefore and earliest notAfter over the whole chain: when this verification holds.
    pub chain_not_before: u64,
    pub chain_not_after: u64,
}

/// What the top of the walked chain is used for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Signs data (a COSE document, a quote, a collateral JSON).
    EndEntity,
    /// A CA that signs a CRL.
    CrlIssuer,
}

/// Verifies chains for one pinned policy. Cloning shares the caches and their counters.
#[derive(Clone)]
pub(crate) struct ChainVerifier {
    pub(super) policy: ChainPolicy,
    pub(super) caches: ChainCaches,
    /// The extendedKeyUsage purpose a certificate must list when it has the extension.
    pub(super) required_eku: Option<Oid<'static>>,
    /// The pinned root's DER, when known: those bytes are recognised without hashing them.
    pinned_der: Option<Arc<[u8]>>,
}

impl ChainVerifier {
    pub(crate) fn new(policy: ChainPolicy) -> Self {
        ChainVerifier {
            policy,
            caches: ChainCaches::new(),
            required_eku: None,
            pinned_der: None,
        }
    }

    /// This walker, knowing the pinned root's DER too, so that every chain ending in it (each
    /// TDX verification walks it five times) compares it rather than hashes it. Bytes that do
    /// not hash to the pin are not kept, and a chain ending in them stays untrusted.
    pub(crate) fn with_root_der(mut self, root_der: Arc<[u8]>) -> Self {
        let pinned = <[u8; 32]>::from(Sha256::digest(&root_der)) == self.policy.root_sha256;
        self.pinned_der = pinned.then_some(root_der);
        self
    }

    /// SHA-256 of a certificate's DER, the identity both caches key on: the pin itself for the
    /// pinned root's own bytes.
    pub(crate) fn der_hash(&self, der: &[u8]) -> DerHash {
        match &self.pinned_der {
            Some(root) if **root == *der => self.policy.root_sha256,
            _ => Sha256::digest(der).into(),
        }
    }

    /// This walker, also requiring `purpose` of every certificate below the root that has an
    /// extendedKeyUsage (webpki's `required_if_present`, as dstack checks Google's AK chains).
    pub(crate) fn requiring_eku_if_present(mut self, purpose: Oid<'static>) -> Self {
        self.required_eku = Some(purpose);
        self
    }

    pub(crate) fn policy(&self) -> &ChainPolicy {
        &self.policy
    }

    /// Hits and misses of the certificate and link caches since this walker (or the one it was
    /// cloned from) was created.
    pub(crate) fn cache_counts(&self) -> ChainCacheCounts {
        self.caches.counts()
    }

    /// Verifies `chain` (leaf first, pinned root last) at `now` for an end-entity leaf that signs
    /// data, checking every non-root certificate against the `crls` issued by its issuer.
    pub(crate) fn verify(
        &self,
        chain: &[&[u8]],
        now: u64,
        crls: &[&VerifiedCrl],
    ) -> Result<VerifiedLeaf, X509Error> {
        let facts = self.walk(chain, now, crls, Role::EndEntity)?;
        let leaf = facts.first().ok_or(X509Error::ChainLength)?;
        let (chain_not_before, chain_not_after) = chain_window(&facts);
        Ok(VerifiedLeaf {
            public_key: leaf.public_key.clone(),
            not_before: leaf.not_before,
            not_after: leaf.not_after,
            chain_not_before,
            chain_not_after,
        })
    }

    /// Walks `chain` from the pinned root down to `chain[0]`; returns the facts leaf first.
    pub(super) fn walk(
        &self,
        chain: &[&[u8]],
        now: u64,
        crls: &[&VerifiedCrl],
        role: Role,
    ) -> Result<Vec<Arc<CertFacts>>, X509Error> {
        if chain.is_empty() || chain.len() > MAX_CHAIN_LEN {
            return Err(X509Error::ChainLength);
        }
        for crl in crls {
            crl.check_window(now)?;
        }
        let hashes: Vec<DerHash> = chain.iter().map(|der| self.der_hash(der)).collect();
        let root_index = chain.len() - 1;
        if hashes[root_index] != self.policy.root_sha256 {
            return Err(X509Error::UntrustedRoot {
                found: crate::encoding::hex(hashes[root_index]),
            });
        }
        let facts = chain
            .iter()
            .zip(&hashes)
            .enumerate()
            .map(|(index, (der, hash))| {
                self.caches
                    .facts(index, der, hash, now, self.policy.algorithm)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.check_chain(&facts, &hashes, now, crls, role)?;
        Ok(self.caches.remember_verified(facts, &hashes))
    }

    /// The checks of [`Self::walk`] on parsed certificates, root first.
    fn check_chain(
        &self,
        facts: &[(Arc<CertFacts>, bool)],
        hashes: &[DerHash],
        now: u64,
        crls: &[&VerifiedCrl],
        role: Role,
    ) -> Result<(), X509Error> {
        let facts: Vec<&CertFacts> = facts.iter().map(|(facts, _)| facts.as_ref()).collect();
        let root_index = facts.len() - 1;

        // Root: pinned, so its self-signature proves nothing; its window and CA role still count.
        let root = &facts[root_index];
        check_window(root, now)?;
        let mut ca_budget = if facts.len() == 1 {
            // A lone pinned root is only meaningful as a CRL issuer.
            check_role(root, role)?;
            None
        } else {
            check_ca(root)?;
            root.basic_constraints.and_then(|bc| bc.path_len)
        };

        for index in (0..root_index).rev() {
            let (child, parent) = (&facts[index], &facts[index + 1]);
            if child.issuer != parent.subject {
                return Err(X509Error::NameMismatch {
                    subject: child.label.clone(),
                });
            }
            self.caches
                .verified_link(&hashes[index], &hashes[index + 1], now, || {
                    verify_signed_by(
                        self.policy.algorithm,
                        parent,
                        &child.tbs,
                        &child.signature,
                        || X509Error::Signature {
                            subject: child.label.clone(),
                        },
                    )
                })?;
            check_window(child, now)?;
            check_eku(child, self.required_eku.as_ref())?;
            check_revocation(child, crls)?;
            if index == 0 {
                check_role(child, role)?;
                if role == Role::CrlIssuer {
                    spend_ca_budget(child, &mut ca_budget)?;
                }
            } else {
                check_ca(child)?;
                spend_ca_budget(child, &mut ca_budget)?;
            }
        }
        Ok(())
    }
}

/// Latest notBefore and earliest notAfter of a chain.
pub(super) fn chain_window(facts: &[Arc<CertFacts>]) -> (u64, u64) {
    let not_before = facts.iter().map(|f| f.not_before).max().unwrap_or(0);
    let not_after = facts.iter().map(|f| f.not_after).min().unwrap_or(0);
    (not_before, not_after)
}

pub(super) fn check_window(cert: &CertFacts, now: u64) -> Result<(), X509Error> {
    if now < cert.not_before {
        return Err(X509Error::NotYetValid {
            subject: cert.label.clone(),
            not_before: cert.not_before,
            now,
        });
    }
    if now > cert.not_after {
        return Err(X509Error::Expired {
            subject: cert.label.clone(),
            not_after: cert.not_after,
            now,
        });
    }
    Ok(())
}

fn constraint(cert: &CertFacts, problem: &'static str) -> X509Error {
    X509Error::Constraint {
        subject: cert.label.clone(),
        problem,
    }
}

/// A CA must say so in a critical basicConstraints and may sign certificates.
fn check_ca(cert: &CertFacts) -> Result<(), X509Error> {
    match cert.basic_constraints {
        Some(bc) if bc.ca && bc.critical => {}
        Some(bc) if bc.ca => {
            return Err(constraint(cert, "basicConstraints of a CA is not critical"))
        }
        _ => return Err(constraint(cert, "issues certificates but is not a CA")),
    }
    match cert.key_usage {
        Some(ku) if ku.key_cert_sign => Ok(()),
        _ => Err(constraint(cert, "issues certificates without keyCertSign")),
    }
}

fn check_role(cert: &CertFacts, role: Role) -> Result<(), X509Error> {
    match role {
        Role::EndEntity => {
            match cert.basic_constraints {
                Some(bc) if bc.ca => return Err(constraint(cert, "leaf certificate is a CA")),
                Some(bc) if bc.path_len.is_some() => {
                    return Err(constraint(cert, "leaf certificate has a pathLen"))
                }
                _ => {}
            }
            match cert.key_usage {
                Some(ku) if ku.digital_signature => Ok(()),
                _ => Err(constraint(cert, "leaf certificate lacks digitalSignature")),
            }
        }
        Role::CrlIssuer => {
            match cert.basic_constraints {
                Some(bc) if bc.ca => {}
                _ => return Err(constraint(cert, "CRL issuer is not a CA")),
            }
            match cert.key_usage {
                Some(ku) if ku.crl_sign => Ok(()),
                _ => Err(constraint(cert, "CRL issuer lacks cRLSign")),
            }
        }
    }
}

/// Accounts for one more CA below the ones already walked: every pathLen above must allow it.
fn spend_ca_budget(cert: &CertFacts, budget: &mut Option<u32>) -> Result<(), X509Error> {
    let remaining = match *budget {
        Some(0) => return Err(constraint(cert, "pathLen of an issuing CA is exceeded")),
        Some(n) => Some(n - 1),
        None => None,
    };
    let own = cert.basic_constraints.and_then(|bc| bc.path_len);
    *budget = match (remaining, own) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::x509::test_pki::{kind, Pki, Spec, DAY, NOW};
    use rcgen::{BasicConstraints, CustomExtension, IsCa, KeyUsagePurpose, PKCS_ECDSA_P384_SHA384};

    #[test]
    fn valid_chain_verifies_cold_and_warm() {
        let pki = Pki::standard();
        let verifier = pki.verifier();
        let cold = verifier.verify(&pki.chain(), NOW, &[]).unwrap();
        let warm = verifier.verify(&pki.chain(), NOW, &[]).unwrap();
        assert_eq!(cold, warm);
        assert_eq!(cold.not_after, NOW + 3600);
        assert_eq!(cold.chain_not_after, NOW + 3600);
        assert_eq!(cold.chain_not_before, NOW - 3600);
        assert_eq!(cold.public_key, pki.keys[2].public_key_raw());
    }

    #[test]
    fn a_known_root_der_is_compared_not_hashed_and_must_hash_to_the_pin() {
        let pki = Pki::standard();
        let root: std::sync::Arc<[u8]> = pki.ders[0].as_slice().into();
        let verifier = pki.verifier().with_root_der(root.clone());
        assert_eq!(
            verifier.der_hash(&pki.ders[0]),
            verifier.policy().root_sha256
        );
        let plain = pki.verifier().verify(&pki.chain(), NOW, &[]).unwrap();
        assert_eq!(verifier.verify(&pki.chain(), NOW, &[]).unwrap(), plain);
        // Another root's DER is not taken as the pinned one's: its chain stays untrusted.
        let other = Pki::standard();
        let mistaken = pki
            .verifier()
            .with_root_der(other.ders[0].as_slice().into());
        assert_ne!(
            mistaken.der_hash(&other.ders[0]),
            mistaken.policy().root_sha256
        );
        assert_eq!(
            kind(mistaken.verify(&other.chain(), NOW, &[])),
            "untrusted_root"
        );
        mistaken.verify(&pki.chain(), NOW, &[]).unwrap();
    }

    #[test]
    fn warm_cache_never_outlives_a_validity_window() {
        let pki = Pki::standard();
        let verifier = pki.verifier();
        verifier.verify(&pki.chain(), NOW, &[]).unwrap();
        assert_eq!(
            kind(verifier.verify(&pki.chain(), NOW + 3601, &[])),
            "expired"
        );
        assert_eq!(
            kind(verifier.verify(&pki.chain(), NOW - 3601, &[])),
            "not_yet_valid"
        );
        assert_eq!(
            kind(verifier.verify(&pki.chain(), NOW + 11 * DAY as u64, &[])),
            "expired"
        );
    }

    #[test]
    fn root_must_be_the_pinned_one() {
        let pki = Pki::standard();
        let other = Pki::standard();
        assert_eq!(
            kind(other.verifier().verify(&pki.chain(), NOW, &[])),
            "untrusted_root"
        );
        // A leaf alone is not a chain to the pinned root either.
        assert_eq!(
            kind(pki.verifier().verify(&pki.chain()[..2], NOW, &[])),
            "untrusted_root"
        );
        assert_eq!(
            kind(pki.verifier().verify(&[], NOW, &[])),
            "certificate_invalid"
        );
    }

    #[test]
    fn broken_order_and_tampered_signatures_are_rejected() {
        let pki = Pki::issue(
            &[
                Spec::ca("root", None),
                Spec::ca("a", Some(1)),
                Spec::ca("b", Some(0)),
                Spec::leaf("leaf"),
            ],
            &PKCS_ECDSA_P384_SHA384,
        );
        let verifier = pki.verifier();
        let chain = pki.chain();
        let swapped = [chain[0], chain[2], chain[1], chain[3]];
        assert_eq!(
            kind(verifier.verify(&swapped, NOW, &[])),
            "certificate_invalid"
        );

        // Same names, different key: the link signature fails.
        let impostor = Pki::issue(
            &[
                Spec::ca("root", None),
                Spec::ca("a", Some(1)),
                Spec::ca("b", Some(0)),
                Spec::leaf("leaf"),
            ],
            &PKCS_ECDSA_P384_SHA384,
        );
        let mixed = [impostor.chain()[0], chain[1], chain[2], chain[3]];
        assert_eq!(kind(verifier.verify(&mixed, NOW, &[])), "signature");

        let mut tampered = pki.ders[3].clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let with_bad_sig = [tampered.as_slice(), chain[1], chain[2], chain[3]];
        assert!(matches!(
            kind(verifier.verify(&with_bad_sig, NOW, &[])),
            "signature" | "certificate_invalid"
        ));
        assert_eq!(
            kind(verifier.verify(&[b"not a cert".as_slice(), chain[3]], NOW, &[])),
            "certificate_invalid"
        );
    }

    #[test]
    fn every_certificate_window_counts_including_the_root() {
        for level in 0..3 {
            let mut specs = [
                Spec::ca("root", None),
                Spec::ca("intermediate", Some(0)),
                Spec::leaf("leaf"),
            ];
            specs[level].not_after = -1;
            let pki = Pki::issue(&specs, &PKCS_ECDSA_P384_SHA384);
            assert_eq!(
                kind(pki.verifier().verify(&pki.chain(), NOW, &[])),
                "expired",
                "level {level}"
            );

            let mut specs = [
                Spec::ca("root", None),
                Spec::ca("intermediate", Some(0)),
                Spec::leaf("leaf"),
            ];
            specs[level].not_before = 1;
            let pki = Pki::issue(&specs, &PKCS_ECDSA_P384_SHA384);
            assert_eq!(
                kind(pki.verifier().verify(&pki.chain(), NOW, &[])),
                "not_yet_valid",
                "level {level}"
            );
        }
    }

    #[test]
    fn ca_and_leaf_constraints() {
        let cases: Vec<(&str, Vec<Spec>)> = vec![
            ("intermediate not a CA", {
                let mut mid = Spec::ca("intermediate", Some(0));
                mid.ca = IsCa::ExplicitNoCa;
                vec![Spec::ca("root", None), mid, Spec::leaf("leaf")]
            }),
            ("intermediate without keyCertSign", {
                let mut mid = Spec::ca("intermediate", Some(0));
                mid.usages = vec![KeyUsagePurpose::DigitalSignature];
                vec![Spec::ca("root", None), mid, Spec::leaf("leaf")]
            }),
            ("leaf is a CA", {
                let mut leaf = Spec::leaf("leaf");
                leaf.ca = IsCa::Ca(BasicConstraints::Unconstrained);
                vec![
                    Spec::ca("root", None),
                    Spec::ca("intermediate", Some(1)),
                    leaf,
                ]
            }),
            ("leaf without digitalSignature", {
                let mut leaf = Spec::leaf("leaf");
                leaf.usages = vec![KeyUsagePurpose::KeyEncipherment];
                vec![
                    Spec::ca("root", None),
                    Spec::ca("intermediate", Some(0)),
                    leaf,
                ]
            }),
            (
                "pathLen exceeded",
                vec![
                    Spec::ca("root", Some(0)),
                    Spec::ca("intermediate", None),
                    Spec::leaf("leaf"),
                ],
            ),
            (
                "pathLen of a middle CA exceeded",
                vec![
                    Spec::ca("root", None),
                    Spec::ca("a", Some(0)),
                    Spec::ca("b", None),
                    Spec::leaf("leaf"),
                ],
            ),
            ("unknown critical extension", {
                let mut leaf = Spec::leaf("leaf");
                let mut ext = CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 99999, 1],
                    vec![0x05, 0x00],
                );
                ext.set_criticality(true);
                leaf.extra = vec![ext];
                vec![
                    Spec::ca("root", None),
                    Spec::ca("intermediate", Some(0)),
                    leaf,
                ]
            }),
            ("non-critical basicConstraints on a CA", {
                let mut mid = Spec::ca("intermediate", Some(0));
                mid.ca = IsCa::NoCa;
                mid.extra = vec![CustomExtension::from_oid_content(
                    &[2, 5, 29, 19],
                    vec![0x30, 0x03, 0x01, 0x01, 0xff],
                )];
                vec![Spec::ca("root", None), mid, Spec::leaf("leaf")]
            }),
        ];
        for (name, specs) in cases {
            let pki = Pki::issue(&specs, &PKCS_ECDSA_P384_SHA384);
            assert_eq!(
                kind(pki.verifier().verify(&pki.chain(), NOW, &[])),
                "certificate_invalid",
                "{name}"
            );
        }
        // A non-critical unknown extension is fine.
        let mut leaf = Spec::leaf("leaf");
        leaf.extra = vec![CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 99999, 1],
            vec![0x05, 0x00],
        )];
        let pki = Pki::issue(
            &[
                Spec::ca("root", None),
                Spec::ca("intermediate", Some(0)),
                leaf,
            ],
            &PKCS_ECDSA_P384_SHA384,
        );
        pki.verifier().verify(&pki.chain(), NOW, &[]).unwrap();
    }
}
