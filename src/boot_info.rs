//! `AppBootInfo`: the tuple the dstack KMS sends to `DstackKms.isAppAllowed`, with fixed-width
//! fields. `dstack` builds it from verified evidence; `registry` decides on it. One JSON form
//! (the KMS webhook's camelCase hex strings, tolerant on input, `0x`-lowercase on output).

use crate::encoding::{parse_hex_padded, to_0x_hex, HexError};
use crate::error::ErrorKind;
use serde::{Deserialize, Serialize};

/// The `AppBootInfo` struct of `IAppAuth.sol`, field order = ABI tuple order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct BootInfo {
    /// `appId`: in KMS mode the DstackApp proxy address; otherwise defaults to
    /// `compose_hash[..20]`.
    pub app_id: [u8; 20],
    /// `composeHash`: sha256 of the exact app-compose.json bytes.
    pub compose_hash: [u8; 32],
    /// `instanceId`; zeros when the app has none.
    pub instance_id: [u8; 20],
    /// `deviceId`: sha256(PPID) for TDX.
    pub device_id: [u8; 32],
    /// `mrAggregated`: the register digest `isKmsAllowed` checks.
    pub mr_aggregated: [u8; 32],
    /// `mrSystem`: the platform and key-provider digest.
    pub mr_system: [u8; 32],
    /// `osImageHash`: the `allowedOsImages` entry.
    pub os_image_hash: [u8; 32],
    /// `tcbStatus` as Intel spells it (`"UpToDate"`, ...); empty for Nitro, so `requireTcbUpToDate`
    /// apps refuse it.
    pub tcb_status: String,
    /// `advisoryIds` behind the status.
    pub advisory_ids: Vec<String>,
}

/// The webhook's JSON body. Every hex field is optional and left-padded (an absent or empty value
/// is all zeros), exactly as dstack's `auth-eth` does before calling the contract.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootInfoJson {
    /// `appId`, up to 20 bytes of hex.
    #[serde(default)]
    pub app_id: String,
    /// `composeHash`, up to 32 bytes of hex.
    #[serde(default)]
    pub compose_hash: String,
    /// `instanceId`, up to 20 bytes of hex.
    #[serde(default)]
    pub instance_id: String,
    /// `deviceId`, up to 32 bytes of hex.
    #[serde(default)]
    pub device_id: String,
    /// `mrAggregated`, up to 32 bytes of hex.
    #[serde(default)]
    pub mr_aggregated: String,
    /// `mrSystem`, up to 32 bytes of hex.
    #[serde(default)]
    pub mr_system: String,
    /// `osImageHash`, up to 32 bytes of hex.
    #[serde(default)]
    pub os_image_hash: String,
    /// `tcbStatus`, at most [`MAX_TCB_STATUS_LEN`] bytes.
    #[serde(default, deserialize_with = "bounded::tcb_status")]
    pub tcb_status: String,
    /// `advisoryIds`, at most [`MAX_ADVISORY_IDS`] of at most [`MAX_ADVISORY_ID_LEN`] bytes each.
    #[serde(default, deserialize_with = "bounded::advisory_ids")]
    pub advisory_ids: Vec<String>,
}

/// Limits of auth-eth's request schema: the longest `tcbStatus`, in characters.
pub const MAX_TCB_STATUS_LEN: usize = 128;
/// Most `advisoryIds` entries accepted.
pub const MAX_ADVISORY_IDS: usize = 128;
/// Longest `advisoryIds` entry accepted, in characters.
pub const MAX_ADVISORY_ID_LEN: usize = 256;

/// A KMS webhook request body read as dstack's auth-eth validates it (its fastify schema): a JSON
/// object with `appId`, `composeHash`, `instanceId`, `deviceId`, `mrAggregated` and `osImageHash`
/// required; `mrSystem`, `tcbStatus` and `advisoryIds` optional; every hex field `0x` (lowercase
/// only) or nothing, then at most its width in hex digits, and nothing else (no whitespace);
/// lengths counted in characters. Stricter than auth-eth where it coerces: `null`, numbers and
/// duplicate keys are refused rather than read as strings.
pub fn from_webhook_body(body: &[u8]) -> Result<BootInfo, BootInfoError> {
    let schema = |message: String| BootInfoError::Schema(message);
    // A derived struct would also read a positional array; the schema takes objects only.
    let first = body
        .iter()
        .find(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(schema("the body is not a JSON object".to_owned()));
    }
    let request: WebhookRequest =
        serde_json::from_slice(body).map_err(|e| schema(e.to_string()))?;
    let json = BootInfoJson {
        app_id: request.app_id,
        compose_hash: request.compose_hash,
        instance_id: request.instance_id,
        device_id: request.device_id,
        mr_aggregated: request.mr_aggregated,
        mr_system: request.mr_system,
        os_image_hash: request.os_image_hash,
        tcb_status: request.tcb_status,
        advisory_ids: request.advisory_ids,
    };
    for (field, value, width) in [
        ("appId", &json.app_id, 20),
        ("composeHash", &json.compose_hash, 32),
        ("instanceId", &json.instance_id, 20),
        ("deviceId", &json.device_id, 32),
        ("mrAggregated", &json.mr_aggregated, 32),
        ("mrSystem", &json.mr_system, 32),
        ("osImageHash", &json.os_image_hash, 32),
    ] {
        let digits = value.strip_prefix("0x").unwrap_or(value);
        if digits.len() > 2 * width || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(schema(format!(
                "{field} must be 0x and at most {} hex digits",
                2 * width
            )));
        }
    }
    BootInfo::try_from(&json)
}

