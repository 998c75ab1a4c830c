//! The intermediates and CRLs a GCP attestation's AK chain needs when the configured CA bundle
//! (`--gcp-ca-bundle`) lacks them: fetched through the collateral room's [`CaFetcher`] by the
//! URLs the certificates name (AIA caIssuers, CRL distribution points), and added to the bundle
//! the verifier is given for this one request. Nothing fetched is trusted here: the chain and
//! every CRL are verified from that bundle exactly as from the configured one, at the request's
//! `now`, so a fetched CRL that is stale is `collateral_expired` and one that revokes is `revoked`.
//!
//! The URLs come from certificates nobody has verified yet: one off the allowlist is never
//! requested, and the chain then lacks what it names (the verifier's `collateral_missing`, naming
//! the issuer to supply). Fail closed: a fetch that fails is UNAVAILABLE
//! (`collateral_unavailable`), never an answer.

use super::convert::{with_kind, VerifyJob};
use crate::collateral::{ca_issuers_urls, crl_distribution_points, CaFetcher, CollateralError};
use crate::dstack::gcp_ak::GcpCaBundle;
use crate::error::ErrorKind;
use crate::evidence::EvidenceVerifier;
use tonic::Status;

/// The bundle to verify `job`'s AK chain with, when it is GCP evidence whose chain lacks an
/// intermediate or a CRL that `fetcher` could fetch; `None` when the configured bundle is used
/// as it is (no fetcher, not GCP evidence, nothing missing, or nothing that may be fetched).
pub(super) async fn supply(
    fetcher: Option<&CaFetcher>,
    verifier: &EvidenceVerifier,
    job: &VerifyJob,
    now: u64,
) -> Result<Option<GcpCaBundle>, Status> {
    let Some(fetcher) = fetcher else {
        return Ok(None);
    };
    // Evidence that does not parse: the verifier says why.
    let Ok(Some(ak_cert)) = crate::evidence::gcp_ak_certificate(&job.input()) else {
        return Ok(None);
    };
    let (chains, configured) = verifier.gcp_ak();
    let mut bundle: Option<GcpCaBundle> = None;
    let mut fetched_issuer_of: Option<Vec<u8>> = None;
    // Each round adds the issuer of one more certificate, so a chain's length bounds them.
    for _ in 0..crate::x509::MAX_CHAIN_LEN {
        let current = bundle.as_ref().unwrap_or(configured);
        // A chain that does not parse or is too long: the verifier says why.
        let Ok(gaps) = chains.gaps(&ak_cert, current) else {
            break;
        };
        match gaps.issuer_of {
            // The certificate fetched last round is not the issuer after all: the verifier
            // names the one still missing.
            Some(below) if fetched_issuer_of.as_ref() == Some(&below) => break,
            Some(below) => {
                let Some(issuer) =
                    fetch_first(fetcher, &ca_issuers_urls(&below), now, Item::Issuer).await?
                else {
                    break;
                };
                bundle
                    .get_or_insert_with(|| configured.clone())
                    .intermediates
                    .push(issuer);
                fetched_issuer_of = Some(below);
            }
            None => {
                for cert in &gaps.crl_of {
                    let urls = crl_distribution_points(cert);
                    if let Some(crl) = fetch_first(fetcher, &urls, now, Item::Crl).await? {
                        bundle
                            .get_or_insert_with(|| configured.clone())
                            .crls
                            .push(crl);
                    }
                }
                break;
            }
        }
    }
    Ok(bundle)
}

#[derive(Clone, Copy)]
enum Item {
    Issuer,
    Crl,
}

/// The first of `urls` on the allowlist, fetched (or from the fetcher's cache); `None` when
/// none is on it. Those off it are never requested.
async fn fetch_first(
    fetcher: &CaFetcher,
    urls: &[String],
    now: u64,
    item: Item,
) -> Result<Option<Vec<u8>>, Status> {
    for url in urls {
        let fetched = match item {
            Item::Issuer => fetcher.issuer_certificate(url, now).await,
            Item::Crl => fetcher.crl(url, now).await,
        };
        match fetched {
            Ok(der) => return Ok(Some(der.to_vec())),
            Err(CollateralError::NotAllowed { url }) => {
                tracing::warn!(%url, "a certificate of a GCP AK chain names a URL off --ca-fetch-allow; not fetched");
            }
            Err(error) => return Err(unavailable(&error)),
        }
    }
    Ok(None)
}

fn unavailable(error: &CollateralError) -> Status {
    tracing::warn!(%error, "GCP AK CA collateral is not cached and its fetch failed");
    with_kind(
        Status::unavailable(format!("GCP AK CA collateral is unavailable: {error}")),
        ErrorKind::CollateralUnavailable,
    )
}
