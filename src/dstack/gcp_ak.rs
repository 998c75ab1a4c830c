//! The chain of a GCP vTPM's attestation-key certificate, up to Google's "EK/AK CA Root".
//!
//! The guest sends only its AK certificate. Google does not put the intermediate in the evidence
//! and uses several, so the intermediates (and any CRLs) are input: a [`GcpCaBundle`], read from
//! a PEM file the operator supplies (`--gcp-ca-bundle`), or assembled by the service from fetched
//! collateral. Nothing here fetches or reads the clock.
//!
//! The walk is the shared X.509 walker's (`crate::x509`), pinned to the root and to
//! sha256WithRSAEncryption links, with webpki's `required_if_present` for the EKU
//! tcg-kp-EKCertificate (2.23.133.8.1) as upstream tpm-qvl asks. Revocation follows dstack: a CRL
//! that is present is verified (signature, issuer, window) and enforced; a stale one is
//! `collateral_expired`. [`GcpCaBundle::require_crl`] also makes a missing CRL an error for every
//! certificate that names a CRL distribution point.

use crate::cache::{VerifiedCache, Window, Windowed};
use crate::error::ErrorKind;
use crate::tpm::{AkPublicKey, TpmError};
use crate::x509::{
    read_crl, ChainCacheCounts, ChainPolicy, ChainVerifier, SignatureAlgorithm, VerifiedCrl,
    X509Error, MAX_CHAIN_LEN, MAX_CRL_LEN, MAX_DER_LEN,
};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use thiserror::Error;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::{Oid, OID_X509_EXT_CRL_DISTRIBUTION_POINTS};
use x509_parser::prelude::FromDer;

/// Google's "EK/AK CA Root" (RSA-4096, 2022-07-08 to 2122-07-08), the only root dstack pins for
/// GCP (tpm-qvl `certs/gcp-root-ca.pem`), as DER.
pub const GOOGLE_EKAK_CA_ROOT_DER: &[u8] = include_bytes!("google_ekak_ca_root.der");
/// tcg-kp-EKCertificate (2.23.133.8.1), the extended key usage Google's CAs carry.
pub const TCG_KP_EK_CERTIFICATE: [u64; 5] = [2, 23, 133, 8, 1];
/// Largest CA bundle read (a few intermediates and their CRLs are a few KiB).
pub const MAX_CA_BUNDLE_LEN: usize = 4 << 20;
/// Most PEM blocks read from a CA bundle.
pub const MAX_CA_BUNDLE_BLOCKS: usize = 64;
/// Verified CRLs kept by one verifier.
const CRL_CACHE_ENTRIES: u64 = 256;
/// Verified AK chains kept by one verifier (one per VM's AK and bundle; ≈ 1 KiB each).
const CHAIN_CACHE_ENTRIES: u64 = 4096;

/// Why an AK certificate chain or a CA bundle was refused; `kind()` is its stable [`ErrorKind`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GcpAkError {
    /// No certificate of the bundle is the issuer a certificate names; `collateral_missing`.
    #[error(
        "the intermediate CA \"{issuer}\" that issued {subject} is not in the GCP CA bundle \
         (supply it with --gcp-ca-bundle; its URL is the certificate's AIA caIssuers)"
    )]
    IntermediateMissing {
        /// The missing issuer's name.
        issuer: String,
        /// The certificate it issued.
        subject: String,
    },
    /// A CRL was required for a certificate and none of its issuer was given;
    /// `collateral_missing`.
    #[error("no CRL of \"{issuer}\" covers {subject} (--gcp-require-crl)")]
    CrlMissing {
        /// The CA whose CRL is missing.
        issuer: String,
        /// The certificate it would cover.
        subject: String,
    },
    /// The CA bundle does not parse, or is over its bounds; `collateral_invalid`.
    #[error("GCP CA bundle: {0}")]
    Bundle(String),
    /// The chain or a CRL was refused by the X.509 walker (its kind).
    #[error("AK certificate chain: {0}")]
    Chain(#[from] X509Error),
    /// The certificate below the root is not signed by the pinned root's key: the chain ends in
    /// another root with the same name; `untrusted_root`.
    #[error("{subject} is not issued by the pinned GCP root's key (a chain to another root)")]
    ForeignRoot {
        /// The certificate just below the root.
        subject: String,
    },
    /// The AK certificate does not parse or holds no usable key (its kind).
    #[error(transparent)]
    Key(#[from] TpmError),
}

impl GcpAkError {
    /// Stable snake_case name of the failure class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            GcpAkError::IntermediateMissing { .. } | GcpAkError::CrlMissing { .. } => {
                ErrorKind::CollateralMissing
            }
            GcpAkError::Bundle(_) => ErrorKind::CollateralInvalid,
            GcpAkError::ForeignRoot { .. } => ErrorKind::UntrustedRoot,
            GcpAkError::Chain(error) => error.kind(),
            GcpAkError::Key(error) => error.kind(),
        }
    }
}

