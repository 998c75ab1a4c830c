//! The collateral room's errors. `kind()` strings are stable: the service and the CLI expose them.
//!
//! Three families stay apart: the network could not deliver (`collateral_unavailable`, retry
//! later), what it delivered does not verify (the verifier's own kinds, exactly as for inline
//! collateral), and a URL was refused by the allowlist (`url_not_allowed`, never retried).

use super::item::ItemKind;
use crate::tdx::TdxError;
use thiserror::Error;

/// Why one HTTP fetch produced nothing usable.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchError {
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} redirected to {location:?}, which is not followed")]
    RedirectRefused { url: String, location: String },
    #[error("{url} did not answer within {timeout_ms} ms")]
    Timeout { url: String, timeout_ms: u64 },
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url} sent more than the {max} bytes accepted")]
    TooLarge { url: String, max: usize },
    #[error("{url} sent a malformed response: {message}")]
    Malformed { url: String, message: String },
}

impl FetchError {
    /// Stable snake_case name, also the `result` label of the fetch counters.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::Status {
                status: 404 | 410, ..
            } => "not_found",
            FetchError::Status { .. } => "http_status",
            FetchError::RedirectRefused { .. } => "redirect_refused",
            FetchError::Timeout { .. } => "timeout",
            FetchError::Transport { .. } => "transport",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::Malformed { .. } => "malformed",
        }
    }

    /// Worth another attempt: the server or the path may recover within a request's budget.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => *status == 429 || *status >= 500,
            FetchError::Timeout { .. } | FetchError::Transport { .. } => true,
            FetchError::RedirectRefused { .. }
            | FetchError::TooLarge { .. }
            | FetchError::Malformed { .. } => false,
        }
    }
}

/// Why no collateral (or no CA certificate or CRL) could be supplied.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CollateralError {
    /// The quote cannot say which collateral it needs (malformed, not from Intel's QE, no PCK
    /// chain, a chain under another root). Carries the verifier's own error and kind.
    #[error("the quote does not identify its collateral: {0}")]
    Quote(TdxError),
    /// The PCK certificate's issuer is neither Intel's Processor nor its Platform CA.
    #[error("the PCK certificate's issuer {0:?} names neither the Processor nor the Platform CA")]
    UnknownPckCa(String),
    /// Fetched collateral that does not verify. Nothing of it was cached.
    #[error("fetched collateral does not verify: {0}")]
    Verification(TdxError),
    /// The fetch failed and nothing valid at `now` was cached.
    #[error("{item} is unavailable: {source}")]
    Unavailable { item: ItemKind, source: FetchError },
    /// A URL (from a certificate, so attacker-chosen) outside the fetch allowlist. Never requested.
    #[error("{url} is not on the fetch allowlist")]
    NotAllowed { url: String },
}

impl CollateralError {
    /// Stable snake_case name of the failure class.
    pub fn kind(&self) -> &'static str {
        match self {
            CollateralError::Quote(source) | CollateralError::Verification(source) => source.kind(),
            CollateralError::UnknownPckCa(_) => "certificate_invalid",
            CollateralError::Unavailable { .. } => "collateral_unavailable",
            CollateralError::NotAllowed { .. } => "url_not_allowed",
        }
    }
}

/// A collateral configuration that cannot work (bad URL, unusable cache directory...).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("collateral configuration: {what}: {message}")]
pub struct ConfigError {
    pub what: &'static str,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(what: &'static str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            what,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_keep_the_three_families_apart() {
        let fetch = FetchError::Timeout {
            url: "u".into(),
            timeout_ms: 1,
        };
        let unavailable = CollateralError::Unavailable {
            item: ItemKind::TcbInfo,
            source: fetch.clone(),
        };
        assert_eq!(unavailable.kind(), "collateral_unavailable");
        assert_eq!(
            CollateralError::Verification(TdxError::Signature("TCB Info")).kind(),
            "signature"
        );
        assert_eq!(
            CollateralError::NotAllowed { url: "u".into() }.kind(),
            "url_not_allowed"
        );
        assert_eq!(fetch.kind(), "timeout");
        let status = |status| FetchError::Status {
            url: "u".into(),
            status,
        };
        assert_eq!(status(404).kind(), "not_found");
        assert_eq!(status(410).kind(), "not_found");
        assert_eq!(status(400).kind(), "http_status");
        assert!(status(500).is_transient() && status(429).is_transient());
        assert!(!status(404).is_transient() && !status(400).is_transient());
    }
}
