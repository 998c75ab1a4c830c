//! dstack evidence as the service takes it: SCALE-encoded Nitro attestations and the JSON forms.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tee_verifier::dstack::Evidence::parse(data);
});
