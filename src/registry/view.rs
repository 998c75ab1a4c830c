//! The registry data model shared by the chain and file sources: what `DstackKms` and every
//! registered `DstackApp` allow, as of one block.
//!
//! Layout is chosen for a million registrations: apps get a dense index, and the per-app sets are
//! two flat sets of `(app index, bytes32)` rather than one set per app (a std `HashSet` costs
//! ≥ 48 bytes plus an allocation even when small). SipHash with a random key is kept on purpose:
//! the registry is permissionless, so keys are attacker-chosen.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// A 32-byte value (`bytes32`): hashes, measurement registers, device ids.
pub type Bytes32 = [u8; 32];
/// A 20-byte Ethereum address: app ids, contracts.
pub type Address = [u8; 20];

/// What runs at an app id, which decides how the app's `isAppAllowed` is evaluated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppCode {
    /// Known DstackApp code behind a known EIP-1967 proxy (or declared so by a registry file):
    /// decided from the view.
    #[default]
    Known,
    /// Any other code: its events prove nothing, so the chain source asks the contract itself.
    Unknown,
    /// No code at the app id (as of the last look): `App not deployed or invalid address`.
    Absent,
}

/// Per-app flags of `DstackApp`, plus what runs there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppPolicy {
    /// `allowAnyDevice`: the device check is skipped.
    pub allow_any_device: bool,
    /// `requireTcbUpToDate`: any TCB status but `UpToDate` is refused.
    pub require_tcb_up_to_date: bool,
    /// What code runs at the app id, which decides whether the view may answer for it.
    pub code: AppCode,
    /// The EIP-1967 implementation behind the app's proxy, when there is one.
    pub implementation: Option<Address>,
}

/// Which allowlist a bytes32 entry belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KmsList {
    /// `allowedOsImages`.
    OsImages,
    /// `kmsAllowedAggregatedMrs`.
    KmsAggregatedMrs,
    /// `kmsAllowedDeviceIds`.
    KmsDeviceIds,
}

/// Which per-app allowlist a bytes32 entry belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AppList {
    /// `allowedComposeHashes`.
    ComposeHashes,
    /// `allowedDeviceIds`.
    DeviceIds,
}

/// The allowlists as of one block. Cheap reads; mutations report whether anything changed.
#[derive(Clone, Debug, Default)]
pub struct RegistryView {
    gateway_app_id: String,
    app_implementation: Option<Address>,
    os_images: HashSet<Bytes32>,
    kms_aggregated_mrs: HashSet<Bytes32>,
    kms_device_ids: HashSet<Bytes32>,
    app_index: HashMap<Address, u32>,
    apps: Vec<AppPolicy>,
    compose_hashes: HashSet<(u32, Bytes32)>,
    device_ids: HashSet<(u32, Bytes32)>,
}

/// One registered app, borrowed from a view.
#[derive(Clone, Copy, Debug)]
pub struct AppView<'a> {
    view: &'a RegistryView,
    index: u32,
    policy: &'a AppPolicy,
}

impl AppView<'_> {
    /// The app's flags and code status.
    pub fn policy(&self) -> &AppPolicy {
        self.policy
    }

    /// Whether the compose hash is in the app's `allowedComposeHashes`.
    pub fn allows_compose_hash(&self, compose_hash: &Bytes32) -> bool {
        self.view
            .compose_hashes
            .contains(&(self.index, *compose_hash))
    }

    /// Whether the device id is in the app's `allowedDeviceIds` (ignores `allowAnyDevice`).
    pub fn allows_device(&self, device_id: &Bytes32) -> bool {
        self.view.device_ids.contains(&(self.index, *device_id))
    }
}

impl RegistryView {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// `DstackKms.gatewayAppId()`.
    pub fn gateway_app_id(&self) -> &str {
        &self.gateway_app_id
    }

    /// `DstackKms.appImplementation()`.
    pub fn app_implementation(&self) -> Option<Address> {
        self.app_implementation
    }

    /// Whether `value` is in the KMS-level `list`.
    pub fn contains(&self, list: KmsList, value: &Bytes32) -> bool {
        self.kms_set(list).contains(value)
    }

