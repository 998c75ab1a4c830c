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
    uris_in(cert_der, |extension| match extension {
        ParsedExtension::AuthorityInfoAccess(access) => access
            .iter()
            .filter(|description| {
                description.access_method == OID_PKIX_ACCESS_DESCRIPTOR_CA_ISSUERS
            })
            .filter_map(|description| uri(&description.access_location))
            .collect(),
        _ => Vec::new(),
    })
}

/// The full-name URIs of a DER certificate's CRL distribution points, in order. Empty when it
/// has none or does not parse.
pub fn crl_distribution_points(cert_der: &[u8]) -> Vec<String> {
    uris_in(cert_der, |extension| match extension {
        ParsedExtension::CRLDistributionPoints(points) => points
            .iter()
            .filter_map(|point| match &point.distribution_point {
                Some(DistributionPointName::FullName(names)) => Some(names),
                _ => None,
            })
            .flatten()
            .filter_map(uri)
            .collect(),
        _ => Vec::new(),
    })
}

/// What `pick` finds in each extension of a DER certificate, in order.
fn uris_in(cert_der: &[u8], pick: impl Fn(&ParsedExtension<'_>) -> Vec<String>) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(cert_der) else {
        return Vec::new();
    };
    cert.iter_extensions()
        .flat_map(|extension| pick(extension.parsed_extension()))
        .collect()
}

fn uri(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::URI(uri) => Some((*uri).to_owned()),
        _ => None,
    }
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
