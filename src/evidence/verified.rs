//! The typed outcome of verification, [`Verified`], and of a preview, [`Preview`]. Values are
//! bytes of their exact width; how they are spelled (hex, JSON, proto) is the [`Report`]'s
//! business.

use super::report::Report;
use crate::boot_info::BootInfo;
use crate::dstack::{DstackIdentity, IdentityField, RegisterSources, TdxAttestationVariant};
use crate::nitro::AttestationDocument;
use crate::tdx::TcbStatus;
use serde::Serialize;
use std::collections::BTreeMap;
use thiserror::Error;

/// The TEE that produced the evidence.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// AWS Nitro Enclaves (`"nitro"`).
    Nitro,
    /// Intel TDX (`"tdx"`).
    Tdx,
    /// Intel TDX on Google Cloud with the vTPM quote bound to it (`"gcp-tdx"`).
    #[serde(rename = "gcp-tdx")]
    GcpTdx,
}

/// Evidence whose signatures, certificate chains, validity at `now`, collateral, platform policy,
/// event-log replay and requested bindings all checked out. Only
/// [`EvidenceVerifier::verify`](super::EvidenceVerifier::verify) makes one, and only a `Verified`
/// gives out a boot info to authorize.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub(super) attestation: Attestation,
    pub(super) os_image_hash: Option<[u8; 32]>,
    pub(super) report_data: Option<[u8; 64]>,
    pub(super) dstack: Option<AttestedDstack>,
    /// The SubjectPublicKeyInfo (DER) of the RA-TLS certificate the evidence came in, which the
    /// attestation's report_data binds.
    pub(super) certificate_key: Option<Vec<u8>>,
}

/// What the platform itself attested.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Attestation {
    Nitro(AttestedNitro),
    Tdx(AttestedTdx),
    GcpTdx(AttestedTdx, AttestedTpm),
}

impl Verified {
    /// The TEE that produced the evidence.
    pub fn platform(&self) -> Platform {
        match self.attestation {
            Attestation::Nitro(_) => Platform::Nitro,
            Attestation::Tdx(_) => Platform::Tdx,
            Attestation::GcpTdx(..) => Platform::GcpTdx,
        }
    }

    /// Nitro: sha256(PCR0‖PCR1‖PCR2), measured. TDX: vm_config's os_image_hash, if it has one,
    /// bound to the hardware only when [`AttestedDstack::os_image_hash_bound`] says so (TDX-lite).
    pub fn os_image_hash(&self) -> Option<&[u8; 32]> {
        self.os_image_hash.as_ref()
    }

    /// The 64 bytes the workload bound: TDX REPORTDATA, or dstack's report data for Nitro (absent
    /// for a bare Nitro document, whose user_data is in [`AttestedNitro::user_data`]).
    pub fn report_data(&self) -> Option<&[u8; 64]> {
        self.report_data.as_ref()
    }

    /// The fields of the Nitro attestation document.
    pub fn nitro(&self) -> Option<&AttestedNitro> {
        match &self.attestation {
            Attestation::Nitro(nitro) => Some(nitro),
            Attestation::Tdx(_) | Attestation::GcpTdx(..) => None,
        }
    }

    /// The registers and TCB verdict of the TDX quote (GCP's included).
    pub fn tdx(&self) -> Option<&AttestedTdx> {
        match &self.attestation {
            Attestation::Tdx(tdx) | Attestation::GcpTdx(tdx, _) => Some(tdx),
            Attestation::Nitro(_) => None,
        }
    }

    /// The verified vTPM quote of a GCP attestation.
    pub fn tpm(&self) -> Option<&AttestedTpm> {
        match &self.attestation {
            Attestation::GcpTdx(_, tpm) => Some(tpm),
            Attestation::Nitro(_) | Attestation::Tdx(_) => None,
        }
    }

    /// dstack's view of the workload, when the evidence is dstack's.
    pub fn dstack(&self) -> Option<&AttestedDstack> {
        self.dstack.as_ref()
    }

    /// For evidence read from an RA-TLS certificate: the certificate's SubjectPublicKeyInfo
    /// (DER), bound by the attestation (`report_data = sha512("ratls-cert:" ‖ SPKI)`).
    pub fn certificate_key(&self) -> Option<&[u8]> {
        self.certificate_key.as_deref()
    }