/// Intermediates and CRLs for AK chains, and whether CRLs are required.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcpCaBundle {
    /// DER intermediate CA certificates, in any order.
    pub intermediates: Vec<Vec<u8>>,
    /// DER CRLs, by the root or an intermediate.
    pub crls: Vec<Vec<u8>>,
    /// A certificate that names a CRL distribution point must be covered by a CRL of its issuer.
    pub require_crl: bool,
}

impl GcpCaBundle {
    /// Reads a PEM file of `CERTIFICATE` and `X509 CRL` blocks (other labels are refused).
    pub fn from_pem(pem_text: &[u8]) -> Result<GcpCaBundle, GcpAkError> {
        if pem_text.len() > MAX_CA_BUNDLE_LEN {
            return Err(GcpAkError::Bundle(format!(
                "{} bytes, more than the {MAX_CA_BUNDLE_LEN} accepted",
                pem_text.len()
            )));
        }
        let blocks = crate::tdx::pem::labelled_blocks(pem_text, MAX_CA_BUNDLE_BLOCKS)
            .map_err(GcpAkError::Bundle)?;
        let mut bundle = GcpCaBundle::default();
        for (label, contents) in blocks {
            let (list, max) = match label.as_str() {
                "CERTIFICATE" => (&mut bundle.intermediates, MAX_DER_LEN),
                "X509 CRL" => (&mut bundle.crls, MAX_CRL_LEN),
                other => {
                    return Err(GcpAkError::Bundle(format!(
                        "PEM block {other:?} is neither CERTIFICATE nor X509 CRL"
                    )))
                }
            };
            if contents.len() > max {
                return Err(GcpAkError::Bundle(format!(
                    "a {label} block is larger than allowed"
                )));
            }
            list.push(contents);
        }
        Ok(bundle)
    }
}

impl GcpCaBundle {
    /// SHA-256 over every intermediate and CRL, in order and length-prefixed, and the CRL
    /// requirement: everything of the bundle a chain's verification depends on.
    pub fn digest(&self) -> [u8; 32] {
        let mut digest = Sha256::new();
        for list in [&self.intermediates, &self.crls] {
            digest.update((list.len() as u64).to_le_bytes());
            for der in list {
                digest.update((der.len() as u64).to_le_bytes());
                digest.update(der);
            }
        }
        digest.update([u8::from(self.require_crl)]);
        digest.finalize().into()
    }
}

/// A CA bundle with its [`GcpCaBundle::digest`], computed once for every chain verified
/// through it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DigestedBundle {
    bundle: GcpCaBundle,
    digest: [u8; 32],
}

impl DigestedBundle {
    pub(crate) fn new(bundle: GcpCaBundle) -> Self {
        let digest = bundle.digest();
        DigestedBundle { bundle, digest }
    }

    pub(crate) fn bundle(&self) -> &GcpCaBundle {
        &self.bundle
    }
}

/// An AK certificate whose chain verified to the pinned root at `now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedAk {
    /// The AK's public key, to verify the quote with.
    pub key: AkPublicKey,
    /// The AK certificate's subject (`L=<zone>, O=Google Compute Engine, OU=<project>,
    /// CN=<instance id>`).
    pub subject: String,
    /// The chain, leaf first, pinned root last, as DER SHA-256 (hex).
    pub chain_sha256: Vec<String>,
    /// CRLs applied (verified, inside their window, issued by a CA of the chain).
    pub crls_applied: usize,
}

/// What a CA bundle lacks for one AK chain ([`GcpAkVerifier::gaps`]), read from certificates
/// nobody has verified yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainGaps {
    /// The certificate (DER) whose issuer is neither the pinned root nor in the bundle: its AIA
    /// caIssuers URL says where that issuer is published.
    pub issuer_of: Option<Vec<u8>>,
    /// The certificates of the chain below the root (DER; of the part built, when an issuer is
    /// missing) that name a CRL distribution point while the bundle has no CRL of their issuer.
    pub crl_of: Vec<Vec<u8>>,
}

/// A chain built from a bundle: leaf first, and the pinned root last when `complete`.
struct Walk {
    chain: Vec<Vec<u8>>,
    complete: bool,
}

