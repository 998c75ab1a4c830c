//! dstack's TDX event log and its replay into RTMR0..3. The log is GetQuote's JSON array of
//! `{imr, event_type, digest, event, event_payload}` (0-based imr, lowercase hex without `0x`,
//! `digest` possibly empty for runtime events, V2 events adding `version` and `preimage`); every
//! register starts at 48 zero bytes and is extended as `RTMR := SHA384(RTMR ‖ digest)`.
//!
//! Boot events (firmware, imr 0-2) extend their register with the digest they carry; their payloads
//! are never read. dstack runtime events (`event_type` 0x08000001) are trusted only through their
//! name and payload: the digest is recomputed (V1 or V2) and a supplied digest or V2 preimage must
//! agree with it. RTMR3 holds runtime events only, because app info is read from it.
//!
//! Replay ([`EventLog::verify`]): RTMR3 is always replayed and compared with the quote. A boot
//! register (RTMR0-2) is replayed and compared only when the log is *complete* for it, meaning it
//! carries at least one event of that register other than the ones dstack's stripping keeps. dstack
//! strips the log it puts into RA-TLS certificates and sends to its KMS (`strip_tdx_lite_event_log`):
//! every RTMR1/RTMR2 event and every RTMR0 event is dropped except the three RTMR0 `ACPI DATA`
//! events (imr 0, event_type 10, payload `ACPI DATA`), whose digests the TDX-lite image binding
//! needs. A register whose events are all of that kind (or which has none) is *stripped*: it is
//! not replayed, and its value is bound by the OS image or not at all ([`ReplayOutcome`]).

use super::DstackError;
use crate::encoding::parse_hex;
use serde::Deserialize;
use std::borrow::Cow;

/// `DSTACK_RUNTIME_EVENT_TYPE`: the TCG event type dstack gives its runtime events.
pub const RUNTIME_EVENT_TYPE: u32 = 0x0800_0001;
/// The register that holds dstack's runtime events.
pub const RUNTIME_IMR: usize = 3;
/// Most events accepted in one log (real logs have a few dozen).
pub const MAX_EVENTS: usize = 4096;
/// Longest event name accepted, in bytes.
pub const MAX_EVENT_NAME_LEN: usize = 1024;

/// A SHA-384 register value or event digest.
pub type Rtmr = [u8; 48];

/// `EV_EVENT_TAG`-like type of the three RTMR0 events OVMF measures the ACPI tables with.
pub const ACPI_DATA_EVENT_TYPE: u32 = 10;
/// Their payload.
pub const ACPI_DATA_PAYLOAD: &[u8] = b"ACPI DATA";

/// How a runtime event's digest is formed (cc-eventlog/src/runtime_events.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuntimeEventVersion {
    /// `SHA384(le32(0x08000001) ‖ ":" ‖ name ‖ ":" ‖ payload)`, the default.
    V1,
    /// `SHA384(canonical JSON {"name","payload":lowerhex,"type":134217729})`.
    V2,
}

impl RuntimeEventVersion {
    fn from_field(version: Option<u32>) -> Option<Self> {
        match version {
            None | Some(1) => Some(RuntimeEventVersion::V1),
            Some(2) => Some(RuntimeEventVersion::V2),
            Some(_) => None,
        }
    }
}

/// The V2 preimage: JCS of `{"name":…,"payload":"<lowercase hex>","type":134217729}`. Keys are
/// already in sorted order, and serde_json escapes strings exactly as JCS does (only `"`, `\` and
/// control characters, lowercase `\u00xx`), so this is the canonical form.
pub fn runtime_event_preimage_v2(name: &str, payload: &[u8]) -> Vec<u8> {
    let quoted_name = serde_json::Value::String(name.to_owned()).to_string();
    format!(
        r#"{{"name":{quoted_name},"payload":"{}","type":{RUNTIME_EVENT_TYPE}}}"#,
        crate::encoding::hex(payload)
    )
    .into_bytes()
}

/// The digest dstack extends RTMR3 with for a runtime event.
pub fn runtime_event_digest(version: RuntimeEventVersion, name: &str, payload: &[u8]) -> Rtmr {
    rtmr(&runtime_event_hash(
        &aws_lc_rs::digest::SHA384,
        version,
        name,
        payload,
    ))
}

