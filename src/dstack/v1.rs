//! dstack's `VersionedAttestation` V1: msgpack, as upstream dstack-attest's `v1.rs`
//! (`Attestation::from_msgpack`) reads it.
//!
//! The schema is decoded through serde types that mirror upstream's field for field, with the
//! same rmp-serde (1.3.1) and the same byte-field codecs, so exactly what upstream accepts is
//! accepted:
//! - structs are maps keyed by field name, in any order; unknown keys are ignored;
//! - enums are adjacently tagged `{kind, data}`; the variant's `data` must be a named map (rmp-serde
//!   cannot read a struct variant from a compact array, so upstream refuses that form);
//! - plain `Vec<u8>` fields (quote, nsm_quote, report_data, …) are an array of integers or a bin;
//!   serde_human_bytes fields (event digests and payloads, TPM fields) are a bin, an array of
//!   integers or a string;
//! - `version` must be exactly 1, the input at most 10 MiB, and nothing may follow the map.
//!
//! Platforms: `tdx`, `gcp-tdx` and `nitro-enclave` become the same [`Evidence`] as their V0
//! forms; `sev-snp`, `aws-nitro-tpm` and unknown
//! kinds are `unsupported`, named. Stacks: `dstack`, and `dstack-pod`, whose report_data must be
//! `sha512("app-data:" ‖ report_data_payload)`.

use super::event_log::{RawEvent, RuntimeEvent, RUNTIME_EVENT_TYPE, RUNTIME_IMR};
use super::evidence::{check_runtime_event_name, Evidence, MAX_EVIDENCE_LEN};
use super::gcp_evidence::gcp_tpm_quote;
use super::measurements::{content_report_data, REPORT_DATA_LEN};
use super::DstackError;
use crate::encoding::HexError;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// The only V1 version.
pub const ATTESTATION_VERSION: u64 = 1;
/// The report_data tag of a `dstack-pod` payload.
pub const APP_DATA_TAG: &str = "app-data";

/// A decoded V1 attestation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationV1 {
    /// The hardware's proof (quote or NSM document), not verified yet.
    pub platform: PlatformEvidence,
    /// dstack's part: report data, runtime events, vm_config.
    pub stack: StackEvidence,
}

/// The platform proof of a V1 attestation, for the platforms this crate reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlatformEvidence {
    /// A TDX quote and its event log (stripped or complete).
    Tdx {
        /// The TDX quote (v4 or v5).
        quote: Vec<u8>,
        /// The CCEL events; runtime events are kept in [`StackEvidence`].
        event_log: Vec<RawEvent>,
    },
    /// GCP TDX: a TDX quote plus a vTPM quote.
    GcpTdx(GcpTdxEvidence),
    /// An NSM attestation document (COSE_Sign1).
    NitroEnclave {
        /// The COSE_Sign1 document the NSM returned.
        nsm_quote: Vec<u8>,
    },
}

/// `gcp-tdx` platform evidence, kept for the GCP verifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcpTdxEvidence {
    /// The TDX quote.
    pub quote: Vec<u8>,
    /// The CCEL events.
    pub event_log: Vec<RawEvent>,
    /// The vTPM's quote (dstack's `TpmQuote`), in the TPM room's types.
    pub tpm_quote: crate::tpm::TpmQuote,
    /// The attestation key's certificate, DER.
    pub ak_cert: Vec<u8>,
}

/// The dstack stack of a V1 attestation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackEvidence {
    /// The 64 bytes the platform proof carries as report data.
    pub report_data: [u8; REPORT_DATA_LEN],
    /// As RTMR3 events (with their digest version).
    pub runtime_events: Vec<RawEvent>,
    /// The embedded vm_config (possibly `{"vm_config": "<json>"}`).
    pub config: String,
    /// `dstack-pod` only; report_data has been checked against it.
    pub report_data_payload: Option<String>,
}

/// Decodes a V1 attestation (dispatch on the first byte is [`Evidence::parse`]'s).
pub fn decode(bytes: &[u8]) -> Result<AttestationV1, DstackError> {
    DstackError::check_len("evidence", bytes.len(), MAX_EVIDENCE_LEN)?;
    // A reader over the slice, as upstream: it copies no more than the input holds, and what it
    // leaves unread is the trailing bytes.
    let mut rest = bytes;
    let wire = match wire::Attestation::deserialize(&mut rmp_serde::Deserializer::new(&mut rest)) {
        Ok(wire) => wire,
        Err(error) => return Err(classify_failure(bytes, error)),
    };
    if !rest.is_empty() {
        return Err(DstackError::Msgpack(
            "trailing bytes after the attestation".into(),
        ));
    }
    if wire.version != ATTESTATION_VERSION {
        return Err(DstackError::Msgpack(format!(
            "version {} is not {ATTESTATION_VERSION}",
            wire.version
        )));
    }
    Ok(AttestationV1 {
        platform: wire.platform.try_into()?,
        stack: wire.stack.try_into()?,
    })
}

