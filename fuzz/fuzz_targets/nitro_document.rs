//! An AWS Nitro attestation document: COSE_Sign1, its CBOR, and the payload's fields.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tee_verifier::nitro::parse_document(data);
});
