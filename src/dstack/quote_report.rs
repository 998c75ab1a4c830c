//! The quote report JSON as dstack writes it, read in one pass without serde: `quote` and
//! `report_data` as hex strings, `event_log` as an array of events (inline, or spelled as a JSON
//! string whose quotes are `\"`), `vm_config` as a JSON string. This is the evidence a KMS
//! receives on every request; serde would copy the event log out of its string (unescaping it)
//! before parsing it, and scan the ~10 KB quote byte by byte before it is decoded.
//!
//! The reader takes only that plain form and says `None` for anything else: an escape inside a
//! value, a key it knows seen twice, `attestation`, another key whose value is not a plain
//! string, `null`, a number that is not a plain `u32`, an inline `vm_config`, trailing text.
//! [`super::evidence`] then reads the text with serde, which accepts every JSON spelling and
//! names the error, so this fast path never changes what parses or how it fails: where it
//! answers, it answers what serde would (the differential tests and the `dstack_evidence` fuzz
//! target check this).

use super::event_log::JsonEvent;
use std::borrow::Cow;

/// The fields of a quote report, borrowed from its text.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct QuoteReport<'a> {
    pub quote: &'a str,
    pub event_log: Vec<JsonEvent<'a>>,
    pub report_data: Option<&'a str>,
    /// The unescaped text of the `vm_config` string.
    pub vm_config: Option<String>,
}

/// `text` read as a plain quote report, or `None` (module docs).
pub(super) fn read(text: &str) -> Option<QuoteReport<'_>> {
    let mut reader = Reader {
        text,
        at: 0,
        quote: Quote::Plain,
    };
    let (mut quote, mut event_log, mut report_data, mut vm_config) = (None, None, None, None);
    reader.object(|reader, key| match key {
        "quote" => Some(quote.replace(reader.string()?).is_none()),
        "report_data" => Some(report_data.replace(reader.string()?).is_none()),
        "event_log" => Some(event_log.replace(reader.event_log()?).is_none()),
        "vm_config" => Some(vm_config.replace(reader.escaped_string()?).is_none()),
        // The `/verify` form wins over every other field: serde's to read.
        "attestation" => None,
        // Ignored, as serde ignores them, when they are plain strings (GetQuote's
        // `hash_algorithm` and `prefix`).
        _ => reader.string().map(|_| true),
    })?;
    reader.skip_whitespace();
    if reader.at != reader.text.len() {
        return None;
    }
    Some(QuoteReport {
        quote: quote?,
        event_log: event_log?,
        report_data,
        vm_config,
    })
}

/// How a string's quotes are spelled where the reader is: `"` in the report, `\"` inside the
/// event log when it is itself a JSON string.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    Plain,
    Escaped,
}

struct Reader<'a> {
    text: &'a str,
    at: usize,
    quote: Quote,
}

