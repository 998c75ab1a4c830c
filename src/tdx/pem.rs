//! PEM certificate chains as Intel ships them (in quotes, NUL-terminated; in collateral JSON).
//!
//! Strict where it matters and no stricter than the `pem` crate dcap-qvl uses: every block is
//! `-----BEGIN CERTIFICATE-----` … `-----END CERTIFICATE-----`, its body canonical base64 with
//! whitespace ignored; text between blocks is ignored.

use crate::x509::{MAX_CHAIN_LEN, MAX_DER_LEN};
use base64::Engine as _;

const BEGIN: &str = "-----BEGIN ";
const END: &str = "-----END ";
const DASHES: &str = "-----";
const LABEL: &str = "CERTIFICATE";

/// DER certificates of a PEM chain, in order: 1 to [`MAX_CHAIN_LEN`] of them.
pub(crate) fn certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    // Bytes outside the blocks (a trailing NUL) need not be UTF-8; block contents must be ASCII.
    let text = String::from_utf8_lossy(pem);
    let mut rest: &str = &text;
    let mut certificates = Vec::new();
    while let Some(start) = rest.find(BEGIN) {
        let after_begin = rest.get(start + BEGIN.len()..).unwrap_or_default();
        let (label, body) = after_begin
            .split_once(DASHES)
            .ok_or("unterminated BEGIN line")?;
        if label != LABEL {
            return Err(format!("PEM block {label:?} is not a {LABEL}"));
        }
        let (content, after_end) = body.split_once(END).ok_or("missing END line")?;
        let (end_label, after) = after_end
            .split_once(DASHES)
            .ok_or("unterminated END line")?;
        if end_label != LABEL {
            return Err(format!("BEGIN {LABEL} ends with END {end_label:?}"));
        }
        if certificates.len() == MAX_CHAIN_LEN {
            return Err(format!("more than {MAX_CHAIN_LEN} certificates"));
        }
        let base64: String = content.chars().filter(|c| !c.is_whitespace()).collect();
        if base64.len() > MAX_DER_LEN * 4 / 3 + 4 {
            return Err("certificate larger than allowed".into());
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(&base64)
            .map_err(|e| format!("bad base64: {e}"))?;
        certificates.push(der);
        rest = after;
    }
    if certificates.is_empty() {
        return Err("no certificate".into());
    }
    Ok(certificates)
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
}
