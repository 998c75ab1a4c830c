//! One X.509 chain walker for every platform: AWS Nitro's P-384 PKI and Intel's P-256 SGX/TDX PKI.
//!
//! A chain is given leaf first, root last, and the root must be the pinned one (by DER SHA-256).
//! Every call checks, for every certificate of the presented chain: issuer/subject chaining, the
//! link's signature by the parent key with the pinned algorithm, the validity window at `now` (root
//! included), basicConstraints (CA flag, pathLen), keyUsage (keyCertSign on CAs, digitalSignature on
//! the leaf, cRLSign on a CRL issuer), unknown critical extensions, and revocation by the CRLs given.
//!
//! What is cached (per verifier, so per pinned policy) is only the expensive, time-independent part:
//! parsing with the static checks, and each verified link signature keyed by (child, parent) DER
//! hashes. The time, constraint and revocation checks run on every call, so a cached certificate is
//! never trusted outside its own validity window; a warm chain costs hashing and lookups. Every
//! lookup of either cache is counted as a hit or a miss ([`ChainVerifier::cache_counts`]).

use crate::cache_stats::{CacheCounter, CacheCounts};
use crate::crypto::{self, Curve, SignatureEncoding};
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::Arc;
use thiserror::Error;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::{
    Oid, OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_SIG_ECDSA_WITH_SHA256,
    OID_SIG_ECDSA_WITH_SHA384, OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_KEY_USAGE,
};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

/// Longest chain we walk (AWS uses 5 certificates, Intel 3).
pub const MAX_CHAIN_LEN: usize = 8;
/// Largest certificate we parse (real AWS and Intel certificates are under 2 KiB).
pub const MAX_DER_LEN: usize = 16 * 1024;
/// Largest CRL we parse (Intel's PCK CRLs list many serials).
pub const MAX_CRL_LEN: usize = 1024 * 1024;

/// Bytes of parsed certificates kept by one verifier: thousands of real certificates.
const CERT_CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// Verified links kept by one verifier.
const LINK_CACHE_ENTRIES: u64 = 64 * 1024;

/// The signature algorithm every certificate and CRL of a PKI must use, with its curve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// ecdsa-with-SHA256 over prime256v1 (Intel SGX/TDX).
    EcdsaP256Sha256,
    /// ecdsa-with-SHA384 over secp384r1 (AWS Nitro Enclaves).
    EcdsaP384Sha384,
}

impl SignatureAlgorithm {
    pub fn curve(self) -> Curve {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 => Curve::P256,
            SignatureAlgorithm::EcdsaP384Sha384 => Curve::P384,
        }
    }

    fn signature_oid(self) -> Oid<'static> {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 => OID_SIG_ECDSA_WITH_SHA256,
            SignatureAlgorithm::EcdsaP384Sha384 => OID_SIG_ECDSA_WITH_SHA384,
        }
    }

    fn curve_oid(self) -> Oid<'static> {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 => OID_EC_P256,
            SignatureAlgorithm::EcdsaP384Sha384 => OID_NIST_EC_P384,
        }
    }
}

/// What a PKI pins: its algorithm and its root certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainPolicy {
    pub algorithm: SignatureAlgorithm,
    /// SHA-256 of the root certificate's DER.
    pub root_sha256: [u8; 32],
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum X509Error {
    #[error("certificate chain is empty or longer than {MAX_CHAIN_LEN}")]
    ChainLength,
    #[error("certificate {index} of the chain cannot be parsed: {reason}")]
    Unparsable { index: usize, reason: String },
    #[error("chain root is not the pinned root (DER SHA-256 {found})")]
    UntrustedRoot { found: String },
    #[error("{subject}: {what} is {found}, only {expected} is accepted")]
    Algorithm {
        subject: String,
        what: &'static str,
        found: String,
        expected: String,
    },
    #[error("{subject}: issuer does not match the subject of the next certificate in the chain")]
    NameMismatch { subject: String },
    #[error("{subject}: signature by its issuer does not verify")]
    Signature { subject: String },
    #[error("{subject}: expired at {not_after} (checked at {now})")]
    Expired {
        subject: String,
        not_after: u64,
        now: u64,
    },
    #[error("{subject}: not valid before {not_before} (checked at {now})")]
    NotYetValid {
        subject: String,
        not_before: u64,
        now: u64,
    },
    #[error("{subject}: {problem}")]
    Constraint {
        subject: String,
        problem: &'static str,
    },
    #[error("{subject}: unknown critical extension {oid}")]
    UnknownCriticalExtension { subject: String, oid: String },
    #[error("{subject}: revoked (serial {serial})")]
    Revoked { subject: String, serial: String },
    #[error("CRL is invalid: {0}")]
    CrlInvalid(String),
    #[error("CRL of {issuer} expired at {next_update} (checked at {now})")]
    CrlExpired {
        issuer: String,
        next_update: u64,
        now: u64,
    },
    #[error("CRL of {issuer} is not valid before {this_update} (checked at {now})")]
    CrlNotYetValid {
        issuer: String,
        this_update: u64,
        now: u64,
    },
}

