//! dstack's wire formats (as dstack-verifier accepts them), told apart by their bytes:
//! - the quote report JSON `{quote, event_log, report_data?, vm_config?}` (GetQuote, dstack-verifier
//!   fixtures), where `event_log` and `vm_config` are JSON strings or inline JSON;
//! - the `/verify` JSON `{"attestation": "<hex>"}` (other fields are then ignored, as dstack does);
//! - `VersionedAttestation`: V0 is SCALE, first byte 0x00; V1 is msgpack, first byte a map header
//!   (`0x80..=0x8f`, `0xde`, `0xdf`), decoded by [`super::v1`].
//!
//! V0 and V1 of the same boot parse to the same [`Evidence`].

use super::event_log::{
    EventLog, JsonEvent, RawEvent, RuntimeEvent, MAX_EVENTS, MAX_EVENT_NAME_LEN, RUNTIME_IMR,
};
use super::gcp_evidence::{read_scale_tpm_quote, GcpEvidence};
use super::measurements::REPORT_DATA_LEN;
use super::quote_report;
use super::scale::ScaleReader;
use super::vm_config::VmConfig;
use super::DstackError;
use crate::encoding::{parse_hex, parse_hex_exact, HexError};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// dstack-verifier's bound on an attestation (10 MiB).
pub const MAX_EVIDENCE_LEN: usize = 10 << 20;

/// A TDX quote with dstack's event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdxEvidence {
    /// The raw TDX quote, not verified yet.
    pub quote: Vec<u8>,
    /// The event log whose replay must give the quote's RTMRs.
    pub event_log: EventLog,
    /// The report_data the evidence claims; it must equal the quote's.
    pub report_data: Option<[u8; REPORT_DATA_LEN]>,
    /// The host-supplied vm_config, if the evidence carries one.
    pub vm_config: Option<VmConfig>,
}

/// A Nitro NSM document with dstack's (unmeasured) runtime events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NitroEvidence {
    /// The raw NSM attestation document (COSE_Sign1), not verified yet.
    pub document: Vec<u8>,
    /// dstack's runtime events (only `app-id` for an enclave); bound only through the PCRs.
    pub runtime_events: Vec<RuntimeEvent>,
    /// Must equal the document's user_data.
    pub report_data: [u8; REPORT_DATA_LEN],
    /// The host-supplied vm_config, if the evidence carries one.
    pub vm_config: Option<VmConfig>,
}

/// Parsed dstack evidence; the platform proof inside is not verified yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// A TDX quote with its event log.
    Tdx(TdxEvidence),
    /// A Nitro attestation document with dstack's runtime events.
    Nitro(NitroEvidence),
    /// A TDX quote with its event log and a vTPM quote bound to it (dstack on Google Cloud).
    GcpTdx(GcpEvidence),
}

/// The JSON forms. Text fields borrow from the input (copied only when they hold escapes); the
/// event log is read in one pass whether it is inline or a JSON string.
#[derive(Deserialize)]
struct EvidenceJson<'a> {
    #[serde(default, borrow)]
    attestation: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    quote: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    event_log: Option<Nested<'a, Vec<JsonEvent<'a>>>>,
    #[serde(default, borrow)]
    report_data: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    vm_config: Option<&'a RawValue>,
}

