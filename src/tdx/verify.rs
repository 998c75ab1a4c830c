//! Full DCAP verification of a TDX quote at an explicit `now`, with caches. The order follows
//! dcap-qvl (≈ Intel's QVL): collateral windows, signatures and issuer chains (TCB Info and QE
//! Identity signers issued directly by the root), the PCK chain with CRLs, the QE report
//! signature and binding, the QE identity, the quote signature, then the TCB appraisal; a
//! `Revoked` level is an error, every other status is returned for the caller's policy.
//!
//! Collateral shared by many quotes is verified once and cached with the window in which every
//! part of it is valid; a cached entry is only used when `now` lies inside that window (outside
//! it the entry is re-verified, which reports the precise failure):
//! - per collateral: root CA CRL, TCB Info and QE Identity (signatures, issuer chains, windows);
//! - per (collateral, PCK CA): the PCK CRL;
//! - per (collateral, QE certification data, QE report, attestation key): the PCK chain with
//!   revocation, the SGX extension, the QE report signature and binding, the QE identity match.
//!
//! A warm verification therefore checks only the quote signature, then appraises the TCB levels
//! and TD attributes, which take no cryptography. Lookups of every cache are counted
//! ([`TdxVerifier::cache_counts`]).

use super::collateral::Collateral;
use super::error::TdxError;
use super::json::check_window;
use super::pck::PckInfo;
use super::policy::{check_td_attributes, TdxPolicy};
use super::qe_identity::QeIdentity;
use super::quote::{Quote, INTEL_QE_VENDOR_ID};
use super::status::{TcbStatus, TcbVerdict};
use super::tcb_info::TcbInfo;
use crate::cache::{CacheCounts, VerifiedCache, Window, Windowed};
use crate::crypto::{self, Curve, SignatureEncoding};
use crate::x509::{
    ChainCacheCounts, ChainPolicy, ChainVerifier, SignatureAlgorithm, VerifiedCrl, X509Error,
};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::sync::Arc;

/// The Intel SGX Root CA (DER), the trust anchor of every TDX quote.
pub const INTEL_SGX_ROOT_CA_DER: &[u8] = include_bytes!("intel_sgx_root_ca.der");
/// SHA-256 of [`INTEL_SGX_ROOT_CA_DER`], the pin.
pub const INTEL_SGX_ROOT_CA_SHA256: [u8; 32] = [
    0x44, 0xa0, 0x19, 0x6b, 0x2b, 0x99, 0xf8, 0x89, 0xb8, 0xe1, 0x49, 0xe9, 0x5b, 0x80, 0x7a, 0x35,
    0x0e, 0x74, 0x24, 0x96, 0x43, 0x99, 0xe8, 0x85, 0xa7, 0xcb, 0xb8, 0xcc, 0xfa, 0xb6, 0x74, 0xd3,
];

/// Collateral sets (one per FMSPC and PCS update) kept verified.
const COLLATERAL_CACHE_CAPACITY: u64 = 256;
/// Verified PCK CRLs (one per collateral set and PCK CA).
const PCK_CRL_CACHE_CAPACITY: u64 = 256;
/// Verified QEs (one per platform and attestation key).
const QE_CACHE_CAPACITY: u64 = 16 * 1024;

/// A quote that verified, with its TCB appraisal. Acceptance of the status is the caller's policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedQuote {
    /// The parsed quote whose signatures and chain verified.
    pub quote: Quote,
    /// Converged platform, TDX module and QE status (`UpToDate`, `OutOfDate`, ...; never `Revoked`).
    pub tcb_status: TcbStatus,
    /// Advisories of the platform, module and QE levels, without duplicates.
    pub advisory_ids: Vec<String>,
    /// Status of the platform TCB level (with the TDX module) alone.
    pub platform_tcb_status: String,
    /// Status of the QE Identity TCB level alone.
    pub qe_tcb_status: String,
    /// Platform identity and TCB certified by the PCK certificate.
    pub pck: PckInfo,
    /// The platform's PPID (from the PCK certificate), for callers that key on the machine.
    pub ppid: Vec<u8>,
    /// The platform's FMSPC (from the PCK certificate), which selected the TCB Info.
    pub fmspc: [u8; 6],
    /// The older of the TCB Info's and QE Identity's TCB evaluation data numbers.
    pub tcb_evaluation_data_number: u32,
    /// Earliest expiry of everything this verification relied on (unix seconds).
    pub valid_until: u64,
}

