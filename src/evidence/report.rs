//! How verified (or previewed) evidence is spelled for people and machines: the [`Report`] the
//! CLI prints with `--json` and the service returns as `report_json` (its proto fields are built
//! from it too). Hex values are `0x`-prefixed lowercase; absent values serialize as null; a
//! section not applicable to the platform is left out. Field names and order are a stable format.

use super::verified::{
    Attestation, AttestedDstack, AttestedNitro, AttestedTdx, AttestedTpm, Platform, Verified,
};
use crate::boot_info::BootInfoJson;
use crate::dstack::{OsImagePreview, RegisterSources, TdImageRegisters};
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
    /// Nitro: sha256(PCR0‖PCR1‖PCR2), measured. TDX: vm_config's, if any (bound for TDX-lite;
    /// see `os_image_hash_bound`).
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
    /// For evidence read from an RA-TLS certificate: its SubjectPublicKeyInfo (DER, hex), which
    /// the attestation's report_data binds; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratls_public_key: Option<String>,
    /// Previews of TDX dstack evidence only (`measure --json`): the OS-image computation beside
    /// the quote's registers; absent from verification reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_image: Option<OsImageClaims>,
}

/// The unverified OS-image computation of a TDX preview: what the image material predicts for
/// MRTD and RTMR0-2 beside what the quote says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OsImageClaims {
    /// `"lite"` or `"legacy"` (nothing is computed for legacy).
    pub variant: &'static str,
    /// `mr_td`, `rtmr0`..`rtmr2` as the image predicts them; null for legacy or on an error.
    pub computed: Option<BTreeMap<&'static str, String>>,
    /// The same registers as the quote has them.
    pub quoted: BTreeMap<&'static str, String>,
    /// Per register, whether computed equals quoted; null when nothing was computed.
    pub matches: Option<BTreeMap<&'static str, bool>>,
    /// Why the material does not compute (`{kind, message}`); null otherwise.
    pub error: Option<serde_json::Value>,
}

impl From<&OsImagePreview> for OsImageClaims {
    fn from(preview: &OsImagePreview) -> Self {
        let spelled = |registers: &TdImageRegisters| {
            registers
                .named()
                .into_iter()
                .map(|(name, _, value)| (name, to_0x_hex(value)))
                .collect()
        };
        let (computed, error) = match &preview.computed {
            None => (None, None),
            Some(Ok(registers)) => (Some(spelled(registers)), None),
            Some(Err(e)) => (
                None,
                Some(serde_json::json!({ "kind": e.kind().as_str(), "message": e.to_string() })),
            ),
        };
        OsImageClaims {
            variant: preview.variant.as_str(),
            computed,
            quoted: spelled(&preview.quoted),
            matches: preview
                .matches()
                .map(|matches| matches.into_iter().collect()),
            error,
        }
    }
}

/// What a GCP attestation adds to the TDX fields (its bound image shows as the dstack section's
/// `os_image_variant: "gcp"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GcpClaims {
    /// The vTPM quote.
    pub tpm: TpmClaims,
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
    /// Whether os_image_hash is bound to the hardware (Nitro: the PCRs the NSM signs; TDX-lite:
    /// MRTD and RTMR0-2 recomputed from the image) rather than the host's vm_config claim.
    pub os_image_hash_bound: bool,
    /// TDX: vm_config's `tdx_attestation_variant`, `"lite"` or `"legacy"`; null on Nitro.
    pub os_image_variant: Option<String>,
    /// Whether the ACPI table contents were checked (always false: TDX-lite binds only their
    /// digests, through RTMR0).
    pub acpi_tables_verified: bool,
    /// TDX: where MRTD and RTMR0-2 were bound, each `"os_image"`, `"event_log"` or `"unbound"`
    /// (RTMR3 always replays from the event log); null on Nitro.
    pub register_sources: Option<BTreeMap<&'static str, &'static str>>,
    /// Boot-info fields the hardware does not bind, taken on trust (`"app_id"`, `"instance_id"`,
    /// `"key_provider"`, `"os_image_hash"`).
    pub unbound_fields: Vec<&'static str>,
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
            dstack: self.dstack.as_ref().map(|dstack| {
                let mut claims = dstack_claims(dstack);
                // GCP binds its image through the vTPM quote: "gcp", or null when unbound.
                if let Attestation::GcpTdx(_, tpm) = &self.attestation {
                    claims.os_image_variant = tpm.os_image_variant.map(str::to_owned);
                }
                claims
            }),
            ratls_public_key: self.certificate_key.as_deref().map(to_0x_hex),
            os_image: None,
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
        os_image_variant: dstack
            .os_image_variant
            .map(|variant| variant.as_str().to_owned()),
        acpi_tables_verified: dstack.acpi_tables_verified,
        register_sources: dstack.registers.as_ref().map(register_sources),
        unbound_fields: dstack.unbound.iter().map(|field| field.as_str()).collect(),
        mr_system: to_0x_hex(&info.mr_system),
        mr_aggregated: to_0x_hex(&info.mr_aggregated),
        device_id: to_0x_hex(&info.device_id),
        boot_info: BootInfoJson::from(info),
    }
}

fn register_sources(sources: &RegisterSources) -> BTreeMap<&'static str, &'static str> {
    sources
        .named()
        .into_iter()
        .map(|(name, source)| (name, source.as_str()))
        .collect()
}
