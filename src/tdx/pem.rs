//! PEM certificate chains as Intel ships them (in quotes, NUL-terminated; in collateral JSON).
//!
//! Read with the `pem` crate dcap-qvl uses, so exactly as strict as it: every block is
//! `-----BEGIN CERTIFICATE-----` … `-----END CERTIFICATE-----`, its body canonical base64 with
//! whitespace ignored; text between blocks (a trailing NUL) is ignored. Checked here besides, where
//! the crate is laxer: the label must be `CERTIFICATE`; a block may carry no RFC 1421 headers;
//! every `-----BEGIN ` must open a complete block (the crate stops at an unterminated one and
//! returns the blocks before it); 1 to [`MAX_CHAIN_LEN`] blocks (counted before any is decoded),
//! each at most [`MAX_DER_LEN`] bytes.

use crate::x509::{MAX_CHAIN_LEN, MAX_DER_LEN};

const BEGIN: &str = "-----BEGIN ";
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
    let blocks = pem::parse_many(pem).map_err(|e| format!("bad PEM: {e}"))?;
    if blocks.len() != begin_lines {
        return Err("a BEGIN line without its block and END line".into());
    }
    blocks
        .into_iter()
        .map(|block| {
            if block.tag() != LABEL {
                return Err(format!("PEM block {:?} is not a {LABEL}", block.tag()));
            }
            if block.headers().iter().next().is_some() {
                return Err("PEM headers in a certificate block".into());
            }
            let der = block.into_contents();
            if der.len() > MAX_DER_LEN {
                return Err("certificate larger than allowed".into());
            }
            Ok(der)
        })
        .collect()
}

/// Non-overlapping occurrences of `needle` in `haystack`.
fn count(haystack: &[u8], needle: &[u8]) -> usize {
    let mut count = 0;
    let mut rest = haystack;
    while let Some(at) = rest.windows(needle.len()).position(|w| w == needle) {
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