/// A runtime event's digest under `algorithm`: SHA-384 for RTMR3, SHA-256 for a vTPM's PCR14.
/// Over `le32(0x08000001) ‖ ":" ‖ name ‖ ":" ‖ payload` (V1), or the V2 canonical JSON.
pub(crate) fn runtime_event_hash(
    algorithm: &'static aws_lc_rs::digest::Algorithm,
    version: RuntimeEventVersion,
    name: &str,
    payload: &[u8],
) -> aws_lc_rs::digest::Digest {
    let mut hasher = aws_lc_rs::digest::Context::new(algorithm);
    match version {
        RuntimeEventVersion::V1 => {
            hasher.update(&RUNTIME_EVENT_TYPE.to_le_bytes());
            hasher.update(b":");
            hasher.update(name.as_bytes());
            hasher.update(b":");
            hasher.update(payload);
        }
        RuntimeEventVersion::V2 => hasher.update(&runtime_event_preimage_v2(name, payload)),
    }
    hasher.finish()
}

/// SHA-384 of one contiguous input, through aws-lc: its assembly hashes a block with about two
/// thirds of sha2's instructions, and register extends are the bulk of a TDX-lite check.
pub(super) fn sha384(bytes: &[u8]) -> Rtmr {
    rtmr(&aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA384,
        bytes,
    ))
}

/// A SHA-384 digest as a register value.
fn rtmr(digest: &aws_lc_rs::digest::Digest) -> Rtmr {
    let mut out = [0u8; 48];
    out.copy_from_slice(digest.as_ref());
    out
}

/// `RTMR := SHA384(RTMR ‖ digest)`.
pub(super) fn extend(register: &mut Rtmr, digest: &Rtmr) {
    let mut block = [0u8; 96];
    block[..48].copy_from_slice(register);
    block[48..].copy_from_slice(digest);
    *register = sha384(&block);
}

/// A runtime event without a register, as the `runtime_events` of a dstack attestation carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeEvent {
    /// The event name (e.g. `app-id`).
    pub name: String,
    /// The event payload.
    pub payload: Vec<u8>,
}

impl From<RuntimeEvent> for RawEvent {
    /// The RTMR3 event of a V1-digest runtime event.
    fn from(event: RuntimeEvent) -> Self {
        RawEvent {
            imr: RUNTIME_IMR as u32,
            event_type: RUNTIME_EVENT_TYPE,
            name: event.name,
            payload: event.payload,
            ..RawEvent::default()
        }
    }
}

/// An event as delivered (hex already decoded), before any rule is applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawEvent {
    /// 0-based register index as the JSON carries it (TCG PCR index minus 1).
    pub imr: u32,
    /// TCG event type; [`RUNTIME_EVENT_TYPE`] for dstack runtime events.
    pub event_type: u32,
    /// May be empty for runtime events (stripped logs).
    pub digest: Vec<u8>,
    /// The `event` name (empty for most boot events).
    pub name: String,
    /// The `event_payload` (may be empty for boot events in stripped logs).
    pub payload: Vec<u8>,
    /// `version` of a runtime event (absent means 1).
    pub version: Option<u32>,
    /// `preimage` of a V2 runtime event.
    pub preimage: Option<Vec<u8>>,
}

/// A checked event and the digest it extends its register with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// 0-based register index (RTMR0..3).
    pub imr: usize,
    /// TCG event type; [`RUNTIME_EVENT_TYPE`] for dstack runtime events.
    pub event_type: u32,
    /// The event name.
    pub name: String,
    /// The payload (never read for boot events).
    pub payload: Vec<u8>,
    /// Given for boot events, recomputed for runtime events.
    pub digest: Rtmr,
    /// The digest version of a runtime event (`None` for a boot event); GCP's PCR14 replays
    /// the same events with SHA-256.
    pub version: Option<RuntimeEventVersion>,
}

