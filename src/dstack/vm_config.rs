//! The host-supplied VM configuration (dstack-types `VmConfig`), reduced to the fields that bind
//! or describe the OS image. Nothing in it is signed: its os_image_hash is a claim until a
//! platform binds it (Nitro through the PCRs, TDX-lite through [`super::os_image`]).
//!
//! Resolution is the KMS's (dstack's attestation.rs `decode_vm_config_with_fallback`):
//! the request's vm_config when it is non-empty, else the attestation's embedded `config`; either
//! may be the configuration itself or a wrapper `{"vm_config": "<json>"}`.

use super::DstackError;
use crate::encoding::{parse_hex_exact, HexError};
use serde::Deserialize;
use std::borrow::Cow;

/// Which TDX os-image binding the host selected (`tdx_attestation_variant`, default legacy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TdxAttestationVariant {
    /// The image is downloaded and measured with dstack-mr; not done here.
    #[default]
    Legacy,
    /// The image is bound from `tdx_measurement` without a download.
    Lite,
}

impl TdxAttestationVariant {
    /// The spelling vm_config and the report use: `"legacy"` or `"lite"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TdxAttestationVariant::Legacy => "legacy",
            TdxAttestationVariant::Lite => "lite",
        }
    }
}

/// The OVMF measurement layouts dstack knows; a config naming another does not parse (as upstream).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OvmfVariant {
    /// Pre-202505 OVMF: 13 RTMR0 events.
    Pre202505,
}

impl OvmfVariant {
    /// The name the measurement document and vm_config spell it with.
    pub fn as_str(self) -> &'static str {
        match self {
            OvmfVariant::Pre202505 => "pre202505",
        }
    }

    /// The variant a measurement document names, if dstack knows it.
    pub fn from_name(name: &str) -> Option<OvmfVariant> {
        (name == OvmfVariant::Pre202505.as_str()).then_some(OvmfVariant::Pre202505)
    }
}

/// `vm_config.tdx_measurement`: the image's `sha256sum.txt` and its `measurement.tdx.cbor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdxMeasurementMaterial {
    /// The image's `sha256sum.txt` (base64 in vm_config); its sha256 is the os_image_hash.
    pub checksum_file: Vec<u8>,
    /// The image's `measurement.tdx.cbor` (base64 in vm_config), listed in the checksum file.
    pub measurement: Vec<u8>,
}

/// The fields of dstack's vm_config this crate reads; others are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmConfig {
    /// The claimed OS image hash (the value `DstackKms.addOsImageHash` registers).
    pub os_image_hash: Option<[u8; 32]>,
    /// Guest RAM in bytes (0 when absent).
    pub memory_size: u64,
    /// `major.minor.patch`; absent means QEMU 9.1.0.
    pub qemu_version: Option<String>,
    /// Overrides the QEMU-version default of the MRTD page-add order. Upstream passes it verbatim
    /// as the *two-pass* flag despite its name, and so does [`super::os_image`].
    pub qemu_single_pass_add_pages: Option<bool>,
    /// The OVMF the host runs; a lite image's measurement document must name the same.
    pub ovmf_variant: Option<OvmfVariant>,
    /// How a TDX os_image_hash is bound (legacy when absent).
    pub tdx_attestation_variant: TdxAttestationVariant,
    /// The lite measurement material, when the host supplies it.
    pub tdx_measurement: Option<TdxMeasurementMaterial>,
    /// GCP's measurement material (`sha256sum.txt` and `measurement.gcp.cbor`, the same shape).
    pub gcp_measurement: Option<TdxMeasurementMaterial>,
}

#[derive(Deserialize)]
struct MaterialJson {
    checksum_file: String,
    measurement: String,
}

