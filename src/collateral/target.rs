//! What collateral a quote needs: the FMSPC and the issuing CA of its PCK certificate.
//!
//! Everything the verifier checks before it looks at collateral (the quote parses, its QE is
//! Intel's) is checked here too, and the PCK chain is walked to the pinned root (without CRLs,
//! which are what is about to be fetched). A quote that fails these never causes a fetch: an
//! FMSPC or CA read from a forged certificate never reaches Intel, and a quote used to verify a
//! fetched set carries a genuine PCK chain, so the set is judged on its own merits.

use super::error::CollateralError;
use super::item::PckCa;
use crate::tdx::quote::INTEL_QE_VENDOR_ID;
use crate::tdx::{PckInfo, Quote, TdxError};
use crate::x509::{ChainVerifier, X509Error};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

/// The collateral set a quote needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QuoteTarget {
    /// The platform's FMSPC, from the PCK certificate's SGX extension.
    pub fmspc: [u8; 6],
    /// The Intel CA that issued the PCK certificate.
    pub ca: PckCa,
}

impl QuoteTarget {
    /// Reads the target from the PCK certificate chain the quote carries (certification data
    /// type 5), once `chains` has verified it at `now`.
    pub(crate) fn of_quote(
        quote: &[u8],
        chains: &ChainVerifier,
        now: u64,
    ) -> Result<QuoteTarget, CollateralError> {
        let quote = Quote::parse(quote).map_err(CollateralError::Quote)?;
        if quote.header.qe_vendor_id != INTEL_QE_VENDOR_ID {
            return Err(CollateralError::Quote(TdxError::QeIdentityMismatch(
                format!(
                    "QE vendor ID {} is not Intel's",
                    crate::encoding::hex(quote.header.qe_vendor_id)
                ),
            )));
        }
        let chain = match quote.pck_chain() {
            Some(chain) => chain.map_err(CollateralError::Quote)?,
            None => {
                return Err(CollateralError::Quote(TdxError::CollateralMissing(
                    format!(
                        "the quote carries no PCK certificate chain ({:?}), which fetching needs",
                        quote.signature_data.certification.data_type
                    ),
                )))
            }
        };
        let pck_chain_error = |source| {
            CollateralError::Quote(TdxError::Chain {
                what: "PCK chain",
                source,
            })
        };
        let ders: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
        chains.verify(&ders, now, &[]).map_err(pck_chain_error)?;
        let leaf = ders
            .first()
            .ok_or_else(|| pck_chain_error(X509Error::ChainLength))?;
        let fmspc = PckInfo::from_certificate(leaf)
            .map_err(CollateralError::Quote)?
            .fmspc;
        let issuer = issuer_common_name(leaf).unwrap_or_default();
        let ca = PckCa::from_issuer_name(&issuer).ok_or(CollateralError::UnknownPckCa(issuer))?;
        Ok(QuoteTarget { fmspc, ca })
    }
}

fn issuer_common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let name = cert.issuer().iter_common_name().next()?.as_str().ok()?;
    Some(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tdx::INTEL_SGX_ROOT_CA_SHA256;
    use crate::x509::{ChainPolicy, SignatureAlgorithm};
    use sha2::{Digest, Sha256};

    fn fixture(name: &str) -> Vec<u8> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tdx");
        std::fs::read(dir.join(name)).unwrap()
    }

    fn walker(root_sha256: [u8; 32]) -> ChainVerifier {
        ChainVerifier::new(ChainPolicy {
            algorithm: SignatureAlgorithm::EcdsaP256Sha256,
            root_sha256,
        })
    }

    fn fixture_walker() -> ChainVerifier {
        walker(Sha256::digest(fixture("root_ca.der")).into())
    }

    const NOW: u64 = 1_750_000_000;

    #[test]
    fn fmspc_and_ca_from_the_pck_certificate() {
        let target = QuoteTarget::of_quote(&fixture("quote_v4.bin"), &fixture_walker(), NOW);
        assert_eq!(
            target.unwrap(),
            QuoteTarget {
                fmspc: [0x90, 0xc0, 0x6f, 0, 0, 0],
                ca: PckCa::Platform
            }
        );
    }

    #[test]
    fn quotes_that_name_no_collateral() {
        let quote = fixture("quote_v4.bin");
        let kind = |bytes: &[u8], walker: &ChainVerifier, now: u64| {
            QuoteTarget::of_quote(bytes, walker, now)
                .unwrap_err()
                .kind()
                .as_str()
        };
        let fixtures = fixture_walker();
        // Under another root (here: the fixtures against Intel's).
        let intel = walker(INTEL_SGX_ROOT_CA_SHA256);
        assert_eq!(kind(&quote, &intel, NOW), "untrusted_root");
        // The PCK leaf ends a year after NOW.
        assert_eq!(kind(&quote, &fixtures, NOW + 400 * 86_400), "expired");
        assert_eq!(kind(&quote[..100], &fixtures, NOW), "malformed");
        let mut foreign_qe = quote.clone();
        foreign_qe[12] ^= 1;
        assert_eq!(kind(&foreign_qe, &fixtures, NOW), "qe_identity_mismatch");
    }
}
