//! A strict, schema-driven CBOR reader (RFC 8949 subset) for the documents we read field by field:
//! the Nitro attestation payload, and dstack's measurement documents (`measurement.tdx.cbor`,
//! `measurement.gcp.cbor`).
//!
//! ciborium builds a generic value tree and is lenient where we must not be: it reads `undefined`
//! as null, glues chunked strings together and says nothing about duplicate keys. This reader is
//! driven field by field by the parser that uses it, so:
//! - nesting depth is fixed by the schema; the one recursive step, skipping a value the schema
//!   ignores ([`Reader::skip`]), stops at [`MAX_SKIP_DEPTH`];
//! - nothing is allocated from a declared length: strings are borrowed from the input after a
//!   bounds check, and collection counts only drive a loop that stops at the end of the input;
//! - maps and arrays may be definite or indefinite-length (AWS emits both); strings must be
//!   definite (NSM never chunks them, and one contiguous slice keeps the reader copy-free);
//! - trailing bytes are an error ([`Reader::finish`]).
//!
//! Non-shortest argument encodings are accepted: RFC 8949 allows them, and the signature (or the
//! hash chain) covers the bytes as received, so they cannot smuggle a different value through.

use thiserror::Error;

const MAJOR_UNSIGNED: u8 = 0;
const MAJOR_NEGATIVE: u8 = 1;
pub(crate) const MAJOR_BYTES: u8 = 2;
pub(crate) const MAJOR_TEXT: u8 = 3;
pub(crate) const MAJOR_ARRAY: u8 = 4;
pub(crate) const MAJOR_MAP: u8 = 5;
const MAJOR_TAG: u8 = 6;
const MAJOR_SIMPLE: u8 = 7;
/// Additional information 31: indefinite length (major types 2–5) or "break" (major type 7).
const INDEFINITE: u8 = 31;
const NULL: u8 = 0xf6;
const BREAK: u8 = 0xff;
/// How deeply a skipped value may nest (arrays, maps and tags): far more than any document we
/// read has, and a bound on the recursion an attacker can ask for.
pub(crate) const MAX_SKIP_DEPTH: usize = 16;

/// Why the payload bytes are not the CBOR we expect.
#[non_exhaustive]
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CborError {
    /// The input ends before the item that starts or continues at `offset` is complete.
    #[error("input ends inside an item (offset {offset})")]
    Truncated {
        /// Byte offset in the payload.
        offset: usize,
    },
    /// An item head uses reserved additional information (28-30) or one invalid for its major
    /// type (e.g. indefinite length where it is not allowed).
    #[error("reserved or invalid additional information {info} for major type {major} at offset {offset}")]
    InvalidHead {
        /// CBOR major type (0-7).
        major: u8,
        /// Additional information (low 5 bits of the head).
        info: u8,
        /// Byte offset in the payload.
        offset: usize,
    },
    /// An item has another CBOR type than the schema requires there.
    #[error("expected {expected}, found {found} at offset {offset}")]
    UnexpectedType {
        /// The type required.
        expected: &'static str,
        /// The type read.
        found: &'static str,
        /// Byte offset in the payload.
        offset: usize,
    },
    /// A byte or text string is indefinite-length (chunked), which NSM never emits.
    #[error("indefinite-length (chunked) string at offset {offset}")]
    ChunkedString {
        /// Byte offset in the payload.
        offset: usize,
    },
    /// A text string is not valid UTF-8.
    #[error("text string at offset {offset} is not UTF-8")]
    InvalidUtf8 {
        /// Byte offset in the payload.
        offset: usize,
    },
    /// A skipped value nests deeper than 16 levels (arrays, maps and tags).
    #[error("a value nests deeper than {MAX_SKIP_DEPTH} levels at offset {offset}")]
    TooDeep {
        /// Byte offset in the payload.
        offset: usize,
    },
    /// Bytes follow the document's top-level map.
    #[error("{count} trailing byte(s)")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
}

