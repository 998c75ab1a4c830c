//! V1 decoding: upstream's encoding (the test encoder is `rmp_serde::to_vec_named` over the mirror
//! types, as upstream's `to_msgpack`), every real V0 sample converted to V1, the lenient forms
//! upstream accepts, and each form it refuses.

use super::wire::{self, Platform, Stack};
use super::*;
use crate::dstack::event_log::runtime_event_preimage_v2;
use crate::dstack::scale::ScaleReader;
use crate::dstack::test_support::{sample, Scale, LEGACY_SAMPLE, LITE_SAMPLE};
use serde::Serialize;

/// The parts of a VersionedAttestation, V0 or V1.
struct Parts {
    platform: Platform,
    runtime: Vec<(String, Vec<u8>)>,
    report_data: Vec<u8>,
    config: String,
}

fn tdx_event(
    imr: u32,
    event_type: u32,
    digest: &[u8],
    name: &str,
    payload: &[u8],
) -> wire::TdxEvent {
    wire::TdxEvent {
        imr,
        event_type,
        digest: HumanBytes(digest.to_vec()),
        event: name.into(),
        event_payload: HumanBytes(payload.to_vec()),
        version: 1,
        preimage: None,
    }
}

/// A V0 SCALE attestation (TDX or Nitro) read back into its parts.
fn v0_parts(bytes: &[u8]) -> Parts {
    let mut reader = ScaleReader::new(bytes);
    assert_eq!(reader.u8().unwrap(), 0);
    let platform = match reader.u8().unwrap() {
        0 => {
            let quote = reader.bytes().unwrap();
            let count = reader.count(usize::MAX).unwrap();
            let event_log = (0..count)
                .map(|_| {
                    let (imr, event_type) = (reader.u32().unwrap(), reader.u32().unwrap());
                    let digest = reader.bytes().unwrap();
                    let name = reader.string().unwrap();
                    tdx_event(imr, event_type, &digest, &name, &reader.bytes().unwrap())
                })
                .collect();
            Platform::Tdx { quote, event_log }
        }
        2 => Platform::NitroEnclave {
            nsm_quote: reader.bytes().unwrap(),
        },
        other => panic!("V0 platform {other}"),
    };
    let count = reader.count(usize::MAX).unwrap();
    let runtime = (0..count)
        .map(|_| (reader.string().unwrap(), reader.bytes().unwrap()))
        .collect();
    let report_data = reader.array::<64>().unwrap().to_vec();
    let config = reader.string().unwrap();
    reader.finish().unwrap();
    Parts {
        platform,
        runtime,
        report_data,
        config,
    }
}

fn v0_bytes(parts: &Parts) -> Vec<u8> {
    let scale = match &parts.platform {
        Platform::Tdx { quote, event_log } => {
            let scale = Scale::default()
                .raw(&[0, 0])
                .bytes(quote)
                .compact(event_log.len() as u32);
            event_log.iter().fold(scale, |s, event| {
                s.u32(event.imr)
                    .u32(event.event_type)
                    .bytes(&event.digest.0)
                    .bytes(event.event.as_bytes())
                    .bytes(&event.event_payload.0)
            })
        }
        Platform::NitroEnclave { nsm_quote } => Scale::default().raw(&[0, 2]).bytes(nsm_quote),
        _ => panic!("no V0 form"),
    };
    let runtime: Vec<(&str, &[u8])> = parts
        .runtime
        .iter()
        .map(|(name, payload)| (name.as_str(), payload.as_slice()))
        .collect();
    let mut report_data = [0u8; 64];
    report_data.copy_from_slice(&parts.report_data);
    scale
        .runtime_events(&runtime)
        .tail(&report_data, &parts.config)
}

fn stack(parts: &Parts) -> Stack {
    Stack::Dstack {
        report_data: parts.report_data.clone(),
        runtime_events: parts
            .runtime
            .iter()
            .map(|(name, payload)| wire::RuntimeEvent {
                event: name.clone(),
                payload: HumanBytes(payload.clone()),
                version: 1,
            })
            .collect(),
        config: parts.config.clone(),
    }
}

/// Upstream's `to_msgpack`.
fn encode(attestation: &wire::Attestation) -> Vec<u8> {
    rmp_serde::to_vec_named(attestation).unwrap()
}

