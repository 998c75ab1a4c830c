//! Byte-level spellings shared by every room: 0x-hex output, tolerant hex input, and detection of
//! how an attestation file was written (raw bytes, base64 text or hex text).

use data_encoding::{BASE64, BASE64URL, BASE64URL_NOPAD, BASE64_NOPAD};
use thiserror::Error;

/// Lowercase hex without prefix (messages, logs, upstream's own spellings).
pub(crate) fn hex(bytes: impl AsRef<[u8]>) -> String {
    data_encoding::HEXLOWER.encode(bytes.as_ref())
}

/// Uppercase hex without prefix (Intel's spelling of FMSPC and PCE ID).
pub(crate) fn hex_upper(bytes: impl AsRef<[u8]>) -> String {
    data_encoding::HEXUPPER.encode(bytes.as_ref())
}

/// Lowercase hex with a `0x` prefix: the one spelling of bytes in our JSON output.
pub(crate) fn to_0x_hex(bytes: &[u8]) -> String {
    format!("0x{}", hex(bytes))
}

/// A byte's value as a hex digit of either case, and whether it is not one. Arithmetic rather
/// than a table, so that the loop over a block of digits vectorizes: a quote arrives as ~10 KB
/// of hex on every request.
#[inline(always)]
fn hex_digit(byte: u8) -> (u8, bool) {
    let digit = byte.wrapping_sub(b'0');
    let letter = (byte | 0x20).wrapping_sub(b'a');
    let (is_digit, is_letter) = (digit < 10, letter < 6);
    let value = if is_digit {
        digit
    } else {
        letter.wrapping_add(10)
    };
    (value, !(is_digit | is_letter))
}

/// Decodes exactly `2 × out.len()` hex digits of either case into `out`; `None` for any other
/// length or any byte that is not a digit.
fn decode_hex_into(digits: &[u8], out: &mut [u8]) -> Option<()> {
    /// Digits per block: the values of a whole block are computed before they are paired.
    const BLOCK: usize = 32;
    if digits.len() != 2 * out.len() {
        return None;
    }
    // One test at the end: any non-digit anywhere sets `bad`.
    let mut bad = false;
    let mut blocks = digits.chunks_exact(BLOCK);
    let mut outs = out.chunks_exact_mut(BLOCK / 2);
    for (block, out) in (&mut blocks).zip(&mut outs) {
        let mut values = [0u8; BLOCK];
        for (value, &byte) in values.iter_mut().zip(block) {
            let (digit, not_digit) = hex_digit(byte);
            *value = digit;
            bad |= not_digit;
        }
        for (byte, pair) in out.iter_mut().zip(values.chunks_exact(2)) {
            *byte = (pair[0] << 4) | pair[1];
        }
    }
    let tail = blocks.remainder().chunks_exact(2);
    for (pair, byte) in tail.zip(outs.into_remainder()) {
        let ((high, high_bad), (low, low_bad)) = (hex_digit(pair[0]), hex_digit(pair[1]));
        bad |= high_bad | low_bad;
        *byte = (high << 4) | low;
    }
    (!bad).then_some(())
}

/// Hex digits of either case, no prefix, no whitespace; `None` for anything else.
pub(crate) fn decode_hex(digits: &str) -> Option<Vec<u8>> {
    let digits = digits.as_bytes();
    if digits.len() % 2 == 1 {
        return None;
    }
    let mut out = vec![0; digits.len() / 2];
    decode_hex_into(digits, &mut out)?;
    Some(out)
}

/// Hex digits of either case, no prefix, no whitespace, into exactly `out.len()` bytes; `None`
/// for anything else.
pub(crate) fn decode_hex_to_slice(digits: &str, out: &mut [u8]) -> Option<()> {
    decode_hex_into(digits.as_bytes(), out)
}