/// auth-eth's request schema, field by field (see [`from_webhook_body`]).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookRequest {
    app_id: String,
    compose_hash: String,
    instance_id: String,
    device_id: String,
    mr_aggregated: String,
    os_image_hash: String,
    #[serde(default)]
    mr_system: String,
    #[serde(default, deserialize_with = "bounded::tcb_status")]
    tcb_status: String,
    #[serde(default, deserialize_with = "bounded::advisory_ids")]
    advisory_ids: Vec<String>,
}

/// The schema's limits applied while the JSON is read: a list is refused at its first entry past
/// the limit, a string before it is copied, so a body of millions of entries costs no more than
/// one of 129.
mod bounded {
    use super::{MAX_ADVISORY_IDS, MAX_ADVISORY_ID_LEN, MAX_TCB_STATUS_LEN};
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use std::fmt;

    pub(super) fn tcb_status<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<String, D::Error> {
        deserializer.deserialize_str(BoundedString {
            field: "tcbStatus",
            max: MAX_TCB_STATUS_LEN,
        })
    }

    pub(super) fn advisory_ids<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<String>, D::Error> {
        deserializer.deserialize_seq(AdvisoryIds)
    }

    fn too_long<E: Error>(field: &str) -> E {
        E::custom(format_args!(
            "{field} is longer than the webhook schema allows"
        ))
    }

    struct BoundedString {
        field: &'static str,
        max: usize,
    }

    impl Visitor<'_> for BoundedString {
        type Value = String;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(formatter, "a string of at most {} characters", self.max)
        }

        fn visit_str<E: Error>(self, value: &str) -> Result<String, E> {
            // Characters, as the schema's maxLength counts them, not bytes.
            if value.chars().count() > self.max {
                return Err(too_long(self.field));
            }
            Ok(value.to_owned())
        }
    }

    /// One entry of `advisoryIds`.
    struct AdvisoryId(String);

    impl<'de> serde::Deserialize<'de> for AdvisoryId {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer
                .deserialize_str(BoundedString {
                    field: "advisoryIds",
                    max: MAX_ADVISORY_ID_LEN,
                })
                .map(AdvisoryId)
        }
    }

    struct AdvisoryIds;

    impl<'de> Visitor<'de> for AdvisoryIds {
        type Value = Vec<String>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                formatter,
                "a list of at most {MAX_ADVISORY_IDS} advisory IDs"
            )
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut entries: A) -> Result<Vec<String>, A::Error> {
            let mut ids = Vec::new();
            while let Some(AdvisoryId(id)) = entries.next_element()? {
                if ids.len() == MAX_ADVISORY_IDS {
                    return Err(too_long("advisoryIds"));
                }
                ids.push(id);
            }
            Ok(ids)
        }
    }
}

/// Why a boot-info JSON body was refused.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BootInfoError {
    /// A hex field is not hex or is longer than its width.
    #[error("{field}: {source}")]
    Hex {
        /// The JSON field name (camelCase).
        field: &'static str,
        /// The hex error.
        source: HexError,
    },
    /// `tcbStatus` or `advisoryIds` exceeds the schema's limits; names the field.
    #[error("{0} is longer than the webhook schema allows")]
    TooLong(&'static str),
    /// A webhook body that auth-eth's request schema refuses (see [`from_webhook_body`]).
    #[error("not an authorization request auth-eth accepts: {0}")]
    Schema(String),
}

impl BootInfoError {
    /// Always [`ErrorKind::InvalidArgument`]: the caller sent it.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidArgument
    }
}

impl TryFrom<&BootInfoJson> for BootInfo {
    type Error = BootInfoError;