fn v1_bytes(parts: Parts) -> Vec<u8> {
    let stack = stack(&parts);
    encode(&wire::Attestation {
        version: 1,
        platform: parts.platform,
        stack,
    })
}

/// A dstack quote report (GetQuote JSON) as upstream's `from_tdx_quote` turns it into a V0:
/// runtime events from the log, report_data from the quote, the vm_config as config.
fn report_parts(report: &[u8]) -> Parts {
    let report: serde_json::Value = serde_json::from_slice(report).unwrap();
    let log: Vec<serde_json::Value> =
        serde_json::from_str(report["event_log"].as_str().unwrap()).unwrap();
    let hex_of = |value: &serde_json::Value| hex::decode(value.as_str().unwrap()).unwrap();
    let event_log: Vec<wire::TdxEvent> = log
        .iter()
        .map(|event| {
            tdx_event(
                event["imr"].as_u64().unwrap() as u32,
                event["event_type"].as_u64().unwrap() as u32,
                &hex_of(&event["digest"]),
                event["event"].as_str().unwrap(),
                &hex_of(&event["event_payload"]),
            )
        })
        .collect();
    let runtime = event_log
        .iter()
        .filter(|event| event.event_type == RUNTIME_EVENT_TYPE)
        .map(|event| (event.event.clone(), event.event_payload.0.clone()))
        .collect();
    let quote = hex_of(&report["quote"]);
    let report_data = crate::tdx::Quote::parse(&quote)
        .unwrap()
        .body
        .report_data
        .to_vec();
    Parts {
        platform: Platform::Tdx { quote, event_log },
        runtime,
        report_data,
        config: report["vm_config"].as_str().unwrap_or_default().to_owned(),
    }
}

#[test]
fn upstream_encoding_of_the_documented_example() {
    // platforms.md §3: Tdx{quote:[1,2,3],event_log:[]} + Dstack{[7;64], [app-id 0x42], "{}"}.
    let attestation = wire::Attestation {
        version: 1,
        platform: Platform::Tdx {
            quote: vec![1, 2, 3],
            event_log: vec![],
        },
        stack: Stack::Dstack {
            report_data: vec![7; 64],
            runtime_events: vec![wire::RuntimeEvent {
                event: "app-id".into(),
                payload: HumanBytes(vec![0x42]),
                version: 1,
            }],
            config: "{}".into(),
        },
    };
    let bytes = encode(&attestation);
    let expected = format!(
        "83a776657273696f6e01a8706c6174666f726d82a46b696e64a3746478a46461746182a571756f746593010203\
         a96576656e745f6c6f6790a5737461636b82a46b696e64a664737461636ba46461746183ab7265706f72745f\
         64617461dc0040{}ae72756e74696d655f6576656e74739182a56576656e74a66170702d6964a77061796c6f\
         6164c40142a6636f6e666967a27b7d",
        "07".repeat(64)
    );
    assert_eq!(hex::encode(&bytes), expected);
    assert_eq!(bytes.len(), 211);
    let decoded = decode(&bytes).unwrap();
    assert_eq!(
        decoded.platform,
        PlatformEvidence::Tdx {
            quote: vec![1, 2, 3],
            event_log: vec![]
        }
    );
    assert_eq!(decoded.stack.report_data, [7; 64]);
    assert_eq!(decoded.stack.config, "{}");
    assert_eq!(decoded.stack.runtime_events[0].payload, [0x42]);
    assert_eq!(decoded.stack.report_data_payload, None);
}

#[test]
fn every_real_v0_sample_converts_to_an_identical_v1() {
    let Some(nitro_v0) = sample("dstack/dstack-nitro-attestation-v0.scale.bin") else {
        return;
    };
    let mut v0s = vec![nitro_v0];
    for report in [
        LITE_SAMPLE,
        LEGACY_SAMPLE,
        "dstack/dstack-examples-rtmr3-report.json",
    ] {
        v0s.push(v0_bytes(&report_parts(&sample(report).unwrap())));
    }
    for v0 in v0s {
        let v1 = v1_bytes(v0_parts(&v0));
        assert!(matches!(v1.first(), Some(0x80..=0x8f)));
        let from_v0 = Evidence::parse(&v0).unwrap();
        assert_eq!(Evidence::parse(&v1).unwrap(), from_v0);
        // Wrapped in dstack-verifier's `{"attestation": hex}` as well.
        let json = serde_json::json!({ "attestation": hex::encode(&v1) }).to_string();
        assert_eq!(Evidence::parse(json.as_bytes()).unwrap(), from_v0);
    }
}

