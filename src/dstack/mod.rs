//! dstack: its evidence formats, the event log and RTMR replay, app info, and the boot info its KMS
//! builds for `DstackKms.isAppAllowed`, reproducing dstack-attest and dstack-verifier byte for
//! byte (their formulas, event rules and quirks).
//!
//! Flow: [`Evidence::parse`] (bytes: quote report JSON, VersionedAttestation V0 SCALE or V1
//! msgpack) or [`ratls::from_certificate`] (an RA-TLS certificate) → the TDX or Nitro room verifies
//! the platform proof inside → [`tdx_identity`] / [`nitro_identity`] replay the event log, bind the
//! OS image ([`os_image`]), check the bindings and build the [`crate::boot_info::BootInfo`].
//! Nothing here verifies a signature or reads the clock.

mod app_info;
mod boot;
mod cbor_struct;
mod error;
mod event_log;
mod evidence;
pub mod gcp;
pub mod gcp_ak;
mod gcp_evidence;
mod measurements;
pub mod os_image;
mod quote_report;
pub mod ratls;
mod scale;
pub mod v1;
mod vm_config;

// Where the real samples are: the TPM room's module (dstack implies tpm; one file, one module).
#[cfg(test)]
pub(crate) use crate::tpm::samples;
#[cfg(test)]
pub(crate) mod test_support;

pub use app_info::{AppInfo, KeyProvider, BOOT_MR_DONE, SYSTEM_READY};
pub use boot::{
    nitro_identity, tdx_identity, tdx_identity_with_policy, DstackIdentity, IdentityField, MrMode,
    RegisterSource, RegisterSources, TdxTcb, TeeVariant,
};
pub use error::{DstackError, OsImageCheck};
pub use event_log::{
    runtime_event_digest, runtime_event_preimage_v2, Event, EventLog, RawEvent, ReplayOutcome,
    Rtmr, RuntimeEvent, RuntimeEventVersion, ACPI_DATA_EVENT_TYPE, ACPI_DATA_PAYLOAD, MAX_EVENTS,
    MAX_EVENT_NAME_LEN, RUNTIME_EVENT_TYPE, RUNTIME_IMR,
};
pub use evidence::{Evidence, NitroEvidence, TdxEvidence, MAX_EVIDENCE_LEN};
pub use gcp_evidence::{GcpEvidence, MAX_PCR_VALUES};
pub use measurements::{
    check_report_data, content_report_data, mr_aggregated, mr_system, tdx_device_id, NitroEnclave,
    TdRegisters, REPORT_DATA_LEN,
};
pub use os_image::{OsImageBinding, OsImagePolicy, OsImagePreview, TdImageRegisters};
pub use vm_config::{OvmfVariant, TdxAttestationVariant, TdxMeasurementMaterial, VmConfig};
