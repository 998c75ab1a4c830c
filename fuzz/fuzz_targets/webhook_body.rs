//! The KMS webhook's body: auth-eth's camelCase boot info.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(json) = serde_json::from_slice::<tee_verifier::boot_info::BootInfoJson>(data) {
        let _ = tee_verifier::BootInfo::try_from(&json);
    }
});
