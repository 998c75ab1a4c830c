//! Regions of the binary formats: Nitro COSE_Sign1 (CBOR items of the document and its
//! payload), dstack's SCALE `VersionedAttestation` V0, and the TDX v4 quote (its fields, then the
//! PCK chain by certificate and DER part).

use super::text::pem_regions;
use super::{
    region, Region, Rule, COSE_UNPROTECTED, NITRO_RUNTIME_EVENTS, PCK_CHAIN_SIZE,
    SIGNATURE_DATA_LENGTH, TDX_PADDING, VM_CONFIG,
};

/// CBOR item head: (major type, argument, head length); argument `None` for indefinite length.
fn cbor_head(bytes: &[u8], at: usize) -> (u8, Option<u64>, usize) {
    let major = bytes[at] >> 5;
    let be = |n: usize| {
        bytes[at + 1..at + 1 + n]
            .iter()
            .fold(0u64, |v, b| v << 8 | u64::from(*b))
    };
    match bytes[at] & 0x1f {
        info @ 0..=23 => (major, Some(u64::from(info)), 1),
        24 => (major, Some(be(1)), 2),
        25 => (major, Some(be(2)), 3),
        26 => (major, Some(be(4)), 5),
        27 => (major, Some(be(8)), 9),
        31 => (major, None, 1),
        info => panic!("reserved CBOR additional information {info} at {at}"),
    }
}

/// The end of the CBOR item at `at`.
fn cbor_end(bytes: &[u8], at: usize) -> usize {
    let (major, argument, head) = cbor_head(bytes, at);
    let mut end = at + head;
    let items = |argument: u64, per: u64, mut end: usize| {
        for _ in 0..argument * per {
            end = cbor_end(bytes, end);
        }
        end
    };
    match (major, argument) {
        (0 | 1 | 7, _) => end,
        (2 | 3, Some(len)) => end + len as usize,
        (4, Some(count)) => items(count, 1, end),
        (5, Some(count)) => items(count, 2, end),
        (6, _) => cbor_end(bytes, end),
        (2..=5, None) => {
            while bytes[end] != 0xff {
                end = cbor_end(bytes, end);
            }
            end + 1
        }
        (major, _) => unreachable!("major type {major} is three bits"),
    }
}

fn cbor_text(bytes: &[u8], at: usize) -> String {
    let (major, len, head) = cbor_head(bytes, at);
    assert_eq!(major, 3, "text key expected at {at}");
    let start = at + head;
    String::from_utf8_lossy(&bytes[start..start + len.unwrap() as usize]).into_owned()
}

/// A Nitro COSE_Sign1 document: tag and array header, protected header, unprotected header,
/// payload (one region per map key and per value; one per cabundle certificate), signature.
pub(super) fn cose_regions(doc: &[u8], at: usize, prefix: &str) -> Vec<Region> {
    let mut out = Vec::new();
    let mut p = 0;
    let (major, _, head) = cbor_head(doc, 0);
    if major == 6 {
        out.push(region(
            format!("{prefix}COSE tag"),
            at..at + head,
            Rule::Reject,
        ));
        p = head;
    }
    let (_, _, head) = cbor_head(doc, p);
    out.push(region(
        format!("{prefix}COSE array header"),
        at + p..at + p + head,
        Rule::Reject,
    ));
    p += head;
    for (name, rule) in [
        ("protected header", Rule::Reject),
        ("unprotected header", COSE_UNPROTECTED),
    ] {
        let end = cbor_end(doc, p);
        out.push(region(format!("{prefix}{name}"), at + p..at + end, rule));
        p = end;
    }
    let (_, payload_len, head) = cbor_head(doc, p);
    out.push(region(
        format!("{prefix}payload length"),
        at + p..at + p + head,
        Rule::Reject,
    ));
    let payload_start = p + head;
    let payload_end = payload_start + payload_len.unwrap() as usize;
    out.extend(payload_regions(
        &doc[payload_start..payload_end],
        at + payload_start,
        prefix,
    ));
    p = payload_end;
    out.push(region(
        format!("{prefix}signature"),
        at + p..at + cbor_end(doc, p),
        Rule::Reject,
    ));
    assert_eq!(
        cbor_end(doc, p),
        doc.len(),
        "{prefix}: trailing bytes after COSE_Sign1"
    );
    out
}

