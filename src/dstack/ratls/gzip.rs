//! The gzip member (RFC 1952) after `ELGZv1`, read as upstream's `flate2::read::GzDecoder` reads
//! it: a header (optional extra field, file name, comment, header CRC), raw deflate, then the
//! CRC-32 and length of the inflated bytes. The deflate itself is miniz_oxide's; only the framing
//! and its two checksums are read here. Stricter than upstream in one way: bytes after the member
//! are refused, not ignored.

use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

const MAGIC: [u8; 2] = [0x1f, 0x8b];
const METHOD_DEFLATE: u8 = 8;
const FLAG_HCRC: u8 = 0x02;
const FLAG_EXTRA: u8 = 0x04;
const FLAG_NAME: u8 = 0x08;
const FLAG_COMMENT: u8 = 0x10;
const FLAGS_RESERVED: u8 = 0xe0;
const FIXED_HEADER_LEN: usize = 10;
const TRAILER_LEN: usize = 8;

/// Why a gzip member was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum GzipError {
    /// The member inflates to more than the bound.
    TooLarge,
    /// The framing, the deflate stream or a checksum is wrong; says which.
    Invalid(&'static str),
}

/// Inflates one gzip member into at most `max` bytes; nothing beyond `max` is ever allocated.
pub(super) fn inflate(member: &[u8], max: usize) -> Result<Vec<u8>, GzipError> {
    let deflate = skip_header(member)?;
    let mut out = vec![0u8; max];
    let mut decompressor = Box::<DecompressorOxide>::default();
    let (status, consumed, written) = decompress(
        &mut decompressor,
        deflate,
        &mut out,
        0,
        inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
    );
    match status {
        TINFLStatus::Done => {}
        TINFLStatus::HasMoreOutput => return Err(GzipError::TooLarge),
        _ => {
            return Err(GzipError::Invalid(
                "the deflate stream is corrupt or truncated",
            ))
        }
    }
    out.truncate(written);
    let trailer = deflate
        .get(consumed..)
        .ok_or(GzipError::Invalid("the deflate stream is truncated"))?;
    let trailer: [u8; TRAILER_LEN] = trailer
        .try_into()
        .map_err(|_| GzipError::Invalid("the gzip trailer is missing or followed by bytes"))?;
    let [c0, c1, c2, c3, l0, l1, l2, l3] = trailer;
    if u32::from_le_bytes([c0, c1, c2, c3]) != crc32(&out) {
        return Err(GzipError::Invalid(
            "the CRC-32 differs from the inflated bytes'",
        ));
    }
    // ISIZE is the length modulo 2^32; `written` is at most 16 KiB here.
    if u32::from_le_bytes([l0, l1, l2, l3]) as usize != written {
        return Err(GzipError::Invalid(
            "the length differs from the inflated bytes'",
        ));
    }
    Ok(out)
}

/// The bytes after the member header, whose fields are checked and skipped.
fn skip_header(member: &[u8]) -> Result<&[u8], GzipError> {
    let truncated = GzipError::Invalid("the gzip header is truncated");
    let fixed = member.get(..FIXED_HEADER_LEN).ok_or(truncated.clone())?;
    if fixed[..2] != MAGIC {
        return Err(GzipError::Invalid("not gzip (no 1f 8b magic)"));
    }
    if fixed[2] != METHOD_DEFLATE {
        return Err(GzipError::Invalid("not deflate-compressed"));
    }
    let flags = fixed[3];
    if flags & FLAGS_RESERVED != 0 {
        return Err(GzipError::Invalid("reserved gzip header flags are set"));
    }
    let mut at = FIXED_HEADER_LEN;
    if flags & FLAG_EXTRA != 0 {
        let len = member.get(at..at + 2).ok_or(truncated.clone())?;
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FLAG_NAME, FLAG_COMMENT] {
        if flags & flag != 0 {
            let text = member.get(at..).ok_or(truncated.clone())?;
            at += 1 + text.iter().position(|&b| b == 0).ok_or(truncated.clone())?;
        }
    }
    if flags & FLAG_HCRC != 0 {
        let header = member.get(..at).ok_or(truncated.clone())?;
        let stored = member.get(at..at + 2).ok_or(truncated.clone())?;
        // The header CRC is the low 16 bits of the header's CRC-32.
        if u16::from_le_bytes([stored[0], stored[1]]) != crc32(header) as u16 {
            return Err(GzipError::Invalid("the gzip header CRC differs"));
        }
        at += 2;
    }
    member.get(at..).ok_or(truncated)
}

/// CRC-32 (ISO-HDLC, reflected polynomial 0xEDB88320), as gzip's trailer carries it. Bitwise:
/// the input is at most 16 KiB, so a table would buy nothing measurable.
fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, &byte| {
        (0..8).fold(crc ^ u32::from(byte), |crc, _| {
            (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8], builder: flate2::GzBuilder) -> Vec<u8> {
        let mut encoder = builder.write(Vec::new(), flate2::Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn members_flate2_writes_inflate() {
        let data = br#"[{"imr":3,"event_type":134217729}]"#.repeat(20);
        for builder in [
            flate2::GzBuilder::new(),
            flate2::GzBuilder::new()
                .filename("log.json")
                .comment("c")
                .extra(vec![1, 2, 3])
                .operating_system(3),
        ] {
            assert_eq!(inflate(&gzip(&data, builder), 4096).unwrap(), data);
        }
        let with_header_crc = {
            let mut member = gzip(&data, flate2::GzBuilder::new().filename("x"));
            // FHCRC added by hand (flate2 does not write it): flag, then the CRC after the name.
            member[3] |= FLAG_HCRC;
            let header_len = FIXED_HEADER_LEN + 2;
            let crc = (crc32(&member[..header_len]) as u16).to_le_bytes();
            member.splice(header_len..header_len, crc);
            member
        };
        assert_eq!(inflate(&with_header_crc, 4096).unwrap(), data);
    }

    #[test]
    fn bounded_and_checked() {
        let data = vec![b'a'; 1000];
        let member = gzip(&data, flate2::GzBuilder::new());
        assert_eq!(inflate(&member, 1000).unwrap(), data);
        assert_eq!(inflate(&member, 999), Err(GzipError::TooLarge));
        let last = member.len() - 1;
        type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: [(&str, Mutation); 8] = [
            ("magic", Box::new(|m| m[0] = 0)),
            ("method", Box::new(|m| m[2] = 7)),
            ("reserved flag", Box::new(|m| m[3] = 0x20)),
            ("crc", Box::new(move |m| m[last - 7] ^= 1)),
            ("length", Box::new(move |m| m[last] ^= 1)),
            ("trailing byte", Box::new(|m| m.push(0))),
            ("truncated", Box::new(|m| m.truncate(m.len() - 9))),
            ("corrupt deflate", Box::new(|m| m[FIXED_HEADER_LEN] = 0xff)),
        ];
        for (what, mutate) in cases {
            let mut bad = member.clone();
            mutate(&mut bad);
            assert!(
                matches!(inflate(&bad, 4096), Err(GzipError::Invalid(_))),
                "{what}"
            );
        }
        assert!(matches!(
            inflate(&member[..5], 4096),
            Err(GzipError::Invalid(_))
        ));
    }
}
