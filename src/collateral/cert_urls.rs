//! The URLs a certificate names for its issuer (AIA caIssuers) and its revocation list (CRL
//! distribution points). They are read from certificates nobody has verified yet, so they are
//! attacker-chosen: callers fetch them only through an allowlist.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_CA_ISSUERS;
use x509_parser::prelude::FromDer;

/// The caIssuers URIs of a DER certificate's Authority Information Access, in order. Empty when
/// it has none or does not parse.
pub fn ca_issuers_urls(cert_der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(cert_der) else {
        return Vec::new();
    };
    let mut urls = Vec::new();
    for extension in cert.iter_extensions() {
        if let ParsedExtension::AuthorityInfoAccess(access) = extension.parsed_extension() {
            for description in access.iter() {
                if description.access_method == OID_PKIX_ACCESS_DESCRIPTOR_CA_ISSUERS {
                    if let GeneralName::URI(uri) = description.access_location {
                        urls.push(uri.to_owned());
                    }
                }
            }
        }
    }
    urls
}

/// The full-name URIs of a DER certificate's CRL distribution points, in order. Empty when it
/// has none or does not parse.
pub fn crl_distribution_points(cert_der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(cert_der) else {
        return Vec::new();
    };
    let mut urls = Vec::new();
    for extension in cert.iter_extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = extension.parsed_extension() {
            for point in points.iter() {
                if let Some(DistributionPointName::FullName(names)) = &point.distribution_point {
                    for name in names {
                        if let GeneralName::URI(uri) = name {
                            urls.push((*uri).to_owned());
                        }
                    }
                }
            }
        }
    }
    urls
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tdx::INTEL_SGX_ROOT_CA_DER;

    #[test]
    fn the_intel_root_names_its_crl() {
        assert_eq!(
            crl_distribution_points(INTEL_SGX_ROOT_CA_DER),
            ["https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"]
        );
        assert!(ca_issuers_urls(INTEL_SGX_ROOT_CA_DER).is_empty());
    }

    #[test]
    fn garbage_names_nothing() {
        assert!(ca_issuers_urls(b"not a certificate").is_empty());
        assert!(crl_distribution_points(&[]).is_empty());
    }
}
