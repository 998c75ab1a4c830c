//! PEM certificate chains as Intel ships them (in quotes, NUL-terminated; in collateral JSON).
//!
//! Framed exactly as the `pem` crate dcap-qvl uses frames them, so exactly as strict: every block
//! is `-----BEGIN <label>-----` … `-----END <label>-----` with the same label, its body canonical
//! padded base64 with whitespace ignored; text between blocks (a trailing NUL) is ignored. Checked
//! here besides, where that crate is laxer: the label must be `CERTIFICATE`; a block may carry no
//! RFC 1421 headers (the crate's headers end at the first blank line, so a blank line inside a
//! block is refused); every `-----BEGIN ` must open a complete block (the crate stops at an
//! unterminated one and returns the blocks before it); 1 to [`MAX_CHAIN_LEN`] blocks (counted
//! before any is decoded), each at most [`MAX_DER_LEN`] bytes.

use crate::x509::{MAX_CHAIN_LEN, MAX_DER_LEN};

const BEGIN: &str = "-----BEGIN ";
const END: &str = "-----END ";
const DASHES: &str = "-----";
const LABEL: &str = "CERTIFICATE";

/// DER certificates of a PEM chain, in order: 1 to [`MAX_CHAIN_LEN`] of them.
pub(crate) fn certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let begin_lines = count(pem, BEGIN.as_bytes());
    if begin_lines == 0 {
        return Err("no certificate".into());
    }
    if begin_lines > MAX_CHAIN_LEN {
        return Err(format!("more than {MAX_CHAIN_LEN} certificates"));
    }
    let blocks = blocks(pem);
    if blocks.len() != begin_lines {
        return Err("a BEGIN line without its block and END line".into());
    }
    blocks.into_iter().map(certificate).collect()
}

/// One framed block: the BEGIN label, the body between the BEGIN and END lines, the END label.
struct Block<'a> {
    label: &'a [u8],
    body: &'a [u8],
    end_label: &'a [u8],
}

/// The complete blocks, in order, up to the first incomplete one.
fn blocks(mut rest: &[u8]) -> Vec<Block<'_>> {
    let mut blocks = Vec::new();
    while let Some(block) = next_block(&mut rest) {
        blocks.push(block);
    }
    blocks
}

fn next_block<'a>(rest: &mut &'a [u8]) -> Option<Block<'a>> {
    let (_, after_begin) = split_at_marker(rest, BEGIN)?;
    let (label, after_label) = split_at_marker(after_begin, DASHES)?;
    let (body, after_body) = split_at_marker(after_label.trim_ascii_start(), END)?;
    let (end_label, after_end) = split_at_marker(after_body, DASHES)?;
    *rest = after_end.trim_ascii_start();
    Some(Block {
        label,
        body,
        end_label,
    })
}

/// The bytes before the first `marker` and those after it.
fn split_at_marker<'a>(input: &'a [u8], marker: &str) -> Option<(&'a [u8], &'a [u8])> {
    let marker = marker.as_bytes();
    let at = find(input, marker)?;
    Some((input.get(..at)?, input.get(at + marker.len()..)?))
}

/// Where `needle` (not empty) first occurs in `haystack`: a scan for its first byte, then a
/// comparison, rather than a comparison at every offset.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let mut from = 0;
    loop {
        let at = from + haystack.get(from..)?.iter().position(|&b| b == first)?;
        if haystack.get(at..)?.starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
}

fn certificate(block: Block<'_>) -> Result<Vec<u8>, String> {
    let label = String::from_utf8_lossy(block.label);
    if block.label != block.end_label {
        return Err(format!(
            "PEM block {label:?} ends as {:?}",
            String::from_utf8_lossy(block.end_label)
        ));
    }
    if label != LABEL {
        return Err(format!("PEM block {label:?} is not a {LABEL}"));
    }
    let der = decoded(&block)?;
    if der.len() > MAX_DER_LEN {
        return Err("certificate larger than allowed".into());
    }
    Ok(der)
}