/// An undecodable attestation whose platform kind is readable but unknown is `unsupported`
/// (naming the kind); anything else is malformed.
fn classify_failure(bytes: &[u8], error: rmp_serde::decode::Error) -> DstackError {
    #[derive(Deserialize)]
    struct Probe {
        platform: KindProbe,
    }
    #[derive(Deserialize)]
    struct KindProbe {
        kind: String,
    }
    match rmp_serde::from_slice::<Probe>(bytes) {
        Ok(probe) if !wire::PLATFORM_KINDS.contains(&probe.platform.kind.as_str()) => {
            DstackError::UnsupportedPlatform(probe.platform.kind.chars().take(64).collect())
        }
        _ => DstackError::Msgpack(error.to_string()),
    }
}

impl AttestationV1 {
    /// The same [`Evidence`] the V0 form of this attestation parses to.
    pub fn into_evidence(self) -> Result<Evidence, DstackError> {
        let StackEvidence {
            report_data,
            runtime_events,
            config,
            ..
        } = self.stack;
        match self.platform {
            PlatformEvidence::Tdx { quote, event_log } => {
                Evidence::tdx(quote, event_log, runtime_events, report_data, &config)
            }
            PlatformEvidence::NitroEnclave { nsm_quote } => Evidence::nitro(
                nsm_quote,
                runtime_events
                    .into_iter()
                    .map(|event| RuntimeEvent {
                        name: event.name,
                        payload: event.payload,
                    })
                    .collect(),
                report_data,
                &config,
            ),
            PlatformEvidence::GcpTdx(gcp) => Evidence::gcp_tdx(
                gcp.quote,
                gcp.event_log,
                runtime_events,
                report_data,
                &config,
                (gcp.tpm_quote, gcp.ak_cert),
            ),
        }
    }
}

/// `EventLogVersion` on the wire: 1 (the default, omitted) or 2; kept as delivered and checked by
/// the event log.
fn event_version(version: u32) -> Option<u32> {
    (version != 1).then_some(version)
}

impl TryFrom<wire::TdxEvent> for RawEvent {
    type Error = DstackError;

    fn try_from(event: wire::TdxEvent) -> Result<Self, DstackError> {
        let preimage = event
            .preimage
            .map(|text| {
                crate::encoding::decode_hex(&text).ok_or_else(|| DstackError::Hex {
                    field: "event preimage",
                    source: HexError::NotHex(text.chars().take(64).collect()),
                })
            })
            .transpose()?;
        Ok(RawEvent {
            imr: event.imr,
            event_type: event.event_type,
            digest: event.digest.0,
            name: event.event,
            payload: event.event_payload.0,
            version: event_version(event.version),
            preimage,
        })
    }
}

fn raw_events(events: Vec<wire::TdxEvent>) -> Result<Vec<RawEvent>, DstackError> {
    events.into_iter().map(RawEvent::try_from).collect()
}

impl TryFrom<wire::Platform> for PlatformEvidence {
    type Error = DstackError;

    fn try_from(platform: wire::Platform) -> Result<Self, DstackError> {
        Ok(match platform {
            wire::Platform::Tdx { quote, event_log } => PlatformEvidence::Tdx {
                quote,
                event_log: raw_events(event_log)?,
            },
            wire::Platform::GcpTdx {
                quote,
                event_log,
                tpm_quote,
            } => {
                let (tpm_quote, ak_cert) = decode_tpm_quote(tpm_quote)?;
                PlatformEvidence::GcpTdx(GcpTdxEvidence {
                    quote,
                    event_log: raw_events(event_log)?,
                    tpm_quote,
                    ak_cert,
                })
            }
            wire::Platform::NitroEnclave { nsm_quote } => {
                PlatformEvidence::NitroEnclave { nsm_quote }
            }
            wire::Platform::AwsNitroTpm { .. } => {
                return Err(DstackError::UnsupportedPlatform("aws-nitro-tpm".to_owned()))
            }
            wire::Platform::SevSnp { .. } => {
                return Err(DstackError::UnsupportedPlatform("sev-snp".to_owned()))
            }
        })
    }
}

