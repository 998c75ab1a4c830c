//! dstack: its evidence formats, the event log and RTMR replay, app info, and the boot info its KMS
//! builds for `DstackKms.isAppAllowed`, reproducing dstack-attest and dstack-verifier byte for
//! byte (their formulas, event rules and quirks).
//!
//! Flow: [`Evidence::parse`] (bytes) → the TDX or Nitro room verifies the platform proof inside →
//! [`tdx_identity`] / [`nitro_identity`] replay the event log, check the bindings and build the
//! [`crate::boot_info::BootInfo`]. Nothing here verifies a signature or reads the clock.

mod app_info;
mod boot;
mod error;
mod event_log;
mod evidence;
pub mod gcp;
pub mod gcp_ak;
mod measurements;
mod scale;

pub use app_info::{AppInfo, KeyProvider, BOOT_MR_DONE, SYSTEM_READY};
pub use boot::{nitro_identity, tdx_identity, DstackIdentity, MrMode, TdxTcb, TeeVariant};
pub use error::DstackError;
pub use event_log::{
    runtime_event_digest, runtime_event_preimage_v2, Event, EventLog, RawEvent, ReplayOutcome,
    Rtmr, RuntimeEvent, RuntimeEventVersion, MAX_EVENTS, MAX_EVENT_NAME_LEN, RUNTIME_EVENT_TYPE,
    RUNTIME_IMR,
};
pub use evidence::{Evidence, NitroEvidence, TdxEvidence, VmConfig, MAX_EVIDENCE_LEN};
pub use measurements::{
    check_report_data, mr_aggregated, mr_system, tdx_device_id, NitroEnclave, TdRegisters,
    REPORT_DATA_LEN,
};
