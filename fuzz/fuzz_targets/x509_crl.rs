//! One CRL, as issued by Intel's root: the canonical-DER check, the parse and its checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tee_verifier::fuzzing::x509_crl(data);
});