    /// The registered app, if any.
    pub fn app(&self, app_id: &Address) -> Option<AppView<'_>> {
        let index = *self.app_index.get(app_id)?;
        let policy = self.apps.get(usize::try_from(index).ok()?)?;
        Some(AppView {
            view: self,
            index,
            policy,
        })
    }

    /// Number of registered apps.
    pub fn app_count(&self) -> usize {
        self.apps.len()
    }

    /// Whether any registered app runs unknown code.
    pub fn has_unknown_apps(&self) -> bool {
        self.apps
            .iter()
            .any(|policy| policy.code == AppCode::Unknown)
    }

    /// Registered app ids (arbitrary order).
    pub fn app_ids(&self) -> impl Iterator<Item = &Address> + '_ {
        self.app_index.keys()
    }

    /// All values of a KMS-level list (arbitrary order).
    pub fn values(&self, list: KmsList) -> impl Iterator<Item = &Bytes32> + '_ {
        self.kms_set(list).iter()
    }

    /// Calls `f` for every per-app value (arbitrary order).
    pub fn for_each_app_value(&self, mut f: impl FnMut(&Address, AppList, &Bytes32)) {
        let ids: HashMap<u32, &Address> = self.app_index.iter().map(|(id, i)| (*i, id)).collect();
        for (list, set) in [
            (AppList::ComposeHashes, &self.compose_hashes),
            (AppList::DeviceIds, &self.device_ids),
        ] {
            for (index, value) in set {
                if let Some(app_id) = ids.get(index) {
                    f(app_id, list, value);
                }
            }
        }
    }

    /// Returns whether the value changed.
    pub fn set_gateway_app_id(&mut self, gateway_app_id: String) -> bool {
        let changed = self.gateway_app_id != gateway_app_id;
        self.gateway_app_id = gateway_app_id;
        changed
    }

    /// Sets `DstackKms.appImplementation()`.
    pub fn set_app_implementation(&mut self, implementation: Option<Address>) {
        self.app_implementation = implementation;
    }

    /// Adds (`enabled`) or removes a KMS-level value; returns whether membership changed.
    pub fn set(&mut self, list: KmsList, value: Bytes32, enabled: bool) -> bool {
        let set = match list {
            KmsList::OsImages => &mut self.os_images,
            KmsList::KmsAggregatedMrs => &mut self.kms_aggregated_mrs,
            KmsList::KmsDeviceIds => &mut self.kms_device_ids,
        };
        if enabled {
            set.insert(value)
        } else {
            set.remove(&value)
        }
    }

    /// Registers an app (registration is permanent in DstackKms); returns whether it is new.
    /// New apps start as `Known` with both flags off, as a fresh DstackApp would.
    pub fn register_app(&mut self, app_id: Address) -> bool {
        if self.app_index.contains_key(&app_id) {
            return false;
        }
        let Ok(index) = u32::try_from(self.apps.len()) else {
            // 4 billion apps cannot be registered on any chain; refuse rather than alias.
            return false;
        };
        self.app_index.insert(app_id, index);
        self.apps.push(AppPolicy::default());
        true
    }

    /// Replaces an app's flags and code; returns whether anything changed. An app that is no
    /// longer `Known` loses its lists: nothing it emitted can be trusted any more.
    pub fn set_app_policy(&mut self, app_id: &Address, policy: AppPolicy) -> bool {
        let Some(&index) = self.app_index.get(app_id) else {
            return false;
        };
        let Some(slot) = usize::try_from(index)
            .ok()
            .and_then(|i| self.apps.get_mut(i))
        else {
            return false;
        };
        if *slot == policy {
            return false;
        }
        let was_known = slot.code == AppCode::Known;
        *slot = policy;
        if was_known && policy.code != AppCode::Known {
            self.compose_hashes.retain(|(owner, _)| *owner != index);
            self.device_ids.retain(|(owner, _)| *owner != index);
        }
        true
    }

    /// Adds or removes a value of a registered, `Known` app; returns whether membership changed.
    /// Values for other apps are ignored.
    pub fn set_app_value(
        &mut self,
        app_id: &Address,
        list: AppList,
        value: Bytes32,
        enabled: bool,
    ) -> bool {
        let Some(app) = self.app(app_id) else {
            return false;
        };
        if app.policy.code != AppCode::Known {
            return false;
        }
        let key = (app.index, value);
        let set = match list {
            AppList::ComposeHashes => &mut self.compose_hashes,
            AppList::DeviceIds => &mut self.device_ids,
        };
        if enabled {
            set.insert(key)
        } else {
            set.remove(&key)
        }
    }

    /// Gives unused capacity back (after a bulk build).
    pub fn shrink_to_fit(&mut self) {
        self.os_images.shrink_to_fit();
        self.kms_aggregated_mrs.shrink_to_fit();
        self.kms_device_ids.shrink_to_fit();
        self.app_index.shrink_to_fit();
        self.apps.shrink_to_fit();
        self.compose_hashes.shrink_to_fit();
        self.device_ids.shrink_to_fit();
    }

    fn kms_set(&self, list: KmsList) -> &HashSet<Bytes32> {
        match list {
            KmsList::OsImages => &self.os_images,
            KmsList::KmsAggregatedMrs => &self.kms_aggregated_mrs,
            KmsList::KmsDeviceIds => &self.kms_device_ids,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_values_need_a_registered_known_app() {
        let mut view = RegistryView::new();
        let app = [1; 20];
        assert!(!view.set_app_value(&app, AppList::ComposeHashes, [2; 32], true));
        assert!(view.register_app(app));
        assert!(!view.register_app(app));
        assert!(view.set_app_value(&app, AppList::ComposeHashes, [2; 32], true));
        assert!(!view.set_app_value(&app, AppList::ComposeHashes, [2; 32], true));
        assert!(view.app(&app).unwrap().allows_compose_hash(&[2; 32]));
        let unknown = AppPolicy {
            code: AppCode::Unknown,
            ..AppPolicy::default()
        };
        assert!(view.set_app_policy(&app, unknown));
        assert!(!view.set_app_policy(&app, unknown));
        assert!(!view.app(&app).unwrap().allows_compose_hash(&[2; 32]));
        assert!(!view.set_app_value(&app, AppList::DeviceIds, [3; 32], true));
        assert!(!view.set_app_policy(&[9; 20], AppPolicy::default()));
    }

    #[test]
    fn kms_lists_report_changes() {
        let mut view = RegistryView::new();
        assert!(view.set(KmsList::KmsDeviceIds, [1; 32], true));
        assert!(!view.set(KmsList::KmsDeviceIds, [1; 32], true));
        assert!(!view.contains(KmsList::OsImages, &[1; 32]));
        assert!(view.set(KmsList::KmsDeviceIds, [1; 32], false));
        assert!(!view.set(KmsList::KmsDeviceIds, [1; 32], false));
    }
}
