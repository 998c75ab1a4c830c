//! Regions of the text formats, and of DER inside text: each certificate's and CRL's parts
//! inside PEM or hex, the QuoteCollateralV3 JSON, and the dstack quote report JSON (the quote
//! over its hex, the event log by event and field).

use std::ops::Range;

use base64::Engine as _;
use serde_json::Value;

use super::binary::quote_regions;
use super::{
    merged, region, Region, Rule, BOOT_EVENT_DESCRIPTION, OPTIONAL_REPORT_DATA, OUTER_DER,
    PEM_TEXT, UNREAD_PCK_CRL_CHAIN, VM_CONFIG,
};

/// DER TLV head at `at`: (content start, content end).
fn der_tlv(der: &[u8], at: usize) -> (usize, usize) {
    let (len, head) = match der[at + 1] {
        short @ 0..=0x7f => (usize::from(short), 2),
        long => {
            let n = usize::from(long & 0x7f);
            (
                der[at + 2..at + 2 + n]
                    .iter()
                    .fold(0, |v, b| v << 8 | usize::from(*b)),
                2 + n,
            )
        }
    };
    (at + head, at + head + len)
}

/// A certificate's or CRL's DER: (name, DER byte range, rule) for the outer header, the signed
/// TBS, the signature algorithm, the signature BIT STRING header, and the signature.
fn der_parts(der: &[u8]) -> Vec<(&'static str, Range<usize>, Rule)> {
    let (tbs, _) = der_tlv(der, 0);
    let (_, tbs_end) = der_tlv(der, tbs);
    let (_, algorithm_end) = der_tlv(der, tbs_end);
    let (signature, signature_end) = der_tlv(der, algorithm_end);
    assert_eq!(signature_end, der.len(), "trailing bytes after the DER");
    // The BIT STRING's unused-bits byte is part of its header here.
    vec![
        ("outer header", 0..tbs, OUTER_DER),
        ("TBS", tbs..tbs_end, Rule::Reject),
        ("signature algorithm", tbs_end..algorithm_end, OUTER_DER),
        ("signature header", algorithm_end..signature + 1, OUTER_DER),
        ("signature", signature + 1..signature_end, Rule::Reject),
    ]
}

/// Text regions of DER parts whose bytes the text encodes: text position `i` holds DER byte
/// `byte_of(i)` (`None` for characters that encode nothing, like line breaks).
fn text_regions(
    der: &[u8],
    text_len: usize,
    byte_of: impl Fn(usize) -> Option<usize>,
    at: usize,
    prefix: &str,
) -> Vec<Region> {
    let parts = der_parts(der);
    let mut runs: Vec<Region> = Vec::new();
    for i in 0..text_len {
        let (name, rule) = match byte_of(i) {
            Some(byte) => {
                let (name, _, rule) = parts
                    .iter()
                    .find(|(_, span, _)| span.contains(&byte))
                    .expect("a DER part");
                (format!("{prefix}{name}"), *rule)
            }
            None => (format!("{prefix}line breaks"), PEM_TEXT),
        };
        match runs.last_mut() {
            Some(last) if last.name == name => last.spans.last_mut().unwrap().end += 1,
            _ => runs.push(region(name, at + i..at + i + 1, rule)),
        }
    }
    merged(runs)
}

/// A PEM chain: each certificate's BEGIN/END lines, and its base64 body by DER part.
pub(super) fn pem_regions(pem: &str, at: usize, prefix: &str) -> Vec<Region> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut p = 0;
    let mut index = 0;
    while let Some(begin) = pem[p..].find(BEGIN).map(|i| p + i) {
        if begin > p {
            out.push(region(
                format!("{prefix}text between certificates"),
                at + p..at + begin,
                PEM_TEXT,
            ));
        }
        let body = begin + BEGIN.len();
        let end = body + pem[body..].find(END).expect("END line");
        let name = format!("{prefix}certificate {index} ");
        out.push(region(
            format!("{name}BEGIN line"),
            at + begin..at + body,
            Rule::Reject,
        ));
        let text = &pem[body..end];
        let der = base64::engine::general_purpose::STANDARD
            .decode(text.split_whitespace().collect::<String>())
            .expect("PEM base64");
        // Base64 character k (not counting line breaks) carries DER bits 6k..6k+6.
        let mut sextet = vec![None; text.len()];
        let mut k = 0;
        for (i, c) in text.bytes().enumerate() {
            if !c.is_ascii_whitespace() && c != b'=' {
                sextet[i] = Some(((6 * k) / 8).min(der.len() - 1));
                k += 1;
            }
        }
        out.extend(text_regions(
            &der,
            text.len(),
            |i| sextet[i],
            at + body,
            &name,
        ));
        out.push(region(
            format!("{name}END line"),
            at + end..at + end + END.len(),
            Rule::Reject,
        ));
        p = end + END.len();
        index += 1;
    }
    if p < pem.len() {
        out.push(region(
            format!("{prefix}text after the chain"),
            at + p..at + pem.len(),
            PEM_TEXT,
        ));
    }
    out
}