impl Event {
    /// Applies the rules of the module docs to event number `index` of a log.
    fn check(index: usize, raw: RawEvent) -> Result<Event, DstackError> {
        let invalid = |reason| DstackError::InvalidEvent { index, reason };
        let imr = usize::try_from(raw.imr)
            .ok()
            .filter(|imr| *imr <= RUNTIME_IMR)
            .ok_or(invalid("imr is not 0-3"))?;
        if raw.name.len() > MAX_EVENT_NAME_LEN {
            return Err(invalid("event name is too long"));
        }
        let mut runtime_version = None;
        let digest = if raw.event_type == RUNTIME_EVENT_TYPE {
            let version = RuntimeEventVersion::from_field(raw.version)
                .ok_or(invalid("runtime event version is not 1 or 2"))?;
            runtime_version = Some(version);
            let digest = runtime_event_digest(version, &raw.name, &raw.payload);
            match (version, &raw.preimage) {
                (RuntimeEventVersion::V1, Some(_)) => {
                    return Err(invalid("a V1 runtime event carries a preimage"))
                }
                (RuntimeEventVersion::V2, Some(preimage))
                    if *preimage != runtime_event_preimage_v2(&raw.name, &raw.payload) =>
                {
                    return Err(DstackError::PreimageMismatch {
                        index,
                        name: raw.name,
                    });
                }
                _ => {}
            }
            if !raw.digest.is_empty() && raw.digest != digest {
                return Err(DstackError::DigestMismatch {
                    index,
                    name: raw.name,
                });
            }
            digest
        } else {
            // A given digest vouches for nothing in the payload, so RTMR3 (read for app info)
            // must hold runtime events only: otherwise relabelling `system-ready` would let
            // app-emitted events count.
            if imr == RUNTIME_IMR {
                return Err(invalid("RTMR3 event is not a dstack runtime event"));
            }
            if raw.version.is_some() || raw.preimage.is_some() {
                return Err(invalid("version/preimage on a boot event"));
            }
            Rtmr::try_from(raw.digest.as_slice())
                .map_err(|_| invalid("boot event digest is not 48 bytes"))?
        };
        Ok(Event {
            imr,
            event_type: raw.event_type,
            name: raw.name,
            payload: raw.payload,
            digest,
            version: runtime_version,
        })
    }
}

impl Event {
    /// One of the RTMR0 ACPI DATA events, the only boot events a stripped log keeps.
    pub fn is_acpi_data(&self) -> bool {
        self.imr == 0
            && self.event_type == ACPI_DATA_EVENT_TYPE
            && self.payload == ACPI_DATA_PAYLOAD
    }
}

/// Which registers a successful [`EventLog::verify`] compared with the quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// `checked[i]`: RTMRi was replayed and matched. RTMR3 always is; a boot register is when the
    /// log is complete for it (module docs). A stripped register loses nothing by not being
    /// replayed: its value enters mr_system/mr_aggregated straight from the quote, and boot
    /// payloads are never read.
    pub checked: [bool; 4],
}

/// A checked dstack event log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventLog {
    events: Vec<Event>,
}

/// One element of the JSON event log (`TdxEvent` serde form: lowercase hex, no `0x`). Its text
/// fields borrow from the log (copied only when they hold JSON escapes): only the decoded bytes
/// and the name are kept.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub(super) struct JsonEvent<'a> {
    pub imr: u32,
    pub event_type: u32,
    #[serde(borrow)]
    pub digest: Cow<'a, str>,
    #[serde(borrow)]
    pub event: Cow<'a, str>,
    #[serde(borrow)]
    pub event_payload: Cow<'a, str>,
    #[serde(default)]
    pub version: Option<u32>,
    #[serde(default, borrow)]
    pub preimage: Option<Cow<'a, str>>,
}

impl JsonEvent<'_> {
    fn into_raw(self) -> Result<RawEvent, DstackError> {
        let hex_field = |field, text: &str| {
            parse_hex(text).map_err(|source| DstackError::Hex { field, source })
        };
        Ok(RawEvent {
            imr: self.imr,
            event_type: self.event_type,
            digest: hex_field("event digest", &self.digest)?,
            payload: hex_field("event payload", &self.event_payload)?,
            preimage: self
                .preimage
                .as_deref()
                .map(|text| hex_field("event preimage", text))
                .transpose()?,
            name: self.event.into_owned(),
            version: self.version,
        })
    }
}

