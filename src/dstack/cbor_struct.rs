//! CBOR maps read the way upstream's serde structs read them (dstack's measurement documents,
//! `measurement.tdx.cbor` and `measurement.gcp.cbor`), without building a value tree: text keys,
//! unknown keys (and keys that are not text) skipped, a repeated known key refused, a missing one
//! refused. A byte field may be a byte string, a text string or an array of bytes
//! (serde_human_bytes), so only the last is copied.
//!
//! A struct is read in one pass that records where each known field's value lies and checks the
//! rest is well-formed; fields are decoded when asked for. So a document that is not CBOR is
//! malformed before any field is looked at, and a caller can check `version` before it reads
//! fields whose shape depends on it.

use super::DstackError;
use crate::cbor::{CborError, Reader};
use std::borrow::Cow;

/// The known fields of one CBOR map: `names[i]`'s value is `values[i]`, as received.
pub(crate) struct Fields<'a, const N: usize> {
    file: &'static str,
    name: &'static str,
    names: [&'static str; N],
    values: [Option<&'a [u8]>; N],
}

fn error(file: &'static str, reason: impl Into<String>) -> DstackError {
    DstackError::Cbor {
        what: file,
        reason: reason.into(),
    }
}

fn cbor(file: &'static str) -> impl Fn(CborError) -> DstackError {
    move |e| error(file, e.to_string())
}

/// Reads the whole of `document` as one map with the fields `names`; `file` names the document
/// in errors.
pub(crate) fn read_document<'a, const N: usize>(
    document: &'a [u8],
    file: &'static str,
    names: [&'static str; N],
) -> Result<Fields<'a, N>, DstackError> {
    let mut reader = Reader::new(document);
    let fields = read_map(&mut reader, file, "the document", names)?;
    reader.finish().map_err(cbor(file))?;
    Ok(fields)
}

fn read_map<'a, const N: usize>(
    reader: &mut Reader<'a>,
    file: &'static str,
    name: &'static str,
    names: [&'static str; N],
) -> Result<Fields<'a, N>, DstackError> {
    if reader.peek_major().map_err(cbor(file))? != crate::cbor::MAJOR_MAP {
        return Err(error(file, format!("{name} is not a map")));
    }
    let mut entries = reader.map().map_err(cbor(file))?;
    let mut values = [None; N];
    while reader.next_item(&mut entries).map_err(cbor(file))? {
        let key = match reader.peek_major().map_err(cbor(file))? {
            crate::cbor::MAJOR_TEXT => Some(reader.text().map_err(cbor(file))?),
            _ => reader.skip().map_err(cbor(file)).map(|_| None)?,
        };
        let value = reader.skip().map_err(cbor(file))?;
        let Some(index) = key.and_then(|key| names.iter().position(|known| *known == key)) else {
            continue;
        };
        if values[index].replace(value).is_some() {
            return Err(error(file, format!("{name} repeats {}", names[index])));
        }
    }
    Ok(Fields {
        file,
        name,
        names,
        values,
    })
}