/// Lookups of a [`TdxVerifier`]'s caches. A warm verification looks up only the collateral and
/// the QE; the PCK CRL and the chains are looked up while a QE is verified, the chains also while
/// a collateral set is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TdxCacheCounts {
    /// The walker of the Intel PKI (collateral signers, CRL issuers, PCK chains).
    pub chains: ChainCacheCounts,
    /// One lookup per verification of a parsed quote from Intel's QE.
    pub collateral: CacheCounts,
    /// Looked up while a QE is verified (after a QE cache miss).
    pub pck_crl: CacheCounts,
    /// One lookup per verification whose collateral verified.
    pub qe: CacheCounts,
}

/// Verifies TDX quotes against one pinned root. Cloning shares the caches and their counters;
/// `Send + Sync`.
#[derive(Clone)]
pub struct TdxVerifier {
    root_der: Arc<[u8]>,
    chains: ChainVerifier,
    collaterals: VerifiedCache<[u8; 32], Arc<VerifiedCollateral>>,
    pck_crls: VerifiedCache<[u8; 32], Arc<VerifiedPckCrl>>,
    qes: VerifiedCache<[u8; 32], Arc<VerifiedQe>>,
}

struct VerifiedCollateral {
    tcb_info: TcbInfo,
    qe_identity: QeIdentity,
    root_crl: VerifiedCrl,
    window: Window,
}

struct VerifiedPckCrl {
    crl: VerifiedCrl,
    window: Window,
}

struct VerifiedQe {
    /// The quote's certification data this QE was verified with, compared in full on a hit:
    /// the key covers everything else, and hashing these ~4 KB on every quote would cost more
    /// than comparing them.
    certification_data: Box<[u8]>,
    pck: PckInfo,
    qe_tcb: TcbVerdict,
    window: Window,
}

impl Windowed for VerifiedCollateral {
    fn window(&self) -> Window {
        self.window
    }
}

impl Windowed for VerifiedPckCrl {
    fn window(&self) -> Window {
        self.window
    }
}

impl Windowed for VerifiedQe {
    fn window(&self) -> Window {
        self.window
    }
}

impl Default for TdxVerifier {
    fn default() -> Self {
        TdxVerifier::new()
    }
}

impl TdxVerifier {
    /// A verifier pinned to the Intel SGX Root CA.
    pub fn new() -> TdxVerifier {
        TdxVerifier::pinned(INTEL_SGX_ROOT_CA_DER.into(), INTEL_SGX_ROOT_CA_SHA256)
    }

    /// A verifier pinned to another root (test PKIs).
    pub fn with_root_der(root_der: &[u8]) -> TdxVerifier {
        TdxVerifier::pinned(root_der.into(), Sha256::digest(root_der).into())
    }

    fn pinned(root_der: Arc<[u8]>, root_sha256: [u8; 32]) -> TdxVerifier {
        TdxVerifier {
            chains: ChainVerifier::new(ChainPolicy {
                algorithm: SignatureAlgorithm::EcdsaP256Sha256,
                root_sha256,
            })
            .with_root_der(Arc::clone(&root_der)),
            root_der,
            collaterals: VerifiedCache::new(COLLATERAL_CACHE_CAPACITY),
            pck_crls: VerifiedCache::new(PCK_CRL_CACHE_CAPACITY),
            qes: VerifiedCache::new(QE_CACHE_CAPACITY),
        }
    }

    /// Hits and misses of every cache since this verifier (or the one it was cloned from) was
    /// created. A cached entry found outside its window is re-verified: a miss.
    pub fn cache_counts(&self) -> TdxCacheCounts {
        TdxCacheCounts {
            chains: self.chains.cache_counts(),
            collateral: self.collaterals.counts(),
            pck_crl: self.pck_crls.counts(),
            qe: self.qes.counts(),
        }
    }

