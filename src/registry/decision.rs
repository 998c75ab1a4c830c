//! The contracts' decision logic, as pure functions of a view and a boot info: `DstackKms`'s
//! `isAppAllowed` (which delegates to the app's `DstackApp.isAppAllowed`) and `isKmsAllowed`.
//! Checks run in the contracts' order and stop at the first failure, with their exact reason
//! strings: app registered, OS image allowed, app code deployed, then the app's own checks
//! (`requireTcbUpToDate` against the exact bytes `"UpToDate"`, compose hash, device unless
//! `allowAnyDevice`); for the KMS, aggregated MR, then device id. Only known DstackApp code can be
//! evaluated from events: any other app contract is arbitrary code, so it is asked on chain.

use super::view::{AppCode, AppView, KmsList, RegistryView};
use crate::boot_info::BootInfo;

/// The reason strings of DstackKms / DstackApp, byte for byte.
pub mod reason {
    /// `DstackKms.isAppAllowed`: the app id is not in `registeredApps`.
    pub const APP_NOT_REGISTERED: &str = "App not registered";
    /// `DstackKms.isAppAllowed`: the OS image hash is not in `allowedOsImages`.
    pub const OS_IMAGE_NOT_ALLOWED: &str = "OS image is not allowed";
    /// `DstackKms.isAppAllowed`: the app's address holds no code (or does not answer as a
    /// DstackApp).
    pub const APP_NOT_DEPLOYED: &str = "App not deployed or invalid address";
    /// `DstackApp.isAppAllowed`: the app requires `UpToDate` TCB and the boot info's status is
    /// another.
    pub const TCB_NOT_UP_TO_DATE: &str = "TCB status is not up to date";
    /// `DstackApp.isAppAllowed`: the compose hash is not in `allowedComposeHashes`.
    pub const COMPOSE_HASH_NOT_ALLOWED: &str = "Compose hash not allowed";
    /// `DstackApp.isAppAllowed`: the device id is not allowed and `allowAnyDevice` is off.
    pub const DEVICE_NOT_ALLOWED: &str = "Device not allowed";
    /// `DstackKms.isKmsAllowed`: the aggregated MR is not in `kmsAllowedAggregatedMrs`.
    pub const AGGREGATED_MR_NOT_ALLOWED: &str = "Aggregated MR not allowed";
    /// `DstackKms.isKmsAllowed`: the device id is not in `kmsAllowedDeviceIds`.
    pub const KMS_DEVICE_NOT_ALLOWED: &str = "KMS is not allowed to boot on this device";
    /// The reason returned with an allowed verdict: empty.
    pub const ALLOWED: &str = "";
}

/// The only TCB status the contracts accept (compared as exact bytes, via keccak).
pub const TCB_UP_TO_DATE: &str = "UpToDate";

/// A contract's `(bool isAllowed, string reason)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the contract would allow the boot.
    pub allowed: bool,
    /// One of the [`reason`] strings; empty when allowed.
    pub reason: &'static str,
}

impl Verdict {
    const ALLOW: Verdict = Verdict {
        allowed: true,
        reason: reason::ALLOWED,
    };

    const fn deny(reason: &'static str) -> Verdict {
        Verdict {
            allowed: false,
            reason,
        }
    }
}