impl<'a, const N: usize> Fields<'a, N> {
    /// A reader over the value of `key`, which must be present. `key` must be one of the names
    /// the map was read with.
    fn value(&self, key: &'static str) -> Result<Reader<'a>, DstackError> {
        self.names
            .iter()
            .position(|known| *known == key)
            .and_then(|index| self.values[index])
            .map(Reader::new)
            .ok_or_else(|| error(self.file, format!("{} has no {key}", self.name)))
    }

    fn not_a(&self, key: &str, what: &str) -> DstackError {
        error(self.file, format!("{}.{key} is not {what}", self.name))
    }

    /// An unsigned integer field.
    pub(crate) fn unsigned(&self, key: &'static str) -> Result<u64, DstackError> {
        self.value(key)?
            .unsigned()
            .map_err(|_| self.not_a(key, "an unsigned integer"))
    }

    /// A text field.
    pub(crate) fn text(&self, key: &'static str) -> Result<&'a str, DstackError> {
        self.value(key)?.text().map_err(|_| self.not_a(key, "text"))
    }

    /// A byte field: a byte string or a text string (borrowed), or an array of bytes (copied).
    pub(crate) fn bytes(&self, key: &'static str) -> Result<Cow<'a, [u8]>, DstackError> {
        let mut reader = self.value(key)?;
        let not_bytes = |_| self.not_a(key, "bytes");
        match reader.peek_major().map_err(not_bytes)? {
            crate::cbor::MAJOR_BYTES => reader.bytes().map(Cow::Borrowed).map_err(not_bytes),
            crate::cbor::MAJOR_TEXT => reader
                .text()
                .map(|text| Cow::Borrowed(text.as_bytes()))
                .map_err(not_bytes),
            crate::cbor::MAJOR_ARRAY => {
                let mut items = reader.array().map_err(not_bytes)?;
                let mut bytes = Vec::new();
                while reader.next_item(&mut items).map_err(not_bytes)? {
                    let byte = reader.unsigned().map_err(not_bytes)?;
                    bytes.push(u8::try_from(byte).map_err(|_| self.not_a(key, "bytes"))?);
                }
                Ok(Cow::Owned(bytes))
            }
            _ => Err(self.not_a(key, "bytes")),
        }
    }

    /// A nested map field, read with the fields `names`; `name` names it in errors.
    pub(crate) fn map<const M: usize>(
        &self,
        key: &'static str,
        name: &'static str,
        names: [&'static str; M],
    ) -> Result<Fields<'a, M>, DstackError> {
        read_map(&mut self.value(key)?, self.file, name, names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coset::cbor::value::Value;

    const FILE: &str = "test.cbor";

    fn encode(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        coset::cbor::ser::into_writer(value, &mut out).unwrap();
        out
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn reason(err: DstackError) -> String {
        assert_eq!(err.kind().as_str(), "malformed", "{err}");
        match err {
            DstackError::Cbor { what, reason } => {
                assert_eq!(what, FILE);
                reason
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn reads_known_fields_and_skips_the_rest() {
        let document = encode(&Value::Map(vec![
            (Value::Integer(7.into()), Value::Array(vec![Value::Null])),
            (
                text("extra"),
                Value::Tag(24, Box::new(Value::Bytes(vec![1]))),
            ),
            (text("b"), Value::Bytes(vec![1, 2])),
            (
                text("a"),
                Value::Map(vec![(text("n"), Value::Integer(5.into()))]),
            ),
            (text("t"), text("hi")),
            (text("f"), Value::Float(1.5)),
        ]));
        let fields = read_document(&document, FILE, ["a", "b", "t"]).unwrap();
        assert_eq!(fields.bytes("b").unwrap(), Cow::Borrowed(&[1u8, 2][..]));
        assert!(matches!(fields.bytes("b").unwrap(), Cow::Borrowed(_)));
        assert_eq!(fields.text("t").unwrap(), "hi");
        assert_eq!(fields.bytes("t").unwrap().as_ref(), b"hi");
        let nested = fields.map("a", "a", ["n"]).unwrap();
        assert_eq!(nested.unsigned("n").unwrap(), 5);
    }

    #[test]
    fn a_byte_field_may_be_an_array_of_bytes() {
        let array = |items: Vec<Value>| encode(&Value::Map(vec![(text("b"), Value::Array(items))]));
        let bytes = array(vec![Value::Integer(0.into()), Value::Integer(255.into())]);
        let fields = read_document(&bytes, FILE, ["b"]).unwrap();
        assert_eq!(fields.bytes("b").unwrap().as_ref(), [0, 255]);
        for bad in [
            array(vec![Value::Integer(256.into())]),
            array(vec![Value::Integer((-1).into())]),
            array(vec![text("x")]),
        ] {
            let fields = read_document(&bad, FILE, ["b"]).unwrap();
            assert_eq!(
                reason(fields.bytes("b").unwrap_err()),
                "the document.b is not bytes"
            );
        }
    }

    #[test]
    fn refusals_name_the_field() {
        let map = |entries: Vec<(Value, Value)>| encode(&Value::Map(entries));
        let one = |value: Value| map(vec![(text("k"), value)]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (encode(&Value::Array(vec![])), "the document is not a map"),
            (
                map(vec![(text("k"), Value::Null), (text("k"), Value::Null)]),
                "the document repeats k",
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                reason(read_document(&bytes, FILE, ["k"]).err().unwrap()),
                expected
            );
        }
        let empty = map(vec![]);
        let fields = read_document(&empty, FILE, ["k"]).unwrap();
        assert_eq!(
            reason(fields.unsigned("k").unwrap_err()),
            "the document has no k"
        );
        let negative = one(Value::Integer((-3).into()));
        let fields = read_document(&negative, FILE, ["k"]).unwrap();
        assert_eq!(
            reason(fields.unsigned("k").unwrap_err()),
            "the document.k is not an unsigned integer"
        );
        assert_eq!(
            reason(fields.text("k").unwrap_err()),
            "the document.k is not text"
        );
        assert_eq!(
            reason(fields.bytes("k").unwrap_err()),
            "the document.k is not bytes"
        );
        let null = one(Value::Null);
        let fields = read_document(&null, FILE, ["k"]).unwrap();
        assert_eq!(
            reason(fields.map("k", "k", ["x"]).err().unwrap()),
            "k is not a map"
        );
    }

    #[test]
    fn what_is_not_well_formed_is_refused_before_any_field_is_read() {
        let mut trailing = encode(&Value::Map(vec![]));
        trailing.push(0);
        let mut deep = Value::Null;
        for _ in 0..=crate::cbor::MAX_SKIP_DEPTH {
            deep = Value::Array(vec![deep]);
        }
        let deep = encode(&Value::Map(vec![(text("ignored"), deep)]));
        // A chunked byte string in an ignored field, and a text key that is not UTF-8.
        let chunked = vec![0xa1, 0x61, b'x', 0x5f, 0x41, 0x00, 0xff];
        let bad_key = vec![0xa1, 0x61, 0xff, 0x00];
        let truncated = vec![0xa2, 0x61, b'k', 0x00];
        let stray_break = vec![0xa1, 0x61, b'x', 0xff];
        for bytes in [
            trailing,
            deep,
            chunked,
            bad_key,
            truncated,
            stray_break,
            vec![],
        ] {
            let err = read_document(&bytes, FILE, ["k"]).err().unwrap();
            reason(err);
        }
    }
}