    /// The boot info to ask the registry about. An os_image_hash that is only the host's claim
    /// is refused unless the caller vouches for it.
    pub fn authorizable_boot_info(
        &self,
        accept_os_image_claim: bool,
    ) -> Result<&BootInfo, Unauthorizable> {
        match &self.dstack {
            None => Err(Unauthorizable::NoBootInfo),
            Some(dstack) if !dstack.os_image_hash_bound && !accept_os_image_claim => {
                Err(Unauthorizable::UnmeasuredOsImage)
            }
            Some(dstack) => Ok(&dstack.boot_info),
        }
    }
}

/// Why a verified report has no boot info the registry may be asked about.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum Unauthorizable {
    /// The evidence is not dstack's (a bare Nitro document or TDX quote): there is no app id or
    /// compose hash.
    #[error("the evidence carries no dstack boot info (app id, compose hash) to authorize")]
    NoBootInfo,
    /// The TDX os_image_hash is not bound to the hardware (a legacy image, which dstack's KMS
    /// downloads and measures in a step this crate does not perform, or a TDX-lite image with
    /// TDX-lite binding turned off): authorizing the host's claim would let a host name any
    /// registered image.
    #[error(
        "os_image_hash is the host's vm_config claim, not bound to the hardware (a legacy image, \
         or TDX-lite binding off); it is authorized only when the caller accepts the claim (the \
         image was measured separately)"
    )]
    UnmeasuredOsImage,
}

/// The fields of a Nitro attestation document (its certificates are left behind once verified).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestedNitro {
    /// The enclave's module id (`i-<instance>-enc<id>`).
    pub module_id: String,
    /// Milliseconds since the Unix epoch, as the Nitro hypervisor signed it.
    pub timestamp_ms: u64,
    /// PCR index → value, 32, 48 or 64 bytes each (48 on Nitro).
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// The document's `user_data`, if present (at most 1024 bytes).
    pub user_data: Option<Vec<u8>>,
    /// The document's `nonce`, if present.
    pub nonce: Option<Vec<u8>>,
    /// The document's `public_key`, if present.
    pub public_key: Option<Vec<u8>>,
}

impl From<AttestationDocument> for AttestedNitro {
    fn from(document: AttestationDocument) -> Self {
        AttestedNitro {
            module_id: document.module_id,
            timestamp_ms: document.timestamp_ms,
            pcrs: document.pcrs,
            user_data: document.user_data,
            nonce: document.nonce,
            public_key: document.public_key,
        }
    }
}

/// The registers of a verified TDX quote and the TCB verdict of its collateral.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestedTdx {
    /// 4 or 5.
    pub quote_version: u16,
    /// Converged platform, TDX module and QE status (never `Revoked`: that is a rejection).
    pub tcb_status: TcbStatus,
    /// Intel advisory IDs behind the status (`INTEL-SA-…`), without duplicates; may be non-empty
    /// even for `UpToDate`.
    pub advisory_ids: Vec<String>,
    /// The platform's PPID, as its PCK certificate certifies it.
    pub ppid: Vec<u8>,
    /// MRTD: SHA-384 of the initial TD contents (the virtual firmware).
    pub mr_td: [u8; 48],
    /// RTMR0..3 as the quote reports them.
    pub rtmrs: [[u8; 48]; 4],
}

/// The vTPM quote of a GCP attestation, verified under an AK chained to Google's root.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestedTpm {
    /// The quoted SHA-256 PCRs (0, 2 and 14 on GCP).
    pub pcrs: BTreeMap<u32, [u8; 32]>,
    /// The AK certificate's subject (zone, project, instance id).
    pub ak_subject: String,
    /// The AK's signature scheme (`rsassa-pkcs1v15-sha256` or `ecdsa-p256-sha256`).
    pub signature_algorithm: &'static str,
    /// `"gcp"` when PCR0, `gcp_measurement` and PCR2's UKI event bound the OS image; `None` when
    /// it stays the host's claim.
    pub os_image_variant: Option<&'static str>,
}

