//! The few SCALE (parity-scale-codec) primitives dstack's `VersionedAttestation` V0 uses. Lengths
//! are `Compact<u32>` and must be canonical, as parity's decoder requires; every length is checked
//! against the bytes left before anything is copied.

use super::DstackError;

pub(super) struct ScaleReader<'a> {
    rest: &'a [u8],
    total: usize,
}

impl<'a> ScaleReader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        ScaleReader {
            rest: bytes,
            total: bytes.len(),
        }
    }

    fn error(&self, reason: &'static str) -> DstackError {
        DstackError::Scale {
            offset: self.total - self.rest.len(),
            reason,
        }
    }

    pub(super) fn take(&mut self, len: usize) -> Result<&'a [u8], DstackError> {
        if len > self.rest.len() {
            return Err(self.error("length runs past the end of the input"));
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], DstackError> {
        let bytes = self.take(N)?;
        <[u8; N]>::try_from(bytes).map_err(|_| self.error("length runs past the end of the input"))
    }

    pub(super) fn u8(&mut self) -> Result<u8, DstackError> {
        self.array::<1>().map(|[byte]| byte)
    }

    pub(super) fn u32(&mut self) -> Result<u32, DstackError> {
        self.array::<4>().map(u32::from_le_bytes)
    }

    /// `Compact<u32>`: the low two bits of the first byte give the width (1, 2, 4 bytes, or a
    /// 4-byte integer after the prefix byte); each width must be the shortest that fits.
    pub(super) fn compact_u32(&mut self) -> Result<u32, DstackError> {
        let first = self.u8()?;
        let (value, minimum) = match first & 0b11 {
            0b00 => return Ok(u32::from(first >> 2)),
            0b01 => (
                u32::from(u16::from_le_bytes([first, self.u8()?]) >> 2),
                1 << 6,
            ),
            0b10 => {
                let [b1, b2, b3] = self.array::<3>()?;
                (u32::from_le_bytes([first, b1, b2, b3]) >> 2, 1 << 14)
            }
            _ => {
                if first >> 2 != 0 {
                    return Err(self.error("compact integer exceeds u32"));
                }
                (self.u32()?, 1 << 30)
            }
        };
        if value < minimum {
            return Err(self.error("compact integer is not canonical"));
        }
        Ok(value)
    }

    /// A `Vec` length, bounded by `max` items.
    pub(super) fn count(&mut self, max: usize) -> Result<usize, DstackError> {
        let count = usize::try_from(self.compact_u32()?).unwrap_or(usize::MAX);
        if count > max {
            return Err(self.error("too many items"));
        }
        Ok(count)
    }

    /// `Vec<u8>`.
    pub(super) fn bytes(&mut self) -> Result<Vec<u8>, DstackError> {
        let len = usize::try_from(self.compact_u32()?).unwrap_or(usize::MAX);
        self.take(len).map(<[u8]>::to_vec)
    }

    /// `String` (UTF-8 checked).
    pub(super) fn string(&mut self) -> Result<String, DstackError> {
        let start = self.total - self.rest.len();
        String::from_utf8(self.bytes()?).map_err(|_| DstackError::Scale {
            offset: start,
            reason: "string is not UTF-8",
        })
    }

    /// The input must be fully consumed.
    pub(super) fn finish(self) -> Result<(), DstackError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.error("trailing bytes after the attestation"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compact(bytes: &[u8]) -> Result<u32, DstackError> {
        let mut reader = ScaleReader::new(bytes);
        let value = reader.compact_u32()?;
        reader.finish()?;
        Ok(value)
    }

    fn reason(err: DstackError) -> &'static str {
        assert_eq!(err.kind().as_str(), "malformed");
        match err {
            DstackError::Scale { reason, .. } => reason,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn compact_integers_in_every_width() {
        assert_eq!(compact(&[0x00]).unwrap(), 0);
        assert_eq!(compact(&[0xfc]).unwrap(), 63);
        assert_eq!(compact(&[0x01, 0x01]).unwrap(), 64);
        assert_eq!(compact(&[0xb9, 0x46]).unwrap(), 4526);
        assert_eq!(compact(&[0x02, 0x00, 0x01, 0x00]).unwrap(), 1 << 14);
        assert_eq!(compact(&[0x03, 0x00, 0x00, 0x00, 0x40]).unwrap(), 1 << 30);
        assert_eq!(compact(&[0x03, 0xff, 0xff, 0xff, 0xff]).unwrap(), u32::MAX);
    }

    #[test]
    fn non_canonical_and_oversized_compacts_are_rejected() {
        assert_eq!(
            reason(compact(&[0x01, 0x00]).unwrap_err()),
            "compact integer is not canonical"
        );
        assert_eq!(
            reason(compact(&[0x02, 0x01, 0x00, 0x00]).unwrap_err()),
            "compact integer is not canonical"
        );
        assert_eq!(
            reason(compact(&[0x03, 0xff, 0xff, 0xff, 0x3f]).unwrap_err()),
            "compact integer is not canonical"
        );
        assert_eq!(
            reason(compact(&[0x07, 0, 0, 0, 0, 1]).unwrap_err()),
            "compact integer exceeds u32"
        );
        assert_eq!(
            reason(compact(&[0x01]).unwrap_err()),
            "length runs past the end of the input"
        );
        assert_eq!(
            reason(compact(&[]).unwrap_err()),
            "length runs past the end of the input"
        );
    }

    #[test]
    fn vectors_strings_and_trailing_bytes() {
        let mut reader = ScaleReader::new(&[0x08, 0xaa, 0xbb, 0x0c, b'a', b'p', b'p', 0x01]);
        assert_eq!(reader.bytes().unwrap(), vec![0xaa, 0xbb]);
        assert_eq!(reader.string().unwrap(), "app");
        assert_eq!(
            reason(reader.finish().unwrap_err()),
            "trailing bytes after the attestation"
        );

        // A length larger than the input is refused before any allocation.
        let mut reader = ScaleReader::new(&[0x03, 0xff, 0xff, 0xff, 0xff, 0x00]);
        assert_eq!(
            reason(reader.bytes().unwrap_err()),
            "length runs past the end of the input"
        );

        let mut reader = ScaleReader::new(&[0x04, 0xff]);
        let err = reader.string().unwrap_err();
        assert_eq!(
            err,
            DstackError::Scale {
                offset: 0,
                reason: "string is not UTF-8"
            }
        );

        let mut reader = ScaleReader::new(&[0x0c]);
        assert_eq!(reason(reader.count(2).unwrap_err()), "too many items");
    }
}