/// The TPM room's quote and the AK certificate of a V1 `TpmQuote` (checked as V0's is).
fn decode_tpm_quote(quote: wire::TpmQuote) -> Result<(crate::tpm::TpmQuote, Vec<u8>), DstackError> {
    let pcr_values = quote
        .pcr_values
        .into_iter()
        .map(|pcr| (pcr.index, pcr.algorithm, pcr.value.0))
        .collect();
    let event_log = quote
        .event_log
        .into_iter()
        .map(|event| (event.pcr_index, event.digest.0))
        .collect();
    let tpm_quote = gcp_tpm_quote(
        quote.message.0,
        quote.signature.0,
        pcr_values,
        quote.platform.as_str(),
        event_log,
    )?;
    Ok((tpm_quote, quote.ak_cert.0))
}

impl TryFrom<wire::Stack> for StackEvidence {
    type Error = DstackError;

    fn try_from(stack: wire::Stack) -> Result<Self, DstackError> {
        let (report_data, runtime_events, config, payload) = match stack {
            wire::Stack::Dstack {
                report_data,
                runtime_events,
                config,
            } => (report_data, runtime_events, config, None),
            wire::Stack::DstackPod {
                report_data,
                runtime_events,
                config,
                report_data_payload,
            } => (
                report_data,
                runtime_events,
                config,
                Some(report_data_payload),
            ),
        };
        let report_data: [u8; REPORT_DATA_LEN] =
            report_data
                .as_slice()
                .try_into()
                .map_err(|_| DstackError::Length {
                    field: "stack.report_data",
                    len: report_data.len(),
                    expected: REPORT_DATA_LEN,
                })?;
        if let Some(payload) = &payload {
            let expected = content_report_data(APP_DATA_TAG, payload.as_bytes());
            if report_data != expected {
                return Err(DstackError::ReportDataMismatch {
                    attested: crate::encoding::hex(report_data),
                    expected: crate::encoding::hex(expected),
                });
            }
        }
        let runtime_events = runtime_events
            .into_iter()
            .map(|event| {
                check_runtime_event_name(&event.event)?;
                Ok(RawEvent {
                    imr: RUNTIME_IMR as u32,
                    event_type: RUNTIME_EVENT_TYPE,
                    name: event.event,
                    payload: event.payload.0,
                    version: event_version(event.version),
                    ..RawEvent::default()
                })
            })
            .collect::<Result<_, DstackError>>()?;
        Ok(StackEvidence {
            report_data,
            runtime_events,
            config,
            report_data_payload: payload,
        })
    }
}

/// A serde_human_bytes field read from a binary format: serde_bytes' `ByteBuf` rules (bin, array
/// of integers, or string).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct HumanBytes(Vec<u8>);

impl<'de> Deserialize<'de> for HumanBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;

        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = HumanBytes;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("byte array")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HumanBytes, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(byte) = seq.next_element()? {
                    bytes.push(byte);
                }
                Ok(HumanBytes(bytes))
            }

            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<HumanBytes, E> {
                Ok(HumanBytes(bytes.to_vec()))
            }

            fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<HumanBytes, E> {
                Ok(HumanBytes(bytes))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<HumanBytes, E> {
                Ok(HumanBytes(text.as_bytes().to_vec()))
            }

            fn visit_string<E: de::Error>(self, text: String) -> Result<HumanBytes, E> {
                Ok(HumanBytes(text.into_bytes()))
            }
        }

        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

#[cfg(test)]
impl serde::Serialize for HumanBytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

/// Upstream's serde types, field for field (dstack-attest v1.rs, cc-eventlog, tpm-types). The
/// test encoder serializes them with `rmp_serde::to_vec_named`, as upstream's `to_msgpack` does.
mod wire {
    use super::HumanBytes;
    use serde::Deserialize;
    #[cfg(test)]
    use serde::Serialize;

    pub(super) const PLATFORM_KINDS: [&str; 5] = [
        "tdx",
        "gcp-tdx",
        "nitro-enclave",
        "aws-nitro-tpm",
        "sev-snp",
    ];

    fn v1() -> u32 {
        1
    }

    #[cfg(test)]
    fn is_v1(version: &u32) -> bool {
        *version == 1
    }

    #[derive(Deserialize)]
    #[cfg_attr(test, derive(Serialize))]
    pub(super) struct Attestation {
        pub(super) version: u64,
        pub(super) platform: Platform,
        pub(super) stack: Stack,
    }