impl EventLog {
    /// Parses the JSON array form (dstack's GetQuote `event_log`).
    pub fn from_json(text: &str) -> Result<EventLog, DstackError> {
        let events: Vec<JsonEvent<'_>> =
            serde_json::from_str(text).map_err(|e| DstackError::Json {
                what: "event log",
                reason: e.to_string(),
            })?;
        EventLog::from_json_events(events)
    }

    /// The events of the JSON form, deserialized where they stand (inline in a quote report).
    pub(super) fn from_json_events(events: Vec<JsonEvent<'_>>) -> Result<EventLog, DstackError> {
        DstackError::check_len("event count", events.len(), MAX_EVENTS)?;
        let raw = events
            .into_iter()
            .map(JsonEvent::into_raw)
            .collect::<Result<Vec<_>, _>>()?;
        EventLog::from_raw(raw)
    }

    /// Checks delivered events in log order.
    pub fn from_raw(events: Vec<RawEvent>) -> Result<EventLog, DstackError> {
        DstackError::check_len("event count", events.len(), MAX_EVENTS)?;
        let events = events
            .into_iter()
            .enumerate()
            .map(|(index, raw)| Event::check(index, raw))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EventLog { events })
    }

    /// All events in log order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The RTMR3 (runtime) events in log order.
    pub fn runtime_events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter().filter(|event| event.imr == RUNTIME_IMR)
    }

    /// Every register replayed from 48 zero bytes.
    pub fn replay(&self) -> [Rtmr; 4] {
        let mut registers = [[0u8; 48]; 4];
        for event in &self.events {
            if let Some(register) = registers.get_mut(event.imr) {
                extend(register, &event.digest);
            }
        }
        registers
    }

    /// RTMR3 replayed up to and including the first event named `last` (all of it if absent):
    /// dstack's boot-time value stops at `boot-mr-done`.
    pub fn replay_rtmr3_through(&self, last: &str) -> Rtmr {
        let mut register = [0u8; 48];
        for event in self.runtime_events() {
            extend(&mut register, &event.digest);
            if event.name == last {
                break;
            }
        }
        register
    }

    /// Whether the log is complete for boot register `register` (module docs); RTMR3 always is.
    pub fn is_complete_for(&self, register: usize) -> bool {
        register == RUNTIME_IMR
            || self
                .events
                .iter()
                .any(|event| event.imr == register && !event.is_acpi_data())
    }

    /// Replays the log and compares it with the quote's RTMR0..3: RTMR3 always, a boot register
    /// when the log is complete for it.
    pub fn verify(&self, quoted: &[Rtmr; 4]) -> Result<ReplayOutcome, DstackError> {
        let replayed = self.replay();
        let mut checked = [false; 4];
        for (register, flag) in checked.iter_mut().enumerate() {
            *flag = self.is_complete_for(register);
        }
        for (register, ((replayed, quoted), flag)) in
            replayed.iter().zip(quoted).zip(checked).enumerate()
        {
            if flag && replayed != quoted {
                return Err(DstackError::RtmrMismatch {
                    register,
                    replayed: crate::encoding::hex(replayed),
                    quoted: crate::encoding::hex(quoted),
                });
            }
        }
        Ok(ReplayOutcome { checked })
    }
}

/// A V1 runtime event as dstack writes it, for tests of this room.
#[cfg(test)]
pub(crate) fn runtime(name: &str, payload: &[u8]) -> RawEvent {
    RawEvent::from(RuntimeEvent {
        name: name.into(),
        payload: payload.to_vec(),
    })
}

