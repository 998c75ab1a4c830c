//! The contracts' decision logic, as pure functions of a view and a boot info: `DstackKms`'s
//! `isAppAllowed` (which delegates to the app's `DstackApp.isAppAllowed`) and `isKmsAllowed`.
//! Checks run in the contracts' order and stop at the first failure, with their exact reason
//! strings (docs/dstack.md §1.2–1.4).

use super::view::{AppCode, AppView, KmsList, RegistryView};
use crate::boot_info::BootInfo;

/// The reason strings of DstackKms / DstackApp, byte for byte.
pub mod reason {
    pub const APP_NOT_REGISTERED: &str = "App not registered";
    pub const OS_IMAGE_NOT_ALLOWED: &str = "OS image is not allowed";
    pub const APP_NOT_DEPLOYED: &str = "App not deployed or invalid address";
    pub const TCB_NOT_UP_TO_DATE: &str = "TCB status is not up to date";
    pub const COMPOSE_HASH_NOT_ALLOWED: &str = "Compose hash not allowed";
    pub const DEVICE_NOT_ALLOWED: &str = "Device not allowed";
    pub const AGGREGATED_MR_NOT_ALLOWED: &str = "Aggregated MR not allowed";
    pub const KMS_DEVICE_NOT_ALLOWED: &str = "KMS is not allowed to boot on this device";
    pub const ALLOWED: &str = "";
}

/// The only TCB status the contracts accept (compared as exact bytes, via keccak).
pub const TCB_UP_TO_DATE: &str = "UpToDate";

/// A contract's `(bool isAllowed, string reason)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub reason: &'static str,
}

impl Verdict {
    const ALLOW: Verdict = Verdict { allowed: true, reason: reason::ALLOWED };

    const fn deny(reason: &'static str) -> Verdict {
        Verdict { allowed: false, reason }
    }
}

/// The outcome of `DstackKms.isAppAllowed` evaluated on a view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppVerdict {
    Decided(Verdict),
    /// The KMS-side checks passed but the app's code is not known DstackApp code (or its
    /// presence must be re-checked): only the chain can answer, at the view's block.
    AskContract,
}

/// `DstackKms.isAppAllowed`.
pub fn kms_is_app_allowed(view: &RegistryView, boot: &BootInfo) -> AppVerdict {
    let Some(app) = view.app(&boot.app_id) else {
        return AppVerdict::Decided(Verdict::deny(reason::APP_NOT_REGISTERED));
    };
    if !view.contains(KmsList::OsImages, &boot.os_image_hash) {
        return AppVerdict::Decided(Verdict::deny(reason::OS_IMAGE_NOT_ALLOWED));
    }
    match app.policy().code {
        AppCode::Known => AppVerdict::Decided(app_is_app_allowed(&app, boot)),
        AppCode::Unknown | AppCode::Absent => AppVerdict::AskContract,
    }
}

/// `DstackKms.isAppAllowed` for a source that has no chain to ask (the registry file): absent code
/// is denied as the contract would, and unknown code cannot occur (files declare known code).
pub fn kms_is_app_allowed_offline(view: &RegistryView, boot: &BootInfo) -> Option<Verdict> {
    match kms_is_app_allowed(view, boot) {
        AppVerdict::Decided(verdict) => Some(verdict),
        AppVerdict::AskContract => match view.app(&boot.app_id)?.policy().code {
            AppCode::Absent => Some(Verdict::deny(reason::APP_NOT_DEPLOYED)),
            AppCode::Known | AppCode::Unknown => None,
        },
    }
}

/// `DstackApp.isAppAllowed` (version 2; version 1 simply never sets `requireTcbUpToDate`).
pub fn app_is_app_allowed(app: &AppView<'_>, boot: &BootInfo) -> Verdict {
    let policy = app.policy();
    if policy.require_tcb_up_to_date && boot.tcb_status != TCB_UP_TO_DATE {
        return Verdict::deny(reason::TCB_NOT_UP_TO_DATE);
    }
    if !app.allows_compose_hash(&boot.compose_hash) {
        return Verdict::deny(reason::COMPOSE_HASH_NOT_ALLOWED);
    }
    if !policy.allow_any_device && !app.allows_device(&boot.device_id) {
        return Verdict::deny(reason::DEVICE_NOT_ALLOWED);
    }
    Verdict::ALLOW
}

/// `DstackKms.isKmsAllowed`.
pub fn kms_is_kms_allowed(view: &RegistryView, boot: &BootInfo) -> Verdict {
    if boot.tcb_status != TCB_UP_TO_DATE {
        return Verdict::deny(reason::TCB_NOT_UP_TO_DATE);
    }
    if !view.contains(KmsList::OsImages, &boot.os_image_hash) {
        return Verdict::deny(reason::OS_IMAGE_NOT_ALLOWED);
    }
    if !view.contains(KmsList::KmsAggregatedMrs, &boot.mr_aggregated) {
        return Verdict::deny(reason::AGGREGATED_MR_NOT_ALLOWED);
    }
    if !view.contains(KmsList::KmsDeviceIds, &boot.device_id) {
        return Verdict::deny(reason::KMS_DEVICE_NOT_ALLOWED);
    }
    Verdict::ALLOW
}