#[derive(Deserialize)]
struct VmConfigJson {
    #[serde(default)]
    os_image_hash: Option<String>,
    #[serde(default)]
    memory_size: u64,
    #[serde(default)]
    qemu_version: Option<String>,
    #[serde(default)]
    qemu_single_pass_add_pages: Option<bool>,
    #[serde(default)]
    ovmf_variant: Option<OvmfVariant>,
    #[serde(default)]
    tdx_attestation_variant: TdxAttestationVariant,
    #[serde(default)]
    tdx_measurement: Option<MaterialJson>,
    #[serde(default)]
    gcp_measurement: Option<MaterialJson>,
}

impl VmConfig {
    /// Parses vm_config JSON, unwrapping `{"vm_config": "<json>"}`; empty text means there is none.
    pub fn from_json(text: &str) -> Result<Option<VmConfig>, DstackError> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        let text = unwrapped(text);
        let json: VmConfigJson = serde_json::from_str(&text).map_err(|e| DstackError::Json {
            what: "vm_config",
            reason: e.to_string(),
        })?;
        let os_image_hash = match json.os_image_hash.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(hex_text) => Some(parse_hex_exact::<32>(hex_text).map_err(
                |source| match source {
                    HexError::WrongLength { got, expected } => DstackError::Length {
                        field: "vm_config os_image_hash",
                        len: got,
                        expected,
                    },
                    source => DstackError::Hex {
                        field: "vm_config os_image_hash",
                        source,
                    },
                },
            )?),
        };
        let material = |material: Option<MaterialJson>, fields: [&'static str; 2]| {
            material
                .map(|material| {
                    Ok::<_, DstackError>(TdxMeasurementMaterial {
                        checksum_file: base64_field(fields[0], &material.checksum_file)?,
                        measurement: base64_field(fields[1], &material.measurement)?,
                    })
                })
                .transpose()
        };
        let tdx_measurement = material(
            json.tdx_measurement,
            [
                "vm_config tdx_measurement.checksum_file",
                "vm_config tdx_measurement.measurement",
            ],
        )?;
        let gcp_measurement = material(
            json.gcp_measurement,
            [
                "vm_config gcp_measurement.checksum_file",
                "vm_config gcp_measurement.measurement",
            ],
        )?;
        Ok(Some(VmConfig {
            os_image_hash,
            memory_size: json.memory_size,
            qemu_version: json.qemu_version,
            qemu_single_pass_add_pages: json.qemu_single_pass_add_pages,
            ovmf_variant: json.ovmf_variant,
            tdx_attestation_variant: json.tdx_attestation_variant,
            tdx_measurement,
            gcp_measurement,
        }))
    }

    /// The KMS's choice: the request's vm_config text when it is non-empty, else the one the
    /// attestation embeds (already parsed by [`super::Evidence::parse`]).
    pub fn resolve(
        request: Option<&str>,
        embedded: Option<VmConfig>,
    ) -> Result<Option<VmConfig>, DstackError> {
        match request {
            Some(text) if !text.is_empty() => VmConfig::from_json(text),
            _ => Ok(embedded),
        }
    }
}

/// The inner configuration of `{"vm_config": "<json>"}`, or the text itself.
fn unwrapped(text: &str) -> Cow<'_, str> {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|value| value.get("vm_config")?.as_str().map(str::to_owned))
        .map_or(Cow::Borrowed(text), Cow::Owned)
}

