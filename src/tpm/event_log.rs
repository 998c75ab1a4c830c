//! The TPM event log: the kernel's `binary_bios_measurements` (TCG2 crypto-agile format, TCG PC
//! Client Platform Firmware Profile §10.2) reduced to what a quote needs, `{PCR, SHA-256 digest}`
//! per measured event, and the replay of a PCR from it.
//!
//! The reduction is dstack's (cc-eventlog `TpmEventLog::decode`): EV_NO_ACTION events extend
//! nothing and are dropped, events without a SHA-256 digest are dropped, and a PCR index of
//! 0xFFFFFFFF ends the log.

use super::reader::Reader;
use super::{TpmError, TPM_ALG_SHA256};
use sha2::{Digest, Sha256};

/// `EV_NO_ACTION`: informational, never extended into a PCR.
pub const EV_NO_ACTION: u32 = 0x0000_0003;
/// Largest binary event log accepted (real firmware logs are tens of KiB).
pub const MAX_EVENT_LOG_LEN: usize = 1 << 20;
/// Most events accepted in one log.
pub const MAX_EVENTS: usize = 4096;
/// Most digest algorithms a log may declare (one per bank).
const MAX_ALGORITHMS: usize = 16;
/// `TCG_EfiSpecIdEvent.signature` of a crypto-agile log.
const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";
/// A PCR index that marks the end of the log.
const END_OF_LOG: u32 = 0xffff_ffff;

/// One measured event: the PCR it extended and its SHA-256 digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TpmEvent {
    /// The PCR the event extended.
    pub pcr_index: u32,
    /// The event's SHA-256 digest, as extended into the PCR.
    pub digest: [u8; 32],
}

impl TpmEvent {
    /// An event as a quote carries it; the digest must be a SHA-256 one.
    pub fn new(pcr_index: u32, digest: &[u8]) -> Result<TpmEvent, TpmError> {
        let digest = <[u8; 32]>::try_from(digest).map_err(|_| TpmError::EventDigestLength {
            index: pcr_index,
            len: digest.len(),
        })?;
        Ok(TpmEvent { pcr_index, digest })
    }
}

/// PCR `index` replayed from 32 zero bytes over the events that extended it, in log order:
/// `PCR := SHA256(PCR ‖ digest)`.
pub fn replay_pcr(events: &[TpmEvent], index: u32) -> [u8; 32] {
    events
        .iter()
        .filter(|event| event.pcr_index == index)
        .fold([0u8; 32], |pcr, event| {
            let mut hasher = Sha256::new();
            hasher.update(pcr);
            hasher.update(event.digest);
            hasher.finalize().into()
        })
}

/// Parses a binary crypto-agile event log into its measured SHA-256 events, in log order.
pub fn parse_tcg2_event_log(bytes: &[u8]) -> Result<Vec<TpmEvent>, TpmError> {
    if bytes.len() > MAX_EVENT_LOG_LEN {
        return Err(TpmError::TooLarge {
            what: "TPM event log",
            len: bytes.len(),
            max: MAX_EVENT_LOG_LEN,
        });
    }
    let mut reader = Reader::new(bytes);
    let digest_sizes = spec_id_event(&mut reader)?;
    let mut events = Vec::new();
    while reader.remaining() > 0 {
        let start = reader.offset();
        let invalid = |reason| TpmError::EventLog {
            offset: start,
            reason,
        };
        let pcr_index = reader.le_u32("event PCR index")?;
        if pcr_index == END_OF_LOG {
            break;
        }
        let event_type = reader.le_u32("event type")?;
        let count = usize::try_from(reader.le_u32("event digest count")?).unwrap_or(usize::MAX);
        if count > digest_sizes.len() {
            return Err(invalid("more digests than the log declares algorithms"));
        }
        let mut sha256 = None;
        for _ in 0..count {
            let algorithm = reader.le_u16("event digest algorithm")?;
            let size = digest_sizes
                .iter()
                .find(|(declared, _)| *declared == algorithm)
                .map(|(_, size)| *size)
                .ok_or(invalid("digest of an algorithm the log does not declare"))?;
            let digest = reader.take("event digest", size)?;
            if algorithm == TPM_ALG_SHA256 {
                if sha256.is_some() {
                    return Err(invalid("two SHA-256 digests in one event"));
                }
                sha256 = Some(digest);
            }
        }
        reader.le_u32_sized("event data")?;
        if event_type == EV_NO_ACTION {
            continue;
        }
        if let Some(digest) = sha256 {
            if events.len() == MAX_EVENTS {
                return Err(TpmError::TooLarge {
                    what: "TPM event count",
                    len: MAX_EVENTS + 1,
                    max: MAX_EVENTS,
                });
            }
            events.push(TpmEvent::new(pcr_index, digest)?);
        }
    }
    Ok(events)
}