#[test]
fn a_stripped_lite_v1_keeps_what_the_os_image_binding_needs() {
    let Some(report) = sample(LITE_SAMPLE) else {
        return;
    };
    let mut parts = report_parts(&report);
    let Platform::Tdx { event_log, .. } = &mut parts.platform else {
        unreachable!()
    };
    event_log.retain(|event| {
        event.imr == 3 || (event.event_type == 10 && event.event_payload.0 == b"ACPI DATA")
    });
    event_log
        .iter_mut()
        .filter(|event| event.imr == 3)
        .for_each(|event| event.digest = HumanBytes::default());
    let Evidence::Tdx(tdx) = Evidence::parse(&v1_bytes(parts)).unwrap() else {
        panic!("not TDX")
    };
    let quote = crate::tdx::Quote::parse(&tdx.quote).unwrap();
    let registers = crate::dstack::TdRegisters::from(&quote.body);
    let identity = crate::dstack::tdx_identity(
        &registers,
        &tdx,
        crate::dstack::TdxTcb::default(),
        crate::dstack::MrMode::Runtime,
    )
    .unwrap();
    assert!(identity.os_image_hash_bound);
    assert_eq!(
        identity.replay.unwrap().checked,
        [false, false, false, true]
    );
}

/// A msgpack value with explicit forms, for inputs the mirror types would not produce.
enum Mp {
    Int(u64),
    Str(&'static str),
    Text(String),
    Bin(Vec<u8>),
    Array(Vec<Mp>),
    Map(Vec<(&'static str, Mp)>),
}

impl Serialize for Mp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Mp::Int(value) => serializer.serialize_u64(*value),
            Mp::Str(text) => serializer.serialize_str(text),
            Mp::Text(text) => serializer.serialize_str(text),
            Mp::Bin(bytes) => serializer.serialize_bytes(bytes),
            Mp::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                items
                    .iter()
                    .try_for_each(|item| seq.serialize_element(item))?;
                seq.end()
            }
            Mp::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                entries
                    .iter()
                    .try_for_each(|(key, value)| map.serialize_entry(key, value))?;
                map.end()
            }
        }
    }
}

fn mp(value: &Mp) -> Vec<u8> {
    rmp_serde::to_vec(value).unwrap()
}

fn ints(bytes: &[u8]) -> Mp {
    Mp::Array(bytes.iter().map(|byte| Mp::Int(u64::from(*byte))).collect())
}

fn nitro_platform(document: Mp) -> Mp {
    Mp::Map(vec![
        ("kind", Mp::Str("nitro-enclave")),
        ("data", Mp::Map(vec![("nsm_quote", document)])),
    ])
}

fn dstack_stack(report_data: Mp, payload: Mp) -> Mp {
    Mp::Map(vec![
        ("kind", Mp::Str("dstack")),
        (
            "data",
            Mp::Map(vec![
                ("report_data", report_data),
                (
                    "runtime_events",
                    Mp::Array(vec![Mp::Map(vec![
                        ("event", Mp::Str("app-id")),
                        ("payload", payload),
                    ])]),
                ),
                ("config", Mp::Str("")),
            ]),
        ),
    ])
}

fn attestation(version: u64, platform: Mp, stack: Mp) -> Mp {
    Mp::Map(vec![
        ("version", Mp::Int(version)),
        ("platform", platform),
        ("stack", stack),
    ])
}

fn nitro(report_data: Mp, payload: Mp) -> Mp {
    attestation(
        1,
        nitro_platform(ints(b"\x84cose")),
        dstack_stack(report_data, payload),
    )
}