/// The remaining entries of a map or array being read.
pub(crate) struct Items {
    /// `None` for an indefinite-length collection (ends at a break byte).
    remaining: Option<u64>,
}

/// Reads CBOR items from a byte slice, front to back.
pub(crate) struct Reader<'a> {
    input: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Reader { input, offset: 0 }
    }

    /// An unsigned integer (major type 0).
    pub(crate) fn unsigned(&mut self) -> Result<u64, CborError> {
        self.head_of(MAJOR_UNSIGNED, "unsigned integer")
            .map(|(argument, _)| argument)
    }

    /// A definite-length byte string, borrowed from the input.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], CborError> {
        let (length, offset) = self.head_of(MAJOR_BYTES, "byte string")?;
        self.string_body(length, offset)
    }

    /// A definite-length UTF-8 text string, borrowed from the input.
    pub(crate) fn text(&mut self) -> Result<&'a str, CborError> {
        let (length, offset) = self.head_of(MAJOR_TEXT, "text string")?;
        let body = self.string_body(length, offset)?;
        std::str::from_utf8(body).map_err(|_| CborError::InvalidUtf8 { offset })
    }

    /// A byte string, or `None` for CBOR `null`.
    pub(crate) fn bytes_or_null(&mut self) -> Result<Option<&'a [u8]>, CborError> {
        if self.peek() == Some(NULL) {
            self.offset += 1;
            return Ok(None);
        }
        self.bytes().map(Some)
    }

    /// The start of a map (definite or indefinite); iterate with [`Reader::next_item`].
    pub(crate) fn map(&mut self) -> Result<Items, CborError> {
        self.collection_of(MAJOR_MAP, "map")
    }

    /// The start of an array (definite or indefinite); iterate with [`Reader::next_item`].
    pub(crate) fn array(&mut self) -> Result<Items, CborError> {
        self.collection_of(MAJOR_ARRAY, "array")
    }

    /// Whether `items` has another entry; consumes the break byte that ends an indefinite one.
    pub(crate) fn next_item(&mut self, items: &mut Items) -> Result<bool, CborError> {
        match &mut items.remaining {
            Some(0) => Ok(false),
            Some(remaining) => {
                *remaining -= 1;
                Ok(true)
            }
            None if self.peek() == Some(BREAK) => {
                self.offset += 1;
                Ok(false)
            }
            None => Ok(true),
        }
    }

    /// The major type of the next item, without consuming it.
    pub(crate) fn peek_major(&self) -> Result<u8, CborError> {
        self.peek()
            .map(|initial| initial >> 5)
            .ok_or(CborError::Truncated {
                offset: self.offset,
            })
    }

    /// Skips one well-formed item of any type (a value the schema ignores) and returns its
    /// bytes. Strings must be definite and text valid UTF-8, as everywhere else.
    pub(crate) fn skip(&mut self) -> Result<&'a [u8], CborError> {
        let start = self.offset;
        self.skip_nested(0)?;
        Ok(&self.input[start..self.offset])
    }

    fn skip_nested(&mut self, depth: usize) -> Result<(), CborError> {
        let (major, info, argument, offset) = self.head()?;
        match (major, argument) {
            (MAJOR_UNSIGNED | MAJOR_NEGATIVE, _) => Ok(()),
            (MAJOR_BYTES, Some(length)) => self.string_body(length, offset).map(drop),
            (MAJOR_TEXT, Some(length)) => {
                let body = self.string_body(length, offset)?;
                std::str::from_utf8(body)
                    .map(drop)
                    .map_err(|_| CborError::InvalidUtf8 { offset })
            }
            (MAJOR_BYTES | MAJOR_TEXT, None) => Err(CborError::ChunkedString { offset }),
            (MAJOR_ARRAY | MAJOR_MAP | MAJOR_TAG, _) if depth == MAX_SKIP_DEPTH => {
                Err(CborError::TooDeep { offset })
            }
            (MAJOR_TAG, _) => self.skip_nested(depth + 1),
            (MAJOR_ARRAY | MAJOR_MAP, remaining) => {
                let mut items = Items { remaining };
                while self.next_item(&mut items)? {
                    self.skip_nested(depth + 1)?;
                    if major == MAJOR_MAP {
                        self.skip_nested(depth + 1)?;
                    }
                }
                Ok(())
            }
            // A break where an item belongs, or a one-byte simple value below 32 (not well-formed
            // in RFC 8949 §3.3).
            (_, None) => Err(CborError::UnexpectedType {
                expected: "an item",
                found: describe(major, info),
                offset,
            }),
            (_, Some(simple)) if info == 24 && simple < 32 => Err(CborError::InvalidHead {
                major,
                info,
                offset,
            }),
            _ => Ok(()),
        }
    }

    /// Succeeds only if the whole input has been consumed.
    pub(crate) fn finish(self) -> Result<(), CborError> {
        match self.input.len().saturating_sub(self.offset) {
            0 => Ok(()),
            count => Err(CborError::TrailingBytes { count }),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.offset).copied()
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], CborError> {
        let truncated = CborError::Truncated {
            offset: self.offset,
        };
        let end = self.offset.checked_add(length).ok_or(truncated.clone())?;
        let taken = self.input.get(self.offset..end).ok_or(truncated)?;
        self.offset = end;
        Ok(taken)
    }

    /// Reads one item head: major type, additional information and, unless the item is
    /// indefinite-length (`None`), its argument. Returns the head's offset too, for errors.
    fn head(&mut self) -> Result<(u8, u8, Option<u64>, usize), CborError> {
        let offset = self.offset;
        let initial = self.peek().ok_or(CborError::Truncated { offset })?;
        self.offset += 1;
        let (major, info) = (initial >> 5, initial & 0x1f);
        let argument_len = match info {
            0..=23 => return Ok((major, info, Some(u64::from(info)), offset)),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            // Indefinite length exists for strings, arrays and maps; for major type 7 it is "break".
            INDEFINITE if matches!(major, MAJOR_BYTES..=MAJOR_MAP | MAJOR_SIMPLE) => {
                return Ok((major, info, None, offset));
            }
            _ => {
                return Err(CborError::InvalidHead {
                    major,
                    info,
                    offset,
                })
            }
        };
        let argument = self
            .take(argument_len)?
            .iter()
            .fold(0u64, |value, &byte| value << 8 | u64::from(byte));
        Ok((major, info, Some(argument), offset))
    }

    /// Reads a head that must be of `major` type with a definite argument.
    fn head_of(&mut self, major: u8, expected: &'static str) -> Result<(u64, usize), CborError> {
        let (argument, offset) = self.typed_head(major, expected)?;
        argument
            .map(|argument| (argument, offset))
            .ok_or(CborError::ChunkedString { offset })
    }

    fn collection_of(&mut self, major: u8, expected: &'static str) -> Result<Items, CborError> {
        self.typed_head(major, expected)
            .map(|(remaining, _)| Items { remaining })
    }

    /// Reads a head that must be of `major` type: its argument (`None` if indefinite) and offset.
    fn typed_head(
        &mut self,
        major: u8,
        expected: &'static str,
    ) -> Result<(Option<u64>, usize), CborError> {
        let (found, info, argument, offset) = self.head()?;
        if found != major {
            let found = describe(found, info);
            return Err(CborError::UnexpectedType {
                expected,
                found,
                offset,
            });
        }
        Ok((argument, offset))
    }

    fn string_body(&mut self, length: u64, offset: usize) -> Result<&'a [u8], CborError> {
        let length = usize::try_from(length).map_err(|_| CborError::Truncated { offset })?;
        self.take(length)
    }
}

