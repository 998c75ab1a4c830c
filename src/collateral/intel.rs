//! Intel PCS and PCCS, API v4, for TDX: the URL of each item, the header that
//! carries its issuer chain, and the decoding of its response into an [`Item`].
//!
//! The signed JSON documents are kept as the exact bytes received (the signature covers them);
//! CRLs are accepted as DER or as the hex text PCCS sends for the root CA CRL.

use super::cert_urls::crl_distribution_points;
use super::error::ConfigError;
use super::item::{Content, Item, ItemKey, Raw, TcbUpdate};
use super::validity::{self, Validity};
use crate::encoding::parse_hex;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Intel's Provisioning Certification Service.
pub const INTEL_PCS_URL: &str = "https://api.trustedservices.intel.com";

/// Which API a base URL speaks. They differ only in how the root CA CRL is obtained: a PCCS
/// serves it at `/sgx/certification/v4/rootcacrl` (hex), Intel's PCS not at all, so it comes
/// from the root certificate's CRL distribution point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntelService {
    /// Intel's Provisioning Certification Service.
    Pcs,
    /// A Provisioning Certificate Caching Service (Intel's or a compatible one).
    Pccs,
}

impl IntelService {
    /// Intel's PCS when the URL's host is under `trustedservices.intel.com` (as QCNL decides).
    pub fn detect(base_url: &str) -> IntelService {
        let host = reqwest::Url::parse(base_url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_ascii_lowercase));
        match host {
            Some(host) if host == "trustedservices.intel.com" => IntelService::Pcs,
            Some(host) if host.ends_with(".trustedservices.intel.com") => IntelService::Pcs,
            _ => IntelService::Pccs,
        }
    }
}

/// The URL of every item, fixed at configuration.
#[derive(Clone, Debug)]
pub(crate) struct Endpoints {
    base: String,
    update: TcbUpdate,
    root_ca_crl: String,
}

impl Endpoints {
    /// `base_url` may end in `/sgx/certification/v4` or `/tdx/certification/v4` and a `/`, as
    /// dstack's documented URLs do; both are dropped. The root CA CRL comes from
    /// `root_ca_crl_url` if given, else from the PCCS, else from `trust_anchor_der`'s CRL
    /// distribution point.
    pub(crate) fn new(
        base_url: &str,
        service: Option<IntelService>,
        update: TcbUpdate,
        root_ca_crl_url: Option<&str>,
        trust_anchor_der: &[u8],
    ) -> Result<Endpoints, ConfigError> {
        let base = base_url
            .trim_end_matches('/')
            .trim_end_matches("/sgx/certification/v4")
            .trim_end_matches("/tdx/certification/v4")
            .trim_end_matches('/')
            .to_owned();
        check_url("PCS/PCCS URL", &base)?;
        let root_ca_crl = match (
            root_ca_crl_url,
            service.unwrap_or(IntelService::detect(&base)),
        ) {
            (Some(url), _) => url.to_owned(),
            (None, IntelService::Pccs) => format!("{base}/sgx/certification/v4/rootcacrl"),
            (None, IntelService::Pcs) => crl_distribution_points(trust_anchor_der)
                .into_iter()
                .next()
                .ok_or_else(|| {
                    ConfigError::new(
                        "root CA CRL URL",
                        "the trust anchor names no CRL distribution point; give one",
                    )
                })?,
        };
        check_url("root CA CRL URL", &root_ca_crl)?;
        Ok(Endpoints {
            base,
            update,
            root_ca_crl,
        })
    }

    pub(crate) fn url(&self, key: ItemKey) -> String {
        let (base, update) = (&self.base, self.update.as_str());
        match key {
            ItemKey::TcbInfo { fmspc } => format!(
                "{base}/tdx/certification/v4/tcb?fmspc={}&update={update}",
                crate::encoding::hex_upper(fmspc)
            ),
            ItemKey::QeIdentity => {
                format!("{base}/tdx/certification/v4/qe/identity?update={update}")
            }
            // Always the sgx path, also for TDX.
            ItemKey::PckCrl { ca } => {
                format!("{base}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der")
            }
            ItemKey::RootCaCrl => self.root_ca_crl.clone(),
        }
    }
}

