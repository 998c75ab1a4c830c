//! The registry data model shared by the chain and file sources: what `DstackKms` and every
//! registered `DstackApp` allow, as of one block.
//!
//! Layout is chosen for a million registrations (`benches/registry.rs`: about 140 B per app with
//! one compose hash and one device): every app is one fixed-size record in one `Vec` (its id, its
//! policy and its two sets), found through an index that holds only each record's `u32` position
//! (a `hashbrown` table hashed on the record's app id). A set of one value is held inline, a few
//! in one exact-size sorted slice, and only a large one is hashed (`value_set`); no hex keys, and
//! no allocation at all for an app's one-value lists. SipHash with a random key is kept on purpose: the registry is
//! permissionless, so keys are attacker-chosen.

mod value_set;

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};

use value_set::ValueSet;

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

/// One registered app: 128 bytes, whatever its lists hold while they are small.
#[derive(Clone, Debug)]
struct AppRecord {
    app_id: Address,
    policy: AppPolicy,
    compose_hashes: ValueSet,
    device_ids: ValueSet,
}

impl AppRecord {
    fn list(&self, list: AppList) -> &ValueSet {
        match list {
            AppList::ComposeHashes => &self.compose_hashes,
            AppList::DeviceIds => &self.device_ids,
        }
    }
}

/// The allowlists as of one block. Cheap reads; mutations report whether anything changed.
#[derive(Clone, Debug, Default)]
pub struct RegistryView {
    gateway_app_id: String,
    app_implementation: Option<Address>,
    os_images: ValueSet,
    kms_aggregated_mrs: ValueSet,
    kms_device_ids: ValueSet,
    /// Positions in `apps`, hashed on the app id of the record they point at.
    app_index: HashTable<u32>,
    hasher: RandomState,
    /// In registration order (registration is permanent, so positions never move).
    apps: Vec<AppRecord>,
    /// How many apps run [`AppCode::Unknown`] code.
    unknown_apps: usize,
}

/// One registered app, borrowed from a view.
#[derive(Clone, Copy, Debug)]
pub struct AppView<'a> {
    record: &'a AppRecord,
}

impl<'a> AppView<'a> {
    /// The app's address.
    pub fn app_id(&self) -> &'a Address {
        &self.record.app_id
    }

    /// The app's flags and code status.
    pub fn policy(&self) -> &'a AppPolicy {
        &self.record.policy
    }

    /// Whether the compose hash is in the app's `allowedComposeHashes`.
    pub fn allows_compose_hash(&self, compose_hash: &Bytes32) -> bool {
        self.record.compose_hashes.contains(compose_hash)
    }

    /// Whether the device id is in the app's `allowedDeviceIds` (ignores `allowAnyDevice`).
    pub fn allows_device(&self, device_id: &Bytes32) -> bool {
        self.record.device_ids.contains(device_id)
    }

    /// The values of one of the app's lists (arbitrary order).
    pub fn values(&self, list: AppList) -> impl Iterator<Item = &'a Bytes32> + 'a {
        self.record.list(list).iter()
    }
}