/// The first event, in the SHA-1 `TCG_PCClientPCREvent` layout: an EV_NO_ACTION whose data is a
/// `TCG_EfiSpecIdEvent` declaring each digest algorithm and its size. Returns that table.
fn spec_id_event(reader: &mut Reader) -> Result<Vec<(u16, usize)>, TpmError> {
    let invalid = |reason| TpmError::EventLog { offset: 0, reason };
    reader.le_u32("Spec ID event PCR index")?;
    if reader.le_u32("Spec ID event type")? != EV_NO_ACTION {
        return Err(invalid(
            "the first event is not the EV_NO_ACTION Spec ID event",
        ));
    }
    reader.take("Spec ID event digest", 20)?;
    let mut spec = Reader::new(reader.le_u32_sized("Spec ID event data")?);
    if spec.take("Spec ID signature", SPEC_ID_SIGNATURE.len())? != SPEC_ID_SIGNATURE {
        return Err(invalid("not a crypto-agile (Spec ID Event03) log"));
    }
    // platformClass u32, specVersionMinor, specVersionMajor, specErrata, uintnSize.
    spec.take("Spec ID platform and version", 8)?;
    let count = usize::try_from(spec.le_u32("Spec ID algorithm count")?).unwrap_or(usize::MAX);
    if count == 0 || count > MAX_ALGORITHMS {
        return Err(invalid(
            "the Spec ID event declares no or too many algorithms",
        ));
    }
    let mut sizes: Vec<(u16, usize)> = Vec::with_capacity(count);
    for _ in 0..count {
        let algorithm = spec.le_u16("Spec ID algorithm")?;
        let size = usize::from(spec.le_u16("Spec ID digest size")?);
        if sizes.iter().any(|(declared, _)| *declared == algorithm) {
            return Err(invalid("the Spec ID event declares an algorithm twice"));
        }
        if algorithm == TPM_ALG_SHA256 && size != 32 {
            return Err(invalid(
                "the Spec ID event gives SHA-256 a size other than 32",
            ));
        }
        sizes.push((algorithm, size));
    }
    let vendor_info_len = usize::from(spec.u8("Spec ID vendorInfoSize")?);
    spec.take("Spec ID vendorInfo", vendor_info_len)?;
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real_log() -> Option<Vec<u8>> {
        let dir = crate::tpm::samples::samples_dir();
        Some(std::fs::read(dir.join("gcp/dstack_gce_tdx_tpm_eventlog.bin")).unwrap())
    }

    #[test]
    fn the_real_gce_log_replays_to_the_published_pcrs() {
        let Some(bytes) = real_log() else { return };
        let events = parse_tcg2_event_log(&bytes).unwrap();
        assert_eq!(
            hex::encode(replay_pcr(&events, 0)),
            "0cca9ec161b09288802e5a112255d21340ed5b797f5fe29cecccfd8f67b9f802"
        );
        assert_eq!(
            hex::encode(replay_pcr(&events, 2)),
            "1f74355f18d9aab3a26faa060d2058726554207d040c63d25d501d97f5a41e0f"
        );
        let pcr2: Vec<String> = events
            .iter()
            .filter(|event| event.pcr_index == 2)
            .map(|event| hex::encode(event.digest))
            .collect();
        assert_eq!(
            pcr2,
            [
                "df3f619804a92fdb4057192dc43dd748ea778adc52bc498ce80524c014b81119",
                "00b8a357e652623798d1bbd16c375ec90fbed802b4269affa3e78e6eb19386cf",
                "9ab14a46f858662a89adc102d2a57a13f52f75c1769d65a4c34edbbfc8855f0f",
                "ade943a0a7a3189a3201ba17d7df778eb380cbd33ce5e361176e974ccf7cdedb",
            ]
        );
        // dstack extends PCR14 itself: the firmware log has nothing for it.
        assert!(events.iter().all(|event| event.pcr_index != 14));
        assert_eq!(replay_pcr(&events, 14), [0; 32]);
    }

    #[test]
    fn every_truncation_of_the_real_log_is_refused_or_a_prefix() {
        let Some(bytes) = real_log() else { return };
        let all = parse_tcg2_event_log(&bytes).unwrap();
        // Cutting inside an event is an error; cutting between events drops the rest.
        for len in (0..bytes.len()).step_by(7) {
            match parse_tcg2_event_log(&bytes[..len]) {
                Ok(events) => assert!(all.starts_with(&events), "{len}"),
                Err(err) => assert_eq!(err.kind().as_str(), "malformed", "{len}: {err}"),
            }
        }
    }

    /// (algorithm, digest) pairs of one event.
    type Digests = Vec<(u16, Vec<u8>)>;

    /// A crypto-agile log declaring SHA-1 and SHA-256, then `events` as
    /// (PCR, type, digests, data).
    fn build(events: &[(u32, u32, Digests, &[u8])]) -> Vec<u8> {
        let mut spec = SPEC_ID_SIGNATURE.to_vec();
        spec.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 2]);
        spec.extend_from_slice(&2u32.to_le_bytes());
        for (algorithm, size) in [(0x0004u16, 20u16), (0x000b, 32)] {
            spec.extend_from_slice(&algorithm.to_le_bytes());
            spec.extend_from_slice(&size.to_le_bytes());
        }
        spec.push(0);
        let mut log = Vec::new();
        log.extend_from_slice(&0u32.to_le_bytes());
        log.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        log.extend_from_slice(&[0; 20]);
        log.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        log.extend_from_slice(&spec);
        for (pcr, event_type, digests, data) in events {
            log.extend_from_slice(&pcr.to_le_bytes());
            log.extend_from_slice(&event_type.to_le_bytes());
            log.extend_from_slice(&(digests.len() as u32).to_le_bytes());
            for (algorithm, digest) in digests {
                log.extend_from_slice(&algorithm.to_le_bytes());
                log.extend_from_slice(digest);
            }
            log.extend_from_slice(&(data.len() as u32).to_le_bytes());
            log.extend_from_slice(data);
        }
        log
    }

    fn both(byte: u8) -> Digests {
        vec![(0x0004, vec![byte; 20]), (0x000b, vec![byte; 32])]
    }

    #[test]
    fn no_action_and_sha1_only_events_are_dropped_and_all_ones_ends_the_log() {
        let log = build(&[
            (0, 0x0000_0008, both(1), b"crtm"),
            (0, EV_NO_ACTION, both(2), b"StartupLocality"),
            (7, 0x8000_00e0, vec![(0x0004, vec![3; 20])], b""),
            (2, 0x8000_0003, both(4), b"uki"),
            (0xffff_ffff, 0, vec![], b""),
            (4, 0x0000_0004, both(5), b""),
        ]);
        let events = parse_tcg2_event_log(&log).unwrap();
        assert_eq!(
            events,
            [
                TpmEvent {
                    pcr_index: 0,
                    digest: [1; 32]
                },
                TpmEvent {
                    pcr_index: 2,
                    digest: [4; 32]
                }
            ]
        );
        let extended = Sha256::digest([[0u8; 32], [4; 32]].concat());
        assert_eq!(replay_pcr(&events, 2)[..], extended[..]);
    }

    #[test]
    fn malformed_logs_are_refused() {
        let good = build(&[(0, 8, both(1), b"x")]);
        parse_tcg2_event_log(&good).unwrap();
        let undeclared = build(&[(0, 8, vec![(0x000c, vec![1; 48])], b"")]);
        let twice = build(&[(
            0,
            8,
            vec![(0x000b, vec![1; 32]), (0x000b, vec![2; 32])],
            b"",
        )]);
        let too_many = build(&[(0, 8, vec![(0x000b, vec![1; 32]); 3], b"")]);
        let mut not_agile = good.clone();
        not_agile[32] = b's'; // "spec ID Event03"
        let mut first_not_no_action = good.clone();
        first_not_no_action[4] = 8;
        let trailing = [good.clone(), vec![0, 0]].concat();
        for (bytes, why) in [
            (undeclared, "undeclared algorithm"),
            (twice, "two SHA-256 digests"),
            (too_many, "more digests than algorithms"),
            (not_agile, "SHA-1 log"),
            (first_not_no_action, "no Spec ID event"),
            (trailing, "two stray bytes"),
            (vec![], "empty"),
        ] {
            let err = parse_tcg2_event_log(&bytes).unwrap_err();
            assert_eq!(err.kind().as_str(), "malformed", "{why}: {err}");
        }
        let huge = vec![0; MAX_EVENT_LOG_LEN + 1];
        assert!(matches!(
            parse_tcg2_event_log(&huge),
            Err(TpmError::TooLarge { .. })
        ));
        let many: Vec<_> = (0..=MAX_EVENTS)
            .map(|_| (0, 8, both(1), &b""[..]))
            .collect();
        assert!(matches!(
            parse_tcg2_event_log(&build(&many)),
            Err(TpmError::TooLarge {
                what: "TPM event count",
                ..
            })
        ));
    }

    #[test]
    fn quoted_events_carry_sha256_digests() {
        assert_eq!(TpmEvent::new(2, &[1; 32]).unwrap().digest, [1; 32]);
        let err = TpmEvent::new(2, &[1; 48]).unwrap_err();
        assert_eq!(err, TpmError::EventDigestLength { index: 2, len: 48 });
        assert_eq!(err.kind().as_str(), "malformed");
    }
}
