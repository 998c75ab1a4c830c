//! The collateral room's errors. `kind()` strings are stable: the service and the CLI expose them.
//!
//! Three families stay apart: the network could not deliver (`collateral_unavailable`, retry
//! later), what it delivered does not verify (the verifier's own kinds, exactly as for inline
//! collateral), and a URL was refused by the allowlist (`url_not_allowed`, never retried).

use super::item::ItemKind;
use crate::error::ErrorKind;
use crate::tdx::TdxError;
use thiserror::Error;

/// Why one HTTP fetch produced nothing usable.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchError {
    /// The server answered with a status other than 200.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The server redirected to a URL outside the allowlist (or too many times).
    #[error("{url} redirected to {location:?}, which is not followed")]
    RedirectRefused {
        /// The URL requested.
        url: String,
        /// The `Location` it redirected to.
        location: String,
    },
    /// No complete answer within the request timeout.
    #[error("{url} did not answer within {timeout_ms} ms")]
    Timeout {
        /// The URL requested.
        url: String,
        /// The timeout of one attempt, in milliseconds.
        timeout_ms: u64,
    },
    /// The connection failed or broke (DNS, TCP, TLS, a body cut short).
    #[error("{url}: {message}")]
    Transport {
        /// The URL requested.
        url: String,
        /// What failed.
        message: String,
    },
    /// The body exceeded the size accepted for the item; reading stopped at the bound.
    #[error("{url} sent more than the {max} bytes accepted")]
    TooLarge {
        /// The URL requested.
        url: String,
        /// The bound, in bytes.
        max: usize,
    },
    /// A body or header that does not decode (bad hex, PEM, JSON or percent-encoding, a missing
    /// issuer chain header).
    #[error("{url} sent a malformed response: {message}")]
    Malformed {
        /// The URL requested.
        url: String,
        /// What does not decode.
        message: String,
    },
}

impl FetchError {
    /// Stable snake_case name, the `result` label of the fetch counters. A fetch failure reaches
    /// callers as [`CollateralError::Unavailable`], whose kind is `collateral_unavailable`.
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
    Unavailable {
        /// The item that could not be supplied.
        item: ItemKind,
        /// The last fetch failure.
        source: FetchError,
    },
    /// A URL (from a certificate, so attacker-chosen) outside the fetch allowlist. Never requested.
    #[error("{url} is not on the fetch allowlist")]
    NotAllowed {
        /// The refused URL.
        url: String,
    },
}

impl CollateralError {
    /// The class of the failure: the verifier's own kind for a quote or collateral that does not
    /// verify, [`ErrorKind::CollateralUnavailable`] when the network failed and nothing valid is
    /// cached, [`ErrorKind::UrlNotAllowed`] for a refused URL.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CollateralError::Quote(source) | CollateralError::Verification(source) => source.kind(),
            CollateralError::UnknownPckCa(_) => ErrorKind::CertificateInvalid,
            CollateralError::Unavailable { .. } => ErrorKind::CollateralUnavailable,
            CollateralError::NotAllowed { .. } => ErrorKind::UrlNotAllowed,
        }
    }
}

/// A collateral configuration that cannot work (bad URL, unusable cache directory...).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("collateral configuration: {what}: {message}")]
pub struct ConfigError {
    /// The setting at fault (e.g. `"collateral cache directory"`).
    pub what: &'static str,
    /// Why it cannot work.
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
        assert_eq!(unavailable.kind().as_str(), "collateral_unavailable");
        assert_eq!(
            CollateralError::Verification(TdxError::Signature("TCB Info"))
                .kind()
                .as_str(),
            "signature"
        );
        assert_eq!(
            CollateralError::NotAllowed { url: "u".into() }
                .kind()
                .as_str(),
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