fn expected_nitro() -> Evidence {
    Evidence::Nitro(crate::dstack::NitroEvidence {
        document: b"\x84cose".to_vec(),
        runtime_events: vec![RuntimeEvent {
            name: "app-id".into(),
            payload: vec![0xa1; 20],
        }],
        report_data: [7; 64],
        vm_config: None,
    })
}

#[test]
fn byte_fields_and_field_order_as_upstream_accepts_them() {
    let payload = || Mp::Bin(vec![0xa1; 20]);
    let forms = [
        // As emitted: plain bytes as arrays of integers, payload as bin.
        nitro(ints(&[7; 64]), payload()),
        // A plain Vec<u8> may be a bin; a serde_human_bytes field an array or a string.
        nitro(Mp::Bin(vec![7; 64]), ints(&[0xa1; 20])),
        attestation(
            1,
            nitro_platform(Mp::Bin(b"\x84cose".to_vec())),
            dstack_stack(ints(&[7; 64]), payload()),
        ),
        // Keys in any order, unknown keys ignored, `data` before `kind`.
        Mp::Map(vec![
            ("stack", dstack_stack(ints(&[7; 64]), payload())),
            ("extra", Mp::Str("ignored")),
            (
                "platform",
                Mp::Map(vec![
                    ("data", Mp::Map(vec![("nsm_quote", ints(b"\x84cose"))])),
                    ("kind", Mp::Str("nitro-enclave")),
                ]),
            ),
            ("version", Mp::Int(1)),
        ]),
    ];
    for form in forms {
        assert_eq!(
            Evidence::parse(&mp(&form)).unwrap(),
            expected_nitro(),
            "{}",
            hex::encode(mp(&form))
        );
    }
    let text_payload = nitro(ints(&[7; 64]), Mp::Str("hi"));
    let Evidence::Nitro(nitro) = Evidence::parse(&mp(&text_payload)).unwrap() else {
        panic!("not nitro")
    };
    assert_eq!(nitro.runtime_events[0].payload, b"hi");
}

fn assert_malformed(bytes: &[u8]) {
    let err = Evidence::parse(bytes).unwrap_err();
    assert_eq!(
        err.kind().as_str(),
        "malformed",
        "{err} for {}",
        hex::encode(bytes)
    );
}

#[test]
fn forms_upstream_refuses_are_malformed() {
    let payload = || Mp::Bin(vec![0xa1; 20]);
    let good = mp(&nitro(ints(&[7; 64]), payload()));

    // The variant's data as a compact array, and the whole attestation as one.
    let compact_data = attestation(
        1,
        Mp::Map(vec![
            ("kind", Mp::Str("nitro-enclave")),
            ("data", Mp::Array(vec![ints(b"\x84cose")])),
        ]),
        dstack_stack(ints(&[7; 64]), payload()),
    );
    let compact = rmp_serde::to_vec(&wire::Attestation {
        version: 1,
        platform: Platform::NitroEnclave {
            nsm_quote: b"\x84cose".to_vec(),
        },
        stack: stack(&Parts {
            platform: Platform::NitroEnclave { nsm_quote: vec![] },
            runtime: vec![],
            report_data: vec![7; 64],
            config: String::new(),
        }),
    })
    .unwrap();
    assert_eq!(compact.first(), Some(&0x93));
    let mut trailing = good.clone();
    trailing.push(0xc0);
    let cases = [
        mp(&compact_data),
        compact,
        trailing,
        mp(&attestation(
            2,
            nitro_platform(ints(b"x")),
            dstack_stack(ints(&[7; 64]), payload()),
        )),
        mp(&attestation(
            0,
            nitro_platform(ints(b"x")),
            dstack_stack(ints(&[7; 64]), payload()),
        )),
        // report_data must be 64 bytes.
        mp(&nitro(ints(&[7; 63]), payload())),
        // A plain Vec<u8> is never a string.
        mp(&nitro(Mp::Str("7777"), payload())),
        // Missing field, unknown stack kind.
        mp(&Mp::Map(vec![("version", Mp::Int(1))])),
        mp(&attestation(
            1,
            nitro_platform(ints(b"x")),
            Mp::Map(vec![
                ("kind", Mp::Str("dstack-x")),
                ("data", Mp::Map(vec![])),
            ]),
        )),
    ];
    for bytes in cases {
        assert_malformed(&bytes);
    }
    for len in 1..good.len() {
        assert_malformed(&good[..len]);
    }
    let huge = [&[0xdf][..], &vec![0; MAX_EVIDENCE_LEN]].concat();
    assert!(matches!(
        Evidence::parse(&huge),
        Err(DstackError::TooLarge { .. })
    ));
}