    /// Verifies `quote` with `collateral` at `now` (unix seconds) and appraises its TCB.
    ///
    /// Every TCB status except `Revoked` is returned as data; a quote whose platform meets no TCB
    /// level is an error.
    pub fn verify(
        &self,
        quote: &[u8],
        collateral: &Collateral,
        now: u64,
        policy: &TdxPolicy,
    ) -> Result<VerifiedQuote, TdxError> {
        let quote = Quote::parse(quote)?;
        if quote.header.qe_vendor_id != INTEL_QE_VENDOR_ID {
            return Err(TdxError::QeIdentityMismatch(format!(
                "QE vendor ID {} is not Intel's",
                crate::encoding::hex(quote.header.qe_vendor_id)
            )));
        }
        let verified = self.verified_collateral(collateral, now)?;
        let qe = self.verified_qe(&quote, collateral, &verified, now)?;
        let signature = &quote.signature_data;
        crypto::verify(
            Curve::P256,
            &crypto::sec1_from_xy(&signature.attestation_key),
            &quote.signed_region,
            &signature.signature,
            SignatureEncoding::RawRs,
        )
        .map_err(|_| TdxError::Signature("quote"))?;

        let platform = verified.tcb_info.appraise(&qe.pck, &quote.body)?;
        let mut converged = platform.launch.clone();
        converged.absorb(&qe.qe_tcb);
        let current = platform
            .current
            .as_ref()
            .map(|current| current.status.converge_with_component(qe.qe_tcb.status));
        if converged.status == TcbStatus::Revoked || current == Some(TcbStatus::Revoked) {
            return Err(TdxError::Revoked);
        }
        if let Some(current) = current {
            converged.status = converged.status.check_for_relaunch(current);
        }
        check_td_attributes(&quote.body, policy)?;

        Ok(VerifiedQuote {
            tcb_status: converged.status,
            advisory_ids: converged.advisory_ids,
            platform_tcb_status: platform.launch.status.as_str().to_owned(),
            qe_tcb_status: qe.qe_tcb.status.as_str().to_owned(),
            ppid: qe.pck.ppid.clone(),
            fmspc: qe.pck.fmspc,
            pck: qe.pck.clone(),
            tcb_evaluation_data_number: verified
                .tcb_info
                .tcb_evaluation_data_number
                .min(verified.qe_identity.tcb_evaluation_data_number),
            valid_until: verified.window.until.min(qe.window.until),
            quote,
        })
    }

    fn verified_collateral(
        &self,
        collateral: &Collateral,
        now: u64,
    ) -> Result<Arc<VerifiedCollateral>, TdxError> {
        self.collaterals
            .get_or_verify(*collateral.digest(), now, || {
                self.verify_collateral(collateral, now).map(Arc::new)
            })
    }

    /// Root CA CRL, then the TCB Info and QE Identity: windows, signer chains, signatures.
    fn verify_collateral(
        &self,
        collateral: &Collateral,
        now: u64,
    ) -> Result<VerifiedCollateral, TdxError> {
        // Collateral issued under another root would first fail on the root CA CRL's issuer;
        // name the actual cause.
        for (what, chain) in [
            ("TCB Info", collateral.tcb_info_issuer_chain()),
            ("QE Identity", collateral.qe_identity_issuer_chain()),
        ] {
            self.check_pinned_root(what, chain)?;
        }
        let root: &[u8] = &self.root_der;
        // The walker also refuses a root CA CRL that lists the root itself.
        let root_crl = self
            .chains
            .verify_crl(collateral.root_ca_crl(), &[root], now)
            .map_err(chain_error("root CA CRL"))?;
        let mut window = crl_window(&root_crl);

        // Like dcap-qvl, each document's own window is checked before its signer's: stale
        // collateral is named as such. The JSON read first is bounded and parsed by serde only.
        let tcb_info = TcbInfo::parse(collateral.tcb_info())?;
        check_window("TCB Info", tcb_info.issue_date, tcb_info.next_update, now)?;
        window = window.narrow(tcb_info.issue_date, tcb_info.next_update);
        window = window.intersect(self.verify_signed_document(
            "TCB Info",
            collateral.tcb_info_issuer_chain(),
            collateral.tcb_info().as_bytes(),
            collateral.tcb_info_signature(),
            &root_crl,
            now,
        )?);

        let qe_identity = QeIdentity::parse(collateral.qe_identity())?;
        let (issued, next_update) = (qe_identity.issue_date, qe_identity.next_update);
        check_window("QE Identity", issued, next_update, now)?;
        window = window.narrow(issued, next_update);
        window = window.intersect(self.verify_signed_document(
            "QE Identity",
            collateral.qe_identity_issuer_chain(),
            collateral.qe_identity().as_bytes(),
            collateral.qe_identity_signature(),
            &root_crl,
            now,
        )?);
        Ok(VerifiedCollateral {
            tcb_info,
            qe_identity,
            root_crl,
            window,
        })
    }