fn check_url(what: &'static str, url: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Ok(()),
        Ok(parsed) => Err(ConfigError::new(
            what,
            format!("{url}: scheme {} is not http or https", parsed.scheme()),
        )),
        Err(e) => Err(ConfigError::new(what, format!("{url}: {e}"))),
    }
}

/// The response headers that may carry an item's issuer chain (URL-encoded PEM), in order of
/// preference; empty for the root CA CRL. The TCB Info header was renamed in v4; dcap-qvl
/// accepts both names.
pub(crate) fn issuer_chain_headers(key: ItemKey) -> &'static [&'static str] {
    match key {
        ItemKey::TcbInfo { .. } => &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"],
        ItemKey::QeIdentity => &["SGX-Enclave-Identity-Issuer-Chain"],
        ItemKey::PckCrl { .. } => &["SGX-PCK-CRL-Issuer-Chain"],
        ItemKey::RootCaCrl => &[],
    }
}

/// Why a response is not the item asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Not the shape of the item at all (truncated, wrong encoding, missing header...).
    Malformed(String),
    /// A well-formed document for something else (another FMSPC, an SGX identity...).
    Mismatch(String),
}

#[derive(Deserialize)]
struct TcbInfoBody {
    #[serde(rename = "tcbInfo")]
    document: Box<RawValue>,
    signature: String,
}

#[derive(Deserialize)]
struct QeIdentityBody {
    #[serde(rename = "enclaveIdentity")]
    document: Box<RawValue>,
    signature: String,
}

/// The fields of a TCB Info or QE Identity that identify it and bound its use.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DocumentHead {
    id: String,
    issue_date: String,
    next_update: String,
    #[serde(default)]
    fmspc: Option<String>,
}

/// Decodes the response to `key`: `body` as received, `issuer_chain` as the URL-decoded header.
pub(crate) fn decode(key: ItemKey, raw: Raw, fetched_at: u64) -> Result<Item, DecodeError> {
    let malformed = DecodeError::Malformed;
    let chain_validity = match (&raw.issuer_chain, issuer_chain_headers(key).is_empty()) {
        (Some(pem), false) => validity::pem_chain(pem).map_err(malformed)?,
        (None, false) => {
            return Err(malformed(format!(
                "no {} header",
                issuer_chain_headers(key)[0]
            )))
        }
        (_, true) => Validity {
            from: 0,
            until: u64::MAX,
        },
    };
    let (content, document_validity) = match key {
        ItemKey::TcbInfo { fmspc } => {
            let body: TcbInfoBody = serde_json::from_slice(&raw.body)
                .map_err(|e| malformed(format!("TCB Info response: {e}")))?;
            let text = body.document.get().to_owned();
            let validity = signed_document(&text, "TDX", Some(fmspc))?;
            (signed(text, body.signature)?, validity)
        }
        ItemKey::QeIdentity => {
            let body: QeIdentityBody = serde_json::from_slice(&raw.body)
                .map_err(|e| malformed(format!("QE Identity response: {e}")))?;
            let text = body.document.get().to_owned();
            let validity = signed_document(&text, "TD_QE", None)?;
            (signed(text, body.signature)?, validity)
        }
        ItemKey::PckCrl { .. } | ItemKey::RootCaCrl => {
            let der = crl_der(&raw.body).map_err(malformed)?;
            let validity = validity::crl(&der).map_err(malformed)?;
            (Content::Crl { der }, validity)
        }
    };
    Ok(Item {
        key,
        content,
        validity: document_validity.intersect(chain_validity),
        fetched_at,
        raw,
    })
}

