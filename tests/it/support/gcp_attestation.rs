//! dstack GCP TDX attestations (V0 SCALE and V1 msgpack) built around the real TDX evidence of
//! `../shared/samples/dstack/dstack-verifier-quote-report.json` and a Google-shaped PKI
//! ([`super::gcp`]): the vTPM quote is signed over qualified_data = sha256(the real quote), PCR14
//! the SHA-256 replay of its runtime events, PCR0/PCR2 and their events from the real GCE log.
//! Each knob breaks one thing, for the negatives. Shared by the integration tests and
//! `examples/gcp_fixtures.rs`.
#![allow(dead_code)]

use super::gcp::{AkKey, AttestSpec};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tee_verifier::dstack::gcp::{qualified_data, RuntimePcr, MEASUREMENT_FILE_NAME};
use tee_verifier::dstack::RuntimeEventVersion;
use tee_verifier::tpm::{parse_tcg2_event_log, replay_pcr, TpmEvent};

/// The real TDX evidence the attestations are built around.
pub(crate) const TDX_REPORT: &str = "dstack/dstack-verifier-quote-report.json";
/// Its collateral and the time it is valid at.
pub(crate) const TDX_COLLATERAL: &str = "tdx/dcap-qvl_fmspc90c06f_collateral.json";
pub(crate) const TDX_NOW: u64 = 1_771_459_200;
/// The real GCE TDX vTPM event log.
pub(crate) const GCE_EVENT_LOG: &str = "gcp/dstack_gce_tdx_tpm_eventlog.bin";

/// One TDX event as dstack's SCALE/msgpack carry it.
#[derive(Clone, Debug)]
pub(crate) struct TdxEvent {
    pub(crate) imr: u32,
    pub(crate) event_type: u32,
    pub(crate) digest: Vec<u8>,
    pub(crate) name: String,
    pub(crate) payload: Vec<u8>,
}

/// The real pieces: TDX quote, its events and report data, the GCE log.
#[derive(Clone, Debug)]
pub(crate) struct RealTdx {
    pub(crate) quote: Vec<u8>,
    pub(crate) events: Vec<TdxEvent>,
    pub(crate) report_data: [u8; 64],
    pub(crate) gce_log: Vec<TpmEvent>,
}

impl RealTdx {
    pub(crate) fn load(samples: &std::path::Path) -> RealTdx {
        let report: Value =
            serde_json::from_slice(&std::fs::read(samples.join(TDX_REPORT)).unwrap()).unwrap();
        let events: Vec<Value> =
            serde_json::from_str(report["event_log"].as_str().unwrap()).unwrap();
        let hex_of = |value: &Value| hex::decode(value.as_str().unwrap_or_default()).unwrap();
        let mut report_data = [0u8; 64];
        let given = hex_of(&report["report_data"]);
        report_data[..given.len()].copy_from_slice(&given);
        RealTdx {
            quote: hex_of(&report["quote"]),
            events: events
                .iter()
                .map(|event| TdxEvent {
                    imr: event["imr"].as_u64().unwrap() as u32,
                    event_type: event["event_type"].as_u64().unwrap() as u32,
                    digest: hex_of(&event["digest"]),
                    name: event["event"].as_str().unwrap().to_owned(),
                    payload: hex_of(&event["event_payload"]),
                })
                .collect(),
            report_data,
            gce_log: parse_tcg2_event_log(&std::fs::read(samples.join(GCE_EVENT_LOG)).unwrap())
                .unwrap(),
        }
    }

    /// The runtime (RTMR3) events as (name, payload).
    pub(crate) fn runtime(&self) -> Vec<(String, Vec<u8>)> {
        self.events
            .iter()
            .filter(|event| event.imr == 3)
            .map(|event| (event.name.clone(), event.payload.clone()))
            .collect()
    }

    pub(crate) fn pcr14(&self) -> RuntimePcr {
        let runtime = self.runtime();
        RuntimePcr::replay(
            runtime.iter().map(|(name, payload)| {
                (RuntimeEventVersion::V1, name.as_str(), payload.as_slice())
            }),
        )
    }

