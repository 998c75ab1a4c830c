//! Helpers shared by the TDX integration tests: reading sample quotes and re-laying a v4 quote
//! out as v5.
#![allow(dead_code)]

use std::path::Path;

/// Header length and TD 1.0 body end in a v4 quote.
pub const V4_HEADER_LEN: usize = 48;
pub const V4_SIGNED_LEN: usize = 632;

/// The raw quote of an `expected.json` entry: the `.bin` file, or the hex `quote` field of a
/// dstack report JSON.
pub fn sample_quote(dir: &Path, entry: &serde_json::Value) -> Vec<u8> {
    let file = entry["file"].as_str().expect("entry file");
    let bytes = std::fs::read(dir.join(file)).expect("read sample");
    match entry["kind"].as_str() {
        Some("tdx-quote") => bytes,
        Some("dstack-quote-report") => {
            let json: serde_json::Value = serde_json::from_slice(&bytes).expect("report JSON");
            hex::decode(json["quote"].as_str().expect("quote field")).expect("quote hex")
        }
        other => panic!("not a TDX entry: {other:?}"),
    }
}

/// Entries of `expected.json` that carry a TDX quote.
pub fn tdx_entries(entries: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    entries
        .iter()
        .filter(|e| {
            matches!(
                e["kind"].as_str(),
                Some("tdx-quote" | "dstack-quote-report")
            )
        })
        .collect()
}

/// Re-lays a v4 quote out as v5 with the given body type: version 5, the 6-byte body descriptor
/// after the header, `extension` appended to the TD 1.0 body, the signature data unchanged.
/// The quote signature no longer verifies (the signed region changed); parsing does not care.
pub fn v4_to_v5(v4: &[u8], body_type: u16, extension: &[u8]) -> Vec<u8> {
    let body_len = (V4_SIGNED_LEN - V4_HEADER_LEN + extension.len()) as u32;
    let mut v5 = Vec::with_capacity(v4.len() + 6 + extension.len());
    v5.extend_from_slice(&5u16.to_le_bytes());
    v5.extend_from_slice(&v4[2..V4_HEADER_LEN]);
    v5.extend_from_slice(&body_type.to_le_bytes());
    v5.extend_from_slice(&body_len.to_le_bytes());
    v5.extend_from_slice(&v4[V4_HEADER_LEN..V4_SIGNED_LEN]);
    v5.extend_from_slice(extension);
    v5.extend_from_slice(&v4[V4_SIGNED_LEN..]);
    v5
}