    #[derive(Deserialize)]
    #[cfg_attr(test, derive(Serialize))]
    #[serde(tag = "kind", content = "data")]
    pub(super) enum Platform {
        #[serde(rename = "tdx")]
        Tdx {
            quote: Vec<u8>,
            event_log: Vec<TdxEvent>,
        },
        #[serde(rename = "gcp-tdx")]
        GcpTdx {
            quote: Vec<u8>,
            event_log: Vec<TdxEvent>,
            tpm_quote: TpmQuote,
        },
        #[serde(rename = "nitro-enclave")]
        NitroEnclave {
            /// The COSE_Sign1 document the NSM returned.
            nsm_quote: Vec<u8>,
        },
        // Decoded only so that exactly upstream's schema is accepted; the platform is refused.
        #[allow(dead_code)]
        #[serde(rename = "aws-nitro-tpm")]
        AwsNitroTpm { attestation_doc: Vec<u8> },
        #[allow(dead_code)]
        #[serde(rename = "sev-snp")]
        SevSnp {
            report: Vec<u8>,
            cert_chain: Vec<Vec<u8>>,
            mr_config: String,
        },
    }

    #[derive(Deserialize)]
    #[cfg_attr(test, derive(Serialize))]
    pub(super) struct TdxEvent {
        pub(super) imr: u32,
        pub(super) event_type: u32,
        #[serde(default)]
        pub(super) digest: HumanBytes,
        pub(super) event: String,
        pub(super) event_payload: HumanBytes,
        #[serde(default = "v1")]
        #[cfg_attr(test, serde(skip_serializing_if = "is_v1"))]
        pub(super) version: u32,
        #[serde(default)]
        #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
        pub(super) preimage: Option<String>,
    }

    #[derive(Deserialize)]
    #[cfg_attr(test, derive(Serialize))]
    #[serde(tag = "kind", content = "data")]
    pub(super) enum Stack {
        #[serde(rename = "dstack")]
        Dstack {
            report_data: Vec<u8>,
            runtime_events: Vec<RuntimeEvent>,
            config: String,
        },
        #[serde(rename = "dstack-pod")]
        DstackPod {
            report_data: Vec<u8>,
            runtime_events: Vec<RuntimeEvent>,
            config: String,
            report_data_payload: String,
        },
    }

    #[derive(Deserialize)]
    #[cfg_attr(test, derive(Serialize))]
    pub(super) struct RuntimeEvent {
        pub(super) event: String,
        pub(super) payload: HumanBytes,
        #[serde(default = "v1")]
        #[cfg_attr(test, serde(skip_serializing_if = "is_v1"))]
        pub(super) version: u32,
    }

    #[derive(Deserialize)]
    #[cfg_attr(test, derive(Serialize))]
    pub(super) struct TpmQuote {
        pub(super) message: HumanBytes,
        pub(super) signature: HumanBytes,
        pub(super) pcr_values: Vec<PcrValue>,
        pub(super) ak_cert: HumanBytes,
        pub(super) platform: TpmPlatform,
        pub(super) event_log: Vec<TpmEvent>,
    }

    #[derive(Deserialize)]
    #[cfg_attr(test, derive(Serialize))]
    pub(super) struct PcrValue {
        pub(super) index: u32,
        pub(super) algorithm: String,
        pub(super) value: HumanBytes,
    }

    #[derive(Deserialize)]
    #[cfg_attr(test, derive(Serialize))]
    pub(super) struct TpmEvent {
        pub(super) pcr_index: u32,
        pub(super) digest: HumanBytes,
    }

    /// dstack-types `Platform` (lowercase names, `aws-ec2`).
    #[derive(Clone, Copy, Deserialize)]
    #[cfg_attr(test, derive(Serialize))]
    pub(super) enum TpmPlatform {
        #[serde(rename = "dstack")]
        Dstack,
        #[serde(rename = "gcp")]
        Gcp,
        #[serde(rename = "nitroenclave")]
        NitroEnclave,
        #[serde(rename = "aws-ec2")]
        AwsEc2,
    }

    impl TpmPlatform {
        pub(super) fn as_str(self) -> &'static str {
            match self {
                TpmPlatform::Dstack => "dstack",
                TpmPlatform::Gcp => "gcp",
                TpmPlatform::NitroEnclave => "nitroenclave",
                TpmPlatform::AwsEc2 => "aws-ec2",
            }
        }
    }
}

#[cfg(test)]
mod tests;
