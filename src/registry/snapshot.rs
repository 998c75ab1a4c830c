//! A whole registry view as plain data: what `Registry::snapshot` returns and, serialized as
//! TOML, the registry file format (see `fixtures/registry/default.toml`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::view::{AppCode, AppList, AppPolicy, KmsList, RegistryView};
use crate::encoding::{parse_hex, to_0x_hex};

/// Fixed-width bytes spelled as `0x`-hex; parsing requires exactly `N` bytes (a short value in a
/// hand-written allowlist is a typo, not a number to pad).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hex<const N: usize>(pub [u8; N]);

impl<const N: usize> Serialize for Hex<N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&to_0x_hex(&self.0))
    }
}

impl<'de, const N: usize> Deserialize<'de> for Hex<N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = parse_hex(&text).map_err(serde::de::Error::custom)?;
        let array = <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| {
            serde::de::Error::custom(format!("{text:?} is {} bytes, expected {N}", bytes.len()))
        })?;
        Ok(Hex(array))
    }
}

/// The registry as plain, sorted data. Every field is required except the informational
/// addresses: a file that leaves one out (a typo, or a file read half-written) is refused rather
/// than completed with a default (see the `file` module for why this closes the torn-write window).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// The block the view is as of (files: any number the author chooses).
    pub block: u64,
    /// The KMS's `gatewayAppId` (empty when unset).
    pub gateway_app_id: String,
    /// The KMS's `appImplementation`; omitted when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_implementation: Option<Hex<20>>,
    /// `allowedOsImages`: OS image hashes (32 bytes each).
    pub os_images: Vec<Hex<32>>,
    /// `kmsAllowedAggregatedMrs`: KMS aggregated MRs (32 bytes each).
    pub kms_aggregated_mrs: Vec<Hex<32>>,
    /// `kmsAllowedDeviceIds`: KMS device ids (32 bytes each).
    pub kms_device_ids: Vec<Hex<32>>,
    /// `registeredApps`, each with its own lists and flags.
    pub apps: Vec<AppSnapshot>,
}

/// One registered app in a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSnapshot {
    /// The app's address (20 bytes).
    pub app_id: Hex<20>,
    /// `allowedComposeHashes` (32 bytes each).
    pub compose_hashes: Vec<Hex<32>>,
    /// `allowedDeviceIds` (32 bytes each).
    pub device_ids: Vec<Hex<32>>,
    /// `allowAnyDevice`: skip the device check.
    pub allow_any_device: bool,
    /// `requireTcbUpToDate`: refuse any TCB status but `UpToDate`.
    pub require_tcb_up_to_date: bool,
    /// What code runs at the app id.
    pub code: AppCode,
    /// The EIP-1967 implementation behind the app's proxy; omitted when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implementation: Option<Hex<20>>,
}

impl AppSnapshot {
    /// Registers the app in `view` with its flags and lists. Rejects an app already there (listed
    /// twice: which flags would win?) and lists of an app whose code is not known.
    pub(crate) fn add_to(&self, view: &mut RegistryView) -> Result<(), String> {
        let app_id = self.app_id.0;
        if !view.register_app(app_id) {
            return Err(format!("app {} is listed twice", to_0x_hex(&app_id)));
        }
        view.set_app_policy(
            &app_id,
            AppPolicy {
                allow_any_device: self.allow_any_device,
                require_tcb_up_to_date: self.require_tcb_up_to_date,
                code: self.code,
                implementation: self.implementation.map(|h| h.0),
            },
        );
        for (list, values) in [
            (AppList::ComposeHashes, &self.compose_hashes),
            (AppList::DeviceIds, &self.device_ids),
        ] {
            if self.code != AppCode::Known && !values.is_empty() {
                return Err(format!(
                    "app {}: only apps with known code have allowlists",
                    to_0x_hex(&app_id)
                ));
            }
            for value in values {
                view.set_app_value(&app_id, list, value.0, true);
            }
        }
        Ok(())
    }
}

fn sorted<const N: usize>(values: impl Iterator<Item = [u8; N]>) -> Vec<Hex<N>> {
    let mut out: Vec<Hex<N>> = values.map(Hex).collect();
    out.sort_unstable();
    out
}

impl Snapshot {
    /// The view as data. One pass over the apps, so it stays linear in the view's size.
    pub fn of(view: &RegistryView, block: u64) -> Snapshot {
        let mut apps: Vec<AppSnapshot> = view
            .apps()
            .map(|app| {
                let policy = *app.policy();
                AppSnapshot {
                    app_id: Hex(*app.app_id()),
                    compose_hashes: sorted(app.values(AppList::ComposeHashes).copied()),
                    device_ids: sorted(app.values(AppList::DeviceIds).copied()),
                    allow_any_device: policy.allow_any_device,
                    require_tcb_up_to_date: policy.require_tcb_up_to_date,
                    code: policy.code,
                    implementation: policy.implementation.map(Hex),
                }
            })
            .collect();
        apps.sort_unstable_by_key(|app| app.app_id);
        Snapshot {
            block,
            gateway_app_id: view.gateway_app_id().to_owned(),
            app_implementation: view.app_implementation().map(Hex),
            os_images: sorted(view.values(KmsList::OsImages).copied()),
            kms_aggregated_mrs: sorted(view.values(KmsList::KmsAggregatedMrs).copied()),
            kms_device_ids: sorted(view.values(KmsList::KmsDeviceIds).copied()),
            apps,
        }
    }

    /// Builds the view the snapshot describes. Rejects an app listed twice (which flags would
    /// win?); duplicate values within a list are harmless and merged.
    pub fn to_view(&self) -> Result<RegistryView, String> {
        let mut view = RegistryView::new();
        view.set_gateway_app_id(self.gateway_app_id.clone());
        view.set_app_implementation(self.app_implementation.map(|h| h.0));
        for (list, values) in [
            (KmsList::OsImages, &self.os_images),
            (KmsList::KmsAggregatedMrs, &self.kms_aggregated_mrs),
            (KmsList::KmsDeviceIds, &self.kms_device_ids),
        ] {
            for value in values {
                view.set(list, value.0, true);
            }
        }
        for app in &self.apps {
            app.add_to(&mut view)?;
        }
        view.shrink_to_fit();
        Ok(view)
    }
}