/// The window of a signed document, after checking that it is the document asked for.
fn signed_document(text: &str, id: &str, fmspc: Option<[u8; 6]>) -> Result<Validity, DecodeError> {
    let head: DocumentHead = serde_json::from_str(text)
        .map_err(|e| DecodeError::Malformed(format!("{id} document: {e}")))?;
    if head.id != id {
        return Err(DecodeError::Mismatch(format!(
            "the document's id is {:?}, not {id:?}",
            head.id
        )));
    }
    if let Some(fmspc) = fmspc {
        let wanted = crate::encoding::hex_upper(fmspc);
        if !head
            .fmspc
            .as_deref()
            .is_some_and(|got| got.eq_ignore_ascii_case(&wanted))
        {
            return Err(DecodeError::Mismatch(format!(
                "TCB Info is for FMSPC {:?}, not {wanted}",
                head.fmspc.unwrap_or_default()
            )));
        }
    }
    let date = |text: &str| validity::rfc3339(text).map_err(DecodeError::Malformed);
    Ok(Validity {
        from: date(&head.issue_date)?,
        until: date(&head.next_update)?,
    })
}

fn signed(text: String, signature_hex: String) -> Result<Content, DecodeError> {
    match parse_hex(&signature_hex) {
        Ok(bytes) if bytes.len() == 64 => Ok(Content::Signed {
            text,
            signature_hex,
        }),
        _ => Err(DecodeError::Malformed(
            "signature is not 64 bytes of hex (ECDSA P-256 r‖s)".into(),
        )),
    }
}