fn payload_regions(payload: &[u8], at: usize, prefix: &str) -> Vec<Region> {
    let mut out = Vec::new();
    let (_, count, head) = cbor_head(payload, 0);
    out.push(region(
        format!("{prefix}payload map header"),
        at..at + head,
        Rule::Reject,
    ));
    let mut p = head;
    let mut entries = 0;
    while count.map_or_else(|| payload[p] != 0xff, |count| entries < count) {
        let key = cbor_text(payload, p);
        let value = cbor_end(payload, p);
        out.push(region(
            format!("{prefix}payload key {key}"),
            at + p..at + value,
            Rule::Reject,
        ));
        let end = cbor_end(payload, value);
        if key == "cabundle" {
            let (_, _, head) = cbor_head(payload, value);
            out.push(region(
                format!("{prefix}cabundle header"),
                at + value..at + value + head,
                Rule::Reject,
            ));
            let mut item = value + head;
            let mut index = 0;
            while item < end && payload[item] != 0xff {
                let next = cbor_end(payload, item);
                out.push(region(
                    format!("{prefix}cabundle[{index}]"),
                    at + item..at + next,
                    Rule::Reject,
                ));
                item = next;
                index += 1;
            }
            if item < end {
                out.push(region(
                    format!("{prefix}cabundle break"),
                    at + item..at + end,
                    Rule::Reject,
                ));
            }
        } else {
            out.push(region(
                format!("{prefix}payload {key}"),
                at + value..at + end,
                Rule::Reject,
            ));
        }
        p = end;
        entries += 1;
    }
    if p < payload.len() {
        out.push(region(
            format!("{prefix}payload break"),
            at + p..at + payload.len(),
            Rule::Reject,
        ));
    }
    out
}

/// SCALE compact integer at `at`: (value, length).
fn compact(bytes: &[u8], at: usize) -> (usize, usize) {
    let le = |n: usize| {
        bytes[at..at + n]
            .iter()
            .rev()
            .fold(0usize, |v, b| v << 8 | usize::from(*b))
    };
    match bytes[at] & 3 {
        0 => (le(1) >> 2, 1),
        1 => (le(2) >> 2, 2),
        2 => (le(4) >> 2, 4),
        _ => panic!("big compact integer at {at}"),
    }
}

/// dstack `VersionedAttestation` V0 for a Nitro enclave: version, variant, the NSM document
/// (its own COSE regions), runtime events, report data, config.
pub(super) fn scale_nitro_regions(bytes: &[u8]) -> Vec<Region> {
    assert_eq!(&bytes[..2], [0, 2], "V0 Nitro attestation expected");
    let mut out = vec![region("version and variant", 0..2, Rule::Reject)];
    let (doc_len, head) = compact(bytes, 2);
    out.push(region("document length", 2..2 + head, Rule::Reject));
    let doc_start = 2 + head;
    out.extend(cose_regions(
        &bytes[doc_start..doc_start + doc_len],
        doc_start,
        "document: ",
    ));
    let mut p = doc_start + doc_len;
    let (events, head) = compact(bytes, p);
    out.push(region("runtime event count", p..p + head, Rule::Reject));
    p += head;
    for index in 0..events {
        for field in ["name", "payload"] {
            let (len, head) = compact(bytes, p);
            out.push(region(
                format!("runtime event {index} {field}"),
                p..p + head + len,
                NITRO_RUNTIME_EVENTS,
            ));
            p += head + len;
        }
    }
    out.push(region("report data", p..p + 64, Rule::Reject));
    p += 64;
    let (len, head) = compact(bytes, p);
    out.push(region("config", p..p + head + len, VM_CONFIG));
    assert_eq!(
        p + head + len,
        bytes.len(),
        "trailing bytes after the attestation"
    );
    out
}

