//! dstack's event log JSON (GetQuote `event_log`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tee_verifier::dstack::EventLog::from_json(text);
    }
});
