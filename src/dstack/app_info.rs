//! App identity read from dstack's runtime events (in RTMR3 for TDX; carried unmeasured beside a
//! Nitro document): `system-preparing`, `app-id` (20 bytes), `compose-hash` (sha256 of the exact
//! app-compose.json bytes, which the guest never normalizes), `instance-id` (20 bytes or empty),
//! `boot-mr-done`, `os-image-hash`, `key-provider`, ..., `system-ready`. Like dstack's
//! `find_event`, scan in order, stop at `system-ready`, take the first event of each name. Events
//! the app emits after `system-ready` never count.

use super::DstackError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Marks the end of system setup; later events are the app's own.
pub const SYSTEM_READY: &str = "system-ready";
/// Marks the boot-time snapshot of RTMR3.
pub const BOOT_MR_DONE: &str = "boot-mr-done";

/// What the runtime events say about the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppInfo {
    /// `app-id`: required, 20 bytes (the KMS's `ensure_app_id_len`).
    pub app_id: [u8; 20],
    /// `compose-hash`: sha256 of the app-compose.json bytes (absent for Nitro enclaves).
    pub compose_hash: Option<[u8; 32]>,
    /// `instance-id`: 20 bytes; `None` when absent or empty (`no_instance_id`).
    pub instance_id: Option<[u8; 20]>,
    /// `key-provider` payload (UTF-8 JSON); empty when absent.
    pub key_provider_info: Vec<u8>,
    /// `os-image-hash`: the value the KMS returned (KMS mode only). Informational: the boot info
    /// takes its os_image_hash from vm_config, as the KMS does.
    pub os_image_hash: Option<[u8; 32]>,
    /// `rootfs-hash` of 0.4-era images.
    pub rootfs_hash: Option<[u8; 32]>,
}

/// The parsed `key-provider` payload, e.g. `{"name":"kms","id":"<hex SPKI>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyProvider {
    /// `kms`, `local-sgx`, `tpm` or `none`.
    pub name: String,
    /// For `kms`: hex of the KMS root CA's SubjectPublicKeyInfo DER.
    pub id: String,
}

impl AppInfo {
    /// Decodes app info from runtime events `(name, payload)` in log order.
    pub fn from_events<'a>(
        events: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<AppInfo, DstackError> {
        let setup: Vec<(&str, &[u8])> = events
            .into_iter()
            .take_while(|(name, _)| *name != SYSTEM_READY)
            .collect();
        let find = |wanted: &str| {
            setup
                .iter()
                .find(|(name, _)| *name == wanted)
                .map(|(_, payload)| *payload)
        };
        let app_id = find("app-id").ok_or(DstackError::MissingEvent("app-id"))?;
        Ok(AppInfo {
            app_id: fixed("app-id payload", app_id)?,
            compose_hash: find("compose-hash")
                .map(|payload| fixed("compose-hash payload", payload))
                .transpose()?,
            instance_id: find("instance-id")
                .filter(|payload| !payload.is_empty())
                .map(|payload| fixed("instance-id payload", payload))
                .transpose()?,
            key_provider_info: find("key-provider").unwrap_or_default().to_vec(),
            os_image_hash: find("os-image-hash")
                .map(|payload| fixed("os-image-hash payload", payload))
                .transpose()?,
            rootfs_hash: find("rootfs-hash")
                .map(|payload| fixed("rootfs-hash payload", payload))
                .transpose()?,
        })
    }

    /// The compose hash, which TDX boot info requires.
    pub fn require_compose_hash(&self) -> Result<[u8; 32], DstackError> {
        self.compose_hash
            .ok_or(DstackError::MissingEvent("compose-hash"))
    }

    /// `mr_key_provider`: sha256 of the key-provider payload, or 32 zero bytes without one.
    pub fn mr_key_provider(&self) -> [u8; 32] {
        if self.key_provider_info.is_empty() {
            [0; 32]
        } else {
            Sha256::digest(&self.key_provider_info).into()
        }
    }

    /// The key-provider payload parsed, if there is one.
    pub fn key_provider(&self) -> Result<Option<KeyProvider>, DstackError> {
        if self.key_provider_info.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&self.key_provider_info)
            .map(Some)
            .map_err(|e| DstackError::Json {
                what: "key-provider payload",
                reason: e.to_string(),
            })
    }

    /// The compose hash must be sha256 of the exact app-compose bytes given (never re-serialized).
    pub fn check_app_compose(&self, app_compose: &[u8]) -> Result<(), DstackError> {
        let measured = self.require_compose_hash()?;
        let computed: [u8; 32] = Sha256::digest(app_compose).into();
        if computed != measured {
            return Err(DstackError::ComposeHashMismatch {
                measured: crate::encoding::hex(measured),
                computed: crate::encoding::hex(computed),
            });
        }
        Ok(())
    }
}