/// A name for the item a head introduces, for error messages.
fn describe(major: u8, info: u8) -> &'static str {
    match (major, info) {
        (0, _) => "unsigned integer",
        (1, _) => "negative integer",
        (2, _) => "byte string",
        (3, _) => "text string",
        (4, _) => "array",
        (5, _) => "map",
        (6, _) => "tag",
        (7, 20 | 21) => "boolean",
        (7, 22) => "null",
        (7, 23) => "undefined",
        (7, 25..=27) => "float",
        (7, INDEFINITE) => "break",
        _ => "simple value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &[u8]) -> Reader<'_> {
        Reader::new(bytes)
    }

    #[test]
    fn reads_integers_in_every_width() {
        for (bytes, value) in [
            (&[0x17][..], 23),
            (&[0x18, 0x18], 24),
            (&[0x19, 0x01, 0x00], 256),
            (&[0x1a, 0x00, 0x01, 0x00, 0x00], 65_536),
            (
                &[0x1b, 0, 0, 1, 0x8d, 0x0f, 0x2b, 0x3c, 0x00],
                0x0000_018d_0f2b_3c00,
            ),
            (&[0x18, 0x05], 5), // non-shortest encodings are valid CBOR
        ] {
            let mut r = reader(bytes);
            assert_eq!(r.unsigned().unwrap(), value);
            r.finish().unwrap();
        }
    }

    #[test]
    fn reads_strings_and_null() {
        let mut r = reader(&[0x43, 1, 2, 3, 0x40, 0xf6, 0x62, b'o', b'k']);
        assert_eq!(r.bytes_or_null().unwrap(), Some(&[1, 2, 3][..]));
        assert_eq!(r.bytes_or_null().unwrap(), Some(&[][..]));
        assert_eq!(r.bytes_or_null().unwrap(), None);
        assert_eq!(r.text().unwrap(), "ok");
        r.finish().unwrap();
    }

    #[test]
    fn iterates_definite_and_indefinite_collections() {
        // {1: [h'aa'], 2: [_ h'bb']} with the outer map indefinite.
        let bytes = [
            0xbf, 0x01, 0x81, 0x41, 0xaa, 0x02, 0x9f, 0x41, 0xbb, 0xff, 0xff,
        ];
        let mut r = reader(&bytes);
        let mut map = r.map().unwrap();
        let mut seen = Vec::new();
        while r.next_item(&mut map).unwrap() {
            let key = r.unsigned().unwrap();
            let mut array = r.array().unwrap();
            while r.next_item(&mut array).unwrap() {
                seen.push((key, r.bytes().unwrap().to_vec()));
            }
        }
        r.finish().unwrap();
        assert_eq!(seen, vec![(1, vec![0xaa]), (2, vec![0xbb])]);
    }

    #[test]
    fn rejects_wrong_types() {
        let err = reader(&[0x20]).unsigned().unwrap_err();
        assert_eq!(
            err,
            CborError::UnexpectedType {
                expected: "unsigned integer",
                found: "negative integer",
                offset: 0
            }
        );
        assert!(matches!(
            reader(&[0xf7]).bytes_or_null(),
            Err(CborError::UnexpectedType {
                found: "undefined",
                ..
            })
        ));
        assert!(matches!(
            reader(&[0xd8, 0x18, 0x40]).bytes(),
            Err(CborError::UnexpectedType { found: "tag", .. })
        ));
        assert!(matches!(
            reader(&[0x61, b'a']).bytes(),
            Err(CborError::UnexpectedType {
                found: "text string",
                ..
            })
        ));
        assert!(matches!(
            reader(&[0xa0]).array(),
            Err(CborError::UnexpectedType { found: "map", .. })
        ));
        assert!(matches!(
            reader(&[0xf6]).text(),
            Err(CborError::UnexpectedType { found: "null", .. })
        ));
    }

    #[test]
    fn rejects_truncation_at_every_point() {
        let bytes = [0x19, 0x01]; // 2-byte argument cut short
        assert_eq!(
            reader(&bytes).unsigned(),
            Err(CborError::Truncated { offset: 1 })
        );
        assert_eq!(
            reader(&[]).unsigned(),
            Err(CborError::Truncated { offset: 0 })
        );
        assert_eq!(
            reader(&[0x43, 1, 2]).bytes(),
            Err(CborError::Truncated { offset: 1 })
        );
        // A length that does not fit the input (or even usize) is truncation, not an allocation.
        let huge = [0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            reader(&huge).bytes(),
            Err(CborError::Truncated { .. })
        ));
        // An indefinite map without its break byte runs into the end of the input.
        let mut r = reader(&[0xbf]);
        let mut map = r.map().unwrap();
        assert!(r.next_item(&mut map).unwrap());
        assert!(matches!(r.text(), Err(CborError::Truncated { .. })));
    }

    #[test]
    fn rejects_reserved_heads_chunked_strings_and_bad_utf8() {
        for info in 28..=30 {
            assert!(
                matches!(reader(&[info]).unsigned(), Err(CborError::InvalidHead { info: i, .. }) if i == info)
            );
        }
        // Indefinite length on an integer is not CBOR.
        assert!(matches!(
            reader(&[0x1f]).unsigned(),
            Err(CborError::InvalidHead { .. })
        ));
        assert_eq!(
            reader(&[0x5f, 0x41, 0, 0xff]).bytes(),
            Err(CborError::ChunkedString { offset: 0 })
        );
        assert_eq!(
            reader(&[0x7f, 0x61, b'a', 0xff]).text(),
            Err(CborError::ChunkedString { offset: 0 })
        );
        assert_eq!(
            reader(&[0x61, 0xff]).text(),
            Err(CborError::InvalidUtf8 { offset: 0 })
        );
    }

    #[test]
    fn skips_one_item_of_any_type_and_returns_its_bytes() {
        for item in [
            &[0x20][..],                           // -1
            &[0xf9, 0x00, 0x00], // half-precision 0.0: its bits are not a simple value
            &[0xf8, 0x20],       // simple value 32
            &[0xf5],             // true
            &[0xc1, 0x1a, 0, 0, 0, 1], // tag 1 (epoch time)
            &[0x82, 0x01, 0x9f, 0x61, b'a', 0xff], // [1, [_ "a"]]
            &[0xbf, 0x01, 0xa1, 0x02, 0x40, 0xff], // {_ 1: {2: h''}}
        ] {
            let mut input = item.to_vec();
            input.push(0x00);
            let mut r = reader(&input);
            assert_eq!(r.skip().unwrap(), item);
            assert_eq!(r.unsigned().unwrap(), 0);
            r.finish().unwrap();
        }
    }

    #[test]
    fn skipping_refuses_what_is_not_well_formed() {
        assert!(matches!(
            reader(&[0xf8, 0x1f]).skip(),
            Err(CborError::InvalidHead { info: 24, .. })
        ));
        assert!(matches!(
            reader(&[0x81, 0xff]).skip(),
            Err(CborError::UnexpectedType { found: "break", .. })
        ));
        assert_eq!(
            reader(&[0x9f, 0x5f, 0xff, 0xff]).skip(),
            Err(CborError::ChunkedString { offset: 1 })
        );
        assert_eq!(
            reader(&[0x81, 0x61, 0xff]).skip(),
            Err(CborError::InvalidUtf8 { offset: 1 })
        );
        assert!(matches!(
            reader(&[0x82, 0x00]).skip(),
            Err(CborError::Truncated { .. })
        ));
        let within = [vec![0x81; MAX_SKIP_DEPTH], vec![0x00]].concat();
        reader(&within).skip().unwrap();
        let nested = [vec![0x81; MAX_SKIP_DEPTH + 1], vec![0x00]].concat();
        assert_eq!(
            reader(&nested).skip(),
            Err(CborError::TooDeep {
                offset: MAX_SKIP_DEPTH
            })
        );
        let tagged = [vec![0xc1; MAX_SKIP_DEPTH + 1], vec![0x00]].concat();
        assert!(matches!(
            reader(&tagged).skip(),
            Err(CborError::TooDeep { .. })
        ));
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut r = reader(&[0x00, 0x00]);
        r.unsigned().unwrap();
        assert_eq!(r.finish(), Err(CborError::TrailingBytes { count: 1 }));
    }
}
