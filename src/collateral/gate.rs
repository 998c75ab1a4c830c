//! The gate a fetched collateral set passes before it is cached: the verifier's own
//! [`TdxVerifier::verify`] at the caller's `now`, with the quote that asked for it.
//!
//! `verify` checks the collateral first (root CA CRL, then each signed document's window, signer
//! chain and signature, then the PCK CRL against the quote's PCK CA) and only then the quote
//! itself. A failure of the second kind says nothing against the collateral: the set is cached
//! and the caller's own verification reports the quote's failure. Everything `verify` checks
//! before the collateral (the quote parses, its QE is Intel's, it carries a PCK chain), and the
//! walk of that chain to the pinned root, were already required by
//! [`super::QuoteTarget::of_quote`].

use crate::tdx::{Collateral, TdxError, TdxPolicy, TdxVerifier};

/// Passes unless `collateral` itself fails verification with `quote` at `now`.
pub(crate) fn admit(
    verifier: &TdxVerifier,
    quote: &[u8],
    collateral: &Collateral,
    now: u64,
) -> Result<(), TdxError> {
    // The TD attribute policy is the caller's; it is appraised after everything else anyway.
    let policy = TdxPolicy { allow_debug: true };
    match verifier.verify(quote, collateral, now, &policy) {
        Err(error) if !blames_quote(&error) => Err(error),
        _ => Ok(()),
    }
}

/// Failures that `verify` can only reach once the collateral has verified: they concern the
/// quote's PCK chain, QE, signature or TCB. Anything else blames the collateral (fail closed:
/// an unlisted failure keeps the set out of the cache).
fn blames_quote(error: &TdxError) -> bool {
    match error {
        TdxError::Chain { what, .. } => *what == "PCK chain",
        TdxError::Signature(what) => matches!(*what, "QE report" | "quote"),
        TdxError::PckExtension(_)
        | TdxError::BindingMismatch(_)
        | TdxError::QeIdentityMismatch(_)
        | TdxError::TdxModuleMismatch(_)
        | TdxError::TcbLevelNotFound(_)
        | TdxError::Revoked
        | TdxError::TdAttributes(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x509::X509Error;

    #[test]
    fn collateral_failures_are_not_the_quotes() {
        let chain = |what| TdxError::Chain {
            what,
            source: X509Error::ChainLength,
        };
        for quote_side in [
            chain("PCK chain"),
            TdxError::Signature("quote"),
            TdxError::Signature("QE report"),
            TdxError::Revoked,
            TdxError::TcbLevelNotFound(String::new()),
        ] {
            assert!(blames_quote(&quote_side), "{quote_side}");
        }
        for collateral_side in [
            chain("TCB Info"),
            chain("QE Identity"),
            chain("root CA CRL"),
            chain("PCK CRL"),
            TdxError::Signature("TCB Info"),
            TdxError::Signature("QE Identity"),
            TdxError::SignerNotIssuedByRoot("TCB Info"),
            TdxError::CollateralInvalid(String::new()),
            TdxError::CollateralMismatch(String::new()),
            TdxError::CollateralExpired {
                what: "TCB Info",
                valid_until: 0,
                now: 1,
            },
        ] {
            assert!(!blames_quote(&collateral_side), "{collateral_side}");
        }
    }
}