fn base64_field(field: &'static str, text: &str) -> Result<Vec<u8>, DstackError> {
    crate::encoding::decode_base64_standard(text).ok_or(DstackError::Base64(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_image_hash_and_empty_configs() {
        assert_eq!(VmConfig::from_json("").unwrap(), None);
        assert_eq!(
            VmConfig::from_json("{}").unwrap(),
            Some(VmConfig::default())
        );
        assert_eq!(
            VmConfig::from_json(r#"{"os_image_hash":""}"#).unwrap(),
            Some(VmConfig::default())
        );
        let with_prefix = format!(
            r#"{{"os_image_hash":"0x{}","cpu_count":2}}"#,
            "ab".repeat(32)
        );
        assert_eq!(
            VmConfig::from_json(&with_prefix)
                .unwrap()
                .unwrap()
                .os_image_hash,
            Some([0xab; 32])
        );
        assert!(matches!(
            VmConfig::from_json(r#"{"os_image_hash":"ab"}"#),
            Err(DstackError::Length { .. })
        ));
        assert!(matches!(
            VmConfig::from_json(r#"{"os_image_hash":7}"#),
            Err(DstackError::Json { .. })
        ));
    }

    #[test]
    fn lite_fields() {
        let text = r#"{"memory_size":2147483648,"qemu_version":"8.2.2","ovmf_variant":"pre202505",
            "qemu_single_pass_add_pages":false,"tdx_attestation_variant":"lite",
            "tdx_measurement":{"checksum_file":"YWJj","measurement":""}}"#;
        let config = VmConfig::from_json(text).unwrap().unwrap();
        assert_eq!(config.memory_size, 0x8000_0000);
        assert_eq!(config.qemu_version.as_deref(), Some("8.2.2"));
        assert_eq!(config.qemu_single_pass_add_pages, Some(false));
        assert_eq!(config.ovmf_variant, Some(OvmfVariant::Pre202505));
        assert_eq!(config.tdx_attestation_variant.as_str(), "lite");
        assert_eq!(
            config.tdx_measurement,
            Some(TdxMeasurementMaterial {
                checksum_file: b"abc".to_vec(),
                measurement: vec![]
            })
        );
        assert_eq!(
            VmConfig::from_json("{}")
                .unwrap()
                .unwrap()
                .tdx_attestation_variant,
            TdxAttestationVariant::Legacy
        );
    }

    #[test]
    fn unknown_enum_values_and_bad_base64_are_malformed() {
        for (text, what) in [
            (r#"{"ovmf_variant":"post202505"}"#, "json"),
            (r#"{"tdx_attestation_variant":"full"}"#, "json"),
            (
                r#"{"tdx_measurement":{"checksum_file":"!!","measurement":""}}"#,
                "base64",
            ),
            (r#"{"tdx_measurement":{"checksum_file":""}}"#, "json"),
        ] {
            let err = VmConfig::from_json(text).unwrap_err();
            assert_eq!(err.kind().as_str(), "malformed", "{text}");
            assert_eq!(
                matches!(err, DstackError::Base64(_)),
                what == "base64",
                "{text}"
            );
        }
    }

    #[test]
    fn the_wrapped_form_is_unwrapped() {
        let inner = format!(r#"{{"os_image_hash":"{}"}}"#, "cd".repeat(32));
        let wrapped = serde_json::json!({ "vm_config": inner }).to_string();
        assert_eq!(
            VmConfig::from_json(&wrapped).unwrap(),
            VmConfig::from_json(&inner).unwrap()
        );
        // Only a string `vm_config` is a wrapper.
        let not_a_wrapper = r#"{"vm_config":{"os_image_hash":"00"}}"#;
        assert_eq!(
            VmConfig::from_json(not_a_wrapper).unwrap(),
            Some(VmConfig::default())
        );
    }

    #[test]
    fn resolution_prefers_a_non_empty_request() {
        let embedded = VmConfig::from_json(r#"{"memory_size":1}"#).unwrap();
        let request = r#"{"memory_size":2}"#;
        assert_eq!(
            VmConfig::resolve(Some(request), embedded.clone())
                .unwrap()
                .unwrap()
                .memory_size,
            2
        );
        for absent in [None, Some("")] {
            assert_eq!(
                VmConfig::resolve(absent, embedded.clone()).unwrap(),
                embedded
            );
        }
        assert_eq!(
            VmConfig::resolve(Some("{"), embedded)
                .unwrap_err()
                .kind()
                .as_str(),
            "malformed"
        );
    }
}