/// The body of a block: no RFC 1421 headers, canonical padded base64 with whitespace ignored.
fn decoded(block: &Block<'_>) -> Result<Vec<u8>, String> {
    if find(block.body, b"\n\n").is_some() || find(block.body, b"\r\n\r\n").is_some() {
        return Err("PEM headers in a block".into());
    }
    decoded_lines(block.body).map_or_else(|| decoded_filtered(block.body), Ok)
}

/// Any body: whitespace dropped, then the rest decoded.
fn decoded_filtered(body: &[u8]) -> Result<Vec<u8>, String> {
    let body = std::str::from_utf8(body).map_err(|_| "PEM body is not UTF-8")?;
    // As the crate: every `char::is_whitespace` is dropped. An ASCII body (every real one) is
    // filtered byte by byte, where that set is ASCII whitespace plus the vertical tab.
    let base64: Vec<u8> = if body.is_ascii() {
        body.bytes()
            .filter(|&b| !(b.is_ascii_whitespace() || b == VERTICAL_TAB))
            .collect()
    } else {
        body.chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .into_bytes()
    };
    data_encoding::BASE64
        .decode(&base64)
        .map_err(|e| format!("bad PEM: {e}"))
}

/// The one ASCII character `char::is_whitespace` counts that `u8::is_ascii_whitespace` does not.
const VERTICAL_TAB: u8 = 0x0b;

/// The common body, decoded without first copying it whitespace-free: lines of whole base64
/// quanta, padding only on the last. Each line then decodes on its own to exactly what the whole
/// decodes to. `None` for anything else (or any error), which the general path then decodes or
/// refuses with its reason.
fn decoded_lines(body: &[u8]) -> Option<Vec<u8>> {
    let base64 = data_encoding::BASE64;
    let mut der = Vec::with_capacity(body.len() / 4 * 3);
    let mut lines = body
        .split(|&b| b.is_ascii_whitespace() || b == VERTICAL_TAB)
        .filter(|line| !line.is_empty())
        .peekable();
    while let Some(line) = lines.next() {
        if lines.peek().is_some() && (line.len() % 4 != 0 || line.contains(&b'=')) {
            return None;
        }
        let start = der.len();
        der.resize(start + base64.decode_len(line.len()).ok()?, 0);
        let written = base64.decode_mut(line, &mut der[start..]).ok()?;
        der.truncate(start + written);
    }
    Some(der)
}

/// Every block of a PEM text as (label, contents), framed as [`certificates`] frames them but
/// whatever the label (Google's CA bundle mixes `CERTIFICATE` and `X509 CRL`): at most
/// `max_blocks` blocks, counted before any is decoded. Sizes are the caller's to bound.
pub(crate) fn labelled_blocks(
    pem: &[u8],
    max_blocks: usize,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let begin_lines = count(pem, BEGIN.as_bytes());
    if begin_lines > max_blocks {
        return Err(format!("more than {max_blocks} PEM blocks"));
    }
    let blocks = blocks(pem);
    if blocks.len() != begin_lines {
        return Err("a BEGIN line without its block and END line".into());
    }
    blocks
        .into_iter()
        .map(|block| {
            if block.label != block.end_label {
                return Err(format!(
                    "PEM block {:?} ends as {:?}",
                    String::from_utf8_lossy(block.label),
                    String::from_utf8_lossy(block.end_label)
                ));
            }
            let der = decoded(&block)?;
            Ok((String::from_utf8_lossy(block.label).into_owned(), der))
        })
        .collect()
}

