//! Test-only builders shared by this room's unit tests.

/// A SCALE writer for building VersionedAttestation V0 inputs.
#[derive(Default)]
pub(crate) struct Scale(pub(crate) Vec<u8>);

impl Scale {
    pub(crate) fn compact(mut self, value: u32) -> Self {
        match value {
            0..=63 => self.0.push((value as u8) << 2),
            64..=16383 => self.0.extend(((value << 2) as u16 | 1).to_le_bytes()),
            16384..=0x3fff_ffff => self.0.extend(((value << 2) | 2).to_le_bytes()),
            _ => {
                self.0.push(3);
                self.0.extend(value.to_le_bytes());
            }
        }
        self
    }
    pub(crate) fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    pub(crate) fn bytes(self, bytes: &[u8]) -> Self {
        self.compact(bytes.len() as u32).raw(bytes)
    }
    pub(crate) fn u32(self, value: u32) -> Self {
        self.raw(&value.to_le_bytes())
    }
    pub(crate) fn runtime_events(self, events: &[(&str, &[u8])]) -> Self {
        events
            .iter()
            .fold(self.compact(events.len() as u32), |s, (name, payload)| {
                s.bytes(name.as_bytes()).bytes(payload)
            })
    }
    pub(crate) fn tail(self, report_data: &[u8; 64], config: &str) -> Vec<u8> {
        self.raw(report_data).bytes(config.as_bytes()).0
    }
}

/// A real sample's bytes, or `None` (said on stderr) when the samples are absent.
pub(crate) fn sample(path: &str) -> Option<Vec<u8>> {
    let dir = super::samples::samples_dir();
    Some(std::fs::read(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}")))
}

/// The TDX-lite GetQuote sample.
pub(crate) const LITE_SAMPLE: &str = "dstack/dstack-verifier-tdx-lite-getquote.json";
/// The legacy quote report sample.
pub(crate) const LEGACY_SAMPLE: &str = "dstack/dstack-verifier-quote-report.json";

/// A quote report sample parsed, with the registers of its (unverified) quote.
pub(crate) fn tdx_sample(
    path: &str,
) -> Option<(super::TdxEvidence, super::TdRegisters, serde_json::Value)> {
    let bytes = sample(path)?;
    let super::Evidence::Tdx(evidence) = super::Evidence::parse(&bytes).unwrap() else {
        panic!("{path} is not TDX evidence")
    };
    let quote = crate::tdx::Quote::parse(&evidence.quote).unwrap();
    let registers = super::TdRegisters::from(&quote.body);
    Some((evidence, registers, serde_json::from_slice(&bytes).unwrap()))
}

/// The event-log JSON of a quote report, as dstack strips it for RA-TLS certificates and the KMS
/// (`strip_tdx_lite_event_log`): the RTMR0 ACPI DATA events keep their digest and payload, runtime
/// events lose their digest, every other event is dropped.
pub(crate) fn stripped_event_log(report: &serde_json::Value) -> String {
    let log: Vec<serde_json::Value> =
        serde_json::from_str(report["event_log"].as_str().unwrap()).unwrap();
    let acpi_payload = hex::encode(super::ACPI_DATA_PAYLOAD);
    let stripped: Vec<_> = log
        .into_iter()
        .filter_map(|mut event| {
            let acpi = event["imr"] == 0
                && event["event_type"] == super::ACPI_DATA_EVENT_TYPE
                && event["event_payload"] == acpi_payload.as_str();
            if event["imr"] == 3 {
                event["digest"] = serde_json::Value::String(String::new());
            }
            (acpi || event["imr"] == 3).then_some(event)
        })
        .collect();
    serde_json::to_string(&stripped).unwrap()
}
