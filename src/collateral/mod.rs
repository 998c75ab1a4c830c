//! Collateral that fetches itself: Intel PCS/PCCS collateral for TDX quotes, and CA
//! certificates and CRLs named by certificates (Google's AK CA for GCP), cached until the end
//! each item carries and refreshed ahead of it. An edge room: the only code besides the CLI and
//! the service that touches the network. The verification core stays pure; what is fetched is
//! judged by the same verifier as inline collateral, at the caller's `now`.
//!
//! Entry points: [`CollateralFetcher::collateral_for_quote`] (Intel) and
//! [`CaFetcher::issuer_certificate`] / [`CaFetcher::crl`] (URLs from certificates, through a
//! [`UrlAllowlist`]). Failures: [`CollateralError`], whose `collateral_unavailable` kind (the
//! network failed and nothing valid is cached) is distinct from every verification failure.

mod allowlist;
mod assemble;
mod ca;
mod cert_urls;
mod disk;
mod error;
mod fetcher;
mod flight;
mod gate;
mod http;
mod intel;
mod item;
mod metrics;
mod refresh;
mod store;
mod target;
mod validity;

pub use allowlist::{UrlAllowlist, GOOGLE_PRIVATE_CA_CONTENT};
pub use ca::{CaConfig, CaFetcher};
pub use cert_urls::{ca_issuers_urls, crl_distribution_points};
pub(crate) use disk::write_atomically;
pub use error::{CollateralError, ConfigError, FetchError};
pub use fetcher::{CollateralConfig, CollateralFetcher, FetchedCollateral};
pub use http::HttpLimits;
pub use intel::{IntelService, INTEL_PCS_URL};
pub use item::{ItemKind, PckCa, TcbUpdate};
pub use metrics::{
    CollateralMetrics, EntryStatus, FetchCount, LookupCount, RESULT_INVALID, RESULT_OK,
};
pub use refresh::RefreshPolicy;
pub use target::QuoteTarget;