/// A CRL body: DER, or the hex of DER (PCCS's root CA CRL, and its PCK CRL without
/// `encoding=der`).
fn crl_der(body: &[u8]) -> Result<Vec<u8>, String> {
    if body.first() == Some(&0x30) {
        return Ok(body.to_vec());
    }
    let text = std::str::from_utf8(body).map_err(|_| "CRL is neither DER nor hex".to_owned())?;
    parse_hex(text.trim()).map_err(|_| "CRL is neither DER nor hex".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collateral::item::PckCa;
    use crate::tdx::INTEL_SGX_ROOT_CA_DER;

    const FMSPC: [u8; 6] = [0x90, 0xc0, 0x6f, 0, 0, 0];

    fn endpoints(base: &str, service: Option<IntelService>) -> Endpoints {
        Endpoints::new(base, service, TcbUpdate::Early, None, INTEL_SGX_ROOT_CA_DER).unwrap()
    }

    #[test]
    fn pcs_urls() {
        let pcs = endpoints("https://api.trustedservices.intel.com/", None);
        assert_eq!(
            pcs.url(ItemKey::TcbInfo { fmspc: FMSPC }),
            "https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=90C06F000000&update=early"
        );
        assert_eq!(
            pcs.url(ItemKey::QeIdentity),
            "https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity?update=early"
        );
        assert_eq!(
            pcs.url(ItemKey::PckCrl {
                ca: PckCa::Processor
            }),
            "https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=processor&encoding=der"
        );
        assert_eq!(
            pcs.url(ItemKey::RootCaCrl),
            "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
        );
    }

    #[test]
    fn pccs_urls_and_suffixes() {
        for base in [
            "https://pccs.phala.network",
            "https://pccs.phala.network/",
            "https://pccs.phala.network/sgx/certification/v4",
            "https://pccs.phala.network/sgx/certification/v4/",
            "https://pccs.phala.network/tdx/certification/v4",
        ] {
            let pccs = endpoints(base, None);
            assert_eq!(
                pccs.url(ItemKey::RootCaCrl),
                "https://pccs.phala.network/sgx/certification/v4/rootcacrl",
                "{base}"
            );
            assert_eq!(
                pccs.url(ItemKey::PckCrl {
                    ca: PckCa::Platform
                }),
                "https://pccs.phala.network/sgx/certification/v4/pckcrl?ca=platform&encoding=der"
            );
        }
        // A PCS-compatible server elsewhere (a mirror, a test server) is declared as such.
        let declared = endpoints("http://127.0.0.1:9/", Some(IntelService::Pcs));
        assert_eq!(
            declared.url(ItemKey::RootCaCrl),
            "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
        );
        let overridden = Endpoints::new(
            "https://pccs.example",
            None,
            TcbUpdate::Standard,
            Some("http://crl.example/root.der"),
            INTEL_SGX_ROOT_CA_DER,
        )
        .unwrap();
        assert_eq!(
            overridden.url(ItemKey::RootCaCrl),
            "http://crl.example/root.der"
        );
    }

    #[test]
    fn service_detection() {
        assert_eq!(
            IntelService::detect("https://api.trustedservices.intel.com"),
            IntelService::Pcs
        );
        assert_eq!(
            IntelService::detect("https://pccs.phala.network"),
            IntelService::Pccs
        );
        assert_eq!(
            IntelService::detect("https://trustedservices.intel.com.evil.example"),
            IntelService::Pccs
        );
    }

    #[test]
    fn bad_configuration() {
        for base in ["", "pccs.example", "ftp://pccs.example"] {
            let err = Endpoints::new(base, None, TcbUpdate::Standard, None, INTEL_SGX_ROOT_CA_DER)
                .unwrap_err();
            assert_eq!(err.what, "PCS/PCCS URL", "{base}");
        }
        // PCS without a root CRL URL needs a trust anchor that names one.
        let err = Endpoints::new(
            INTEL_PCS_URL,
            None,
            TcbUpdate::Standard,
            None,
            b"not a certificate",
        )
        .unwrap_err();
        assert_eq!(err.what, "root CA CRL URL");
    }

    #[test]
    fn crl_bodies() {
        assert_eq!(crl_der(&[0x30, 1, 2]).unwrap(), [0x30, 1, 2]);
        assert_eq!(crl_der(b"300102\n").unwrap(), [0x30, 1, 2]);
        assert!(crl_der(b"{\"json\":1}").is_err());
        assert!(crl_der(&[0xff, 0xfe]).is_err());
    }

    fn raw(body: &str, chain: Option<&str>) -> Raw {
        Raw {
            body: body.as_bytes().to_vec(),
            issuer_chain: chain.map(str::to_owned),
        }
    }

    #[test]
    fn documents_must_be_the_ones_asked_for() {
        let key = ItemKey::TcbInfo { fmspc: FMSPC };
        let kind = |body: &str| match decode(key, raw(body, Some("x")), 0) {
            Err(DecodeError::Malformed(_)) => "malformed",
            Err(DecodeError::Mismatch(_)) => "mismatch",
            Ok(_) => "ok",
        };
        // The chain header is checked first: "x" holds no certificate.
        assert_eq!(kind("{}"), "malformed");
        let no_chain = decode(key, raw("{}", None), 0).unwrap_err();
        assert!(
            matches!(no_chain, DecodeError::Malformed(m) if m.contains("TCB-Info-Issuer-Chain"))
        );

        let doc = |id: &str, fmspc: &str| {
            format!(
                r#"{{"id":"{id}","issueDate":"2025-01-01T00:00:00Z","nextUpdate":"2025-02-01T00:00:00Z","fmspc":"{fmspc}"}}"#
            )
        };
        let signature = "00".repeat(64);
        assert_eq!(
            signed_document(&doc("TDX", "90c06f000000"), "TDX", Some(FMSPC)).unwrap(),
            Validity {
                from: 1_735_689_600,
                until: 1_738_368_000
            }
        );
        assert!(matches!(
            signed_document(&doc("TDX", "00606A000000"), "TDX", Some(FMSPC)),
            Err(DecodeError::Mismatch(_))
        ));
        assert!(matches!(
            signed_document(&doc("SGX", "90C06F000000"), "TDX", Some(FMSPC)),
            Err(DecodeError::Mismatch(_))
        ));
        assert!(signed("{}".into(), signature).is_ok());
        assert!(signed("{}".into(), "00".repeat(63)).is_err());
    }
}