/// Verifies AK chains to one pinned root; cloning shares the walker's and the CRL caches.
#[derive(Clone)]
pub struct GcpAkVerifier {
    walker: ChainVerifier,
    root_der: Arc<Vec<u8>>,
    root_subject: Arc<Vec<u8>>,
    crls: VerifiedCache<[u8; 32], Arc<CachedCrl>>,
    chains: VerifiedCache<[u8; 32], Arc<CachedChain>>,
}

/// A verified AK chain and when that verification holds: inside every certificate's validity
/// and every applied CRL's thisUpdate..nextUpdate. Outside it the chain is verified again, so
/// that the walk itself says what expired; no time decision is carried over.
struct CachedChain {
    ak: VerifiedAk,
    window: Window,
}

impl Windowed for CachedChain {
    fn window(&self) -> Window {
        self.window
    }
}

#[derive(Clone)]
struct CachedCrl {
    crl: VerifiedCrl,
}

/// The verified (time-independent) part of a CRL: the walk re-checks its window at every use.
impl Windowed for CachedCrl {
    fn window(&self) -> Window {
        Window::ALWAYS
    }
}

impl Default for GcpAkVerifier {
    /// Pinned to Google's "EK/AK CA Root".
    fn default() -> Self {
        GcpAkVerifier::new()
    }
}

impl GcpAkVerifier {
    /// Pinned to Google's "EK/AK CA Root" ([`GOOGLE_EKAK_CA_ROOT_DER`]).
    pub fn new() -> Self {
        GcpAkVerifier::with_root_der(GOOGLE_EKAK_CA_ROOT_DER)
    }

    /// Pinned to another root (`--gcp-root`, or a test PKI's), given as DER. A root that does
    /// not parse names no issuer, so every chain is refused.
    pub fn with_root_der(root_der: &[u8]) -> Self {
        let walker = ChainVerifier::new(ChainPolicy {
            algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
            root_sha256: Sha256::digest(root_der).into(),
        })
        .requiring_eku_if_present(tcg_kp_ek_certificate());
        GcpAkVerifier {
            walker,
            root_der: Arc::new(root_der.to_vec()),
            root_subject: Arc::new(subject_of(root_der).unwrap_or_default()),
            crls: VerifiedCache::new(CRL_CACHE_ENTRIES),
            chains: VerifiedCache::new(CHAIN_CACHE_ENTRIES),
        }
    }

    /// Hits and misses of the walker's certificate and link caches.
    pub(crate) fn cache_counts(&self) -> ChainCacheCounts {
        self.walker.cache_counts()
    }

    /// Builds the chain of `ak_cert` from `bundle` up to the pinned root and verifies it at
    /// `now`, with every CRL of the bundle whose issuer is in the chain.
    pub fn verify(
        &self,
        ak_cert: &[u8],
        bundle: &GcpCaBundle,
        now: u64,
    ) -> Result<VerifiedAk, GcpAkError> {
        self.verify_digested(ak_cert, bundle, &bundle.digest(), now)
    }

    /// [`Self::verify`] through a bundle whose digest is already known.
    pub(crate) fn verify_in(
        &self,
        ak_cert: &[u8],
        bundle: &DigestedBundle,
        now: u64,
    ) -> Result<VerifiedAk, GcpAkError> {
        self.verify_digested(ak_cert, &bundle.bundle, &bundle.digest, now)
    }

    /// A chain verified before with the same leaf and bundle is taken from the cache while `now`
    /// is inside its window (what the walk checks of time); otherwise it is walked again.
    fn verify_digested(
        &self,
        ak_cert: &[u8],
        bundle: &GcpCaBundle,
        bundle_digest: &[u8; 32],
        now: u64,
    ) -> Result<VerifiedAk, GcpAkError> {
        let key = Sha256::new()
            .chain_update(Sha256::digest(ak_cert))
            .chain_update(bundle_digest)
            .finalize()
            .into();
        let cached = self.chains.get_or_verify(key, now, || {
            self.verify_uncached(ak_cert, bundle, now).map(Arc::new)
        })?;
        Ok(cached.ak.clone())
    }