/// Standard base64 with padding, canonical (the spelling of dstack's vm_config byte fields).
pub(crate) fn decode_base64_standard(text: &str) -> Option<Vec<u8>> {
    BASE64.decode(text.as_bytes()).ok()
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HexError {
    #[error("not hexadecimal: {0:?}")]
    NotHex(String),
    #[error("{got} bytes given where at most {max} fit")]
    TooLong { got: usize, max: usize },
    #[error("{got} bytes given, {expected} expected")]
    WrongLength { got: usize, expected: usize },
}

/// Parses hex with or without `0x`, any case; whitespace anywhere (line-wrapped `xxd -p`
/// output) is ignored.
pub(crate) fn parse_hex(text: &str) -> Result<Vec<u8>, HexError> {
    let decode_unprefixed = |text: &str| -> Option<Vec<u8>> {
        let digits = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .unwrap_or(text);
        // An odd digit count is only meaningful as a left-padded number, which
        // parse_hex_padded handles.
        decode_hex(digits)
    };
    // Compact hex (a quote's ~10 KB) is decoded in place; only text that fails and has
    // whitespace is copied without it and decoded again.
    decode_unprefixed(text)
        .or_else(|| {
            text.bytes()
                .any(|b| b.is_ascii_whitespace())
                .then(|| decode_unprefixed(&text.split_ascii_whitespace().collect::<String>()))
                .flatten()
        })
        .ok_or_else(|| HexError::NotHex(text.to_owned()))
}

/// Parses hex (as [`parse_hex`]) that must be exactly `N` bytes: neither padded nor truncated.
pub(crate) fn parse_hex_exact<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    let bytes = parse_hex(text)?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| HexError::WrongLength {
        got: bytes.len(),
        expected: N,
    })
}

/// Parses hex into a fixed-width value left-padded with zeros, as dstack's KMS webhook does
/// (`padStart`): an empty string is all zeros, `"0x1"` is `00…01`.
pub(crate) fn parse_hex_padded<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    let trimmed = text.trim();
    let digits = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed);
    if digits.len() > 2 * N {
        return Err(HexError::TooLong {
            got: digits.len().div_ceil(2),
            max: N,
        });
    }
    let padded = format!("{digits:0>width$}", width = 2 * N);
    let mut out = [0u8; N];
    decode_hex_to_slice(&padded, &mut out).ok_or_else(|| HexError::NotHex(text.to_owned()))?;
    Ok(out)
}

/// How an input file spells its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum InputEncoding {
    /// Detect from the bytes: hex text, then base64 text, else raw.
    Auto,
    /// The bytes as they are.
    Raw,
    /// Base64 text, standard or URL-safe, padded or not; line breaks ignored.
    Base64,
    /// Hex text, optional `0x`, either case; surrounding whitespace and line breaks ignored.
    Hex,
}