/// A field that holds JSON inline, or spelled as a JSON string (dstack writes both): the string
/// is kept to be parsed next, the inline value is deserialized where it stands, without first
/// being scanned as a raw value.
enum Nested<'a, T> {
    Text(Cow<'a, str>),
    Inline(T),
}

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for Nested<'a, T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a, T>(std::marker::PhantomData<(&'a (), T)>);
        impl<'de: 'a, 'a, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<'a, T> {
            type Value = Nested<'a, T>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("inline JSON or JSON spelled as a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Nested::Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Nested::Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
                Ok(Nested::Text(Cow::Owned(text)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(Nested::Inline)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Nested::Inline)
            }
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

impl Evidence {
    /// Detects the format from the bytes and parses it.
    pub fn parse(bytes: &[u8]) -> Result<Evidence, DstackError> {
        DstackError::check_len("evidence", bytes.len(), MAX_EVIDENCE_LEN)?;
        match bytes.iter().find(|byte| !byte.is_ascii_whitespace()) {
            Some(b'{') => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| DstackError::UnrecognizedFormat("JSON is not UTF-8"))?;
                Evidence::from_json(text)
            }
            _ => Evidence::from_versioned_attestation(bytes),
        }
    }

    fn from_json(text: &str) -> Result<Evidence, DstackError> {
        match quote_report::read(text) {
            Some(report) => Evidence::quote_report(
                report.quote,
                || EventLog::from_json_events(report.event_log),
                report.report_data,
                report.vm_config.as_deref(),
            ),
            None => Evidence::from_json_with_serde(text),
        }
    }

    /// Whether the fast path and serde read `text` alike wherever the fast path answers.
    #[cfg(fuzzing)]
    pub(crate) fn json_readers_agree(text: &str) -> bool {
        quote_report::read(text).is_none()
            || Evidence::from_json(text) == Evidence::from_json_with_serde(text)
    }

    /// Every JSON spelling, read by serde (the fast path's reference, [`quote_report`]).
    pub(super) fn from_json_with_serde(text: &str) -> Result<Evidence, DstackError> {
        let json: EvidenceJson<'_> = serde_json::from_str(text).map_err(|e| DstackError::Json {
            what: "evidence",
            reason: e.to_string(),
        })?;
        if let Some(attestation) = json.attestation {
            return Evidence::from_versioned_attestation(&hex_field("attestation", &attestation)?);
        }
        let quote = json.quote.ok_or(DstackError::UnrecognizedFormat(
            "JSON has neither attestation nor quote",
        ))?;
        let event_log = json.event_log.ok_or(DstackError::UnrecognizedFormat(
            "quote report has no event_log",
        ))?;
        let vm_config = json
            .vm_config
            .map(|raw| nested_json(raw, "vm_config"))
            .transpose()?;
        Evidence::quote_report(
            &quote,
            || match event_log {
                Nested::Text(text) => EventLog::from_json(&text),
                Nested::Inline(events) => EventLog::from_json_events(events),
            },
            json.report_data.as_deref(),
            vm_config.as_deref(),
        )
    }

    /// A quote report from its fields, checked in this order: vm_config, quote, event log,
    /// report_data.
    fn quote_report(
        quote: &str,
        event_log: impl FnOnce() -> Result<EventLog, DstackError>,
        report_data: Option<&str>,
        vm_config: Option<&str>,
    ) -> Result<Evidence, DstackError> {
        let vm_config = match vm_config {
            Some(text) => VmConfig::from_json(text)?,
            None => None,
        };
        Ok(Evidence::Tdx(TdxEvidence {
            quote: hex_field("quote", quote)?,
            event_log: event_log()?,
            report_data: report_data
                .map(|text| fixed_hex("report_data", text))
                .transpose()?,
            vm_config,
        }))
    }

    /// A VersionedAttestation, V0 or V1, told apart by its first byte as upstream does.
    pub fn from_versioned_attestation(bytes: &[u8]) -> Result<Evidence, DstackError> {
        DstackError::check_len("evidence", bytes.len(), MAX_EVIDENCE_LEN)?;
        match bytes.first() {
            Some(0x00) => Evidence::from_scale_v0(bytes),
            Some(0x80..=0x8f | 0xde | 0xdf) => super::v1::decode(bytes)?.into_evidence(),
            _ => Err(DstackError::UnrecognizedFormat(
                "neither dstack JSON nor a VersionedAttestation",
            )),
        }
    }

    /// `VersionedAttestation::V0 { quote: AttestationQuote, runtime_events: Vec<{String, Vec<u8>}>,
    /// report_data: [u8; 64], config: String }`; AttestationQuote variants 0 = TDX `{quote: Vec<u8>,
    /// event_log: Vec<TdxEvent>}` and 2 = Nitro enclave `{nsm_quote: Vec<u8>}` are supported.
    fn from_scale_v0(bytes: &[u8]) -> Result<Evidence, DstackError> {
        let mut reader = ScaleReader::new(bytes);
        reader.u8()?; // the 0x00 version tag, matched by the caller
        let platform = match reader.u8()? {
            0 => {
                let quote = reader.bytes()?;
                let count = reader.count(MAX_EVENTS)?;
                let events = (0..count)
                    .map(|_| read_tdx_event(&mut reader))
                    .collect::<Result<Vec<_>, _>>()?;
                Platform::Tdx { quote, events }
            }
            2 => Platform::Nitro {
                document: reader.bytes()?,
            },
            1 => {
                let quote = reader.bytes()?;
                let count = reader.count(MAX_EVENTS)?;
                let events = (0..count)
                    .map(|_| read_tdx_event(&mut reader))
                    .collect::<Result<Vec<_>, _>>()?;
                Platform::GcpTdx {
                    quote,
                    events,
                    tpm_quote: read_scale_tpm_quote(&mut reader)?,
                }
            }
            3 => return Err(DstackError::Unsupported("dstack AMD SEV-SNP attestation")),
            4 => return Err(DstackError::Unsupported("dstack AWS NitroTPM attestation")),
            _ => {
                return Err(DstackError::Scale {
                    offset: 1,
                    reason: "unknown AttestationQuote variant",
                })
            }
        };
        let count = reader.count(MAX_EVENTS)?;
        let runtime_events = (0..count)
            .map(|_| read_runtime_event(&mut reader))
            .collect::<Result<Vec<_>, _>>()?;
        let report_data = reader.array::<REPORT_DATA_LEN>()?;
        let config = reader.string()?;
        reader.finish()?;
        match platform {
            Platform::Tdx { quote, events } => Evidence::tdx(
                quote,
                events,
                runtime_events.into_iter().map(RawEvent::from).collect(),
                report_data,
                &config,
            ),
            Platform::Nitro { document } => {
                Evidence::nitro(document, runtime_events, report_data, &config)
            }
            Platform::GcpTdx {
                quote,
                events,
                tpm_quote,
            } => Evidence::gcp_tdx(
                quote,
                events,
                runtime_events.into_iter().map(RawEvent::from).collect(),
                report_data,
                &config,
                tpm_quote,
            ),
        }
    }

    /// GCP TDX evidence from a VersionedAttestation's parts (V0 and V1 alike): the TDX evidence
    /// as [`Evidence::tdx`] reads it, and the vTPM quote.
    pub(super) fn gcp_tdx(
        quote: Vec<u8>,
        events: Vec<RawEvent>,
        runtime: Vec<RawEvent>,
        report_data: [u8; REPORT_DATA_LEN],
        config: &str,
        (tpm_quote, ak_cert): (crate::tpm::TpmQuote, Vec<u8>),
    ) -> Result<Evidence, DstackError> {
        let tdx = TdxEvidence::from_parts(quote, events, runtime, report_data, config)?;
        Ok(Evidence::GcpTdx(GcpEvidence {
            tdx,
            tpm_quote,
            ak_cert,
        }))
    }

    /// TDX evidence from a VersionedAttestation's parts (V0 and V1 alike); `runtime` are the
    /// attestation's `runtime_events` as RTMR3 events.
    pub(super) fn tdx(
        quote: Vec<u8>,
        events: Vec<RawEvent>,
        runtime: Vec<RawEvent>,
        report_data: [u8; REPORT_DATA_LEN],
        config: &str,
    ) -> Result<Evidence, DstackError> {
        TdxEvidence::from_parts(quote, events, runtime, report_data, config).map(Evidence::Tdx)
    }

    /// Nitro evidence from a VersionedAttestation's parts (V0 and V1 alike).
    pub(super) fn nitro(
        document: Vec<u8>,
        runtime_events: Vec<RuntimeEvent>,
        report_data: [u8; REPORT_DATA_LEN],
        config: &str,
    ) -> Result<Evidence, DstackError> {
        Ok(Evidence::Nitro(NitroEvidence {
            document,
            runtime_events,
            report_data,
            vm_config: VmConfig::from_json(config)?,
        }))
    }
}