/// Non-overlapping occurrences of `needle` in `haystack`.
fn count(haystack: &[u8], needle: &[u8]) -> usize {
    let mut count = 0;
    let mut rest = haystack;
    while let Some(at) = find(rest, needle) {
        count += 1;
        rest = rest.get(at + needle.len()..).unwrap_or_default();
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n";

    #[test]
    fn chains_with_noise_around_blocks() {
        let pem = format!("subject=...\n{BLOCK}{BLOCK}\0");
        assert_eq!(
            certificates(pem.as_bytes()).unwrap(),
            vec![vec![0x30, 3, 2, 1, 1]; 2]
        );
        let crlf = BLOCK.replace('\n', "\r\n");
        assert_eq!(certificates(crlf.as_bytes()).unwrap().len(), 1);
        let folded = "-----BEGIN CERTIFICATE-----\nMAMC\n AQE=\n-----END CERTIFICATE-----";
        assert_eq!(certificates(folded.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn whitespace_is_what_char_is_whitespace_says_ascii_or_not() {
        // Tab, vertical tab, form feed, carriage return and space (ASCII), NEL and an
        // ideographic space (not): all dropped, as the crate drops them.
        for space in ["\t", "\u{0b}", "\u{0c}", "\r", " ", "\u{85}", "\u{3000}"] {
            let pem = BLOCK.replace("MAMCAQE=", &format!("MAMC{space}AQE="));
            assert_eq!(
                certificates(pem.as_bytes()).unwrap(),
                vec![vec![0x30, 3, 2, 1, 1]],
                "{space:?}"
            );
        }
        // Anything else stays and is not base64.
        for other in ["\0", "\u{e9}"] {
            let pem = BLOCK.replace("MAMCAQE=", &format!("MAMC{other}AQE="));
            assert!(certificates(pem.as_bytes()).is_err(), "{other:?}");
        }
    }

    #[test]
    fn lines_decode_as_the_whole_body_does() {
        let real = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tdx/collateral.json"),
        )
        .unwrap();
        let json: serde_json::Value = serde_json::from_str(&real).unwrap();
        let chain = json["pck_crl_issuer_chain"].as_str().unwrap();
        let body = chain.split("-----").nth(2).expect("the first block's body");
        let joined: String = body.split_whitespace().collect();
        let rewrapped = |width: usize| {
            let lines: Vec<&str> = (0..joined.len())
                .step_by(width)
                .map(|at| &joined[at..(at + width).min(joined.len())])
                .collect();
            lines.join("\r\n")
        };
        let mut decoded_fast = 0;
        for case in [
            body.to_owned(),
            joined.clone(),
            rewrapped(64),
            rewrapped(76),
            rewrapped(3),
            rewrapped(4),
            format!(" \t{joined}\x0b\n"),
            "MAMCAQE=".into(),
            "MAMC AQE=".into(),
            "MAMCAQF=".into(),
            "MA== MAMC".into(),
            "MAMC\nAQ==\nAQ==".into(),
            "MAMC\n*AQE".into(),
            "MAMC\u{a0}AQE=".into(),
            String::new(),
        ] {
            let general = decoded_filtered(case.as_bytes());
            if let Some(fast) = decoded_lines(case.as_bytes()) {
                decoded_fast += 1;
                assert_eq!(Ok(fast), general, "{case:?}");
            }
        }
        assert!(decoded_fast >= 8, "the common shapes take the line path");
    }

    #[test]
    fn find_scans_for_the_whole_needle() {
        assert_eq!(find(b"-- ---- -----x", b"-----"), Some(8));
        assert_eq!(find(b"----", b"-----"), None);
        assert_eq!(find(b"abc", b""), None);
        assert_eq!(find(b"", b"a"), None);
    }

    #[test]
    fn malformed_chains() {
        for bad in [
            String::new(),
            "no pem".to_owned(),
            BLOCK.replace("BEGIN CERTIFICATE", "BEGIN PRIVATE KEY"),
            BLOCK.replace("END CERTIFICATE", "END CERTIFICATE X"),
            BLOCK.replace("-----END CERTIFICATE-----\n", ""),
            BLOCK.replace("MAMCAQE=", "MAMCAQE"),
            BLOCK.replace("MAMCAQE=", "MAMCAQF="),
            BLOCK.replace("MAMCAQE=", "MA*CAQE="),
            BLOCK.repeat(MAX_CHAIN_LEN + 1),
        ] {
            assert!(certificates(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rules_the_crate_leaves_to_us() {
        let with_headers = BLOCK.replace("MAMCAQE=", "Proc-Type: 4,ENCRYPTED\n\nMAMCAQE=");
        assert!(certificates(with_headers.as_bytes()).is_err());
        let truncated = format!("{BLOCK}-----BEGIN CERTIFICATE-----\nMAMCAQE=\n");
        assert!(certificates(truncated.as_bytes()).is_err());
        let big = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            vec![0u8; MAX_DER_LEN + 1],
        );
        let big = BLOCK.replace("MAMCAQE=", &big);
        assert!(certificates(big.as_bytes()).is_err());
    }
}
