//! A bounded HTTP GET: connect and whole-request timeouts, a few attempts with jittered
//! exponential backoff for transient failures, a limit on concurrent requests per host, and a
//! size cap enforced before and while the body is read. Redirects are followed only to URLs
//! on an allowlist (none for Intel: its URLs are configured, not taken from certificates).

use super::allowlist::UrlAllowlist;
use super::error::{ConfigError, FetchError};
use reqwest::header::HeaderMap;
use reqwest::redirect;
use reqwest::Url;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Redirect hops followed at most (to allowlisted URLs only).
const MAX_REDIRECTS: usize = 3;

/// Time and concurrency bounds of every fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// For establishing one connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// For one attempt, from sending the request to the last byte of the body.
    pub request_timeout: Duration,
    /// Attempts per fetch (1 = no retry). Only timeouts, transport errors, 429 and 5xx retry.
    pub attempts: u32,
    /// Delay before the first retry; it doubles per retry up to `max_backoff`, and each delay is
    /// drawn uniformly from its upper half.
    pub backoff: Duration,
    /// The longest delay between two attempts.
    pub max_backoff: Duration,
    /// Requests in flight to one host (host and port) at a time.
    pub per_host_requests: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            attempts: 3,
            backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            per_host_requests: 8,
        }
    }
}

/// A successful (2xx) response.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// The GET client of one fetcher. Cloning shares connections and per-host limits.
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: reqwest::Client,
    limits: HttpLimits,
    hosts: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl HttpClient {
    /// `redirects`: the URLs a redirect may lead to; `None` follows no redirect.
    pub(crate) fn new(
        limits: HttpLimits,
        redirects: Option<UrlAllowlist>,
    ) -> Result<HttpClient, ConfigError> {
        if limits.attempts == 0 || limits.per_host_requests == 0 {
            return Err(ConfigError::new(
                "HTTP limits",
                "attempts and per-host requests must be at least 1",
            ));
        }
        let policy = match redirects {
            None => redirect::Policy::none(),
            Some(allowlist) => redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() <= MAX_REDIRECTS && allowlist.allows(attempt.url()) {
                    attempt.follow()
                } else {
                    // The 3xx itself is returned, and refused below.
                    attempt.stop()
                }
            }),
        };
        let client = reqwest::Client::builder()
            .connect_timeout(limits.connect_timeout)
            .timeout(limits.request_timeout)
            .redirect(policy)
            .user_agent(concat!("tee-verifier/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::new("HTTP client", e.to_string()))?;
        Ok(HttpClient {
            client,
            limits,
            hosts: Arc::default(),
        })
    }

    /// GETs `url`, retrying transient failures; the body may hold at most `max_body` bytes.
    pub(crate) async fn get(&self, url: &str, max_body: usize) -> Result<Response, FetchError> {
        let parsed = Url::parse(url).map_err(|e| FetchError::Malformed {
            url: url.to_owned(),
            message: format!("not a URL: {e}"),
        })?;
        let mut delay = self.limits.backoff;
        let mut attempt = 1;
        loop {
            match self.attempt(&parsed, max_body).await {
                Err(err) if err.is_transient() && attempt < self.limits.attempts => {
                    tokio::time::sleep(jittered(delay)).await;
                    delay = (delay * 2).min(self.limits.max_backoff);
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn attempt(&self, url: &Url, max_body: usize) -> Result<Response, FetchError> {
        let host = self.host_limit(url);
        let _permit = host
            .acquire()
            .await
            .expect("host semaphores are never closed");
        let text = url.as_str();
        let mut response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| self.transport(text, &e))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("")
                .to_owned();
            return Err(FetchError::RedirectRefused {
                url: text.to_owned(),
                location,
            });
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                url: text.to_owned(),
                status: status.as_u16(),
            });
        }
        let too_large = || FetchError::TooLarge {
            url: text.to_owned(),
            max: max_body,
        };
        if response
            .content_length()
            .is_some_and(|len| len > max_body as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport(text, &e))?
        {
            if body.len() + chunk.len() > max_body {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            headers: response.headers().clone(),
            body,
        })
    }

    fn host_limit(&self, url: &Url) -> Arc<Semaphore> {
        let host = format!(
            "{}:{}",
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        );
        let mut hosts = self.hosts.lock().expect("host limits lock");
        hosts
            .entry(host)
            .or_insert_with(|| Arc::new(Semaphore::new(self.limits.per_host_requests)))
            .clone()
    }

    fn transport(&self, url: &str, error: &reqwest::Error) -> FetchError {
        if error.is_timeout() {
            return FetchError::Timeout {
                url: url.to_owned(),
                timeout_ms: u64::try_from(self.limits.request_timeout.as_millis())
                    .unwrap_or(u64::MAX),
            };
        }
        // reqwest's Display hides the cause ("error sending request"); name the whole chain.
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        FetchError::Transport {
            url: url.to_owned(),
            message,
        }
    }
}

/// A delay drawn uniformly from `[delay / 2, delay]`, so that clients that failed together do
/// not retry together.
fn jittered(delay: Duration) -> Duration {
    let mut random = [0u8; 8];
    // The system RNG does not fail on supported platforms; without it, no jitter.
    let _ = aws_lc_rs::rand::fill(&mut random);
    let fraction = u64::from_le_bytes(random) as f64 / u64::MAX as f64;
    delay / 2 + delay.mul_f64(fraction / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_the_upper_half() {
        let delay = Duration::from_millis(400);
        for _ in 0..100 {
            let jittered = jittered(delay);
            assert!(jittered >= delay / 2 && jittered <= delay, "{jittered:?}");
        }
    }

    #[test]
    fn limits_must_allow_a_request() {
        let limits = HttpLimits {
            attempts: 0,
            ..HttpLimits::default()
        };
        assert!(HttpClient::new(limits, None).is_err());
        let limits = HttpLimits {
            per_host_requests: 0,
            ..HttpLimits::default()
        };
        assert!(HttpClient::new(limits, None).is_err());
    }

    #[tokio::test]
    async fn unparsable_urls_are_not_fetched() {
        let client = HttpClient::new(HttpLimits::default(), None).unwrap();
        let err = client.get("not a url", 10).await.unwrap_err();
        assert_eq!(err.kind(), "malformed");
    }
}
