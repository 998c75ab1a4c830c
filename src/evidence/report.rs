//! How verified (or previewed) evidence is spelled for people and machines: the [`Report`] the
//! CLI prints with `--json` and the service returns as `report_json` (its proto fields are built
//! from it too). Hex values are `0x`-prefixed lowercase; absent values serialize as null; a
//! section not applicable to the platform is left out. Field names and order are a stable format.

use super::verified::{
    Attestation, AttestedDstack, AttestedNitro, AttestedTdx, AttestedTpm, Platform, Verified,
};
use crate::boot_info::BootInfoJson;
use crate::encoding::to_0x_hex;
use serde::Serialize;
use std::collections::BTreeMap;

/// What verification established (or, for a preview, what the evidence claims).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `true` for a verification, `false` for a preview (nothing checked).
    pub verified: bool,
    /// The TEE that produced the evidence.
    pub platform: Platform,
    /// Nitro: sha256(PCR0‖PCR1‖PCR2), measured. TDX: the vm_config claim, if any.
    pub os_image_hash: Option<String>,
    /// The 64 bytes the workload bound: TDX REPORTDATA, or dstack's report data for Nitro.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_data: Option<String>,
    /// Nitro fields; absent for TDX.
    #[serde(flatten)]
    pub nitro: Option<NitroClaims>,
    /// TDX fields; absent for Nitro.
    #[serde(flatten)]
    pub tdx: Option<TdxClaims>,
    /// GCP fields (the vTPM quote); absent for other platforms.
    #[serde(flatten)]
    pub gcp: Option<GcpClaims>,
    /// dstack fields; absent for evidence that is not dstack's.
    #[serde(flatten)]
    pub dstack: Option<DstackClaims>,
}

/// What a GCP attestation adds to the TDX fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GcpClaims {
    /// The vTPM quote.
    pub tpm: TpmClaims,
    /// `"gcp"` when the OS image is bound by PCR0, `gcp_measurement` and the UKI event; null
    /// when os_image_hash is the host's claim (or in a preview).
    pub os_image_variant: Option<String>,
}

/// The vTPM quote of a GCP attestation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TpmClaims {
    /// PCR index → SHA-256 value (hex).
    pub pcrs: BTreeMap<u32, String>,
    /// The AK certificate's subject (zone, project, instance id).
    pub ak_subject: String,
    /// `rsassa-pkcs1v15-sha256` or `ecdsa-p256-sha256`.
    pub signature_algorithm: String,
}

/// The fields of a Nitro attestation document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NitroClaims {
    /// The enclave's module id (`i-<instance>-enc<id>`).
    pub module_id: String,
    /// Milliseconds since the Unix epoch, as the document was signed.
    pub timestamp_ms: u64,
    /// PCR index → value (hex).
    pub pcrs: BTreeMap<u8, String>,
    /// The document's `user_data`, if present.
    pub user_data: Option<String>,
    /// The document's `nonce`, if present.
    pub nonce: Option<String>,
    /// The document's `public_key`, if present.
    pub public_key: Option<String>,
}

/// The registers and TCB verdict of a TDX quote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TdxClaims {
    /// 4 or 5.
    pub quote_version: u16,
    /// Null in a preview: only verification against collateral establishes it.
    pub tcb_status: Option<String>,
    /// Intel advisory IDs behind the status (`INTEL-SA-…`); empty in a preview.
    pub advisory_ids: Vec<String>,
    /// The platform's PPID; null in a preview (only the verified PCK certificate establishes it).
    pub ppid: Option<String>,
    /// MRTD (48 bytes, hex).
    pub mr_td: String,
    /// RTMR0 (48 bytes, hex).
    pub rtmr0: String,
    /// RTMR1 (48 bytes, hex).
    pub rtmr1: String,
    /// RTMR2 (48 bytes, hex).
    pub rtmr2: String,
    /// RTMR3 (48 bytes, hex).
    pub rtmr3: String,
}

/// dstack's view of the workload: app identity and the boot info its KMS sends on chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DstackClaims {
    /// The app id (20 bytes, hex).
    pub app_id: String,
    /// sha256 of the app-compose.json bytes (32 bytes, hex).
    pub compose_hash: String,
    /// The instance id (20 bytes, hex); null when the app has none.
    pub instance_id: Option<String>,
    /// The key-provider event's payload, as text.
    pub key_provider: Option<String>,
    /// Whether os_image_hash is measured by the platform rather than claimed by the host.
    pub os_image_hash_bound: bool,
    /// dstack's mr_system (32 bytes, hex).
    pub mr_system: String,
    /// dstack's mr_aggregated (32 bytes, hex).
    pub mr_aggregated: String,
    /// dstack's device id (32 bytes, hex).
    pub device_id: String,
    /// The boot info as the KMS webhook spells it (for showing; authorize a [`Verified`]).
    pub boot_info: BootInfoJson,
}

