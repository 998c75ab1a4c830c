//! Printing results: one JSON object for machines (`--json`), a short summary for people.

use serde::Serialize;

/// Prints `value` as one line of JSON on stdout.
pub fn print_json(value: &impl Serialize) {
    match serde_json::to_string(value) {
        Ok(text) => println!("{text}"),
        // Our report types serialize infallibly; say so loudly rather than print nothing.
        Err(e) => eprintln!("tee-verifier: cannot serialize output: {e}"),
    }
}

/// The JSON of a rejection: `{"verified":false,"error":{"kind":…,"message":…}}`.
pub fn rejection_json(kind: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "verified": false, "error": { "kind": kind, "message": message } })
}
