//! A TDX quote (v4 or v5), with its signature data and certification chain.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tee_verifier::tdx::Quote::parse(data);
});