impl TdxEvidence {
    /// TDX evidence from a VersionedAttestation's parts (V0 and V1, TDX and GCP alike).
    fn from_parts(
        quote: Vec<u8>,
        events: Vec<RawEvent>,
        runtime: Vec<RawEvent>,
        report_data: [u8; REPORT_DATA_LEN],
        config: &str,
    ) -> Result<TdxEvidence, DstackError> {
        Ok(TdxEvidence {
            quote,
            event_log: EventLog::from_raw(with_runtime_events(events, runtime)?)?,
            report_data: Some(report_data),
            vm_config: VmConfig::from_json(config)?,
        })
    }
}

enum Platform {
    Tdx {
        quote: Vec<u8>,
        events: Vec<RawEvent>,
    },
    GcpTdx {
        quote: Vec<u8>,
        events: Vec<RawEvent>,
        /// The vTPM quote and the AK certificate.
        tpm_quote: (crate::tpm::TpmQuote, Vec<u8>),
    },
    Nitro {
        document: Vec<u8>,
    },
}

/// `TdxEvent { imr: u32, event_type: u32, digest: Vec<u8>, event: String, event_payload: Vec<u8> }`.
fn read_tdx_event(reader: &mut ScaleReader<'_>) -> Result<RawEvent, DstackError> {
    Ok(RawEvent {
        imr: reader.u32()?,
        event_type: reader.u32()?,
        digest: reader.bytes()?,
        name: reader.string()?,
        payload: reader.bytes()?,
        version: None,
        preimage: None,
    })
}