impl Verified {
    /// The report of this verification (`"verified":true`).
    pub fn report(&self) -> Report {
        let (platform, nitro, tdx, gcp) = match &self.attestation {
            Attestation::Nitro(nitro) => (Platform::Nitro, Some(nitro_claims(nitro)), None, None),
            Attestation::Tdx(tdx) => (Platform::Tdx, None, Some(tdx_claims(tdx)), None),
            Attestation::GcpTdx(tdx, tpm) => (
                Platform::GcpTdx,
                None,
                Some(tdx_claims(tdx)),
                Some(gcp_claims(tpm)),
            ),
        };
        Report {
            verified: true,
            platform,
            os_image_hash: self.os_image_hash.map(|hash| to_0x_hex(&hash)),
            report_data: self.report_data.map(|data| to_0x_hex(&data)),
            nitro,
            tdx,
            gcp,
            dstack: self.dstack.as_ref().map(dstack_claims),
        }
    }
}

/// A `Verified` serializes as its [`Report`].
impl Serialize for Verified {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.report().serialize(serializer)
    }
}

fn tdx_claims(tdx: &AttestedTdx) -> TdxClaims {
    TdxClaims {
        tcb_status: Some(tdx.tcb_status.as_str().to_owned()),
        advisory_ids: tdx.advisory_ids.clone(),
        ppid: Some(to_0x_hex(&tdx.ppid)),
        ..tdx_registers(tdx.quote_version, &tdx.mr_td, &tdx.rtmrs)
    }
}

fn gcp_claims(tpm: &AttestedTpm) -> GcpClaims {
    GcpClaims {
        tpm: TpmClaims {
            pcrs: tpm
                .pcrs
                .iter()
                .map(|(index, value)| (*index, to_0x_hex(value)))
                .collect(),
            ak_subject: tpm.ak_subject.clone(),
            signature_algorithm: tpm.signature_algorithm.to_owned(),
        },
        os_image_variant: tpm.os_image_variant.map(str::to_owned),
    }
}

pub(super) fn nitro_claims(nitro: &AttestedNitro) -> NitroClaims {
    let optional = |value: &Option<Vec<u8>>| value.as_deref().map(to_0x_hex);
    NitroClaims {
        module_id: nitro.module_id.clone(),
        timestamp_ms: nitro.timestamp_ms,
        pcrs: nitro
            .pcrs
            .iter()
            .map(|(index, value)| (*index, to_0x_hex(value)))
            .collect(),
        user_data: optional(&nitro.user_data),
        nonce: optional(&nitro.nonce),
        public_key: optional(&nitro.public_key),
    }
}

/// The TDX section with the quote's registers and no TCB verdict (a preview's).
pub(super) fn tdx_registers(
    quote_version: u16,
    mr_td: &[u8; 48],
    rtmrs: &[[u8; 48]; 4],
) -> TdxClaims {
    TdxClaims {
        quote_version,
        tcb_status: None,
        advisory_ids: Vec::new(),
        ppid: None,
        mr_td: to_0x_hex(mr_td),
        rtmr0: to_0x_hex(&rtmrs[0]),
        rtmr1: to_0x_hex(&rtmrs[1]),
        rtmr2: to_0x_hex(&rtmrs[2]),
        rtmr3: to_0x_hex(&rtmrs[3]),
    }
}

pub(super) fn dstack_claims(dstack: &AttestedDstack) -> DstackClaims {
    let info = &dstack.boot_info;
    DstackClaims {
        app_id: to_0x_hex(&info.app_id),
        compose_hash: to_0x_hex(&info.compose_hash),
        instance_id: dstack.instance_id.map(|id| to_0x_hex(&id)),
        key_provider: (!dstack.key_provider.is_empty())
            .then(|| String::from_utf8_lossy(&dstack.key_provider).into_owned()),
        os_image_hash_bound: dstack.os_image_hash_bound,
        mr_system: to_0x_hex(&info.mr_system),
        mr_aggregated: to_0x_hex(&info.mr_aggregated),
        device_id: to_0x_hex(&info.device_id),
        boot_info: BootInfoJson::from(info),
    }
}