    fn verify_uncached(
        &self,
        ak_cert: &[u8],
        bundle: &GcpCaBundle,
        now: u64,
    ) -> Result<CachedChain, GcpAkError> {
        let chain = self.build_chain(ak_cert, bundle)?;
        let chain_refs: Vec<&[u8]> = chain.iter().map(|der| der.as_slice()).collect();
        // The chain first, so a chain to another root is named as such rather than by the
        // failure of a CRL the pinned root did not sign; then again with the CRLs, whose issuers
        // it has just verified (the walk's caches make the second one lookups).
        let leaf = self
            .walker
            .verify(&chain_refs, now, &[])
            .map_err(|error| foreign_root(error, &chain_refs))?;
        let mut window = Window {
            from: leaf.chain_not_before,
            until: leaf.chain_not_after,
        };
        let crls = self.chain_crls(&chain_refs, bundle, now)?;
        if !crls.is_empty() {
            let crl_refs: Vec<&VerifiedCrl> = crls.iter().map(|cached| &cached.crl).collect();
            self.walker.verify(&chain_refs, now, &crl_refs)?;
        }
        for cached in &crls {
            let crl = &cached.crl;
            window = window
                .narrow(crl.this_update, crl.next_update)
                .narrow(crl.issuer_chain_not_before, crl.issuer_chain_not_after);
        }
        if bundle.require_crl {
            require_crls(&chain_refs, &crls)?;
        }
        let leaf_cert = parse(ak_cert, 0)?;
        let ak = VerifiedAk {
            key: AkPublicKey::from_certificate(ak_cert)?,
            subject: leaf_cert.subject().to_string(),
            chain_sha256: chain
                .iter()
                .map(|der| crate::encoding::hex(Sha256::digest(der)))
                .collect(),
            crls_applied: crls.len(),
        };
        Ok(CachedChain { ak, window })
    }

    /// Leaf first, pinned root last: each issuer is the certificate of the bundle whose subject
    /// the one below names as its issuer (several intermediates share a name, so the key
    /// identifiers tell them apart when present; the walk then checks every signature).
    fn build_chain(
        &self,
        ak_cert: &[u8],
        bundle: &GcpCaBundle,
    ) -> Result<Vec<Vec<u8>>, GcpAkError> {
        let walk = self.walk(ak_cert, bundle)?;
        if walk.complete {
            return Ok(walk.chain);
        }
        let below = parse(
            walk.chain.last().expect("the chain has a leaf"),
            walk.chain.len() - 1,
        )?;
        Err(GcpAkError::IntermediateMissing {
            issuer: below.issuer().to_string(),
            subject: below.subject().to_string(),
        })
    }

    /// The chain [`Self::build_chain`] builds, as far as the bundle takes it.
    fn walk(&self, ak_cert: &[u8], bundle: &GcpCaBundle) -> Result<Walk, GcpAkError> {
        let mut chain = vec![ak_cert.to_vec()];
        loop {
            let below = parse(chain.last().expect("the chain has a leaf"), chain.len() - 1)?;
            if below.issuer().as_raw() == self.root_subject.as_slice() {
                chain.push(self.root_der.to_vec());
                return Ok(Walk {
                    chain,
                    complete: true,
                });
            }
            if chain.len() + 1 >= MAX_CHAIN_LEN {
                return Err(X509Error::ChainLength.into());
            }
            let wanted_key = authority_key_id(&below);
            let issuer = bundle.intermediates.iter().find(|candidate| {
                !chain.contains(candidate)
                    && X509Certificate::from_der(candidate).is_ok_and(|(_, cert)| {
                        cert.subject().as_raw() == below.issuer().as_raw()
                            && (wanted_key.is_none() || subject_key_id(&cert) == wanted_key)
                    })
            });
            match issuer {
                Some(issuer) => chain.push(issuer.clone()),
                None => {
                    return Ok(Walk {
                        chain,
                        complete: false,
                    })
                }
            }
        }
    }

    /// What `bundle` lacks for the chain of `ak_cert`, as the certificates themselves tell
    /// (nothing is verified: this only chooses what the service fetches, and the chain is then
    /// verified from the bundle as always).
    pub fn gaps(&self, ak_cert: &[u8], bundle: &GcpCaBundle) -> Result<ChainGaps, GcpAkError> {
        let walk = self.walk(ak_cert, bundle)?;
        let crl_issuers = bundle
            .crls
            .iter()
            .map(|crl| crl_issuer(crl))
            .collect::<Result<Vec<_>, _>>()?;
        let below_root = if walk.complete {
            &walk.chain[..walk.chain.len() - 1]
        } else {
            &walk.chain[..]
        };
        let mut crl_of = Vec::new();
        for (index, der) in below_root.iter().enumerate() {
            let cert = parse(der, index)?;
            let covered = crl_issuers
                .iter()
                .any(|issuer| issuer.as_slice() == cert.issuer().as_raw());
            if names_crl(&cert) && !covered {
                crl_of.push(der.clone());
            }
        }
        Ok(ChainGaps {
            issuer_of: (!walk.complete).then(|| walk.chain.last().expect("a leaf").clone()),
            crl_of,
        })
    }