    fn check_pinned_root(&self, what: &'static str, chain: &[Vec<u8>]) -> Result<(), TdxError> {
        let root = self
            .chains
            .der_hash(chain.last().map_or(&[][..], Vec::as_slice));
        if root != self.chains.policy().root_sha256 {
            return Err(chain_error(what)(X509Error::UntrustedRoot {
                found: crate::encoding::hex(root),
            }));
        }
        Ok(())
    }

    /// Verifies the signer chain (signer issued directly by the root) and the r‖s signature over
    /// the exact document text; returns the chain's validity window.
    fn verify_signed_document(
        &self,
        what: &'static str,
        chain: &[Vec<u8>],
        text: &[u8],
        signature: &[u8],
        root_crl: &VerifiedCrl,
        now: u64,
    ) -> Result<Window, TdxError> {
        let chain: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
        let signer = self
            .chains
            .verify(&chain, now, &[root_crl])
            .map_err(chain_error(what))?;
        if chain.len() != 2 {
            return Err(TdxError::SignerNotIssuedByRoot(what));
        }
        crypto::verify(
            Curve::P256,
            &signer.public_key,
            text,
            signature,
            SignatureEncoding::RawRs,
        )
        .map_err(|_| TdxError::Signature(what))?;
        Ok(Window::ALWAYS.narrow(signer.chain_not_before, signer.chain_not_after))
    }

    fn verified_qe(
        &self,
        quote: &Quote,
        collateral: &Collateral,
        verified: &VerifiedCollateral,
        now: u64,
    ) -> Result<Arc<VerifiedQe>, TdxError> {
        let key = qe_cache_key(quote, collateral);
        let certification_data = &quote.signature_data.certification.data;
        if let Some(hit) = self.qes.get_if(&key, now, |qe| {
            *qe.certification_data == **certification_data
        }) {
            return Ok(hit);
        }
        let verified = Arc::new(self.verify_qe(quote, collateral, verified, now)?);
        self.qes.insert(key, Arc::clone(&verified));
        Ok(verified)
    }

    /// PCK chain with both CRLs, SGX extension, QE report signature and binding, QE identity.
    fn verify_qe(
        &self,
        quote: &Quote,
        collateral: &Collateral,
        verified: &VerifiedCollateral,
        now: u64,
    ) -> Result<VerifiedQe, TdxError> {
        let signature = &quote.signature_data;
        let pck_chain: Cow<'_, [Vec<u8>]> = match (collateral.pck_certificate_chain(), quote.pck_chain()) {
            (Some(chain), _) => Cow::Borrowed(chain),
            (None, Some(chain)) => Cow::Owned(chain?),
            (None, None) => {
                return Err(TdxError::CollateralMissing(format!(
                    "the quote carries no PCK certificate chain ({:?}); pck_certificate_chain is needed",
                    signature.certification.data_type
                )))
            }
        };
        let chain: Vec<&[u8]> = pck_chain.iter().map(Vec::as_slice).collect();
        let (leaf_der, issuer_chain) = match chain.split_first() {
            Some((leaf, issuers)) if !issuers.is_empty() => (*leaf, issuers),
            _ => return Err(chain_error("PCK chain")(X509Error::ChainLength)),
        };
        let pck_crl = self.verified_pck_crl(collateral, issuer_chain, now)?;
        let leaf = self
            .chains
            .verify(&chain, now, &[&verified.root_crl, &pck_crl.crl])
            .map_err(chain_error("PCK chain"))?;
        let pck = PckInfo::from_verified_certificate(leaf_der)?;