fn fixed<const N: usize>(field: &'static str, payload: &[u8]) -> Result<[u8; N], DstackError> {
    <[u8; N]>::try_from(payload).map_err(|_| DstackError::Length {
        field,
        len: payload.len(),
        expected: N,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(events: &[(&str, &[u8])]) -> Result<AppInfo, DstackError> {
        AppInfo::from_events(events.iter().copied())
    }

    #[test]
    fn reads_the_first_of_each_event_before_system_ready() {
        let info = decode(&[
            ("system-preparing", b""),
            ("app-id", &[1; 20]),
            ("compose-hash", &[2; 32]),
            ("instance-id", &[3; 20]),
            ("boot-mr-done", b""),
            ("os-image-hash", &[4; 32]),
            ("key-provider", br#"{"name":"kms","id":"abcd"}"#),
            ("compose-hash", &[5; 32]),
            ("system-ready", b""),
            ("app-id", &[6; 20]),
            ("instance-id", &[6; 20]),
            ("rootfs-hash", &[6; 32]),
        ])
        .unwrap();
        assert_eq!(info.app_id, [1; 20]);
        assert_eq!(info.compose_hash, Some([2; 32]));
        assert_eq!(info.instance_id, Some([3; 20]));
        assert_eq!(info.os_image_hash, Some([4; 32]));
        assert_eq!(info.rootfs_hash, None);
        assert_eq!(
            info.key_provider().unwrap(),
            Some(KeyProvider {
                name: "kms".into(),
                id: "abcd".into()
            })
        );
        assert_eq!(
            info.mr_key_provider(),
            <[u8; 32]>::from(Sha256::digest(br#"{"name":"kms","id":"abcd"}"#))
        );
    }

    #[test]
    fn events_after_system_ready_never_count() {
        let err = decode(&[("system-ready", b""), ("app-id", &[1; 20])]).unwrap_err();
        assert_eq!(err, DstackError::MissingEvent("app-id"));
        assert_eq!(err.kind().as_str(), "malformed");

        let info = decode(&[
            ("app-id", &[1; 20]),
            ("system-ready", b""),
            ("key-provider", b"{}"),
        ])
        .unwrap();
        assert!(info.key_provider_info.is_empty());
        assert_eq!(info.mr_key_provider(), [0; 32]);
        assert_eq!(info.key_provider().unwrap(), None);
    }

    #[test]
    fn without_system_ready_every_event_counts() {
        // The KMS is asked for keys mid-boot, before system-ready.
        let info = decode(&[("app-id", &[1; 20]), ("compose-hash", &[2; 32])]).unwrap();
        assert_eq!(info.compose_hash, Some([2; 32]));
        assert_eq!(info.instance_id, None);
    }

    #[test]
    fn empty_instance_id_means_none() {
        let info = decode(&[("app-id", &[1; 20]), ("instance-id", b"")]).unwrap();
        assert_eq!(info.instance_id, None);
    }

    #[test]
    fn payload_lengths_are_enforced() {
        type Events<'a> = &'a [(&'a str, &'a [u8])];
        let cases: [(Events<'_>, &str); 5] = [
            (&[("app-id", &[1; 32])], "app-id payload"),
            (
                &[("app-id", &[1; 20]), ("compose-hash", &[2; 20])],
                "compose-hash payload",
            ),
            (
                &[("app-id", &[1; 20]), ("instance-id", &[3; 19])],
                "instance-id payload",
            ),
            (
                &[("app-id", &[1; 20]), ("os-image-hash", &[4; 48])],
                "os-image-hash payload",
            ),
            (
                &[("app-id", &[1; 20]), ("rootfs-hash", &[4; 1])],
                "rootfs-hash payload",
            ),
        ];
        for (events, field) in cases {
            let err = decode(events).unwrap_err();
            assert!(
                matches!(err, DstackError::Length { field: f, .. } if f == field),
                "{err}"
            );
            assert_eq!(err.kind().as_str(), "malformed");
        }
    }

    #[test]
    fn key_provider_payload_must_be_json() {
        let info = decode(&[("app-id", &[1; 20]), ("key-provider", b"not json")]).unwrap();
        assert_eq!(
            info.key_provider().unwrap_err().kind().as_str(),
            "malformed"
        );
    }

    #[test]
    fn app_compose_binds_by_exact_bytes() {
        let compose = br#"{"name":"x","runner":"docker-compose"}"#;
        let hash: [u8; 32] = Sha256::digest(compose).into();
        let info = decode(&[("app-id", &[1; 20]), ("compose-hash", &hash)]).unwrap();
        info.check_app_compose(compose).unwrap();

        let reformatted = br#"{"name": "x", "runner": "docker-compose"}"#;
        let err = info.check_app_compose(reformatted).unwrap_err();
        assert!(matches!(err, DstackError::ComposeHashMismatch { .. }));
        assert_eq!(err.kind().as_str(), "binding_mismatch");

        let no_hash = decode(&[("app-id", &[1; 20])]).unwrap();
        assert_eq!(
            no_hash.check_app_compose(compose).unwrap_err(),
            DstackError::MissingEvent("compose-hash")
        );
    }
}
