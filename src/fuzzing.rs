//! Entry points for the fuzz targets in `fuzz/` into parsers that are not public API. Built only
//! with `--cfg fuzzing` (which `scripts/fuzz.sh` and cargo-fuzz set); never part of a release.

use crate::x509::{ChainPolicy, ChainVerifier, SignatureAlgorithm};

/// A certificate through the canonical-DER check and the parse with its static checks.
pub fn x509_certificate(der: &[u8]) {
    let _ = crate::x509::parse_certificate_for_fuzzing(der);
}

/// A CRL claimed to be issued by Intel's root, through the canonical-DER check, the parse and
/// every check before revocation.
pub fn x509_crl(der: &[u8]) {
    let verifier = ChainVerifier::new(ChainPolicy {
        algorithm: SignatureAlgorithm::EcdsaP256Sha256,
        root_sha256: crate::tdx::INTEL_SGX_ROOT_CA_SHA256,
    });
    // Inside the root's validity window, so the CRL itself is reached.
    let now = 1_750_000_000;
    let _ = verifier.verify_crl(der, &[crate::tdx::INTEL_SGX_ROOT_CA_DER], now);
}

/// dstack's measurement documents (`measurement.tdx.cbor`, `measurement.gcp.cbor`) through the
/// in-place CBOR struct reader.
pub fn measurement_document(bytes: &[u8]) {
    let _ = crate::dstack::os_image::decode_measurement_document(bytes);
    let _ = crate::dstack::gcp::uki_auth(bytes);
}

/// dstack evidence as the service takes it; for JSON, the one-pass quote report reader must give
/// what serde gives wherever it answers.
pub fn dstack_evidence(bytes: &[u8]) {
    let _ = crate::dstack::Evidence::parse(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        assert!(
            crate::dstack::Evidence::json_readers_agree(text),
            "the fast reader and serde disagree"
        );
    }
}