    /// The UKI Authenticode digest of the real GCE log (PCR2's third event).
    pub(crate) fn uki(&self) -> [u8; 32] {
        self.gce_log
            .iter()
            .filter(|event| event.pcr_index == 2)
            .nth(2)
            .unwrap()
            .digest
    }
}

/// `measurement.gcp.cbor` `{version, uki_auth}` as dstack's image builder writes it.
pub(crate) fn measurement_document(version: u8, uki: &[u8; 32]) -> Vec<u8> {
    let mut cbor = vec![0xa2, 0x67];
    cbor.extend_from_slice(b"version");
    cbor.push(version);
    cbor.push(0x68);
    cbor.extend_from_slice(b"uki_auth");
    cbor.extend_from_slice(&[0x58, 0x20]);
    cbor.extend_from_slice(uki);
    cbor
}

/// An image's `sha256sum.txt` listing `document` as `measurement.gcp.cbor`.
pub(crate) fn checksum_file(document: &[u8]) -> Vec<u8> {
    format!(
        "{}  metadata.json\n{}  {MEASUREMENT_FILE_NAME}\n",
        "11".repeat(32),
        hex::encode(Sha256::digest(document))
    )
    .into_bytes()
}

/// What to build, with a knob per negative.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    /// Bind the OS image (`gcp_measurement` in vm_config).
    pub(crate) measured: bool,
    /// The UKI digest the measurement document claims.
    pub(crate) uki_auth: Option<[u8; 32]>,
    /// Claim os_image_hash = sha256(another checksum file).
    pub(crate) wrong_os_image_hash: bool,
    /// Sign PCR14 with one runtime event fewer.
    pub(crate) pcr14_one_event_short: bool,
    /// Sign over qualified_data of another quote.
    pub(crate) qualified_data_of_another_quote: bool,
    /// Quote this PCR0 instead of the real one (its events then do not replay it, so the GCE
    /// PCR0 events are left out of the log).
    pub(crate) pcr0: Option<[u8; 32]>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            measured: true,
            uki_auth: None,
            wrong_os_image_hash: false,
            pcr14_one_event_short: false,
            qualified_data_of_another_quote: false,
            pcr0: None,
        }
    }
}

/// The parts of a GCP attestation, before encoding.
#[derive(Clone, Debug)]
pub(crate) struct Parts {
    pub(crate) real: RealTdx,
    pub(crate) config: String,
    pub(crate) message: Vec<u8>,
    pub(crate) signature: Vec<u8>,
    pub(crate) pcrs: Vec<(u32, [u8; 32])>,
    pub(crate) ak_cert: Vec<u8>,
    pub(crate) tpm_events: Vec<TpmEvent>,
}

impl Parts {
    pub(crate) fn build(real: &RealTdx, ak: &AkKey, ak_cert: &[u8], spec: &Spec) -> Parts {
        let mut runtime_pcr = real.pcr14();
        if spec.pcr14_one_event_short {
            let runtime = real.runtime();
            runtime_pcr = RuntimePcr::replay(
                runtime[..runtime.len() - 1]
                    .iter()
                    .map(|(n, p)| (RuntimeEventVersion::V1, n.as_str(), p.as_slice())),
            );
        }
        let mut tpm_events = real.gce_log.clone();
        let pcr0 = match spec.pcr0 {
            Some(pcr0) => {
                tpm_events.retain(|event| event.pcr_index != 0);
                pcr0
            }
            None => replay_pcr(&real.gce_log, 0),
        };
        let pcrs = vec![
            (0, pcr0),
            (2, replay_pcr(&real.gce_log, 2)),
            (14, runtime_pcr.full),
        ];
        let qualified = if spec.qualified_data_of_another_quote {
            qualified_data(b"another TDX quote")
        } else {
            qualified_data(&real.quote)
        };
        let message = AttestSpec::quote(&qualified, &pcrs).encode();
        let signature = ak.sign(&message);
        let document = measurement_document(1, &spec.uki_auth.unwrap_or_else(|| real.uki()));
        let checksum = checksum_file(&document);
        let os_image_hash: [u8; 32] = if spec.wrong_os_image_hash {
            Sha256::digest(checksum_file(b"another document")).into()
        } else {
            Sha256::digest(&checksum).into()
        };
        let mut config = json!({ "os_image_hash": hex::encode(os_image_hash) });
        if spec.measured {
            use base64::Engine as _;
            let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
            config["gcp_measurement"] =
                json!({ "checksum_file": b64(&checksum), "measurement": b64(&document) });
        }
        Parts {
            real: real.clone(),
            config: config.to_string(),
            message,
            signature,
            pcrs,
            ak_cert: ak_cert.to_vec(),
            tpm_events,
        }
    }

