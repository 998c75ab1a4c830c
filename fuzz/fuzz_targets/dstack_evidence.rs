//! dstack evidence as the service takes it: SCALE-encoded Nitro attestations and the JSON forms,
//! whose fast reader is checked against serde's on every input it reads.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tee_verifier::fuzzing::dstack_evidence(data);
});
