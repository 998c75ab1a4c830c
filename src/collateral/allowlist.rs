//! Which URLs may be fetched when the URL comes from a certificate nobody has verified yet.
//!
//! An entry is a URL prefix, compared component by component after both sides are parsed (so
//! `http://host.evil/` never matches `http://host` and `/a/../b` is `/b`): same scheme, same
//! port, same host, and the path starts with the entry's path. The first label of the entry's
//! host may end in `*`, which stands for one or more letters, digits or hyphens inside that one
//! label: `http://privateca-content-*.storage.googleapis.com/` is Google's private-CA content
//! buckets, one per CA pool, and nothing else.

use super::error::ConfigError;
use reqwest::Url;

/// Google's private-CA content host, where GCE's AK certificates point for their issuers and
/// CRLs (`http://privateca-content-633beb94-….storage.googleapis.com/c59a…/ca.crt`).
pub const GOOGLE_PRIVATE_CA_CONTENT: &str = "http://privateca-content-*.storage.googleapis.com/";

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    scheme: String,
    port: Option<u16>,
    /// The host, or for a wildcard its first label before the `*`.
    host: String,
    /// After a wildcard label: the rest of the host, starting with `.`.
    wildcard_rest: Option<String>,
    path: String,
}

/// A set of URL prefixes; empty allows nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UrlAllowlist {
    rules: Vec<Rule>,
}

impl UrlAllowlist {
    /// Parses `prefixes` (each an absolute http or https URL, see the module documentation).
    pub fn new<S: AsRef<str>>(prefixes: &[S]) -> Result<UrlAllowlist, ConfigError> {
        let rules = prefixes
            .iter()
            .map(|prefix| Rule::parse(prefix.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(UrlAllowlist { rules })
    }

    /// Google's private-CA content host only.
    pub fn google_private_ca() -> UrlAllowlist {
        UrlAllowlist::new(&[GOOGLE_PRIVATE_CA_CONTENT]).expect("the default prefix parses")
    }

    /// Whether `url` may be fetched: it matches an entry (same scheme, port and host, a path
    /// under the entry's) and carries no user name or password.
    pub fn allows(&self, url: &Url) -> bool {
        let plain = url.username().is_empty() && url.password().is_none();
        plain && self.rules.iter().any(|rule| rule.matches(url))
    }

    /// [`UrlAllowlist::allows`] for text; what does not parse is not allowed.
    pub fn allows_str(&self, url: &str) -> bool {
        Url::parse(url).is_ok_and(|url| self.allows(&url))
    }
}

impl Rule {
    fn parse(prefix: &str) -> Result<Rule, ConfigError> {
        let invalid = |why: &str| ConfigError::new("fetch allowlist", format!("{prefix:?}: {why}"));
        // The URL parser refuses `*` in a host, so the wildcard label is set aside first.
        let (scheme, rest) = prefix
            .split_once("://")
            .ok_or_else(|| invalid("not an absolute URL"))?;
        let (label, after) = match rest.split_once('*') {
            Some((label, after)) => (Some(label), after),
            None => (None, rest),
        };
        let host_end = |text: &str| text.find(['/', ':', '?', '#']).unwrap_or(text.len());
        let placeholder = "wildcard";
        let parsed_text = match label {
            Some(label) => {
                if label.is_empty() || label.contains(['.', '/', ':', '@']) || label.ends_with('.')
                {
                    return Err(invalid("`*` may only end the first label of the host"));
                }
                if !after.starts_with('.') || host_end(after) < 2 {
                    return Err(invalid("`*` must be followed by the rest of the host"));
                }
                format!("{scheme}://{placeholder}{after}")
            }
            None => prefix.to_owned(),
        };
        let url = Url::parse(&parsed_text).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("only http and https can be fetched"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("credentials in the URL"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a prefix has no query or fragment"));
        }
        let host = url.host_str().ok_or_else(|| invalid("no host"))?.to_owned();
        let (host, wildcard_rest) = match label {
            Some(label) => {
                let rest = host
                    .strip_prefix(placeholder)
                    .ok_or_else(|| invalid("host does not parse"))?;
                (label.to_ascii_lowercase(), Some(rest.to_owned()))
            }
            None => (host, None),
        };
        Ok(Rule {
            scheme: url.scheme().to_owned(),
            port: url.port_or_known_default(),
            host,
            wildcard_rest,
            path: url.path().to_owned(),
        })
    }

    fn matches(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host_matches = match &self.wildcard_rest {
            None => host == self.host,
            Some(rest) => host
                .strip_suffix(rest.as_str())
                .and_then(|label| label.strip_prefix(self.host.as_str()))
                .is_some_and(|star| {
                    !star.is_empty()
                        && star
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                }),
        };
        url.scheme() == self.scheme
            && url.port_or_known_default() == self.port
            && host_matches
            && url.path().starts_with(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_default() {
        let allow = UrlAllowlist::google_private_ca();
        for good in [
            "http://privateca-content-633beb94-0000-25c1-a9d7-001a114ba6e8.storage.googleapis.com/c59a22589ab43a57e3a4/ca.crt",
            "http://privateca-content-62d71773-0000-21da-852e-f4f5e80d7778.storage.googleapis.com/032bf9d39db4fa06aade/crl.crl",
            "HTTP://PRIVATECA-CONTENT-ab.STORAGE.googleapis.com:80/x",
        ] {
            assert!(allow.allows_str(good), "{good}");
        }
        for bad in [
            "http://privateca-content-.storage.googleapis.com/x",
            "http://privateca-content-a.b.storage.googleapis.com/x",
            "http://privateca-content-x.storage.googleapis.com.evil.example/x",
            "http://evil.example/privateca-content-x.storage.googleapis.com/",
            "http://privateca-content-x.storage.googleapis.com@evil.example/x",
            "http://user@privateca-content-x.storage.googleapis.com/x",
            "https://privateca-content-x.storage.googleapis.com/x",
            "http://privateca-content-x.storage.googleapis.com:8080/x",
            "http://privateca-content_x.storage.googleapis.com/x",
            "http://storage.googleapis.com/privateca-content-x/x",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(!allow.allows_str(bad), "{bad}");
        }
    }

    #[test]
    fn plain_prefixes_compare_parsed_components() {
        let allow = UrlAllowlist::new(&["http://127.0.0.1:8080/ca/"]).unwrap();
        assert!(allow.allows_str("http://127.0.0.1:8080/ca/x.crt"));
        assert!(allow.allows_str("http://127.0.0.1:8080/ca/sub/x.crl?v=1"));
        assert!(!allow.allows_str("http://127.0.0.1:8080/ca/../other/x.crt"));
        assert!(!allow.allows_str("http://127.0.0.1:8081/ca/x.crt"));
        assert!(!allow.allows_str("http://127.0.0.1:8080/cab"));
        assert!(!allow.allows_str("https://127.0.0.1:8080/ca/x.crt"));
        assert!(!UrlAllowlist::default().allows_str("http://127.0.0.1:8080/ca/x.crt"));
    }

    #[test]
    fn bad_prefixes_are_refused() {
        for bad in [
            "privateca-content-*",
            "http://*.example/",
            "http://a*b.example/",
            "http://a.*.example/",
            "http://a*/",
            "ftp://a.example/",
            "http://u:p@a.example/",
            "http://a.example/?q",
        ] {
            assert!(UrlAllowlist::new(&[bad]).is_err(), "{bad}");
        }
    }
}