/// Input that does not decode as the encoding asked for; names the encoding.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("input is not valid {0}")]
pub struct DecodeError(&'static str);

/// Decodes `input` as `encoding`. `Auto` treats text made only of hex digits as hex, text made only
/// of base64 characters as base64, and anything else (binary CBOR, a quote) as raw bytes.
pub fn decode_input(input: &[u8], encoding: InputEncoding) -> Result<Vec<u8>, DecodeError> {
    let text = || std::str::from_utf8(input).map(str::trim).ok();
    match encoding {
        InputEncoding::Raw => Ok(input.to_vec()),
        InputEncoding::Hex => text()
            .and_then(|t| parse_hex(t).ok())
            .ok_or(DecodeError("hex")),
        InputEncoding::Base64 => text().and_then(decode_base64).ok_or(DecodeError("base64")),
        InputEncoding::Auto => {
            let Some(t) = text().filter(|t| !t.is_empty()) else {
                return Ok(input.to_vec());
            };
            if let Ok(bytes) = parse_hex(t) {
                return Ok(bytes);
            }
            Ok(decode_base64(t).unwrap_or_else(|| input.to_vec()))
        }
    }
}

/// Standard or URL-safe base64, padded or not, with line breaks ignored.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.split_ascii_whitespace().collect();
    [BASE64, BASE64_NOPAD, BASE64URL, BASE64URL_NOPAD]
        .iter()
        .find_map(|encoding| encoding.decode(compact.as_bytes()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_spellings() {
        assert_eq!(parse_hex("0xABcd").unwrap(), vec![0xab, 0xcd]);
        assert_eq!(parse_hex(" abcd\n").unwrap(), vec![0xab, 0xcd]);
        assert_eq!(parse_hex("ab\ncd\n").unwrap(), vec![0xab, 0xcd]);
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("zz").is_err());
        assert_eq!(to_0x_hex(&[0, 0xff]), "0x00ff");
        assert_eq!(parse_hex_exact::<2>("0xABcd").unwrap(), [0xab, 0xcd]);
        assert_eq!(
            parse_hex_exact::<2>("ab"),
            Err(HexError::WrongLength {
                got: 1,
                expected: 2
            })
        );
    }

    #[test]
    fn the_decoder_takes_every_digit_pair_and_refuses_every_other_byte() {
        for byte in 0..=255u8 {
            let lower = hex([byte]);
            assert_eq!(decode_hex(&lower), Some(vec![byte]));
            assert_eq!(decode_hex(&lower.to_uppercase()), Some(vec![byte]));
        }
        for other in (0..=255u8).filter(|b| !b.is_ascii_hexdigit()) {
            for digits in [[other, b'0'], [b'0', other]] {
                let mut out = [0u8; 1];
                assert_eq!(decode_hex_into(&digits, &mut out), None, "{digits:?}");
            }
        }
        // 37 bytes: one 32-digit block twice, then a 5-byte tail; a non-digit is refused at every
        // position of both.
        let bytes: Vec<u8> = (0..37u8).map(|i| i.wrapping_mul(151)).collect();
        let text = hex(&bytes);
        assert_eq!(decode_hex(&text), Some(bytes.clone()));
        assert_eq!(decode_hex(&text.to_uppercase()), Some(bytes));
        for position in 0..text.len() {
            for other in [b'g', b'G', b'/', b':', b'@', b'`', 0x00, 0x80, 0xb0, 0xe1] {
                let mut digits = text.clone().into_bytes();
                digits[position] = other;
                let mut out = [0u8; 37];
                assert_eq!(
                    decode_hex_into(&digits, &mut out),
                    None,
                    "{other:#x} at {position}"
                );
            }
        }
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex(""), Some(vec![]));
        let mut two = [0u8; 2];
        assert_eq!(decode_hex_to_slice("abcdef", &mut two), None);
        assert_eq!(decode_hex_to_slice("ab", &mut two), None);
    }

    #[test]
    fn padded_hex_matches_the_webhook() {
        assert_eq!(parse_hex_padded::<4>("").unwrap(), [0; 4]);
        assert_eq!(parse_hex_padded::<4>("0x1").unwrap(), [0, 0, 0, 1]);
        assert_eq!(parse_hex_padded::<2>("0XAbCd").unwrap(), [0xab, 0xcd]);
        assert_eq!(
            parse_hex_padded::<2>("0x010203"),
            Err(HexError::TooLong { got: 3, max: 2 })
        );
        assert!(parse_hex_padded::<2>("0xg1").is_err());
    }

    #[test]
    fn detects_input_encodings() {
        let raw = vec![0x84, 0x44, 0xa1, 0x01, 0x38, 0x22];
        assert_eq!(decode_input(&raw, InputEncoding::Auto).unwrap(), raw);
        assert_eq!(
            decode_input(b"8444a1013822\n", InputEncoding::Auto).unwrap(),
            raw
        );
        assert_eq!(
            decode_input(b"hEShATgi\n", InputEncoding::Auto).unwrap(),
            raw
        );
        assert_eq!(
            decode_input(b"hESh\nATgi", InputEncoding::Base64).unwrap(),
            raw
        );
        assert!(decode_input(b"not hex", InputEncoding::Hex).is_err());
        assert!(decode_input(&raw, InputEncoding::Base64).is_err());
    }
}
