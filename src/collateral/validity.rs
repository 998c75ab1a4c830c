//! The validity a fetched document carries: Intel's RFC 3339 `issueDate`..`nextUpdate`, a CRL's
//! `thisUpdate`..`nextUpdate`, a certificate's `notBefore`..`notAfter`. Read to schedule the
//! cache, never to verify: the verifier checks every window itself.

use crate::tdx::json::parse_rfc3339;
use crate::x509::{read_crl, MAX_CHAIN_LEN};
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;

/// The inclusive range of unix seconds in which an item may be served: the crate's cache window.
pub(crate) use crate::cache::Window as Validity;

fn unix(timestamp: i64) -> u64 {
    u64::try_from(timestamp).unwrap_or(0)
}

/// Unix seconds of an RFC 3339 date (Intel's `2025-06-19T10:16:03Z`), read as the verifier reads it.
pub(crate) fn rfc3339(text: &str) -> Result<u64, String> {
    parse_rfc3339(text).ok_or_else(|| format!("{text:?} is not an RFC 3339 date after 1970"))
}

/// `notBefore..notAfter` of a DER certificate.
pub(crate) fn certificate(der: &[u8]) -> Result<Validity, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("certificate does not parse: {e}"))?;
    let validity = cert.validity();
    Ok(Validity {
        from: unix(validity.not_before.timestamp()),
        until: unix(validity.not_after.timestamp()),
    })
}

/// Where every certificate of a PEM chain (1 to [`MAX_CHAIN_LEN`] of them) is valid.
pub(crate) fn pem_chain(pem: &str) -> Result<Validity, String> {
    let mut validity = Validity::ALWAYS;
    let mut count = 0;
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| format!("issuer chain PEM: {e}"))?;
        if block.label != "CERTIFICATE" {
            return Err(format!("issuer chain holds a {:?} block", block.label));
        }
        count += 1;
        if count > MAX_CHAIN_LEN {
            return Err(format!(
                "issuer chain has more than {MAX_CHAIN_LEN} certificates"
            ));
        }
        validity = validity.intersect(certificate(&block.contents)?);
    }
    if count == 0 {
        return Err("issuer chain holds no certificate".into());
    }
    Ok(validity)
}

/// `thisUpdate..nextUpdate` of a DER CRL; a CRL without nextUpdate cannot bound a cache entry.
pub(crate) fn crl(der: &[u8]) -> Result<Validity, String> {
    let crl = read_crl(der).map_err(|e| format!("CRL does not parse: {e}"))?;
    let until = crl
        .next_update
        .ok_or_else(|| "CRL has no nextUpdate".to_owned())?;
    Ok(Validity {
        from: crl.this_update,
        until,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tdx::INTEL_SGX_ROOT_CA_DER;

    #[test]
    fn intel_dates() {
        assert_eq!(rfc3339("2025-06-19T10:32:27Z"), Ok(1_750_329_147));
        assert_eq!(rfc3339("2025-06-19T12:32:27+02:00"), Ok(1_750_329_147));
        assert!(rfc3339("2025-06-19").is_err());
        assert!(rfc3339("1969-12-31T23:59:59Z").is_err());
    }

    #[test]
    fn windows_are_inclusive_and_narrow() {
        let validity = Validity {
            from: 10,
            until: 20,
        }
        .intersect(Validity { from: 0, until: 15 });
        assert_eq!(
            validity,
            Validity {
                from: 10,
                until: 15
            }
        );
        assert!(validity.contains(10) && validity.contains(15));
        assert!(!validity.contains(9) && !validity.contains(16));
    }

    #[test]
    fn the_intel_root_window() {
        let validity = certificate(INTEL_SGX_ROOT_CA_DER).unwrap();
        assert!(validity.from < 1_750_000_000 && validity.until > 2_000_000_000);
        assert!(pem_chain("").is_err());
        assert!(pem_chain("-----BEGIN X-----\nAAAA\n-----END X-----\n").is_err());
        assert!(crl(INTEL_SGX_ROOT_CA_DER).is_err());
    }
}