/// A named RTMR0 ACPI DATA event, for tests of this room.
#[cfg(test)]
pub(crate) fn acpi(name: &str, digest_byte: u8) -> RawEvent {
    RawEvent {
        imr: 0,
        event_type: ACPI_DATA_EVENT_TYPE,
        digest: vec![digest_byte; 48],
        name: name.into(),
        payload: ACPI_DATA_PAYLOAD.to_vec(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // An independent SHA-384 for the expected values.
    use sha2::{Digest, Sha384};

    fn boot(imr: u32, digest_byte: u8) -> RawEvent {
        RawEvent {
            imr,
            event_type: 4,
            digest: vec![digest_byte; 48],
            ..Default::default()
        }
    }

    fn sha384(parts: &[&[u8]]) -> Rtmr {
        let mut hasher = Sha384::new();
        parts.iter().for_each(|part| hasher.update(part));
        hasher.finalize().into()
    }

    #[test]
    fn v1_digest_is_type_name_payload() {
        let expected = sha384(&[&[0x01, 0x00, 0x00, 0x08], b":app-id:", &[0xaa; 20]]);
        assert_eq!(
            runtime_event_digest(RuntimeEventVersion::V1, "app-id", &[0xaa; 20]),
            expected
        );
        // Known value from dstack-verifier-quote-report.json: the empty `system-preparing` event.
        assert_eq!(
            hex::encode(runtime_event_digest(RuntimeEventVersion::V1, "system-preparing", &[])),
            "f9974020ef507068183313d0ca808e0d1ca9b2d1ad0c61f5784e7157c362c06536f5ddacdad4451693f48fcc72fff624"
        );
    }

    #[test]
    fn v2_digest_hashes_the_canonical_json() {
        let preimage = runtime_event_preimage_v2("compose-hash", &[0xAB, 0x01]);
        assert_eq!(
            preimage,
            br#"{"name":"compose-hash","payload":"ab01","type":134217729}"#
        );
        assert_eq!(
            runtime_event_digest(RuntimeEventVersion::V2, "compose-hash", &[0xAB, 0x01]),
            sha384(&[&preimage])
        );
        // JCS escaping: quote, backslash and control characters only; non-ASCII stays UTF-8.
        assert_eq!(
            runtime_event_preimage_v2("a\"\\\n\u{1}é/", &[]),
            "{\"name\":\"a\\\"\\\\\\n\\u0001é/\",\"payload\":\"\",\"type\":134217729}".as_bytes()
        );
    }

    #[test]
    fn runtime_digests_are_recomputed_and_supplied_ones_checked() {
        let expected = runtime_event_digest(RuntimeEventVersion::V1, "app-id", &[1; 20]);
        let log = EventLog::from_raw(vec![runtime("app-id", &[1; 20])]).unwrap();
        assert_eq!(log.events()[0].digest, expected);

        let supplied = RawEvent {
            digest: expected.to_vec(),
            ..runtime("app-id", &[1; 20])
        };
        assert!(EventLog::from_raw(vec![supplied]).is_ok());

        let wrong = RawEvent {
            digest: vec![0; 48],
            ..runtime("app-id", &[1; 20])
        };
        let err = EventLog::from_raw(vec![wrong]).unwrap_err();
        assert_eq!(err.kind().as_str(), "event_log_mismatch");
        assert!(matches!(err, DstackError::DigestMismatch { index: 0, .. }));
    }

    #[test]
    fn v2_events_and_their_preimages() {
        let canonical = runtime_event_preimage_v2("app-id", &[2; 20]);
        let v2 = RawEvent {
            version: Some(2),
            preimage: Some(canonical.clone()),
            ..runtime("app-id", &[2; 20])
        };
        let log = EventLog::from_raw(vec![v2.clone(), runtime("instance-id", &[3; 20])]).unwrap();
        assert_eq!(log.events()[0].digest, sha384(&[&canonical]));

        let without_preimage = RawEvent {
            preimage: None,
            ..v2.clone()
        };
        assert!(EventLog::from_raw(vec![without_preimage]).is_ok());

        // The same JSON value spelled with a space is not the canonical form.
        let spaced = br#"{"name": "app-id","payload":"0202020202020202020202020202020202020202","type":134217729}"#;
        let err = EventLog::from_raw(vec![RawEvent {
            preimage: Some(spaced.to_vec()),
            ..v2.clone()
        }])
        .unwrap_err();
        assert!(matches!(
            err,
            DstackError::PreimageMismatch { index: 0, .. }
        ));
        assert_eq!(err.kind().as_str(), "event_log_mismatch");

        let other_payload = runtime_event_preimage_v2("app-id", &[9; 20]);
        let err = EventLog::from_raw(vec![RawEvent {
            preimage: Some(other_payload),
            ..v2.clone()
        }])
        .unwrap_err();
        assert_eq!(err.kind().as_str(), "event_log_mismatch");

        let v1_digest = runtime_event_digest(RuntimeEventVersion::V1, "app-id", &[2; 20]);
        let err = EventLog::from_raw(vec![RawEvent {
            digest: v1_digest.to_vec(),
            ..v2
        }])
        .unwrap_err();
        assert!(matches!(err, DstackError::DigestMismatch { .. }));
    }

    #[test]
    fn malformed_events_are_rejected() {
        let cases = [
            (
                RawEvent {
                    imr: 4,
                    ..boot(0, 1)
                },
                "imr is not 0-3",
            ),
            (
                RawEvent {
                    version: Some(3),
                    ..runtime("x", &[])
                },
                "runtime event version is not 1 or 2",
            ),
            (
                RawEvent {
                    preimage: Some(vec![]),
                    ..runtime("x", &[])
                },
                "a V1 runtime event carries a preimage",
            ),
            (
                RawEvent {
                    name: "n".repeat(MAX_EVENT_NAME_LEN + 1),
                    ..runtime("", &[])
                },
                "event name is too long",
            ),
            (boot(3, 1), "RTMR3 event is not a dstack runtime event"),
            (
                RawEvent {
                    version: Some(1),
                    ..boot(0, 1)
                },
                "version/preimage on a boot event",
            ),
            (
                RawEvent {
                    digest: vec![],
                    ..boot(1, 0)
                },
                "boot event digest is not 48 bytes",
            ),
            (
                RawEvent {
                    digest: vec![1; 32],
                    ..boot(2, 0)
                },
                "boot event digest is not 48 bytes",
            ),
        ];
        for (raw, reason) in cases {
            let err = EventLog::from_raw(vec![boot(0, 7), raw]).unwrap_err();
            assert_eq!(err, DstackError::InvalidEvent { index: 1, reason });
            assert_eq!(err.kind().as_str(), "malformed");
        }
        let too_many = vec![boot(0, 1); MAX_EVENTS + 1];
        assert_eq!(
            EventLog::from_raw(too_many).unwrap_err().kind().as_str(),
            "malformed"
        );
    }

    #[test]
    fn replay_extends_each_register_from_zero() {
        let log = EventLog::from_raw(vec![boot(0, 1), boot(1, 2), boot(0, 3), runtime("a", b"x")])
            .unwrap();
        let zero = [0u8; 48];
        let rtmr0 = sha384(&[&sha384(&[&zero, &[1; 48]]), &[3; 48]]);
        let rtmr1 = sha384(&[&zero, &[2; 48]]);
        let rtmr3 = sha384(&[
            &zero,
            &runtime_event_digest(RuntimeEventVersion::V1, "a", b"x"),
        ]);
        assert_eq!(log.replay(), [rtmr0, rtmr1, zero, rtmr3]);

        let outcome = log.verify(&[rtmr0, rtmr1, [9; 48], rtmr3]).unwrap();
        assert_eq!(outcome.checked, [true, true, false, true]);
    }

    #[test]
    fn any_tampering_is_an_rtmr_mismatch_naming_the_register() {
        let events = vec![
            boot(0, 1),
            boot(2, 2),
            runtime("app-id", &[1; 20]),
            runtime("compose-hash", &[2; 32]),
        ];
        let quoted = EventLog::from_raw(events.clone()).unwrap().replay();

        let mut tampered = events.clone();
        tampered[3].payload[0] ^= 1;
        let err = EventLog::from_raw(tampered)
            .unwrap()
            .verify(&quoted)
            .unwrap_err();
        assert!(matches!(err, DstackError::RtmrMismatch { register: 3, .. }));
        assert_eq!(err.kind().as_str(), "event_log_mismatch");

        let mut tampered = events.clone();
        tampered[1].digest[47] ^= 1;
        let err = EventLog::from_raw(tampered)
            .unwrap()
            .verify(&quoted)
            .unwrap_err();
        assert!(matches!(err, DstackError::RtmrMismatch { register: 2, .. }));

        let mut dropped = events;
        dropped.pop();
        let err = EventLog::from_raw(dropped)
            .unwrap()
            .verify(&quoted)
            .unwrap_err();
        assert!(matches!(err, DstackError::RtmrMismatch { register: 3, .. }));
    }

    #[test]
    fn stripped_boot_registers_are_not_replayed() {
        // dstack's stripped form: the three ACPI DATA events and the runtime events only.
        let stripped = EventLog::from_raw(vec![
            acpi("acpi-loader", 1),
            acpi("acpi-rsdp", 2),
            acpi("acpi-tables", 3),
            runtime("app-id", &[1; 20]),
        ])
        .unwrap();
        let mut quoted = [[0x5a; 48]; 4];
        quoted[3] = stripped.replay()[3];
        assert_eq!(
            stripped.verify(&quoted).unwrap().checked,
            [false, false, false, true]
        );
        assert!((0..3).all(|register| !stripped.is_complete_for(register)));

        // One other RTMR0 event makes the log complete for RTMR0: replayed, and here refused.
        let mut events = vec![boot(0, 9)];
        events.extend(stripped.events().iter().map(|event| RawEvent {
            imr: event.imr as u32,
            event_type: event.event_type,
            digest: event.digest.to_vec(),
            name: event.name.clone(),
            payload: event.payload.clone(),
            ..Default::default()
        }));
        let complete = EventLog::from_raw(events).unwrap();
        assert!(complete.is_complete_for(0) && !complete.is_complete_for(1));
        let err = complete.verify(&quoted).unwrap_err();
        assert!(matches!(err, DstackError::RtmrMismatch { register: 0, .. }));

        // The payload is part of what makes an ACPI DATA event: another one counts as a boot event.
        let relabelled = EventLog::from_raw(vec![RawEvent {
            payload: b"ACPI".to_vec(),
            ..acpi("acpi-loader", 1)
        }])
        .unwrap();
        assert!(relabelled.is_complete_for(0));
    }

    #[test]
    fn boot_time_rtmr3_stops_at_boot_mr_done() {
        let log = EventLog::from_raw(vec![
            runtime("app-id", &[1; 20]),
            runtime("boot-mr-done", &[]),
            runtime("key-provider", b"{}"),
        ])
        .unwrap();
        let short = EventLog::from_raw(vec![
            runtime("app-id", &[1; 20]),
            runtime("boot-mr-done", &[]),
        ])
        .unwrap();
        assert_eq!(log.replay_rtmr3_through("boot-mr-done"), short.replay()[3]);
        assert_eq!(log.replay_rtmr3_through("absent"), log.replay()[3]);
    }

    #[test]
    fn json_form_with_empty_digests_and_v2_fields() {
        let preimage = hex::encode(runtime_event_preimage_v2("app-id", &[0xab]));
        let text = format!(
            r#"[{{"imr":0,"event_type":2147483659,"digest":"{}","event":"","event_payload":""}},
                {{"imr":3,"event_type":134217729,"digest":"","event":"system-preparing","event_payload":""}},
                {{"imr":3,"event_type":134217729,"digest":"","event":"app-id","event_payload":"ab","version":2,"preimage":"{preimage}"}}]"#,
            "11".repeat(48)
        );
        let log = EventLog::from_json(&text).unwrap();
        assert_eq!(log.events().len(), 3);
        assert_eq!(log.runtime_events().count(), 2);

        for bad in [
            r#"[{"imr":0}]"#,
            r#"{"imr":0}"#,
            r#"[{"imr":-1,"event_type":1,"digest":"","event":"","event_payload":""}]"#,
        ] {
            assert_eq!(
                EventLog::from_json(bad).unwrap_err().kind().as_str(),
                "malformed"
            );
        }
        let not_hex =
            r#"[{"imr":3,"event_type":134217729,"digest":"","event":"a","event_payload":"zz"}]"#;
        assert!(matches!(
            EventLog::from_json(not_hex),
            Err(DstackError::Hex {
                field: "event payload",
                ..
            })
        ));
    }
}