fn read_runtime_event(reader: &mut ScaleReader<'_>) -> Result<RuntimeEvent, DstackError> {
    let name = reader.string()?;
    check_runtime_event_name(&name)?;
    Ok(RuntimeEvent {
        name,
        payload: reader.bytes()?,
    })
}

/// A runtime event name longer than any event log accepts is refused before it is kept.
pub(super) fn check_runtime_event_name(name: &str) -> Result<(), DstackError> {
    DstackError::check_len("runtime event name", name.len(), MAX_EVENT_NAME_LEN)?;
    Ok(())
}

/// A TDX attestation may carry its RTMR3 events in the event log, in `runtime_events`, or in both.
/// Both must then list the same events (name, payload and digest version); a log without RTMR3
/// events takes `runtime_events`.
fn with_runtime_events(
    mut events: Vec<RawEvent>,
    runtime: Vec<RawEvent>,
) -> Result<Vec<RawEvent>, DstackError> {
    let key = |event: &RawEvent| {
        (
            event.name.clone(),
            event.payload.clone(),
            event.version.unwrap_or(1),
        )
    };
    let logged: Vec<_> = events
        .iter()
        .filter(|event| usize::try_from(event.imr).ok() == Some(RUNTIME_IMR))
        .map(key)
        .collect();
    if logged.is_empty() {
        events.extend(runtime);
    } else if !runtime.is_empty() && !logged.into_iter().eq(runtime.iter().map(key)) {
        return Err(DstackError::Inconsistent(
            "runtime_events differ from the event log's RTMR3 events",
        ));
    }
    Ok(events)
}

/// The JSON a field holds, whether inline or spelled as a JSON string.
fn nested_json<'a>(raw: &'a RawValue, what: &'static str) -> Result<Cow<'a, str>, DstackError> {
    let text = raw.get();
    if text.starts_with('"') {
        let inner: String = serde_json::from_str(text).map_err(|e| DstackError::Json {
            what,
            reason: e.to_string(),
        })?;
        Ok(Cow::Owned(inner))
    } else {
        Ok(Cow::Borrowed(text))
    }
}