impl X509Error {
    pub fn kind(&self) -> &'static str {
        match self {
            X509Error::ChainLength
            | X509Error::Unparsable { .. }
            | X509Error::NameMismatch { .. }
            | X509Error::Constraint { .. }
            | X509Error::UnknownCriticalExtension { .. } => "certificate_invalid",
            X509Error::UntrustedRoot { .. } => "untrusted_root",
            X509Error::Algorithm { .. } => "algorithm",
            X509Error::Signature { .. } => "signature",
            X509Error::Expired { .. } => "expired",
            X509Error::NotYetValid { .. } => "not_yet_valid",
            X509Error::Revoked { .. } => "revoked",
            X509Error::CrlInvalid(_) => "collateral_invalid",
            X509Error::CrlExpired { .. } => "collateral_expired",
            X509Error::CrlNotYetValid { .. } => "collateral_not_yet_valid",
        }
    }
}

/// The end-entity certificate of a verified chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedLeaf {
    /// Uncompressed SEC1 point on the policy's curve.
    pub public_key: Vec<u8>,
    pub not_before: u64,
    pub not_after: u64,
    /// Latest notBefore and earliest notAfter over the whole chain: when this verification holds.
    pub chain_not_before: u64,
    pub chain_not_after: u64,
}

/// A CRL whose signature, issuer and window were verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCrl {
    issuer: Vec<u8>,
    issuer_name: String,
    revoked: HashSet<Vec<u8>>,
    pub this_update: u64,
    pub next_update: u64,
    /// When the issuer's chain is valid (latest notBefore, earliest notAfter).
    pub issuer_chain_not_before: u64,
    pub issuer_chain_not_after: u64,
}

impl VerifiedCrl {
    fn check_window(&self, now: u64) -> Result<(), X509Error> {
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

/// What the walker needs of a certificate, after its time-independent checks passed.
#[derive(Debug)]
struct CertFacts {
    subject: Vec<u8>,
    issuer: Vec<u8>,
    /// Common name (or the whole subject) for error messages.
    label: String,
    serial: Vec<u8>,
    public_key: Vec<u8>,
    tbs: Vec<u8>,
    signature: Vec<u8>,
    not_before: u64,
    not_after: u64,
    basic_constraints: Option<BasicConstraintsFacts>,
    key_usage: Option<KeyUsageFacts>,
}

#[derive(Debug, Clone, Copy)]
struct BasicConstraintsFacts {
    critical: bool,
    ca: bool,
    path_len: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
struct KeyUsageFacts {
    digital_signature: bool,
    key_cert_sign: bool,
    crl_sign: bool,
}

/// What the top of the walked chain is used for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Signs data (a COSE document, a quote, a collateral JSON).
    EndEntity,
    /// A CA that signs a CRL.
    CrlIssuer,
}

type DerHash = [u8; 32];

/// Lookups of a walker's two caches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainCacheCounts {
    /// One lookup per certificate of every walked chain (root included): parsed facts.
    pub certificates: CacheCounts,
    /// One lookup per (child, parent) pair whose names chain: verified link signatures.
    pub links: CacheCounts,
}

/// Verifies chains for one pinned policy. Cloning shares the caches and their counters.
#[derive(Clone)]
pub struct ChainVerifier {
    policy: ChainPolicy,
    certs: Cache<DerHash, Arc<CertFacts>>,
    cert_lookups: Arc<CacheCounter>,
    links: Cache<(DerHash, DerHash), ()>,
    link_lookups: Arc<CacheCounter>,
}

impl ChainVerifier {
    pub fn new(policy: ChainPolicy) -> Self {
        ChainVerifier {
            policy,
            certs: Cache::builder()
                .weigher(|_, facts: &Arc<CertFacts>| {
                    u32::try_from(facts.tbs.len() + facts.signature.len() + 256).unwrap_or(u32::MAX)
                })
                .max_capacity(CERT_CACHE_BYTES)
                .build(),
            cert_lookups: Arc::default(),
            links: Cache::new(LINK_CACHE_ENTRIES),
            link_lookups: Arc::default(),
        }
    }