fn unsupported_kind(bytes: &[u8]) -> String {
    let err = Evidence::parse(bytes).unwrap_err();
    assert_eq!(err.kind().as_str(), "unsupported", "{err}");
    match err {
        DstackError::UnsupportedPlatform(kind) => kind,
        other => panic!("unexpected {other:?}"),
    }
}

fn platform(kind: &'static str, data: Vec<(&'static str, Mp)>) -> Vec<u8> {
    mp(&attestation(
        1,
        Mp::Map(vec![("kind", Mp::Str(kind)), ("data", Mp::Map(data))]),
        dstack_stack(ints(&[7; 64]), Mp::Bin(vec![0xa1; 20])),
    ))
}

#[test]
fn other_platforms_are_unsupported_by_name() {
    assert_eq!(
        unsupported_kind(&platform(
            "sev-snp",
            vec![
                ("report", ints(&[1])),
                ("cert_chain", Mp::Array(vec![ints(&[2])])),
                ("mr_config", Mp::Str("{}")),
            ]
        )),
        "sev-snp"
    );
    assert_eq!(
        unsupported_kind(&platform(
            "aws-nitro-tpm",
            vec![("attestation_doc", ints(&[1]))]
        )),
        "aws-nitro-tpm"
    );
    assert_eq!(
        unsupported_kind(&platform("riscv-cove", vec![])),
        "riscv-cove"
    );
    // A known kind with a broken body stays malformed.
    assert_malformed(&platform("sev-snp", vec![("report", ints(&[1]))]));
}

#[test]
fn gcp_tdx_decodes_to_the_gcp_evidence() {
    let tpm_quote = Mp::Map(vec![
        ("message", Mp::Bin(vec![1, 2])),
        ("signature", Mp::Bin(vec![3])),
        (
            "pcr_values",
            Mp::Array(vec![Mp::Map(vec![
                ("index", Mp::Int(14)),
                ("algorithm", Mp::Str("sha256")),
                ("value", Mp::Bin(vec![4; 32])),
            ])]),
        ),
        ("ak_cert", Mp::Bin(vec![5])),
        ("platform", Mp::Str("gcp")),
        (
            "event_log",
            Mp::Array(vec![Mp::Map(vec![
                ("pcr_index", Mp::Int(2)),
                ("digest", Mp::Bin(vec![6; 32])),
            ])]),
        ),
    ]);
    let bytes = platform(
        "gcp-tdx",
        vec![
            ("quote", ints(&[9])),
            ("event_log", Mp::Array(vec![])),
            ("tpm_quote", tpm_quote),
        ],
    );
    let decoded = decode(&bytes).unwrap();
    let PlatformEvidence::GcpTdx(gcp) = &decoded.platform else {
        panic!("not GCP")
    };
    assert_eq!(gcp.quote, [9]);
    assert_eq!(gcp.ak_cert, [5]);
    assert_eq!(
        gcp.tpm_quote.pcr_values,
        [crate::tpm::PcrValue {
            index: 14,
            value: [4; 32]
        }]
    );
    assert_eq!(gcp.tpm_quote.event_log[0].pcr_index, 2);
    // The same evidence as V0's discriminant 1, in the TPM room's types.
    let Evidence::GcpTdx(evidence) = Evidence::parse(&bytes).unwrap() else {
        panic!("not GCP evidence")
    };
    assert_eq!(evidence.tdx.quote, [9]);
    assert_eq!(evidence.ak_cert, [5]);
    assert_eq!(
        evidence.tpm_quote.pcr_values,
        [crate::tpm::PcrValue {
            index: 14,
            value: [4; 32]
        }]
    );
    assert_eq!(
        evidence.tpm_quote.event_log,
        [crate::tpm::TpmEvent {
            pcr_index: 2,
            digest: [6; 32]
        }]
    );
}

