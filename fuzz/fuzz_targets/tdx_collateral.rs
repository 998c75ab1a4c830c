//! Intel collateral JSON (TCB info, QE identity, CRLs and chains as dcap-qvl writes them).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tee_verifier::tdx::Collateral::from_json(data);
});