impl<'a> Reader<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// An object whose every key `field` reads the value of: `Some(true)` for a value taken,
    /// `Some(false)` for a key seen twice, `None` to give up (then the whole read is `None`).
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<bool>) -> Option<()> {
        self.expect(b'{')?;
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            if !field(self, key)? {
                return None;
            }
            if self.eat(b'}') {
                return Some(());
            }
            self.expect(b',')?;
        }
    }

    /// JSON whitespace; inside an escaped log only spaces (a line break there is an escape).
    fn skip_whitespace(&mut self) {
        while let Some(&byte) = self.bytes().get(self.at) {
            let blank = match self.quote {
                Quote::Plain => matches!(byte, b' ' | b'\t' | b'\n' | b'\r'),
                Quote::Escaped => byte == b' ',
            };
            if !blank {
                break;
            }
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        if self.bytes().get(self.at) == Some(&byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    /// A quote as spelled here.
    fn eat_quote(&mut self) -> bool {
        match self.quote {
            Quote::Plain => self.eat(b'"'),
            Quote::Escaped => {
                self.skip_whitespace();
                let found = self.bytes()[self.at..].starts_with(b"\\\"");
                if found {
                    self.at += 2;
                }
                found
            }
        }
    }

    /// A string without escapes or control characters, borrowed.
    fn string(&mut self) -> Option<&'a str> {
        if !self.eat_quote() {
            return None;
        }
        let start = self.at;
        self.at = start + plain_run(&self.bytes()[start..]);
        // Both ends are ASCII, so the slice is on character boundaries.
        let value = self.text.get(start..self.at)?;
        self.eat_quote().then_some(value)
    }

    /// A plain-quoted string of any content, unescaped (by serde: it is small).
    fn escaped_string(&mut self) -> Option<String> {
        if self.quote != Quote::Plain || !self.eat(b'"') {
            return None;
        }
        let start = self.at - 1;
        loop {
            match *self.bytes().get(self.at)? {
                b'"' => break,
                b'\\' => self.at += 2,
                _ => self.at += 1,
            }
        }
        self.at += 1;
        serde_json::from_str(self.text.get(start..self.at)?).ok()
    }

    /// The event log: an inline array, or one spelled as a JSON string.
    fn event_log(&mut self) -> Option<Vec<JsonEvent<'a>>> {
        if self.eat(b'"') {
            self.quote = Quote::Escaped;
            let events = self.events()?;
            self.quote = Quote::Plain;
            // The string ends right after the array.
            (self.bytes().get(self.at) == Some(&b'"')).then(|| self.at += 1)?;
            Some(events)
        } else {
            self.events()
        }
    }

    fn events(&mut self) -> Option<Vec<JsonEvent<'a>>> {
        self.expect(b'[')?;
        let mut events = Vec::new();
        if self.eat(b']') {
            return Some(events);
        }
        loop {
            events.push(self.event()?);
            if self.eat(b']') {
                return Some(events);
            }
            self.expect(b',')?;
        }
    }

    fn event(&mut self) -> Option<JsonEvent<'a>> {
        let (mut imr, mut event_type, mut digest, mut event, mut event_payload) =
            (None, None, None, None, None);
        let (mut version, mut preimage) = (None, None);
        self.object(|reader, key| match key {
            "imr" => Some(imr.replace(reader.number()?).is_none()),
            "event_type" => Some(event_type.replace(reader.number()?).is_none()),
            "digest" => Some(digest.replace(reader.string()?).is_none()),
            "event" => Some(event.replace(reader.string()?).is_none()),
            "event_payload" => Some(event_payload.replace(reader.string()?).is_none()),
            "version" => Some(version.replace(reader.number()?).is_none()),
            "preimage" => Some(preimage.replace(reader.string()?).is_none()),
            _ => None,
        })?;
        Some(JsonEvent {
            imr: imr?,
            event_type: event_type?,
            digest: Cow::Borrowed(digest?),
            event: Cow::Borrowed(event?),
            event_payload: Cow::Borrowed(event_payload?),
            version,
            preimage: preimage.map(Cow::Borrowed),
        })
    }

    /// A `u32` spelled plainly: `0`, or digits without a leading zero.
    fn number(&mut self) -> Option<u32> {
        self.skip_whitespace();
        let start = self.at;
        let digits = self.bytes()[start..]
            .iter()
            .take_while(|byte| byte.is_ascii_digit())
            .count();
        self.at += digits;
        if digits == 0 || (digits > 1 && self.bytes()[start] == b'0') {
            return None;
        }
        // A fraction or exponent is not a plain integer.
        if matches!(self.bytes().get(self.at), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.text.get(start..self.at)?.parse().ok()
    }
}