fn pod(payload: &str, report_data: [u8; 64]) -> Vec<u8> {
    mp(&attestation(
        1,
        nitro_platform(ints(b"\x84cose")),
        Mp::Map(vec![
            ("kind", Mp::Str("dstack-pod")),
            (
                "data",
                Mp::Map(vec![
                    ("report_data", ints(&report_data)),
                    ("runtime_events", Mp::Array(vec![])),
                    ("config", Mp::Str("")),
                    ("report_data_payload", Mp::Text(payload.to_owned())),
                ]),
            ),
        ]),
    ))
}

#[test]
fn dstack_pod_report_data_is_bound_to_its_payload() {
    let payload = r#"{"hello":"world"}"#;
    let bound = content_report_data(APP_DATA_TAG, payload.as_bytes());
    let decoded = decode(&pod(payload, bound)).unwrap();
    assert_eq!(decoded.stack.report_data_payload.as_deref(), Some(payload));
    assert!(Evidence::parse(&pod(payload, bound)).is_ok());
    let err = Evidence::parse(&pod(payload, [0; 64])).unwrap_err();
    assert!(matches!(err, DstackError::ReportDataMismatch { .. }));
    assert_eq!(err.kind().as_str(), "binding_mismatch");
}

fn v2_tdx(log_event: wire::TdxEvent, runtime_version: u32) -> Vec<u8> {
    encode(&wire::Attestation {
        version: 1,
        platform: Platform::Tdx {
            quote: vec![4, 0],
            event_log: vec![log_event],
        },
        stack: Stack::Dstack {
            report_data: vec![0; 64],
            runtime_events: vec![wire::RuntimeEvent {
                event: "app-id".into(),
                payload: HumanBytes(vec![0xa1; 20]),
                version: runtime_version,
            }],
            config: String::new(),
        },
    })
}

#[test]
fn v2_runtime_events_use_the_jcs_preimage() {
    let preimage = runtime_event_preimage_v2("app-id", &[0xa1; 20]);
    let v2_event = |preimage: Option<String>| wire::TdxEvent {
        version: 2,
        preimage,
        ..tdx_event(3, RUNTIME_EVENT_TYPE, &[], "app-id", &[0xa1; 20])
    };
    let Evidence::Tdx(tdx) =
        Evidence::parse(&v2_tdx(v2_event(Some(hex::encode(&preimage))), 2)).unwrap()
    else {
        panic!("not TDX")
    };
    let digest: [u8; 48] = sha2::Sha384::digest(&preimage).into();
    assert_eq!(tdx.event_log.events()[0].digest, digest);

    // Only the stack's runtime events, V2: replayed as V2.
    let runtime_only = encode(&wire::Attestation {
        version: 1,
        platform: Platform::Tdx {
            quote: vec![],
            event_log: vec![],
        },
        stack: Stack::Dstack {
            report_data: vec![0; 64],
            runtime_events: vec![wire::RuntimeEvent {
                event: "app-id".into(),
                payload: HumanBytes(vec![0xa1; 20]),
                version: 2,
            }],
            config: String::new(),
        },
    });
    let Evidence::Tdx(tdx) = Evidence::parse(&runtime_only).unwrap() else {
        panic!("not TDX")
    };
    assert_eq!(tdx.event_log.events()[0].digest, digest);

    let not_canonical = hex::encode(br#"{"name":"app-id"}"#);
    let err = Evidence::parse(&v2_tdx(v2_event(Some(not_canonical)), 2)).unwrap_err();
    assert_eq!(err.kind().as_str(), "event_log_mismatch");
    let err = Evidence::parse(&v2_tdx(v2_event(Some("zz".into())), 2)).unwrap_err();
    assert_eq!(err.kind().as_str(), "malformed");
    // The log and the stack disagree on the digest version.
    let err = Evidence::parse(&v2_tdx(v2_event(None), 1)).unwrap_err();
    assert!(matches!(err, DstackError::Inconsistent(_)));
    let err = Evidence::parse(&v2_tdx(
        wire::TdxEvent {
            version: 3,
            ..v2_event(None)
        },
        3,
    ))
    .unwrap_err();
    assert!(matches!(err, DstackError::InvalidEvent { .. }));
}

use sha2::Digest as _;