/// The outcome of `DstackKms.isAppAllowed` evaluated on a view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppVerdict {
    /// The view decided; the verdict is the contract's answer.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::view::{AppList, AppPolicy};

    const APP: [u8; 20] = [0xaa; 20];
    const OS: [u8; 32] = [1; 32];
    const COMPOSE: [u8; 32] = [2; 32];
    const DEVICE: [u8; 32] = [3; 32];
    const MR: [u8; 32] = [4; 32];

    fn boot() -> BootInfo {
        BootInfo {
            app_id: APP,
            compose_hash: COMPOSE,
            device_id: DEVICE,
            mr_aggregated: MR,
            os_image_hash: OS,
            tcb_status: TCB_UP_TO_DATE.to_owned(),
            ..BootInfo::default()
        }
    }

    /// Everything in `boot()` allowed; app requires an up-to-date TCB, no allow-any-device.
    fn full_view(code: AppCode) -> RegistryView {
        let mut view = RegistryView::new();
        view.set(KmsList::OsImages, OS, true);
        view.set(KmsList::KmsAggregatedMrs, MR, true);
        view.set(KmsList::KmsDeviceIds, DEVICE, true);
        view.register_app(APP);
        let policy = AppPolicy {
            require_tcb_up_to_date: true,
            ..AppPolicy::default()
        };
        view.set_app_policy(&APP, policy);
        view.set_app_value(&APP, AppList::ComposeHashes, COMPOSE, true);
        view.set_app_value(&APP, AppList::DeviceIds, DEVICE, true);
        view.set_app_policy(&APP, AppPolicy { code, ..policy });
        view
    }

    fn app_reason(view: &RegistryView, boot: &BootInfo) -> AppVerdict {
        kms_is_app_allowed(view, boot)
    }

    fn denied(reason: &'static str) -> AppVerdict {
        AppVerdict::Decided(Verdict {
            allowed: false,
            reason,
        })
    }

    #[test]
    fn app_allowed_when_every_check_passes() {
        let verdict = app_reason(&full_view(AppCode::Known), &boot());
        assert_eq!(
            verdict,
            AppVerdict::Decided(Verdict {
                allowed: true,
                reason: ""
            })
        );
    }

    #[test]
    fn app_reasons_in_contract_order() {
        let view = full_view(AppCode::Known);
        // Each case fails every check from its own onward: the earliest failing reason wins.
        let unregistered = BootInfo {
            app_id: [0xbb; 20],
            os_image_hash: [9; 32],
            ..boot()
        };
        assert_eq!(
            app_reason(&view, &unregistered),
            denied("App not registered")
        );
        let bad_os = BootInfo {
            os_image_hash: [9; 32],
            tcb_status: "OutOfDate".into(),
            ..boot()
        };
        assert_eq!(
            app_reason(&view, &bad_os),
            denied("OS image is not allowed")
        );
        let stale_tcb = BootInfo {
            tcb_status: "OutOfDate".into(),
            compose_hash: [9; 32],
            ..boot()
        };
        assert_eq!(
            app_reason(&view, &stale_tcb),
            denied("TCB status is not up to date")
        );
        let bad_compose = BootInfo {
            compose_hash: [9; 32],
            device_id: [9; 32],
            ..boot()
        };
        assert_eq!(
            app_reason(&view, &bad_compose),
            denied("Compose hash not allowed")
        );
        let bad_device = BootInfo {
            device_id: [9; 32],
            ..boot()
        };
        assert_eq!(app_reason(&view, &bad_device), denied("Device not allowed"));
    }

    #[test]
    fn tcb_status_compares_exact_bytes() {
        let view = full_view(AppCode::Known);
        for status in ["uptodate", "UpToDate ", "", "SWHardeningNeeded"] {
            let info = BootInfo {
                tcb_status: status.into(),
                ..boot()
            };
            assert_eq!(
                app_reason(&view, &info),
                denied("TCB status is not up to date")
            );
        }
    }

    #[test]
    fn tcb_ignored_unless_required_and_any_device_skips_device_check() {
        let mut view = full_view(AppCode::Known);
        let flags = AppPolicy {
            allow_any_device: true,
            ..AppPolicy::default()
        };
        view.set_app_policy(&APP, flags);
        let info = BootInfo {
            tcb_status: String::new(),
            device_id: [9; 32],
            ..boot()
        };
        assert_eq!(
            app_reason(&view, &info),
            AppVerdict::Decided(Verdict::ALLOW)
        );
    }

    #[test]
    fn unknown_or_absent_code_asks_the_contract_after_kms_checks() {
        for code in [AppCode::Unknown, AppCode::Absent] {
            let view = full_view(code);
            assert_eq!(app_reason(&view, &boot()), AppVerdict::AskContract);
            let bad_os = BootInfo {
                os_image_hash: [9; 32],
                ..boot()
            };
            assert_eq!(
                app_reason(&view, &bad_os),
                denied("OS image is not allowed")
            );
        }
        let absent = full_view(AppCode::Absent);
        assert_eq!(
            kms_is_app_allowed_offline(&absent, &boot()),
            Some(Verdict {
                allowed: false,
                reason: "App not deployed or invalid address"
            })
        );
        assert_eq!(
            kms_is_app_allowed_offline(&full_view(AppCode::Unknown), &boot()),
            None
        );
    }

    #[test]
    fn unknown_code_drops_its_lists() {
        let view = full_view(AppCode::Unknown);
        let app = view.app(&APP).unwrap();
        assert!(!app.allows_compose_hash(&COMPOSE));
        assert!(!app.allows_device(&DEVICE));
    }

    #[test]
    fn kms_reasons_in_contract_order() {
        let view = full_view(AppCode::Known);
        let kms = |info: &BootInfo| kms_is_kms_allowed(&view, info);
        assert_eq!(kms(&boot()), Verdict::ALLOW);
        let all_bad = BootInfo {
            tcb_status: "OutOfDate".into(),
            os_image_hash: [9; 32],
            mr_aggregated: [9; 32],
            device_id: [9; 32],
            ..boot()
        };
        assert_eq!(kms(&all_bad).reason, "TCB status is not up to date");
        let info = BootInfo {
            tcb_status: TCB_UP_TO_DATE.into(),
            ..all_bad
        };
        assert_eq!(kms(&info).reason, "OS image is not allowed");
        let info = BootInfo {
            os_image_hash: OS,
            ..info
        };
        assert_eq!(kms(&info).reason, "Aggregated MR not allowed");
        let info = BootInfo {
            mr_aggregated: MR,
            ..info
        };
        assert_eq!(
            kms(&info).reason,
            "KMS is not allowed to boot on this device"
        );
        let info = BootInfo {
            device_id: DEVICE,
            ..info
        };
        assert_eq!(kms(&info), Verdict::ALLOW);
    }

    #[test]
    fn kms_ignores_app_registration() {
        let mut view = full_view(AppCode::Known);
        view.set(KmsList::OsImages, OS, false);
        view.set(KmsList::OsImages, OS, true);
        let info = BootInfo {
            app_id: [0; 20],
            compose_hash: [0; 32],
            ..boot()
        };
        assert_eq!(kms_is_kms_allowed(&view, &info), Verdict::ALLOW);
    }
}