/// How many leading bytes are string content that needs no escape: up to the first quote,
/// backslash or control character (or the end). Eight bytes a step, as one word: short keys and
/// the ~10 KB of a quote's hex alike.
fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // The high bit of each byte that is zero in `word` (exact up to the first such byte, which
    // is all that is read).
    let zero_bytes = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
    let mut words = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut words {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let special = zero_bytes(word ^ (ONES * u64::from(b'"')))
            | zero_bytes(word ^ (ONES * u64::from(b'\\')))
            // Below 0x20: the subtraction borrows, and the byte's own high bit is clear.
            | (word.wrapping_sub(ONES * 0x20) & !word & HIGHS);
        if special != 0 {
            return offset + special.trailing_zeros() as usize / 8;
        }
        offset += 8;
    }
    offset
        + words
            .remainder()
            .iter()
            .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)
            .unwrap_or(bytes.len() - offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dstack::Evidence;

    const EVENTS: &str = r#"[{"imr":0,"event_type":2147483659,"digest":"ab","event":"","event_payload":"00"},{"imr":3,"event_type":134217729,"digest":"","event":"app-id","event_payload":"01","version":1}]"#;

    fn report(event_log: &str, rest: &str) -> String {
        format!(r#"{{"quote":"0011","event_log":{event_log}{rest}}}"#)
    }

    fn string(json: &str) -> String {
        serde_json::Value::String(json.into()).to_string()
    }

    #[test]
    fn a_plain_run_ends_at_the_first_special_byte() {
        // Bytes around the special ones that the word tests could confuse with them.
        let text: Vec<u8> = (0..100)
            .map(|i| [b'a', 0x21, 0x23, 0x20, 0x5b, 0x5d, 0x80, 0xff][i % 8])
            .collect();
        assert_eq!(plain_run(&text), 100);
        assert_eq!(plain_run(&[]), 0);
        for at in 0..100 {
            for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                let mut text = text.clone();
                text[at] = special;
                text[99] = b'"';
                assert_eq!(plain_run(&text), at, "{special:#x} at {at}");
            }
        }
    }

    #[test]
    fn reads_the_plain_forms() {
        for log in [EVENTS.to_owned(), string(EVENTS)] {
            let text = report(
                &log,
                r#","report_data":"ff","vm_config":"{\"a\":1}","prefix":"x","prefix":"y""#,
            );
            let read = read(&text).expect("the plain form");
            assert_eq!(read.quote, "0011");
            assert_eq!(read.report_data, Some("ff"));
            assert_eq!(read.vm_config.as_deref(), Some(r#"{"a":1}"#));
            assert_eq!(read.event_log.len(), 2);
            assert_eq!(read.event_log[1].event, "app-id");
            assert_eq!(read.event_log[1].version, Some(1));
            assert_eq!(read.event_log[0].imr, 0);
        }
        let spaced = " {\n \"quote\" : \"00\" ,\"event_log\" : [ ] } \n";
        assert_eq!(read(spaced).unwrap().event_log, vec![]);
    }

    #[test]
    fn anything_else_is_left_to_serde() {
        let escaped_value = EVENTS.replace(r#""event":"app-id""#, r#""event":"app\u002did""#);
        for text in [
            report(EVENTS, r#","extra":1"#),
            report(EVENTS, r#","extra":"a\"b""#),
            report(EVENTS, r#","quote":"00""#),
            report(EVENTS, r#","report_data":null"#),
            report(EVENTS, r#","vm_config":{"a":1}"#),
            report(&escaped_value, ""),
            report(&string(&escaped_value), ""),
            report(&EVENTS.replace(r#""imr":0"#, r#""imr":00"#), ""),
            report(&EVENTS.replace(r#""imr":0"#, r#""imr":-1"#), ""),
            report(&EVENTS.replace(r#""imr":0"#, r#""imr":0.0"#), ""),
            report(&EVENTS.replace(r#""imr":0"#, r#""imr":4294967296"#), ""),
            report(&EVENTS.replace(r#""imr":0,"#, r#""imr":0,"imr":1,"#), ""),
            report(
                &EVENTS.replace(r#","version":1"#, r#","version":1,"x":1"#),
                "",
            ),
            report(&string(&EVENTS.replace(",", ",\n")), ""),
            report(EVENTS, "") + "x",
            r#"{"event_log":[]}"#.to_owned(),
            r#"{"attestation":"00"}"#.to_owned(),
            report(EVENTS, r#","attestation":"00""#),
        ] {
            assert_eq!(read(&text), None, "{text}");
        }
    }

    /// Where the reader answers, the evidence is what serde's reading gives.
    #[test]
    fn answers_what_serde_answers() {
        for name in [
            "dstack/dstack-verifier-quote-report.json",
            "dstack/dstack-verifier-tdx-lite-getquote.json",
            "dstack/dstack-examples-rtmr3-report.json",
        ] {
            let text =
                String::from_utf8(crate::dstack::test_support::sample(name).unwrap()).unwrap();
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            let inline = {
                let mut value = value.clone();
                if let Some(log) = value["event_log"].as_str() {
                    value["event_log"] = serde_json::from_str(log).unwrap();
                }
                value.to_string()
            };
            for text in [text, inline, serde_json::to_string_pretty(&value).unwrap()] {
                assert!(read(&text).is_some(), "{name} is read by the fast path");
                assert_eq!(
                    Evidence::parse(text.as_bytes()),
                    Evidence::from_json_with_serde(&text),
                    "{name}"
                );
            }
        }
    }
}
