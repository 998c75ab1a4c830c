//! Fetching CA certificates by AIA caIssuers and CRLs by CRL distribution point (Google's AK CA
//! for GCP vTPMs), cached by URL until the certificate's notAfter or the
//! CRL's nextUpdate.
//!
//! The URLs come from certificates nobody has verified yet, so they are attacker-chosen: only
//! URLs on the allowlist are requested, a redirect is followed only to another one, and
//! responses are capped. What is fetched is not verified here; the chain verification that
//! asked for it verifies it, every time.

use super::allowlist::UrlAllowlist;
use super::error::{CollateralError, ConfigError, FetchError};
use super::flight::SingleFlight;
use super::http::{HttpClient, HttpLimits};
use super::item::ItemKind;
use super::metrics::{entry_status, CollateralMetrics, Counters, RESULT_OK};
use super::store::{Entry, Store};
use super::validity::{self, Validity};
use reqwest::Url;
use std::sync::Arc;
use x509_parser::pem::parse_x509_pem;

/// Largest CA certificate response read (PEM of the largest certificate parsed).
const MAX_CERTIFICATE_RESPONSE_LEN: usize = 4 * crate::x509::MAX_DER_LEN;
/// Largest CRL response read.
const MAX_CRL_RESPONSE_LEN: usize = crate::x509::MAX_CRL_LEN;

/// What the CA fetcher may fetch and how.
#[derive(Clone, Debug)]
pub struct CaConfig {
    /// The URL prefixes that may be fetched; every other URL is refused unrequested.
    pub allow: UrlAllowlist,
    /// Timeouts, retries and the per-host request limit.
    pub http: HttpLimits,
}

impl Default for CaConfig {
    /// Google's private-CA content host only.
    fn default() -> Self {
        CaConfig {
            allow: UrlAllowlist::google_private_ca(),
            http: HttpLimits::default(),
        }
    }
}

/// Fetches and caches CA certificates and CRLs by URL. Cloning shares everything.
#[derive(Clone)]
pub struct CaFetcher {
    inner: Arc<Inner>,
}

type Fetched = Result<Arc<Vec<u8>>, CollateralError>;

struct Inner {
    allow: UrlAllowlist,
    http: HttpClient,
    certificates: Store<String, Vec<u8>>,
    crls: Store<String, Vec<u8>>,
    flights: SingleFlight<(ItemKind, String), Fetched>,
    counters: Counters,
}

impl CaFetcher {
    /// A fetcher with an empty cache. Fails only if the HTTP client cannot be built.
    pub fn new(config: CaConfig) -> Result<CaFetcher, ConfigError> {
        let http = HttpClient::new(config.http, Some(config.allow.clone()))?;
        Ok(CaFetcher {
            inner: Arc::new(Inner {
                allow: config.allow,
                http,
                certificates: Store::default(),
                crls: Store::default(),
                flights: SingleFlight::default(),
                counters: Counters::new(&ItemKind::CA),
            }),
        })
    }

    /// The DER certificate at `url` (an AIA caIssuers URL; DER or PEM on the wire), from the
    /// cache while `now` is inside its validity.
    pub async fn issuer_certificate(&self, url: &str, now: u64) -> Fetched {
        self.get(ItemKind::CaIssuer, url, now).await
    }

    /// The DER CRL at `url` (a CRL distribution point; DER or PEM on the wire), from the cache
    /// while `now` is inside thisUpdate..nextUpdate. A CRL fetched outside its window is
    /// returned, for the verifier to refuse, but not cached.
    pub async fn crl(&self, url: &str, now: u64) -> Fetched {
        self.get(ItemKind::CaCrl, url, now).await
    }

    /// The counters, and every cached entry's age and time left at `now`.
    pub fn metrics(&self, now: u64) -> CollateralMetrics {
        let entries = [
            (ItemKind::CaIssuer, &self.inner.certificates),
            (ItemKind::CaCrl, &self.inner.crls),
        ]
        .into_iter()
        .flat_map(|(kind, store)| {
            store.entries().into_iter().map(move |(url, entry)| {
                entry_status(kind, url, entry.fetched_at, entry.validity.until, true, now)
            })
        })
        .collect();
        self.inner.counters.snapshot(entries)
    }