    /// The bundle's CRLs issued by a CA of `chain`, each verified against that CA's chain to the
    /// root (signature, issuer, window at `now`); CRLs of other CAs are not this chain's.
    fn chain_crls(
        &self,
        chain: &[&[u8]],
        bundle: &GcpCaBundle,
        now: u64,
    ) -> Result<Vec<Arc<CachedCrl>>, GcpAkError> {
        let mut verified = Vec::new();
        for crl_der in &bundle.crls {
            let issuer = crl_issuer(crl_der)?;
            let Some(position) = (1..chain.len()).find(|&index| {
                X509Certificate::from_der(chain[index])
                    .is_ok_and(|(_, cert)| cert.subject().as_raw() == issuer.as_slice())
            }) else {
                continue;
            };
            let issuer_chain = &chain[position..];
            let mut key = Sha256::new().chain_update(Sha256::digest(crl_der));
            for der in issuer_chain {
                key.update(Sha256::digest(der));
            }
            let crl = self.crls.get_or_verify(key.finalize().into(), now, || {
                self.walker
                    .verify_crl(crl_der, issuer_chain, now)
                    .map(|crl| Arc::new(CachedCrl { crl }))
            })?;
            verified.push(crl);
        }
        Ok(verified)
    }
}

/// A link signature that fails just below the pinned root (which the chain builder appended by
/// name) means the chain was issued under another root of the same name.
fn foreign_root(error: X509Error, chain: &[&[u8]]) -> GcpAkError {
    let below_root = chain
        .len()
        .checked_sub(2)
        .and_then(|index| X509Certificate::from_der(chain[index]).ok())
        .map(|(_, cert)| label(&cert));
    match (&error, below_root) {
        (X509Error::Signature { subject }, Some(below)) if *subject == below => {
            GcpAkError::ForeignRoot { subject: below }
        }
        _ => error.into(),
    }
}

/// The name the walker gives a certificate in its errors: its common name, else its subject.
fn label(cert: &X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map_or_else(|| cert.subject().to_string(), str::to_owned)
}

/// 2.23.133.8.1 as an OID (DER content `67 81 05 08 01`).
fn tcg_kp_ek_certificate() -> Oid<'static> {
    Oid::new(std::borrow::Cow::Borrowed(&[0x67, 0x81, 0x05, 0x08, 0x01]))
}

/// With `--gcp-require-crl`: every certificate below the root that names a CRL distribution
/// point is covered by a verified CRL of its issuer.
fn require_crls(chain: &[&[u8]], crls: &[Arc<CachedCrl>]) -> Result<(), GcpAkError> {
    for (index, der) in chain[..chain.len() - 1].iter().enumerate() {
        let cert = parse(der, index)?;
        let covered = crls
            .iter()
            .any(|cached| cached.crl.issued_by(cert.issuer().as_raw()));
        if names_crl(&cert) && !covered {
            return Err(GcpAkError::CrlMissing {
                issuer: cert.issuer().to_string(),
                subject: cert.subject().to_string(),
            });
        }
    }
    Ok(())
}

/// Whether the certificate names a CRL distribution point.
fn names_crl(cert: &X509Certificate<'_>) -> bool {
    cert.extensions()
        .iter()
        .any(|ext| ext.oid == OID_X509_EXT_CRL_DISTRIBUTION_POINTS)
}

/// The authorityKeyIdentifier's keyIdentifier, if the certificate has one.
fn authority_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        })
}

/// The subjectKeyIdentifier, if the certificate has one.
fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

fn parse(der: &[u8], index: usize) -> Result<X509Certificate<'_>, GcpAkError> {
    match X509Certificate::from_der(der) {
        Ok((&[], cert)) => Ok(cert),
        Ok(_) => Err(X509Error::Unparsable {
            index,
            reason: "trailing bytes after the certificate".into(),
        }
        .into()),
        Err(error) => Err(X509Error::Unparsable {
            index,
            reason: error.to_string(),
        }
        .into()),
    }
}

fn subject_of(der: &[u8]) -> Option<Vec<u8>> {
    match X509Certificate::from_der(der) {
        Ok((&[], cert)) => Some(cert.subject().as_raw().to_vec()),
        _ => None,
    }
}

fn crl_issuer(der: &[u8]) -> Result<Vec<u8>, GcpAkError> {
    if der.len() > MAX_CRL_LEN {
        return Err(X509Error::CrlInvalid("larger than allowed".into()).into());
    }
    match read_crl(der) {
        Ok(crl) => Ok(crl.issuer.to_vec()),
        Err(reason) => Err(X509Error::CrlInvalid(reason).into()),
    }
}