/// Hex text of a DER CRL, by DER part.
fn hex_der_regions(hex_text: &str, at: usize, prefix: &str) -> Vec<Region> {
    let der = hex::decode(hex_text).expect("hex DER");
    text_regions(&der, hex_text.len(), |i| Some(i / 2), at, prefix)
}

/// Binary regions re-laid over their hex encoding at `at`.
fn hex_of_regions(regions: Vec<Region>, at: usize, prefix: &str) -> Vec<Region> {
    regions
        .into_iter()
        .map(|r| r.shifted(|i| at + 2 * i, prefix))
        .collect()
}

/// The members of a top-level JSON object whose values are strings: (key, key span with its
/// quotes, value span inside its quotes), in text order.
fn json_string_members(text: &str) -> Vec<(String, Range<usize>, Range<usize>)> {
    let object: serde_json::Map<String, Value> = serde_json::from_str(text).expect("JSON object");
    let mut members: Vec<(String, Range<usize>, Range<usize>)> = object
        .keys()
        .map(|key| {
            let quoted = format!("\"{key}\"");
            let key_start = text.find(&quoted).expect("key in text");
            let key_end = key_start + quoted.len();
            let value_start = key_end + text[key_end..].find('"').expect("string value") + 1;
            let bytes = text.as_bytes();
            let mut value_end = value_start;
            while bytes[value_end] != b'"' {
                value_end += if bytes[value_end] == b'\\' { 2 } else { 1 };
            }
            (key.clone(), key_start..key_end, value_start..value_end)
        })
        .collect();
    members.sort_by_key(|(_, key, _)| key.start);
    members
}

/// JSON punctuation, whitespace and keys between and around `members`, as regions.
fn json_frame_regions(
    text: &str,
    members: &[(String, Range<usize>, Range<usize>)],
    prefix: &str,
    key_rule: impl Fn(&str) -> Rule,
) -> Vec<Region> {
    let mut out = Vec::new();
    let mut p = 0;
    for (key, key_span, value_span) in members {
        out.push(region(
            format!("{prefix}JSON punctuation"),
            p..key_span.start,
            Rule::Reject,
        ));
        out.push(region(
            format!("{prefix}key {key}"),
            key_span.clone(),
            key_rule(key),
        ));
        out.push(region(
            format!("{prefix}JSON punctuation"),
            key_span.end..value_span.start,
            Rule::Reject,
        ));
        p = value_span.end;
    }
    out.push(region(
        format!("{prefix}JSON punctuation"),
        p..text.len(),
        Rule::Reject,
    ));
    out.retain(|r| r.indices().next().is_some());
    merged(out)
}

/// The QuoteCollateralV3 JSON: its framing, the signed TCB info and QE identity texts and their
/// signatures, and every certificate and CRL by DER part.
pub(super) fn collateral_regions(text: &str) -> Vec<Region> {
    let members = json_string_members(text);
    let mut out = json_frame_regions(text, &members, "collateral ", |_| Rule::Reject);
    for (key, _, span) in &members {
        let value = &text[span.clone()];
        let prefix = format!("{key}: ");
        match key.as_str() {
            "pck_crl_issuer_chain" => {
                out.push(region(key.clone(), span.clone(), UNREAD_PCK_CRL_CHAIN))
            }
            "tcb_info_issuer_chain" | "qe_identity_issuer_chain" => {
                // JSON escapes each newline as `\n`: split on the escaped form.
                out.extend(escaped_pem_regions(value, span.start, &prefix));
            }
            "root_ca_crl" | "pck_crl" => out.extend(hex_der_regions(value, span.start, &prefix)),
            _ => out.push(region(key.clone(), span.clone(), Rule::Reject)),
        }
    }
    out
}

