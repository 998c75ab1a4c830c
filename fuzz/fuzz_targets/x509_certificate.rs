//! One X.509 certificate: the canonical-DER check and the parse with its static checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tee_verifier::fuzzing::x509_certificate(data);
});