fn hex_field(field: &'static str, text: &str) -> Result<Vec<u8>, DstackError> {
    parse_hex(text).map_err(|source| DstackError::Hex { field, source })
}

fn fixed_hex<const N: usize>(field: &'static str, text: &str) -> Result<[u8; N], DstackError> {
    parse_hex_exact(text).map_err(|source| match source {
        HexError::WrongLength { got, expected } => DstackError::Length {
            field,
            len: got,
            expected,
        },
        source => DstackError::Hex { field, source },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dstack::event_log::{runtime_event_digest, RuntimeEventVersion, RUNTIME_EVENT_TYPE};
    use crate::dstack::test_support::Scale;

    const CONFIG: &str =
        r#"{"os_image_hash":"1894b0b29e94a9db16e88a2914f0923e52bb16c08bf3bb484df786a147e2eb79"}"#;

    fn nitro_v0(events: &[(&str, &[u8])]) -> Vec<u8> {
        Scale::default()
            .raw(&[0, 2])
            .bytes(b"\x84cose")
            .runtime_events(events)
            .tail(&[7; 64], CONFIG)
    }

    /// `TdxEvent` fields: imr, event_type, digest, name, payload.
    type ScaleEvent<'a> = (u32, u32, &'a [u8], &'a str, &'a [u8]);

    fn tdx_v0(log: &[ScaleEvent<'_>], runtime: &[(&str, &[u8])]) -> Vec<u8> {
        let scale = Scale::default()
            .raw(&[0, 0])
            .bytes(b"quote")
            .compact(log.len() as u32);
        let scale = log
            .iter()
            .fold(scale, |s, (imr, event_type, digest, name, payload)| {
                s.u32(*imr)
                    .u32(*event_type)
                    .bytes(digest)
                    .bytes(name.as_bytes())
                    .bytes(payload)
            });
        scale.runtime_events(runtime).tail(&[8; 64], "")
    }

    #[test]
    fn nitro_v0_attestation() {
        let Evidence::Nitro(nitro) = Evidence::parse(&nitro_v0(&[("app-id", &[1; 20])])).unwrap()
        else {
            panic!("not nitro")
        };
        assert_eq!(nitro.document, b"\x84cose");
        assert_eq!(
            nitro.runtime_events,
            vec![RuntimeEvent {
                name: "app-id".into(),
                payload: vec![1; 20]
            }]
        );
        assert_eq!(nitro.report_data, [7; 64]);
        assert_eq!(
            nitro.vm_config.unwrap().os_image_hash.unwrap()[..2],
            [0x18, 0x94]
        );
    }

    #[test]
    fn tdx_v0_attestation_takes_runtime_events_into_rtmr3() {
        let boot: ScaleEvent<'_> = (0, 4, &[1; 48], "", b"");
        let Evidence::Tdx(tdx) =
            Evidence::parse(&tdx_v0(&[boot], &[("app-id", &[1; 20])])).unwrap()
        else {
            panic!("not tdx")
        };
        assert_eq!(tdx.quote, b"quote");
        assert_eq!(tdx.report_data, Some([8; 64]));
        assert_eq!(tdx.vm_config, None);
        let rtmr3: Vec<_> = tdx.event_log.runtime_events().collect();
        assert_eq!(rtmr3.len(), 1);
        assert_eq!(
            rtmr3[0].digest,
            runtime_event_digest(RuntimeEventVersion::V1, "app-id", &[1; 20])
        );

        // RTMR3 events in the log itself, runtime_events repeating them or empty.
        let logged: ScaleEvent<'_> = (3, RUNTIME_EVENT_TYPE, b"", "app-id", &[1; 20]);
        for runtime in [&[][..], &[("app-id", &[1u8; 20][..])][..]] {
            let Evidence::Tdx(tdx) = Evidence::parse(&tdx_v0(&[boot, logged], runtime)).unwrap()
            else {
                panic!("not tdx")
            };
            assert_eq!(tdx.event_log.runtime_events().count(), 1);
        }
        let err = Evidence::parse(&tdx_v0(&[boot, logged], &[("app-id", &[2; 20])])).unwrap_err();
        assert_eq!(err.kind().as_str(), "malformed");
        assert!(matches!(err, DstackError::Inconsistent(_)));

        // Events are checked like JSON ones.
        let bad_digest: ScaleEvent<'_> = (0, 4, &[1; 47], "", b"");
        assert!(matches!(
            Evidence::parse(&tdx_v0(&[bad_digest], &[])),
            Err(DstackError::InvalidEvent { .. })
        ));
    }

    #[test]
    fn scale_errors_are_malformed_never_panics() {
        let good = nitro_v0(&[("app-id", &[1; 20])]);
        for len in 1..good.len() {
            let err = Evidence::parse(&good[..len]).unwrap_err();
            assert_eq!(err.kind().as_str(), "malformed", "prefix {len}: {err}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            Evidence::parse(&trailing),
            Err(DstackError::Scale {
                reason: "trailing bytes after the attestation",
                ..
            })
        ));

        let unknown = Scale::default().raw(&[0, 9]).0;
        assert!(matches!(
            Evidence::parse(&unknown),
            Err(DstackError::Scale {
                reason: "unknown AttestationQuote variant",
                ..
            })
        ));

        let long_name = "n".repeat(MAX_EVENT_NAME_LEN + 1);
        assert!(matches!(
            Evidence::parse(&nitro_v0(&[(&long_name, b"")])),
            Err(DstackError::TooLarge {
                what: "runtime event name",
                ..
            })
        ));
        let too_many = Scale::default()
            .raw(&[0, 2])
            .bytes(b"doc")
            .compact(MAX_EVENTS as u32 + 1)
            .0;
        assert_eq!(
            Evidence::parse(&too_many).unwrap_err().kind().as_str(),
            "malformed"
        );

        let bad_config = Scale::default()
            .raw(&[0, 2])
            .bytes(b"doc")
            .compact(0)
            .tail(&[0; 64], "{");
        assert!(matches!(
            Evidence::parse(&bad_config),
            Err(DstackError::Json {
                what: "vm_config",
                ..
            })
        ));
    }

    #[test]
    fn other_platforms_and_formats() {
        for (variant, what) in [
            (3u8, "dstack AMD SEV-SNP attestation"),
            (4, "dstack AWS NitroTPM attestation"),
        ] {
            let err = Evidence::parse(&[0, variant, 0]).unwrap_err();
            assert_eq!(
                (err.clone(), err.kind().as_str()),
                (DstackError::Unsupported(what), "unsupported")
            );
        }
        // GCP (1) is read: a truncated one is malformed.
        let err = Evidence::parse(&[0, 1, 0]).unwrap_err();
        assert_eq!(err.kind().as_str(), "malformed", "{err}");
        // A msgpack map is read as V1, whatever follows.
        for map in [
            &b"\x83\xa7version\x01"[..],
            b"\x84\x44",
            b"\xde\x00\x00",
            b"\xdf",
        ] {
            assert!(
                matches!(Evidence::parse(map), Err(DstackError::Msgpack(_))),
                "{map:?}"
            );
        }
        for other in [&b""[..], b"\x04\x00\x02\x00", b"\x90", b"   "] {
            assert!(
                matches!(
                    Evidence::parse(other),
                    Err(DstackError::UnrecognizedFormat(_))
                ),
                "{other:?}"
            );
        }
        let huge = vec![0u8; MAX_EVIDENCE_LEN + 1];
        assert!(matches!(
            Evidence::parse(&huge),
            Err(DstackError::TooLarge {
                what: "evidence",
                ..
            })
        ));
    }

    const EVENTS: &str = r#"[{"imr":3,"event_type":134217729,"digest":"","event":"app-id","event_payload":"0101010101010101010101010101010101010101"}]"#;

    #[test]
    fn quote_report_json_with_string_or_inline_fields() {
        let as_strings = serde_json::json!({
            "quote": "0a0b", "event_log": EVENTS, "report_data": "12".repeat(64), "vm_config": CONFIG,
        });
        let inline = serde_json::json!({
            "quote": "0x0a0b",
            "event_log": serde_json::from_str::<serde_json::Value>(EVENTS).unwrap(),
            "report_data": "12".repeat(64),
            "vm_config": serde_json::from_str::<serde_json::Value>(CONFIG).unwrap(),
            "hash_algorithm": "raw",
        });
        for json in [as_strings, inline] {
            let Evidence::Tdx(tdx) = Evidence::parse(json.to_string().as_bytes()).unwrap() else {
                panic!("not tdx")
            };
            assert_eq!(tdx.quote, [0x0a, 0x0b]);
            assert_eq!(tdx.event_log.runtime_events().count(), 1);
            assert_eq!(tdx.report_data, Some([0x12; 64]));
            assert!(tdx.vm_config.unwrap().os_image_hash.is_some());
        }
        let minimal = format!(r#"  {{"quote":"00","event_log":{EVENTS},"vm_config":null}}"#);
        let Evidence::Tdx(tdx) = Evidence::parse(minimal.as_bytes()).unwrap() else {
            panic!("not tdx")
        };
        assert_eq!((tdx.report_data, tdx.vm_config), (None, None));
    }

    #[test]
    fn attestation_json_holds_hex_scale() {
        let scale = nitro_v0(&[("app-id", &[1; 20])]);
        let json = serde_json::json!({ "attestation": hex::encode(&scale), "quote": "ignored" });
        assert_eq!(
            Evidence::parse(json.to_string().as_bytes()).unwrap(),
            Evidence::parse(&scale).unwrap()
        );
        let not_hex = br#"{"attestation":"0xzz"}"#;
        assert!(matches!(
            Evidence::parse(not_hex),
            Err(DstackError::Hex {
                field: "attestation",
                ..
            })
        ));
    }

    #[test]
    fn malformed_quote_reports() {
        let cases: [(String, &str); 8] = [
            ("{".into(), "malformed"),
            (r#"{"event_log":[]}"#.into(), "malformed"),
            (r#"{"quote":"00"}"#.into(), "malformed"),
            (
                format!(r#"{{"quote":"0g","event_log":{EVENTS}}}"#),
                "malformed",
            ),
            (
                format!(r#"{{"quote":"00","event_log":{EVENTS},"report_data":"1234"}}"#),
                "malformed",
            ),
            (
                format!(
                    r#"{{"quote":"00","event_log":{EVENTS},"vm_config":"{{\"os_image_hash\":\"abcd\"}}"}}"#
                ),
                "malformed",
            ),
            (
                r#"{"quote":"00","event_log":"[{\"imr\":9}]"}"#.into(),
                "malformed",
            ),
            (
                r#"{"quote":"00","event_log":"not json"}"#.into(),
                "malformed",
            ),
        ];
        for (json, kind) in cases {
            assert_eq!(
                Evidence::parse(json.as_bytes())
                    .unwrap_err()
                    .kind()
                    .as_str(),
                kind,
                "{json}"
            );
        }
        let short_report_data =
            format!(r#"{{"quote":"00","event_log":{EVENTS},"report_data":"1234"}}"#);
        assert_eq!(
            Evidence::parse(short_report_data.as_bytes()).unwrap_err(),
            DstackError::Length {
                field: "report_data",
                len: 2,
                expected: 64
            }
        );
        assert!(matches!(
            Evidence::parse(b"{\xff}"),
            Err(DstackError::UnrecognizedFormat(_))
        ));
    }
}