        crypto::verify(
            Curve::P256,
            &leaf.public_key,
            &signature.qe_report_bytes,
            &signature.qe_report_signature,
            SignatureEncoding::RawRs,
        )
        .map_err(|_| TdxError::Signature("QE report"))?;
        let expected: [u8; 32] = Sha256::new()
            .chain_update(signature.attestation_key)
            .chain_update(&signature.qe_auth_data)
            .finalize()
            .into();
        let report_data = &signature.qe_report.report_data;
        if report_data[..32] != expected {
            return Err(TdxError::BindingMismatch(
                "REPORTDATA[0..32] is not SHA-256(attestation key || QE auth data)",
            ));
        }
        if report_data[32..] != [0; 32] {
            return Err(TdxError::BindingMismatch("REPORTDATA[32..64] is not zero"));
        }
        let qe_tcb = verified.qe_identity.appraise(&signature.qe_report)?;
        Ok(VerifiedQe {
            certification_data: signature.certification.data.as_slice().into(),
            pck,
            qe_tcb,
            window: Window::ALWAYS
                .narrow(leaf.chain_not_before, leaf.chain_not_after)
                .intersect(pck_crl.window),
        })
    }

    /// The PCK CRL, verified against the CA that issued the PCK leaf (`issuer_chain[0]`).
    fn verified_pck_crl(
        &self,
        collateral: &Collateral,
        issuer_chain: &[&[u8]],
        now: u64,
    ) -> Result<Arc<VerifiedPckCrl>, TdxError> {
        let mut hasher = Sha256::new().chain_update(collateral.digest());
        for der in issuer_chain {
            hasher.update(self.chains.der_hash(der));
        }
        self.pck_crls
            .get_or_verify(hasher.finalize().into(), now, || {
                let crl = self
                    .chains
                    .verify_crl(collateral.pck_crl(), issuer_chain, now)
                    .map_err(chain_error("PCK CRL"))?;
                let window = crl_window(&crl);
                Ok(Arc::new(VerifiedPckCrl { crl, window }))
            })
    }
}

/// Everything the cached QE verification depends on, besides `now` and the certification data
/// (compared in full on a hit, [`VerifiedQe::certification_data`]); its type is keyed.
fn qe_cache_key(quote: &Quote, collateral: &Collateral) -> [u8; 32] {
    let signature = &quote.signature_data;
    let mut hasher = Sha256::new();
    hasher.update(collateral.digest());
    hasher.update(signature.attestation_key);
    hasher.update(signature.qe_report_bytes);
    hasher.update(signature.qe_report_signature);
    hasher.update((signature.qe_auth_data.len() as u64).to_le_bytes());
    hasher.update(&signature.qe_auth_data);
    hasher.update(signature.certification.data_type.code().to_le_bytes());
    hasher.finalize().into()
}

fn chain_error(what: &'static str) -> impl Fn(X509Error) -> TdxError {
    move |source| TdxError::Chain { what, source }
}