/// PEM text held in a JSON string with `\n` escapes: the regions of the unescaped PEM, with
/// positions mapped back to the escaped text (an escape's two characters belong to one break).
fn escaped_pem_regions(escaped: &str, at: usize, prefix: &str) -> Vec<Region> {
    let mut unescaped = String::new();
    let mut origin = Vec::new();
    let bytes = escaped.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            assert_eq!(bytes[i + 1], b'n', "only \\n escapes expected in PEM");
            unescaped.push('\n');
            origin.push(i..i + 2);
            i += 2;
        } else {
            unescaped.push(char::from(bytes[i]));
            origin.push(i..i + 1);
            i += 1;
        }
    }
    pem_regions(&unescaped, 0, prefix)
        .into_iter()
        .map(|r| Region {
            spans: r
                .spans
                .iter()
                .map(|s| at + origin[s.start].start..at + origin[s.end - 1].end)
                .collect(),
            ..r
        })
        .collect()
}

/// The dstack quote report JSON: framing, the quote (by quote field, over its hex), the event
/// log (by event and field), report data, vm_config.
pub(super) fn quote_report_regions(text: &str) -> Vec<Region> {
    let members = json_string_members(text);
    let mut out = json_frame_regions(text, &members, "report ", |key| match key {
        "report_data" => OPTIONAL_REPORT_DATA,
        "vm_config" => VM_CONFIG,
        _ => Rule::Reject,
    });
    for (key, _, span) in &members {
        let value = &text[span.clone()];
        match key.as_str() {
            "quote" => {
                let quote = hex::decode(value).expect("quote hex");
                out.extend(hex_of_regions(quote_regions(&quote), span.start, "quote "));
            }
            "event_log" => out.extend(event_log_regions(value, span.start)),
            "vm_config" => out.push(region("vm_config", span.clone(), VM_CONFIG)),
            _ => out.push(region(key.clone(), span.clone(), Rule::Reject)),
        }
    }
    out
}

/// An event log held as an escaped JSON string: per event, each field's value and the rest.
fn event_log_regions(escaped: &str, at: usize) -> Vec<Region> {
    let log: Vec<Value> =
        serde_json::from_str(&serde_json::from_str::<String>(&format!("\"{escaped}\"")).unwrap())
            .expect("event log JSON");
    let starts: Vec<usize> = escaped
        .match_indices("{\\\"imr\\\"")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(starts.len(), log.len(), "one object per event");
    let mut out = Vec::new();
    for (index, event) in log.iter().enumerate() {
        let end = starts.get(index + 1).copied().unwrap_or(escaped.len());
        let object = &escaped[starts[index]..end];
        let boot = event["imr"].as_u64().expect("imr") < 3;
        let mut p = 0;
        for field in ["imr", "event_type", "digest", "event", "event_payload"] {
            let key = format!("\\\"{field}\\\":");
            let Some(key_at) = object.find(&key) else {
                continue;
            };
            let value_start = key_at + key.len();
            let value_end =
                value_start + object[value_start..].find([',', '}']).expect("value end");
            let rule = match field {
                "event_type" | "event" | "event_payload" if boot => BOOT_EVENT_DESCRIPTION,
                _ => Rule::Reject,
            };
            let name = format!("event {index} (IMR {}) ", event["imr"]);
            out.push(region(
                format!("{name}framing"),
                at + starts[index] + p..at + starts[index] + value_start,
                Rule::Reject,
            ));
            out.push(region(
                format!("{name}{field}"),
                at + starts[index] + value_start..at + starts[index] + value_end,
                rule,
            ));
            p = value_end;
        }
        out.push(region(
            format!("event {index} framing"),
            at + starts[index] + p..at + end,
            Rule::Reject,
        ));
    }
    if let Some(first) = starts.first() {
        out.push(region("event log opening", at..at + first, Rule::Reject));
    }
    out.retain(|r| r.indices().next().is_some());
    merged(out)
}