    pub fn policy(&self) -> &ChainPolicy {
        &self.policy
    }

    /// Hits and misses of the certificate and link caches since this walker (or the one it was
    /// cloned from) was created.
    pub fn cache_counts(&self) -> ChainCacheCounts {
        ChainCacheCounts {
            certificates: self.cert_lookups.snapshot(),
            links: self.link_lookups.snapshot(),
        }
    }

    /// Verifies `chain` (leaf first, pinned root last) at `now` for an end-entity leaf that signs
    /// data, checking every non-root certificate against the `crls` issued by its issuer.
    pub fn verify(
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

    /// Verifies a DER CRL issued by `issuer_chain[0]` (a CA with cRLSign, chaining to the pinned
    /// root through the rest of `issuer_chain`), its signature, and its window at `now`.
    pub fn verify_crl(
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
        let crl = match CertificateRevocationList::from_der(crl_der) {
            Ok((&[], crl)) => crl,
            Ok(_) => return Err(X509Error::CrlInvalid("trailing bytes".into())),
            Err(e) => return Err(X509Error::CrlInvalid(e.to_string())),
        };
        let expected = self.policy.algorithm.signature_oid();
        if crl.signature_algorithm.algorithm != expected
            || crl.tbs_cert_list.signature.algorithm != expected
        {
            return Err(X509Error::CrlInvalid(format!(
                "signature algorithm {} is not {expected}",
                crl.signature_algorithm.algorithm
            )));
        }
        if crl.tbs_cert_list.issuer.as_raw() != issuer.subject.as_slice() {
            return Err(X509Error::CrlInvalid(format!(
                "issuer is not {}",
                issuer.label
            )));
        }
        // A critical issuingDistributionPoint would scope the CRL (partial or indirect): we only
        // accept complete CRLs, so every critical extension, list-level or per entry, is refused.
        let critical = crl.extensions().iter().chain(
            crl.iter_revoked_certificates()
                .flat_map(|entry| entry.extensions()),
        );
        if let Some(ext) = critical.into_iter().find(|ext| ext.critical) {
            return Err(X509Error::CrlInvalid(format!(
                "critical extension {} is not supported",
                ext.oid
            )));
        }
        crypto::verify(
            self.policy.algorithm.curve(),
            &issuer.public_key,
            crl.tbs_cert_list.as_ref(),
            &crl.signature_value.data,
            SignatureEncoding::Der,
        )
        .map_err(|_| {
            X509Error::CrlInvalid(format!("signature by {} does not verify", issuer.label))
        })?;
        let next_update = crl
            .next_update()
            .ok_or_else(|| X509Error::CrlInvalid("no nextUpdate".into()))?;
        let (issuer_chain_not_before, issuer_chain_not_after) = chain_window(&facts);
        let verified = VerifiedCrl {
            issuer: issuer.subject.clone(),
            issuer_name: issuer.label.clone(),
            revoked: crl
                .iter_revoked_certificates()
                .map(|entry| normalized_serial(entry.raw_serial()))
                .collect(),
            this_update: to_unix(crl.last_update().timestamp()),
            next_update: to_unix(next_update.timestamp()),
            issuer_chain_not_before,
            issuer_chain_not_after,
        };
        verified.check_window(now)?;
        // A CA listing itself in its own CRL (Intel's root CA CRL may list the root) is revoked.
        check_revocation(issuer, &[&verified])?;
        Ok(verified)
    }

    /// Walks `chain` from the pinned root down to `chain[0]`; returns the facts leaf first.
    fn walk(
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
        let hashes: Vec<DerHash> = chain.iter().map(|der| Sha256::digest(der).into()).collect();
        let root_index = chain.len() - 1;
        if hashes[root_index] != self.policy.root_sha256 {
            return Err(X509Error::UntrustedRoot {
                found: hex::encode(hashes[root_index]),
            });
        }
        let facts = chain
            .iter()
            .zip(&hashes)
            .enumerate()
            .map(|(index, (der, hash))| self.facts(index, der, hash))
            .collect::<Result<Vec<_>, _>>()?;
        self.check_chain(&facts, &hashes, now, crls, role)?;
        // Only certificates of a chain that verified are remembered: unsigned junk that merely
        // ends in the (public) pinned root must not fill the cache.
        Ok(facts
            .into_iter()
            .zip(&hashes)
            .map(|((facts, cached), hash)| {
                if !cached {
                    self.certs.insert(*hash, Arc::clone(&facts));
                }
                facts
            })
            .collect())
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
            let link = (hashes[index], hashes[index + 1]);
            if self.links.contains_key(&link) {
                self.link_lookups.hit();
            } else {
                self.link_lookups.miss();
                crypto::verify(
                    self.policy.algorithm.curve(),
                    &parent.public_key,
                    &child.tbs,
                    &child.signature,
                    SignatureEncoding::Der,
                )
                .map_err(|_| X509Error::Signature {
                    subject: child.label.clone(),
                })?;
                self.links.insert(link, ());
            }
            check_window(child, now)?;
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

    /// The facts of a certificate, and whether they came from the cache.
    fn facts(
        &self,
        index: usize,
        der: &[u8],
        hash: &DerHash,
    ) -> Result<(Arc<CertFacts>, bool), X509Error> {
        if let Some(facts) = self.certs.get(hash) {
            self.cert_lookups.hit();
            return Ok((facts, true));
        }
        self.cert_lookups.miss();
        Ok((
            Arc::new(parse_facts(index, der, self.policy.algorithm)?),
            false,
        ))
    }
}

/// Parses a certificate and runs the checks that do not depend on time or on its place in a chain.
fn parse_facts(
    index: usize,
    der: &[u8],
    algorithm: SignatureAlgorithm,
) -> Result<CertFacts, X509Error> {
    let unparsable = |reason: String| X509Error::Unparsable { index, reason };
    if der.len() > MAX_DER_LEN {
        return Err(unparsable("larger than allowed".into()));
    }
    let cert = match X509Certificate::from_der(der) {
        Ok((&[], cert)) => cert,
        Ok(_) => return Err(unparsable("trailing bytes after the certificate".into())),
        Err(e) => return Err(unparsable(e.to_string())),
    };
    let label = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map_or_else(|| cert.subject().to_string(), str::to_owned);
    let algorithm_error = |what, found: String, expected: String| X509Error::Algorithm {
        subject: label.clone(),
        what,
        found,
        expected,
    };
    let expected_sig = algorithm.signature_oid();
    for found in [
        &cert.signature_algorithm.algorithm,
        &cert.tbs_certificate.signature.algorithm,
    ] {
        if *found != expected_sig {
            return Err(algorithm_error(
                "signature algorithm",
                found.to_id_string(),
                expected_sig.to_id_string(),
            ));
        }
    }
    let spki = cert.public_key();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY
        || curve.as_ref() != Some(&algorithm.curve_oid())
    {
        return Err(algorithm_error(
            "public key",
            format!(
                "{} {:?}",
                spki.algorithm.algorithm,
                curve.map(|c| c.to_id_string())
            ),
            format!("EC {}", algorithm.curve_oid()),
        ));
    }

    let mut basic_constraints = None;
    let mut key_usage = None;
    let mut seen = HashSet::new();
    for ext in cert.extensions() {
        // RFC 5280 §4.2: an extension appears at most once; "last one wins" would let a
        // second basicConstraints override the first.
        if !seen.insert(ext.oid.as_bytes()) {
            return Err(unparsable(format!("extension {} appears twice", ext.oid)));
        }
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => {
                basic_constraints = Some(BasicConstraintsFacts {
                    critical: ext.critical,
                    ca: bc.ca,
                    path_len: bc.path_len_constraint,
                });
            }
            ParsedExtension::KeyUsage(ku) => {
                key_usage = Some(KeyUsageFacts {
                    digital_signature: ku.digital_signature(),
                    key_cert_sign: ku.key_cert_sign(),
                    crl_sign: ku.crl_sign(),
                });
            }
            _ if ext.critical => {
                return Err(X509Error::UnknownCriticalExtension {
                    subject: label,
                    oid: ext.oid.to_id_string(),
                });
            }
            _ => {}
        }
    }
    // A basicConstraints or keyUsage that x509-parser could not decode must not pass as absent.
    for oid in [OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_KEY_USAGE] {
        let present = cert.extensions().iter().any(|e| e.oid == oid);
        let decoded = if oid == OID_X509_EXT_BASIC_CONSTRAINTS {
            basic_constraints.is_some()
        } else {
            key_usage.is_some()
        };
        if present && !decoded {
            return Err(unparsable(format!("extension {oid} cannot be decoded")));
        }
    }

    let validity = cert.validity();
    Ok(CertFacts {
        subject: cert.subject().as_raw().to_vec(),
        issuer: cert.issuer().as_raw().to_vec(),
        serial: normalized_serial(cert.raw_serial()),
        public_key: spki.subject_public_key.data.to_vec(),
        tbs: cert.tbs_certificate.as_ref().to_vec(),
        signature: cert.signature_value.data.to_vec(),
        not_before: to_unix(validity.not_before.timestamp()),
        not_after: to_unix(validity.not_after.timestamp()),
        basic_constraints,
        key_usage,
        label,
    })
}

/// Latest notBefore and earliest notAfter of a chain.
fn chain_window(facts: &[Arc<CertFacts>]) -> (u64, u64) {
    let not_before = facts.iter().map(|f| f.not_before).max().unwrap_or(0);
    let not_after = facts.iter().map(|f| f.not_after).min().unwrap_or(0);
    (not_before, not_after)
}

fn check_window(cert: &CertFacts, now: u64) -> Result<(), X509Error> {
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

fn check_revocation(cert: &CertFacts, crls: &[&VerifiedCrl]) -> Result<(), X509Error> {
    let revoked = crls
        .iter()
        .any(|crl| crl.issuer == cert.issuer && crl.revoked.contains(&cert.serial));
    if revoked {
        return Err(X509Error::Revoked {
            subject: cert.label.clone(),
            serial: hex::encode(&cert.serial),
        });
    }
    Ok(())
}

/// Serial numbers compared without DER's sign-padding zeros.
fn normalized_serial(raw: &[u8]) -> Vec<u8> {
    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    raw[start..].to_vec()
}

/// X.509 times before 1970 cannot occur in any PKI we accept; clamp rather than wrap.
fn to_unix(timestamp: i64) -> u64 {
    u64::try_from(timestamp).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
        DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
        RevokedCertParams, SerialNumber, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
    };
    use time::OffsetDateTime;

    const NOW: u64 = 1_750_000_000;
    const DAY: i64 = 86_400;

    fn at(offset: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW as i64 + offset).unwrap()
    }

