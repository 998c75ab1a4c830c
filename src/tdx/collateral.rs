//! Collateral in dcap-qvl's `QuoteCollateralV3` JSON shape: PEM issuer chains, hex
//! DER CRLs, the TCB Info and QE Identity as their exact signed JSON text with hex r‖s
//! signatures, and an optional PEM PCK certificate chain.

use super::error::TdxError;
use super::pem;
use crate::encoding::parse_hex;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Largest collateral document accepted (real ones are 16–20 KB; PCK CRLs can grow).
pub const MAX_COLLATERAL_LEN: usize = 1 << 20;

#[derive(Deserialize)]
struct CollateralJson {
    pck_crl_issuer_chain: String,
    root_ca_crl: String,
    pck_crl: String,
    tcb_info_issuer_chain: String,
    tcb_info: String,
    tcb_info_signature: String,
    qe_identity_issuer_chain: String,
    qe_identity: String,
    qe_identity_signature: String,
    #[serde(default)]
    pck_certificate_chain: Option<String>,
}

/// Verification collateral for TDX quotes, decoded but not yet verified.
///
/// Immutable once built: the verifier caches what it verified under [`Collateral::digest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collateral {
    root_ca_crl: Vec<u8>,
    pck_crl: Vec<u8>,
    /// Kept as received, not consulted: the PCK CRL is verified against the CA that issued the
    /// PCK leaf, the one CA whose CRL covers the leaf (dcap-qvl does the same).
    pck_crl_issuer_chain: String,
    tcb_info_issuer_chain: Vec<Vec<u8>>,
    tcb_info: String,
    tcb_info_signature: Vec<u8>,
    qe_identity_issuer_chain: Vec<Vec<u8>>,
    qe_identity: String,
    qe_identity_signature: Vec<u8>,
    pck_certificate_chain: Option<Vec<Vec<u8>>>,
    digest: [u8; 32],
}

impl Collateral {
    /// Decodes `QuoteCollateralV3` JSON. Hex fields accept an optional `0x`; PEM chains must hold
    /// 1 to 8 certificates.
    pub fn from_json(bytes: &[u8]) -> Result<Collateral, TdxError> {
        if bytes.len() > MAX_COLLATERAL_LEN {
            return Err(TdxError::TooLarge {
                what: "collateral",
                len: bytes.len(),
                max: MAX_COLLATERAL_LEN,
            });
        }
        let json: CollateralJson = serde_json::from_slice(bytes)
            .map_err(|e| TdxError::CollateralInvalid(format!("collateral JSON: {e}")))?;
        let hex_field = |field: &'static str, text: &str| {
            parse_hex(text).map_err(|_| TdxError::CollateralInvalid(format!("{field} is not hex")))
        };
        let mut collateral = Collateral {
            root_ca_crl: hex_field("root_ca_crl", &json.root_ca_crl)?,
            pck_crl: hex_field("pck_crl", &json.pck_crl)?,
            pck_crl_issuer_chain: json.pck_crl_issuer_chain,
            tcb_info_issuer_chain: pem_chain(
                "tcb_info_issuer_chain",
                json.tcb_info_issuer_chain.as_bytes(),
            )?,
            tcb_info: json.tcb_info,
            tcb_info_signature: hex_field("tcb_info_signature", &json.tcb_info_signature)?,
            qe_identity_issuer_chain: pem_chain(
                "qe_identity_issuer_chain",
                json.qe_identity_issuer_chain.as_bytes(),
            )?,
            qe_identity: json.qe_identity,
            qe_identity_signature: hex_field("qe_identity_signature", &json.qe_identity_signature)?,
            pck_certificate_chain: json
                .pck_certificate_chain
                .map(|pem| pem_chain("pck_certificate_chain", pem.as_bytes()))
                .transpose()?,
            digest: [0; 32],
        };
        collateral.digest = collateral.compute_digest();
        Ok(collateral)
    }

    /// SHA-256 over every field, each length-prefixed: the identity of this collateral in caches.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The Intel SGX Root CA CRL (DER), which revokes intermediate CAs.
    pub fn root_ca_crl(&self) -> &[u8] {
        &self.root_ca_crl
    }

    /// The CRL of the PCK Platform or Processor CA (DER) that revokes PCK leaf certificates.
    pub fn pck_crl(&self) -> &[u8] {
        &self.pck_crl
    }

    /// The PEM text as received.
    pub fn pck_crl_issuer_chain(&self) -> &str {
        &self.pck_crl_issuer_chain
    }

    /// The TCB Info signing chain (DER, leaf first), ending at the Intel SGX Root CA.
    pub fn tcb_info_issuer_chain(&self) -> &[Vec<u8>] {
        &self.tcb_info_issuer_chain
    }

    /// The exact signed TCB Info JSON text.
    pub fn tcb_info(&self) -> &str {
        &self.tcb_info
    }

    /// ECDSA P-256 signature (r‖s, 64 bytes) over the exact [`Self::tcb_info`] text.
    pub fn tcb_info_signature(&self) -> &[u8] {
        &self.tcb_info_signature
    }

    /// The QE Identity signing chain (DER, leaf first), ending at the Intel SGX Root CA.
    pub fn qe_identity_issuer_chain(&self) -> &[Vec<u8>] {
        &self.qe_identity_issuer_chain
    }

    /// The exact signed QE Identity JSON text.
    pub fn qe_identity(&self) -> &str {
        &self.qe_identity
    }

    /// ECDSA P-256 signature (r‖s, 64 bytes) over the exact [`Self::qe_identity`] text.
    pub fn qe_identity_signature(&self) -> &[u8] {
        &self.qe_identity_signature
    }

    /// DER certificates of the optional PCK chain (leaf first).
    pub fn pck_certificate_chain(&self) -> Option<&[Vec<u8>]> {
        self.pck_certificate_chain.as_deref()
    }

    fn compute_digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        field(&self.root_ca_crl);
        field(&self.pck_crl);
        field(self.pck_crl_issuer_chain.as_bytes());
        field(&self.tcb_info_issuer_chain.concat());
        field(self.tcb_info.as_bytes());
        field(&self.tcb_info_signature);
        field(&self.qe_identity_issuer_chain.concat());
        field(self.qe_identity.as_bytes());
        field(&self.qe_identity_signature);
        match &self.pck_certificate_chain {
            Some(chain) => field(&chain.concat()),
            // Distinct from any present chain, whose concatenation is never empty.
            None => field(&[]),
        }
        hasher.finalize().into()
    }
}

/// DER certificates of a collateral PEM chain.
fn pem_chain(what: &'static str, pem: &[u8]) -> Result<Vec<Vec<u8>>, TdxError> {
    pem::certificates(pem).map_err(|e| TdxError::CollateralInvalid(format!("{what}: {e}")))
}