    /// `VersionedAttestation::V0` with `AttestationQuote::DstackGcpTdx` (discriminant 1).
    pub(crate) fn v0(&self) -> Vec<u8> {
        let mut out = vec![0x00, 0x01];
        scale_bytes(&mut out, &self.real.quote);
        compact(&mut out, self.real.events.len());
        for event in &self.real.events {
            out.extend_from_slice(&event.imr.to_le_bytes());
            out.extend_from_slice(&event.event_type.to_le_bytes());
            scale_bytes(&mut out, &event.digest);
            scale_bytes(&mut out, event.name.as_bytes());
            scale_bytes(&mut out, &event.payload);
        }
        // TpmQuote
        scale_bytes(&mut out, &self.message);
        scale_bytes(&mut out, &self.signature);
        compact(&mut out, self.pcrs.len());
        for (index, value) in &self.pcrs {
            out.extend_from_slice(&index.to_le_bytes());
            scale_bytes(&mut out, b"sha256");
            scale_bytes(&mut out, value);
        }
        scale_bytes(&mut out, &self.ak_cert);
        out.push(1); // Platform::Gcp
        compact(&mut out, self.tpm_events.len());
        for event in &self.tpm_events {
            out.extend_from_slice(&event.pcr_index.to_le_bytes());
            scale_bytes(&mut out, &event.digest);
        }
        // runtime_events, report_data, config
        let runtime = self.real.runtime();
        compact(&mut out, runtime.len());
        for (name, payload) in &runtime {
            scale_bytes(&mut out, name.as_bytes());
            scale_bytes(&mut out, payload);
        }
        out.extend_from_slice(&self.real.report_data);
        scale_bytes(&mut out, self.config.as_bytes());
        out
    }

    /// `VersionedAttestation` V1 (msgpack, named fields; byte fields as arrays of integers,
    /// which the decoder accepts for both plain and bin fields).
    pub(crate) fn v1(&self) -> Vec<u8> {
        let events: Vec<Value> = self
            .real
            .events
            .iter()
            .map(|event| {
                json!({
                    "imr": event.imr, "event_type": event.event_type, "digest": event.digest,
                    "event": event.name, "event_payload": event.payload,
                })
            })
            .collect();
        let value = json!({
            "version": 1,
            "platform": {
                "kind": "gcp-tdx",
                "data": {
                    "quote": self.real.quote,
                    "event_log": events,
                    "tpm_quote": {
                        "message": self.message,
                        "signature": self.signature,
                        "pcr_values": self.pcrs.iter().map(|(index, value)| json!({
                            "index": index, "algorithm": "sha256", "value": value.to_vec(),
                        })).collect::<Vec<_>>(),
                        "ak_cert": self.ak_cert,
                        "platform": "gcp",
                        "event_log": self.tpm_events.iter().map(|event| json!({
                            "pcr_index": event.pcr_index, "digest": event.digest.to_vec(),
                        })).collect::<Vec<_>>(),
                    },
                },
            },
            "stack": {
                "kind": "dstack",
                "data": {
                    "report_data": self.real.report_data.to_vec(),
                    "runtime_events": self.real.runtime().iter().map(|(name, payload)| json!({
                        "event": name, "payload": payload,
                    })).collect::<Vec<_>>(),
                    "config": self.config,
                },
            },
        });
        rmp_serde::to_vec_named(&value).unwrap()
    }
}

fn compact(out: &mut Vec<u8>, n: usize) {
    match n {
        0..=0x3f => out.push((n as u8) << 2),
        0x40..=0x3fff => out.extend_from_slice(&(((n as u16) << 2) | 1).to_le_bytes()),
        _ => out.extend_from_slice(&(((n as u32) << 2) | 2).to_le_bytes()),
    }
}

fn scale_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    compact(out, bytes.len());
    out.extend_from_slice(bytes);
}