/// Where a verified CRL and its issuer's chain are all valid.
fn crl_window(crl: &VerifiedCrl) -> Window {
    Window::ALWAYS
        .narrow(crl.issuer_chain_not_before, crl.issuer_chain_not_after)
        .narrow(crl.this_update, crl.next_update)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::certificate::X509Certificate;
    use x509_parser::prelude::FromDer;

    #[test]
    fn the_embedded_root_is_the_pinned_intel_root() {
        let digest: [u8; 32] = Sha256::digest(INTEL_SGX_ROOT_CA_DER).into();
        assert_eq!(digest, INTEL_SGX_ROOT_CA_SHA256);
        assert_eq!(
            hex::encode(INTEL_SGX_ROOT_CA_SHA256),
            "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
        );
        let (_, root) = X509Certificate::from_der(INTEL_SGX_ROOT_CA_DER).unwrap();
        assert_eq!(root.subject().to_string(), root.issuer().to_string());
        assert!(root.subject().to_string().contains("Intel SGX Root CA"));
    }

    /// The committed fixtures of `fixtures/tdx/`: root, collateral, and `quote_v4.bin` and
    /// `quote_v5_td10.bin` (same PCK chain, distinct QE report signatures), valid at [`NOW`].
    fn fixture(name: &str) -> Vec<u8> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tdx");
        std::fs::read(dir.join(name)).unwrap()
    }

    const NOW: u64 = 1_750_000_000;

    fn counts(hits: u64, misses: u64) -> CacheCounts {
        CacheCounts { hits, misses }
    }

    #[test]
    fn cache_counts_cold_then_warm() {
        let verifier = TdxVerifier::with_root_der(&fixture("root_ca.der"));
        let collateral = Collateral::from_json(&fixture("collateral.json")).unwrap();
        let policy = TdxPolicy::default();
        assert_eq!(verifier.cache_counts(), TdxCacheCounts::default());

        let quote = fixture("quote_v4.bin");
        verifier.verify(&quote, &collateral, NOW, &policy).unwrap();
        // Cold. Certificates: root CRL issuer [root]; TCB Info and QE Identity signers
        // [signer, root] twice; PCK CRL issuer [PCK CA, root]; PCK chain [leaf, PCK CA, root]:
        // 4 distinct certificates of 10 lookups. Links: signer→root twice, PCK CA→root twice,
        // leaf→PCK CA: 3 distinct of 5.
        let cold = TdxCacheCounts {
            chains: ChainCacheCounts {
                certificates: counts(6, 4),
                links: counts(2, 3),
            },
            collateral: counts(0, 1),
            pck_crl: counts(0, 1),
            qe: counts(0, 1),
        };
        assert_eq!(verifier.cache_counts(), cold);

        // Warm, through a clone (shared counters): the collateral and the QE, nothing else.
        verifier
            .clone()
            .verify(&quote, &collateral, NOW, &policy)
            .unwrap();
        let warm = TdxCacheCounts {
            collateral: counts(1, 1),
            qe: counts(1, 1),
            ..cold
        };
        assert_eq!(verifier.cache_counts(), warm);

        // The same quote with one byte of its PCK chain changed (nothing signed covers it): not
        // the cached QE, verified again, refused.
        let mut tampered = quote.clone();
        let pem = tampered
            .windows(27)
            .position(|window| window == b"-----BEGIN CERTIFICATE-----")
            .unwrap();
        tampered[pem + 100] = if tampered[pem + 100] == b'A' {
            b'B'
        } else {
            b'A'
        };
        let err = verifier
            .verify(&tampered, &collateral, NOW, &policy)
            .unwrap_err();
        assert_eq!(err.kind().as_str(), "certificate_invalid", "{err}");
        assert_eq!(verifier.cache_counts().qe, counts(1, 2));
        verifier.verify(&quote, &collateral, NOW, &policy).unwrap();
        let counts_now = verifier.cache_counts();
        assert_eq!(
            (counts_now.collateral, counts_now.pck_crl, counts_now.qe),
            (counts(3, 1), counts(1, 1), counts(2, 2)),
            "the original still hits"
        );

        // Another quote of the same platform: its QE report signature differs, so the QE is
        // verified again, from the cached PCK CRL and a warm chain.
        let other = fixture("quote_v5_td10.bin");
        verifier.verify(&other, &collateral, NOW, &policy).unwrap();
        assert_eq!(
            verifier.cache_counts(),
            TdxCacheCounts {
                chains: ChainCacheCounts {
                    certificates: counts(11, 5),
                    links: counts(5, 3),
                },
                collateral: counts(4, 1),
                pck_crl: counts(2, 1),
                qe: counts(2, 3),
            }
        );

        // Past the collateral's nextUpdate the cached entry is unusable: a miss, then a failure.
        let late = NOW + 40 * 86_400;
        let err = verifier
            .verify(&quote, &collateral, late, &policy)
            .unwrap_err();
        assert_eq!(err.kind().as_str(), "collateral_expired", "{err}");
        assert_eq!(verifier.cache_counts().collateral, counts(4, 2));
    }
}