fn le(bytes: &[u8], at: usize, n: usize) -> usize {
    bytes[at..at + n]
        .iter()
        .rev()
        .fold(0usize, |v, b| v << 8 | usize::from(*b))
}

/// Consecutive fixed-size fields from `at`; returns the end.
fn fields(out: &mut Vec<Region>, prefix: &str, mut at: usize, list: &[(&str, usize)]) -> usize {
    for (name, len) in list {
        out.push(region(
            format!("{prefix}{name}"),
            at..at + len,
            Rule::Reject,
        ));
        at += len;
    }
    at
}

/// A TDX v4 quote: header and TD report fields, the signature data (signature, attestation key,
/// QE report fields, QE report signature, QE authentication data, the PCK chain's certificates
/// as PEM), then the unsigned padding.
pub(super) fn quote_regions(quote: &[u8]) -> Vec<Region> {
    assert_eq!(le(quote, 0, 2), 4, "v4 quote expected");
    let mut out = Vec::new();
    let header = [
        ("header version", 2),
        ("header attestation key type", 2),
        ("header TEE type", 4),
        ("header QE SVN", 2),
        ("header PCE SVN", 2),
        ("header QE vendor id", 16),
        ("header user data", 20),
    ];
    let body = [
        ("TEE TCB SVN", 16),
        ("MRSEAM", 48),
        ("MRSIGNERSEAM", 48),
        ("SEAM attributes", 8),
        ("TD attributes", 8),
        ("XFAM", 8),
        ("MRTD", 48),
        ("MRCONFIGID", 48),
        ("MROWNER", 48),
        ("MROWNERCONFIG", 48),
        ("RTMR0", 48),
        ("RTMR1", 48),
        ("RTMR2", 48),
        ("RTMR3", 48),
        ("REPORTDATA", 64),
    ];
    let mut p = fields(&mut out, "", 0, &header);
    p = fields(&mut out, "", p, &body);
    let signature_data_len = le(quote, p, 4);
    out.push(region(
        "signature data length",
        p..p + 4,
        SIGNATURE_DATA_LENGTH,
    ));
    p = fields(
        &mut out,
        "",
        p + 4,
        &[("quote signature", 64), ("attestation key", 64)],
    );
    let signature_data_end = p - 128 + signature_data_len;
    p = fields(
        &mut out,
        "",
        p,
        &[
            ("certification data type", 2),
            ("certification data size", 4),
        ],
    );
    let qe_report = [
        ("CPUSVN", 16),
        ("MISCSELECT", 4),
        ("reserved 1", 28),
        ("attributes", 16),
        ("MRENCLAVE", 32),
        ("reserved 2", 32),
        ("MRSIGNER", 32),
        ("reserved 3", 96),
        ("ISVPRODID", 2),
        ("ISVSVN", 2),
        ("reserved 4", 60),
        ("report data", 64),
    ];
    p = fields(&mut out, "QE report ", p, &qe_report);
    p = fields(&mut out, "", p, &[("QE report signature", 64)]);
    let auth_len = le(quote, p, 2);
    p = fields(
        &mut out,
        "",
        p,
        &[
            ("QE authentication data length", 2),
            ("QE authentication data", auth_len),
        ],
    );
    let chain_len = le(quote, p + 2, 4);
    p = fields(&mut out, "", p, &[("QE certification data type", 2)]);
    out.push(region(
        "QE certification data size",
        p..p + 4,
        PCK_CHAIN_SIZE,
    ));
    p += 4;
    let chain = std::str::from_utf8(&quote[p..p + chain_len]).expect("PEM chain");
    out.extend(pem_regions(chain, p, "PCK chain "));
    p += chain_len;
    assert_eq!(p, signature_data_end, "signature data layout");
    if p < quote.len() {
        out.push(region(
            "padding after the signature data",
            p..quote.len(),
            TDX_PADDING,
        ));
    }
    out
}