    async fn get(&self, kind: ItemKind, url: &str, now: u64) -> Fetched {
        let inner = &self.inner;
        let url = match Url::parse(url) {
            Ok(parsed) if inner.allow.allows(&parsed) => parsed.to_string(),
            _ => {
                return Err(CollateralError::NotAllowed {
                    url: url.to_owned(),
                })
            }
        };
        let store = match kind {
            ItemKind::CaIssuer => &inner.certificates,
            _ => &inner.crls,
        };
        if let Some(entry) = store.get(&url, now) {
            inner.counters.looked_up(kind, true);
            return Ok(entry.value);
        }
        inner.counters.looked_up(kind, false);
        inner
            .flights
            .run((kind, url.clone()), || async {
                if let Some(entry) = store.get(&url, now) {
                    return Ok(entry.value);
                }
                let unavailable = |source: FetchError| {
                    inner.counters.fetched(kind, source.kind());
                    CollateralError::Unavailable { item: kind, source }
                };
                let max = match kind {
                    ItemKind::CaIssuer => MAX_CERTIFICATE_RESPONSE_LEN,
                    _ => MAX_CRL_RESPONSE_LEN,
                };
                let response = inner.http.get(&url, max).await.map_err(unavailable)?;
                let (der, validity) = decode(kind, &response.body).map_err(|message| {
                    unavailable(FetchError::Malformed {
                        url: url.clone(),
                        message,
                    })
                })?;
                inner.counters.fetched(kind, RESULT_OK);
                let der = Arc::new(der);
                if validity.contains(now) {
                    let entry = Entry::new(der.clone(), validity, now, true, validity.until);
                    store.insert(url.clone(), entry);
                }
                Ok(der)
            })
            .await
    }
}

/// The DER of a certificate or CRL body (DER or one PEM block), and its validity.
fn decode(kind: ItemKind, body: &[u8]) -> Result<(Vec<u8>, Validity), String> {
    let (label, read) = match kind {
        ItemKind::CaIssuer => ("CERTIFICATE", validity::certificate as fn(&[u8]) -> _),
        _ => ("X509 CRL", validity::crl as fn(&[u8]) -> _),
    };
    let der = if body.starts_with(b"-----BEGIN") {
        let (_, pem) = parse_x509_pem(body).map_err(|e| format!("PEM: {e}"))?;
        if pem.label != label {
            return Err(format!("a {:?} PEM block, not {label:?}", pem.label));
        }
        pem.contents
    } else {
        body.to_vec()
    };
    let validity = read(&der)?;
    Ok((der, validity))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tdx::INTEL_SGX_ROOT_CA_DER;

    #[test]
    fn bodies_are_der_or_pem() {
        let (der, validity) = decode(ItemKind::CaIssuer, INTEL_SGX_ROOT_CA_DER).unwrap();
        assert_eq!(der, INTEL_SGX_ROOT_CA_DER);
        assert!(validity.until > validity.from);
        assert!(decode(ItemKind::CaCrl, INTEL_SGX_ROOT_CA_DER).is_err());
        assert!(decode(
            ItemKind::CaIssuer,
            b"-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n"
        )
        .is_err());
        assert!(decode(ItemKind::CaIssuer, b"garbage").is_err());
    }

    #[tokio::test]
    async fn urls_off_the_allowlist_are_refused() {
        let fetcher = CaFetcher::new(CaConfig::default()).unwrap();
        for url in [
            "http://evil.example/ca.crt",
            "not a url",
            "file:///etc/passwd",
        ] {
            let err = fetcher.issuer_certificate(url, 0).await.unwrap_err();
            assert_eq!(err.kind().as_str(), "url_not_allowed", "{url}");
            assert_eq!(
                fetcher.crl(url, 0).await.unwrap_err().kind().as_str(),
                "url_not_allowed"
            );
        }
        assert!(fetcher.metrics(0).fetches.is_empty());
    }
}