/// The record at `position`, if any (positions in the index always have one).
fn record_at(apps: &[AppRecord], position: u32) -> Option<&AppRecord> {
    apps.get(usize::try_from(position).ok()?)
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
        let position = self.position(app_id)?;
        Some(AppView {
            record: self.apps.get(position)?,
        })
    }

    /// Every registered app (arbitrary order).
    pub fn apps(&self) -> impl Iterator<Item = AppView<'_>> + '_ {
        self.apps.iter().map(|record| AppView { record })
    }

    /// Number of registered apps.
    pub fn app_count(&self) -> usize {
        self.apps.len()
    }

    /// Whether any registered app runs unknown code.
    pub fn has_unknown_apps(&self) -> bool {
        self.unknown_apps > 0
    }

    /// Registered app ids (arbitrary order).
    pub fn app_ids(&self) -> impl Iterator<Item = &Address> + '_ {
        self.apps.iter().map(|record| &record.app_id)
    }

    /// All values of a KMS-level list (arbitrary order).
    pub fn values(&self, list: KmsList) -> impl Iterator<Item = &Bytes32> + '_ {
        self.kms_set(list).iter()
    }

    /// Calls `f` for every per-app value (arbitrary order).
    pub fn for_each_app_value(&self, mut f: impl FnMut(&Address, AppList, &Bytes32)) {
        for record in &self.apps {
            for list in [AppList::ComposeHashes, AppList::DeviceIds] {
                for value in record.list(list).iter() {
                    f(&record.app_id, list, value);
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
        if self.position(&app_id).is_some() {
            return false;
        }
        let Ok(position) = u32::try_from(self.apps.len()) else {
            // 4 billion apps cannot be registered on any chain; refuse rather than alias.
            return false;
        };
        let Self {
            app_index,
            hasher,
            apps,
            ..
        } = self;
        apps.push(AppRecord {
            app_id,
            policy: AppPolicy::default(),
            compose_hashes: ValueSet::default(),
            device_ids: ValueSet::default(),
        });
        app_index.insert_unique(hasher.hash_one(app_id), position, |&at| {
            rehash(hasher, apps, at)
        });
        true
    }

    /// Replaces an app's flags and code; returns whether anything changed. An app that is no
    /// longer `Known` loses its lists: nothing it emitted can be trusted any more.
    pub fn set_app_policy(&mut self, app_id: &Address, policy: AppPolicy) -> bool {
        let Some(record) = self.record_mut(app_id) else {
            return false;
        };
        if record.policy == policy {
            return false;
        }
        let old = std::mem::replace(&mut record.policy, policy);
        if old.code == AppCode::Known && policy.code != AppCode::Known {
            record.compose_hashes = ValueSet::Empty;
            record.device_ids = ValueSet::Empty;
        }
        let unknown = |policy: AppPolicy| usize::from(policy.code == AppCode::Unknown);
        self.unknown_apps = self.unknown_apps - unknown(old) + unknown(policy);
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
        let Some(record) = self.record_mut(app_id) else {
            return false;
        };
        if record.policy.code != AppCode::Known {
            return false;
        }
        let set = match list {
            AppList::ComposeHashes => &mut record.compose_hashes,
            AppList::DeviceIds => &mut record.device_ids,
        };
        if enabled {
            set.insert(value)
        } else {
            set.remove(&value)
        }
    }

    /// Gives unused capacity back (after a bulk build).
    pub fn shrink_to_fit(&mut self) {
        self.os_images.shrink_to_fit();
        self.kms_aggregated_mrs.shrink_to_fit();
        self.kms_device_ids.shrink_to_fit();
        let Self {
            app_index,
            hasher,
            apps,
            ..
        } = self;
        apps.shrink_to_fit();
        for record in apps.iter_mut() {
            record.compose_hashes.shrink_to_fit();
            record.device_ids.shrink_to_fit();
        }
        app_index.shrink_to_fit(|&at| rehash(hasher, apps, at));
    }

    /// The position of the app's record in `apps`.
    fn position(&self, app_id: &Address) -> Option<usize> {
        let apps = &self.apps;
        let position = self.app_index.find(self.hasher.hash_one(app_id), |&at| {
            record_at(apps, at).is_some_and(|record| record.app_id == *app_id)
        })?;
        usize::try_from(*position).ok()
    }

    fn record_mut(&mut self, app_id: &Address) -> Option<&mut AppRecord> {
        let position = self.position(app_id)?;
        self.apps.get_mut(position)
    }

    fn kms_set(&self, list: KmsList) -> &ValueSet {
        match list {
            KmsList::OsImages => &self.os_images,
            KmsList::KmsAggregatedMrs => &self.kms_aggregated_mrs,
            KmsList::KmsDeviceIds => &self.kms_device_ids,
        }
    }
}

/// The hash of the app at `position` (for the index's resizes; every position has a record).
fn rehash(hasher: &RandomState, apps: &[AppRecord], position: u32) -> u64 {
    record_at(apps, position).map_or(0, |record| hasher.hash_one(record.app_id))
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

    const KNOWN: AppPolicy = AppPolicy {
        allow_any_device: false,
        require_tcb_up_to_date: false,
        code: AppCode::Known,
        implementation: None,
    };

    fn value(i: u32) -> Bytes32 {
        let mut out = [0x5a; 32];
        out[..4].copy_from_slice(&i.to_be_bytes());
        out
    }

    fn app_id(i: u32) -> Address {
        let mut out = [0xa5; 20];
        out[16..].copy_from_slice(&i.to_be_bytes());
        out
    }

    /// Every (app, list, value) of a view, sorted.
    fn entries(view: &RegistryView) -> Vec<(Address, bool, Bytes32)> {
        let mut out = Vec::new();
        view.for_each_app_value(|app, list, value| {
            out.push((*app, list == AppList::ComposeHashes, *value));
        });
        out.sort_unstable();
        out
    }

    #[test]
    fn compose_hashes_and_devices_insert_and_remove_per_app() {
        let mut view = RegistryView::new();
        let (a, b) = (app_id(1), app_id(2));
        assert!(view.register_app(a));
        assert!(view.register_app(b));
        for list in [AppList::ComposeHashes, AppList::DeviceIds] {
            assert!(
                !view.set_app_value(&a, list, value(1), false),
                "absent: no change"
            );
            assert!(view.set_app_value(&a, list, value(1), true));
            assert!(
                !view.set_app_value(&a, list, value(1), true),
                "duplicate: no change"
            );
            assert!(view.set_app_value(&a, list, value(2), true));
        }
        let app = view.app(&a).unwrap();
        assert!(app.allows_compose_hash(&value(1)) && app.allows_compose_hash(&value(2)));
        assert!(app.allows_device(&value(1)) && app.allows_device(&value(2)));
        assert!(!app.allows_compose_hash(&value(3)));
        // Lists are per app and per list.
        let other = view.app(&b).unwrap();
        assert!(!other.allows_compose_hash(&value(1)) && !other.allows_device(&value(1)));
        assert!(view.set_app_value(&a, AppList::DeviceIds, value(1), false));
        assert!(!view.set_app_value(&a, AppList::DeviceIds, value(1), false));
        let app = view.app(&a).unwrap();
        assert!(!app.allows_device(&value(1)) && app.allows_device(&value(2)));
        assert!(app.allows_compose_hash(&value(1)));
        assert_eq!(view.app_count(), 2);
        let mut ids: Vec<Address> = view.app_ids().copied().collect();
        ids.sort_unstable();
        assert_eq!(ids, [a, b]);
    }

    #[test]
    fn the_order_of_changes_does_not_change_the_view() {
        let changes: Vec<(u32, AppList, u32, bool)> = (0..200)
            .map(|i| {
                let list = if i % 3 == 0 {
                    AppList::DeviceIds
                } else {
                    AppList::ComposeHashes
                };
                (i % 7, list, i % 23, i % 5 != 4)
            })
            .collect();
        // Apply the adds, then the removals: the outcome is fixed whatever the order within each.
        let build = |order: &mut dyn Iterator<Item = &(u32, AppList, u32, bool)>| {
            let mut view = RegistryView::new();
            let all: Vec<_> = order.collect();
            for &&(app, _, _, _) in &all {
                view.register_app(app_id(app));
            }
            for enabled in [true, false] {
                for &&(app, list, v, add) in &all {
                    if add == enabled {
                        view.set_app_value(&app_id(app), list, value(v), enabled);
                    }
                }
            }
            view
        };
        let forward = build(&mut changes.iter());
        let backward = build(&mut changes.iter().rev());
        assert_eq!(entries(&forward), entries(&backward));
        assert!(!entries(&forward).is_empty());
        for i in 0..7 {
            for v in 0..23 {
                let (f, b) = (
                    forward.app(&app_id(i)).unwrap(),
                    backward.app(&app_id(i)).unwrap(),
                );
                assert_eq!(
                    f.allows_compose_hash(&value(v)),
                    b.allows_compose_hash(&value(v))
                );
                assert_eq!(f.allows_device(&value(v)), b.allows_device(&value(v)));
            }
        }
    }

    #[test]
    fn an_app_with_many_entries_and_many_apps() {
        let mut view = RegistryView::new();
        for i in 0..5000 {
            assert!(view.register_app(app_id(i)));
            view.set_app_value(&app_id(i), AppList::ComposeHashes, value(i), true);
        }
        let big = app_id(17);
        for v in 0..3000 {
            view.set_app_value(&big, AppList::DeviceIds, value(v), true);
        }
        view.shrink_to_fit();
        let app = view.app(&big).unwrap();
        assert_eq!(app.values(AppList::DeviceIds).count(), 3000);
        assert!((0..3000).all(|v| app.allows_device(&value(v))));
        assert!(!app.allows_device(&value(3000)));
        for i in 0..5000 {
            let app = view.app(&app_id(i)).expect("registered");
            assert_eq!(app.app_id(), &app_id(i));
            assert!(app.allows_compose_hash(&value(i)));
            assert!(!app.allows_compose_hash(&value(i + 1)));
        }
        assert!(view.app(&app_id(5000)).is_none());
        for v in 0..2990 {
            assert!(view.set_app_value(&big, AppList::DeviceIds, value(v), false));
        }
        let app = view.app(&big).unwrap();
        let mut left: Vec<Bytes32> = app.values(AppList::DeviceIds).copied().collect();
        left.sort_unstable();
        assert_eq!(left, (2990..3000).map(value).collect::<Vec<_>>());
    }

    #[test]
    fn unknown_apps_are_counted_and_lose_their_lists() {
        let mut view = RegistryView::new();
        let unknown = AppPolicy {
            code: AppCode::Unknown,
            ..KNOWN
        };
        view.register_app(app_id(1));
        view.register_app(app_id(2));
        view.set_app_value(&app_id(1), AppList::DeviceIds, value(1), true);
        assert!(!view.has_unknown_apps());
        assert!(view.set_app_policy(&app_id(1), unknown));
        assert!(view.set_app_policy(&app_id(2), unknown));
        assert!(view.has_unknown_apps());
        assert!(entries(&view).is_empty());
        assert!(view.set_app_policy(&app_id(1), KNOWN));
        assert!(view.has_unknown_apps());
        let absent = AppPolicy {
            code: AppCode::Absent,
            ..KNOWN
        };
        assert!(view.set_app_policy(&app_id(2), absent));
        assert!(!view.has_unknown_apps());
        // A known app's lists start empty again, and fill as before.
        assert!(view.set_app_value(&app_id(1), AppList::DeviceIds, value(1), true));
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
