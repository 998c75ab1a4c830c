//! dstack's CBOR measurement documents (TDX-lite and GCP), read in place.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tee_verifier::fuzzing::measurement_document(data);
});
