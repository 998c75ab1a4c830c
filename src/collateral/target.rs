//! What collateral a quote needs: the FMSPC and the issuing CA of its PCK certificate.
//!
//! Everything the verifier checks before it looks at collateral (the quote parses, its QE is
//! Intel's) is checked here too, plus that the PCK chain ends in the pinned root: a quote that
//! fails these never causes a fetch, and a fetched set is then judged on its own merits.

use super::error::CollateralError;
use super::item::PckCa;
use crate::tdx::quote::INTEL_QE_VENDOR_ID;
use crate::tdx::{PckInfo, Quote, TdxError};
use crate::x509::X509Error;
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

/// The collateral set a quote needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QuoteTarget {
    pub fmspc: [u8; 6],
    pub ca: PckCa,
}

impl QuoteTarget {
    /// Reads the target from the PCK certificate chain the quote carries (certification data
    /// type 5), which must end in the root whose SHA-256 is `root_sha256`.
    pub fn of_quote(quote: &[u8], root_sha256: &[u8; 32]) -> Result<QuoteTarget, CollateralError> {
        let quote = Quote::parse(quote).map_err(CollateralError::Quote)?;
        if quote.header.qe_vendor_id != INTEL_QE_VENDOR_ID {
            return Err(CollateralError::Quote(TdxError::QeIdentityMismatch(
                format!(
                    "QE vendor ID {} is not Intel's",
                    hex::encode(quote.header.qe_vendor_id)
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
        let (leaf, root) = match chain.as_slice() {
            [leaf, .., root] => (leaf, root),
            _ => return Err(pck_chain_error(X509Error::ChainLength)),
        };
        let found: [u8; 32] = Sha256::digest(root).into();
        if &found != root_sha256 {
            return Err(pck_chain_error(X509Error::UntrustedRoot {
                found: hex::encode(found),
            }));
        }
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

    fn fixture(name: &str) -> Vec<u8> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tdx");
        std::fs::read(dir.join(name)).unwrap()
    }

    fn fixture_root() -> [u8; 32] {
        Sha256::digest(fixture("root_ca.der")).into()
    }

    #[test]
    fn fmspc_and_ca_from_the_pck_certificate() {
        let target = QuoteTarget::of_quote(&fixture("quote_v4.bin"), &fixture_root()).unwrap();
        assert_eq!(
            target,
            QuoteTarget {
                fmspc: [0x90, 0xc0, 0x6f, 0, 0, 0],
                ca: PckCa::Platform
            }
        );
    }

    #[test]
    fn quotes_that_name_no_collateral() {
        let quote = fixture("quote_v4.bin");
        let kind =
            |bytes: &[u8], root: &[u8; 32]| QuoteTarget::of_quote(bytes, root).unwrap_err().kind();
        // Under another root (here: the fixtures against Intel's).
        assert_eq!(kind(&quote, &INTEL_SGX_ROOT_CA_SHA256), "untrusted_root");
        assert_eq!(kind(&quote[..100], &fixture_root()), "malformed");
        let mut foreign_qe = quote.clone();
        foreign_qe[12] ^= 1;
        assert_eq!(kind(&foreign_qe, &fixture_root()), "qe_identity_mismatch");
    }
}