    fn try_from(json: &BootInfoJson) -> Result<Self, Self::Error> {
        fn field<const N: usize>(
            name: &'static str,
            value: &str,
        ) -> Result<[u8; N], BootInfoError> {
            parse_hex_padded(value).map_err(|source| BootInfoError::Hex {
                field: name,
                source,
            })
        }
        if json.tcb_status.chars().count() > MAX_TCB_STATUS_LEN {
            return Err(BootInfoError::TooLong("tcbStatus"));
        }
        if json.advisory_ids.len() > MAX_ADVISORY_IDS
            || json
                .advisory_ids
                .iter()
                .any(|id| id.chars().count() > MAX_ADVISORY_ID_LEN)
        {
            return Err(BootInfoError::TooLong("advisoryIds"));
        }
        Ok(BootInfo {
            app_id: field("appId", &json.app_id)?,
            compose_hash: field("composeHash", &json.compose_hash)?,
            instance_id: field("instanceId", &json.instance_id)?,
            device_id: field("deviceId", &json.device_id)?,
            mr_aggregated: field("mrAggregated", &json.mr_aggregated)?,
            mr_system: field("mrSystem", &json.mr_system)?,
            os_image_hash: field("osImageHash", &json.os_image_hash)?,
            tcb_status: json.tcb_status.clone(),
            advisory_ids: json.advisory_ids.clone(),
        })
    }
}

impl From<&BootInfo> for BootInfoJson {
    fn from(info: &BootInfo) -> Self {
        BootInfoJson {
            app_id: to_0x_hex(&info.app_id),
            compose_hash: to_0x_hex(&info.compose_hash),
            instance_id: to_0x_hex(&info.instance_id),
            device_id: to_0x_hex(&info.device_id),
            mr_aggregated: to_0x_hex(&info.mr_aggregated),
            mr_system: to_0x_hex(&info.mr_system),
            os_image_hash: to_0x_hex(&info.os_image_hash),
            tcb_status: info.tcb_status.clone(),
            advisory_ids: info.advisory_ids.clone(),
        }
    }
}

impl Serialize for BootInfo {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        BootInfoJson::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for BootInfo {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = BootInfoJson::deserialize(deserializer)?;
        BootInfo::try_from(&json).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_strings_are_bounded_while_they_are_read() {
        let ids = |count: usize, entry: &str| {
            let entries = vec![format!("{entry:?}"); count].join(",");
            format!(r#"{{"appId":"0x01","advisoryIds":[{entries}]}}"#)
        };
        let at_limit: BootInfoJson =
            serde_json::from_str(&ids(MAX_ADVISORY_IDS, "INTEL-SA-00001")).expect("128 entries");
        assert_eq!(at_limit.advisory_ids.len(), MAX_ADVISORY_IDS);
        // The error comes at entry 129, not after a million entries are held.
        for json in [
            ids(MAX_ADVISORY_IDS + 1, "a"),
            ids(1_000_000, "a"),
            ids(1, &"a".repeat(MAX_ADVISORY_ID_LEN + 1)),
        ] {
            let error = serde_json::from_str::<BootInfoJson>(&json).unwrap_err();
            assert!(
                error.to_string().contains("advisoryIds is longer"),
                "{error}"
            );
            assert!(error.column() < 2000, "read past the limit: {error}");
        }
        let long_status = format!(
            r#"{{"tcbStatus":"{}"}}"#,
            "U".repeat(MAX_TCB_STATUS_LEN + 1)
        );
        let error = serde_json::from_str::<BootInfoJson>(&long_status).unwrap_err();
        assert!(error.to_string().contains("tcbStatus is longer"), "{error}");
        let wrong_type =
            serde_json::from_str::<BootInfoJson>(r#"{"advisoryIds":"x"}"#).unwrap_err();
        assert!(
            wrong_type.to_string().contains("advisory IDs"),
            "{wrong_type}"
        );
    }

    #[test]
    fn webhook_json_round_trips_with_padding() {
        let info: BootInfo = serde_json::from_str(
            r#"{"appId":"0xABCD","composeHash":"","deviceId":"01","tcbStatus":"UpToDate","advisoryIds":["INTEL-SA-00001"]}"#,
        )
        .unwrap();
        assert_eq!(info.app_id[18..], [0xab, 0xcd]);
        assert_eq!(info.compose_hash, [0; 32]);
        assert_eq!(info.device_id[31], 1);
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["appId"], "0x000000000000000000000000000000000000abcd");
        assert_eq!(json["advisoryIds"][0], "INTEL-SA-00001");
        let back: BootInfo = serde_json::from_value(json).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn rejects_oversize_and_non_hex_fields() {
        let too_wide = BootInfoJson {
            app_id: "11".repeat(21),
            ..Default::default()
        };
        assert!(matches!(
            BootInfo::try_from(&too_wide),
            Err(BootInfoError::Hex { field: "appId", .. })
        ));
        let long_status = BootInfoJson {
            tcb_status: "x".repeat(129),
            ..Default::default()
        };
        assert_eq!(
            BootInfo::try_from(&long_status),
            Err(BootInfoError::TooLong("tcbStatus"))
        );
        let bad = BootInfoJson {
            mr_system: "0xzz".into(),
            ..Default::default()
        };
        assert!(BootInfo::try_from(&bad).is_err());
    }
}