/// dstack's view of the workload: its app identity and the boot info its KMS sends on chain
/// (given out only by [`Verified::authorizable_boot_info`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestedDstack {
    pub(super) boot_info: BootInfo,
    pub(super) instance_id: Option<[u8; 20]>,
    pub(super) key_provider: Vec<u8>,
    pub(super) os_image_hash_bound: bool,
    pub(super) os_image_variant: Option<TdxAttestationVariant>,
    pub(super) acpi_tables_verified: bool,
    pub(super) registers: Option<RegisterSources>,
    pub(super) unbound: Vec<IdentityField>,
}

impl From<DstackIdentity> for AttestedDstack {
    fn from(identity: DstackIdentity) -> Self {
        AttestedDstack {
            boot_info: identity.boot_info,
            instance_id: identity.app_info.instance_id,
            key_provider: identity.app_info.key_provider_info,
            os_image_hash_bound: identity.os_image_hash_bound,
            os_image_variant: identity.os_image.map(|binding| binding.variant),
            acpi_tables_verified: identity
                .os_image
                .is_some_and(|binding| binding.acpi_tables_verified),
            registers: identity.registers,
            unbound: identity.unbound,
        }
    }
}

impl AttestedDstack {
    /// The app id (20 bytes; in KMS mode the DstackApp proxy address).
    pub fn app_id(&self) -> &[u8; 20] {
        &self.boot_info.app_id
    }

    /// sha256 of the exact app-compose.json bytes.
    pub fn compose_hash(&self) -> &[u8; 32] {
        &self.boot_info.compose_hash
    }

    /// `None` when the app has no instance id (the boot info then carries zeros).
    pub fn instance_id(&self) -> Option<&[u8; 20]> {
        self.instance_id.as_ref()
    }

    /// TDX: sha256(PPID). Nitro: sha256 of the module id's text before the first `-` (dstack's
    /// quirk: sha256("i") for every enclave).
    pub fn device_id(&self) -> &[u8; 32] {
        &self.boot_info.device_id
    }

    /// TDX: SHA-256(MRTD ‖ RTMR0..2 ‖ sha256(key-provider payload) or zeros). Nitro: sha256(PCR0 ‖
    /// PCR1 ‖ PCR2).
    pub fn mr_system(&self) -> &[u8; 32] {
        &self.boot_info.mr_system
    }

    /// TDX: SHA-256(MRTD ‖ RTMR0..3 [‖ MRCONFIGID ‖ MROWNER ‖ MROWNERCONFIG when any is non-zero]).
    /// Nitro: sha256(PCR0 ‖ PCR1 ‖ PCR2).
    pub fn mr_aggregated(&self) -> &[u8; 32] {
        &self.boot_info.mr_aggregated
    }

    /// The key-provider event's payload (UTF-8 JSON); empty when absent.
    pub fn key_provider(&self) -> &[u8] {
        &self.key_provider
    }

    /// Whether the os_image_hash is measured by the platform rather than claimed by the host.
    pub fn os_image_hash_bound(&self) -> bool {
        self.os_image_hash_bound
    }

    /// TDX: how vm_config says the OS image is bound (`lite` or `legacy`); `None` on Nitro, whose
    /// PCRs are the image.
    pub fn os_image_variant(&self) -> Option<TdxAttestationVariant> {
        self.os_image_variant
    }

    /// Whether the ACPI table contents were checked (never: TDX-lite binds them only through
    /// RTMR0's digests).
    pub fn acpi_tables_verified(&self) -> bool {
        self.acpi_tables_verified
    }

    /// TDX: where MRTD and RTMR0-2 were bound (RTMR3 always replays from the event log).
    pub fn register_sources(&self) -> Option<&RegisterSources> {
        self.registers.as_ref()
    }

    /// Boot-info values the hardware does not bind (taken on trust), e.g. a Nitro app id.
    pub fn unbound(&self) -> &[IdentityField] {
        &self.unbound
    }
}

/// What evidence claims, read without checking any signature or collateral: for showing, never
/// for authorizing (it gives out no boot info). Serializes as its [`Report`], `"verified":false`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Preview {
    pub(super) report: Report,
}

impl Preview {
    /// The claims, spelled as the CLI's `--json` spells them.
    pub fn report(&self) -> &Report {
        &self.report
    }
}