    /// One certificate to issue: its name, role and window, and knobs for broken variants.
    struct Spec {
        name: &'static str,
        ca: IsCa,
        usages: Vec<KeyUsagePurpose>,
        not_before: i64,
        not_after: i64,
        serial: u64,
        extra: Vec<CustomExtension>,
    }

    impl Spec {
        fn ca(name: &'static str, path_len: Option<u8>) -> Self {
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

        fn leaf(name: &'static str) -> Self {
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

    struct Pki {
        ders: Vec<Vec<u8>>,
        keys: Vec<KeyPair>,
        params: Vec<CertificateParams>,
    }

    impl Pki {
        /// Issues `specs` root first, each signed by the previous one.
        fn issue(specs: &[Spec], alg: &'static rcgen::SignatureAlgorithm) -> Pki {
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

        fn standard() -> Pki {
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
        fn chain(&self) -> Vec<&[u8]> {
            self.ders.iter().rev().map(Vec::as_slice).collect()
        }

        fn verifier(&self) -> ChainVerifier {
            verifier_for(&self.ders[0], SignatureAlgorithm::EcdsaP384Sha384)
        }

        fn crl(
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

    fn verifier_for(root: &[u8], algorithm: SignatureAlgorithm) -> ChainVerifier {
        ChainVerifier::new(ChainPolicy {
            algorithm,
            root_sha256: Sha256::digest(root).into(),
        })
    }

    fn kind(result: Result<VerifiedLeaf, X509Error>) -> &'static str {
        result.map(|_| ()).unwrap_err().kind()
    }

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
    fn algorithm_and_curve_are_pinned() {
        let pki = Pki::issue(
            &[Spec::ca("root", None), Spec::leaf("leaf")],
            &PKCS_ECDSA_P256_SHA256,
        );
        let p384_policy = verifier_for(&pki.ders[0], SignatureAlgorithm::EcdsaP384Sha384);
        assert_eq!(
            kind(p384_policy.verify(&pki.chain(), NOW, &[])),
            "algorithm"
        );
        let p256_policy = verifier_for(&pki.ders[0], SignatureAlgorithm::EcdsaP256Sha256);
        p256_policy.verify(&pki.chain(), NOW, &[]).unwrap();
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
        assert_eq!(err.kind(), "revoked");
        // The root's CRL revokes the intermediate.
        let root_crl = verifier
            .verify_crl(&pki.crl(0, &[2], -DAY, DAY), &root_only, NOW)
            .unwrap();
        assert_eq!(
            kind(verifier.verify(&pki.chain(), NOW, &[&root_crl])),
            "revoked"
        );

        let crl_err = |der: Vec<u8>, chain: &[&[u8]]| {
            verifier.verify_crl(&der, chain, NOW).unwrap_err().kind()
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
        assert_eq!(
            crl_err(b"junk".to_vec(), &issuer_chain),
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
        assert_eq!(err.kind(), "certificate_invalid");
    }

    #[test]
    fn duplicate_extensions_are_rejected() {
        // basicConstraints CA:FALSE then CA:TRUE: a "last one wins" reader would make it a CA.
        let mut mid = Spec::ca("intermediate", Some(0));
        mid.ca = IsCa::NoCa;
        let mut not_ca = CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 0x00]);
        not_ca.set_criticality(true);
        let mut ca =
            CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 0x03, 0x01, 0x01, 0xff]);
        ca.set_criticality(true);
        mid.extra = vec![not_ca, ca];
        let pki = Pki::issue(
            &[Spec::ca("root", None), mid, Spec::leaf("leaf")],
            &PKCS_ECDSA_P384_SHA384,
        );
        assert_eq!(
            kind(pki.verifier().verify(&pki.chain(), NOW, &[])),
            "certificate_invalid"
        );
    }

    #[test]
    fn only_verified_chains_are_cached() {
        let pki = Pki::standard();
        let verifier = pki.verifier();
        let other = Pki::standard();
        // Parsable certificates that do not chain, ending in the pinned root.
        let junk = [
            other.ders[2].as_slice(),
            other.ders[1].as_slice(),
            pki.ders[0].as_slice(),
        ];
        assert_eq!(kind(verifier.verify(&junk, NOW, &[])), "signature");
        verifier.certs.run_pending_tasks();
        assert_eq!(verifier.certs.entry_count(), 0);
        verifier.verify(&pki.chain(), NOW, &[]).unwrap();
        verifier.certs.run_pending_tasks();
        assert_eq!(verifier.certs.entry_count(), 3);
    }

    #[test]
    fn cache_counts_one_lookup_per_certificate_and_link() {
        let pki = Pki::standard();
        let verifier = pki.verifier();
        let counts = |cert_hits, cert_misses, link_hits, link_misses| ChainCacheCounts {
            certificates: CacheCounts {
                hits: cert_hits,
                misses: cert_misses,
            },
            links: CacheCounts {
                hits: link_hits,
                misses: link_misses,
            },
        };
        assert_eq!(verifier.cache_counts(), counts(0, 0, 0, 0));
        // Cold: three certificates parsed, two links verified.
        verifier.verify(&pki.chain(), NOW, &[]).unwrap();
        assert_eq!(verifier.cache_counts(), counts(0, 3, 0, 2));
        // Warm, through a clone: it counts into the same numbers.
        let clone = verifier.clone();
        clone.verify(&pki.chain(), NOW, &[]).unwrap();
        assert_eq!(verifier.cache_counts(), counts(3, 3, 2, 2));
        // A CRL issuer chain of two cached certificates: two hits and one link hit.
        let issuer_chain = [pki.ders[1].as_slice(), pki.ders[0].as_slice()];
        verifier
            .verify_crl(&pki.crl(1, &[], -DAY, DAY), &issuer_chain, NOW)
            .unwrap();
        assert_eq!(clone.cache_counts(), counts(5, 3, 3, 2));

        // A chain that fails is not cached, so each attempt misses again. Its root is cached;
        // the walk stops at the first link, whose signature does not verify.
        let other = Pki::standard();
        let junk = [
            other.ders[2].as_slice(),
            other.ders[1].as_slice(),
            pki.ders[0].as_slice(),
        ];
        for attempt in 1..=2 {
            assert_eq!(kind(verifier.verify(&junk, NOW, &[])), "signature");
            assert_eq!(
                verifier.cache_counts(),
                counts(5 + attempt, 3 + 2 * attempt, 3, 2 + attempt),
                "attempt {attempt}"
            );
        }
        // A chain refused before any lookup (foreign root) counts nothing.
        assert_eq!(
            kind(verifier.verify(&other.chain(), NOW, &[])),
            "untrusted_root"
        );
        assert_eq!(verifier.cache_counts(), counts(7, 7, 3, 4));
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
        assert_eq!(err.kind(), "collateral_invalid", "{err}");
    }
}
