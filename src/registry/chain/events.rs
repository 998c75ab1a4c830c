//! Decoding of the DstackKms / DstackApp logs the view is built from. Every event carries one
//! word; it is read from `topics[1]` when indexed and from the data otherwise, so either
//! declaration of the upstream contracts decodes.

use alloy::primitives::{Address, B256};
use alloy::rpc::types::Log;
use alloy::sol_types::SolEvent;

use crate::registry::abi::{IDstackApp, IDstackKms};
use crate::registry::view::{AppList, KmsList};

/// A DstackKms event that changes the view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KmsEvent {
    AppRegistered(Address),
    /// The KMS itself deployed this app's proxy: its code is the KMS's app proxy.
    AppDeployedViaFactory(Address),
    Set(KmsList, B256, bool),
    AppImplementationSet(Address),
    /// Anything else from the KMS (gateway id, KMS info, its own upgrades): scalars are re-read.
    Other,
}

/// A DstackApp event that changes the view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AppEvent {
    Set(AppList, B256, bool),
    /// EIP-1967 `Upgraded`: the implementation must be trusted, or the app is no longer known.
    Upgraded(Address),
    /// A flag changed (re-read at the view's block).
    FlagChanged,
}

/// topic0 of every app event the view follows (used as a chain-wide log filter).
pub(crate) const APP_TOPICS: [B256; 8] = [
    IDstackApp::ComposeHashAdded::SIGNATURE_HASH,
    IDstackApp::ComposeHashRemoved::SIGNATURE_HASH,
    IDstackApp::DeviceAdded::SIGNATURE_HASH,
    IDstackApp::DeviceRemoved::SIGNATURE_HASH,
    IDstackApp::AllowAnyDeviceSet::SIGNATURE_HASH,
    IDstackApp::RequireTcbUpToDateSet::SIGNATURE_HASH,
    IDstackApp::UpgradesDisabled::SIGNATURE_HASH,
    IDstackApp::Upgraded::SIGNATURE_HASH,
];

/// The single parameter word of a log.
fn word(log: &Log) -> Option<B256> {
    let topics = log.topics();
    match topics.get(1) {
        Some(topic) => Some(*topic),
        None => log.data().data.get(..32).map(B256::from_slice),
    }
}

fn address_word(log: &Log) -> Option<Address> {
    let word = word(log)?;
    let (padding, address) = word.0.split_at(12);
    padding
        .iter()
        .all(|b| *b == 0)
        .then(|| Address::from_slice(address))
}

/// Decodes a KMS log; `None` for a malformed log of a known event.
pub(crate) fn decode_kms(log: &Log) -> Option<KmsEvent> {
    let Some(topic0) = log.topic0() else {
        return Some(KmsEvent::Other);
    };
    let set = |list, enabled| word(log).map(|value| KmsEvent::Set(list, value, enabled));
    match *topic0 {
        IDstackKms::AppRegistered::SIGNATURE_HASH => address_word(log).map(KmsEvent::AppRegistered),
        IDstackKms::AppDeployedViaFactory::SIGNATURE_HASH => {
            address_word(log).map(KmsEvent::AppDeployedViaFactory)
        }
        IDstackKms::AppImplementationSet::SIGNATURE_HASH => {
            address_word(log).map(KmsEvent::AppImplementationSet)
        }
        IDstackKms::OsImageHashAdded::SIGNATURE_HASH => set(KmsList::OsImages, true),
        IDstackKms::OsImageHashRemoved::SIGNATURE_HASH => set(KmsList::OsImages, false),
        IDstackKms::KmsAggregatedMrAdded::SIGNATURE_HASH => set(KmsList::KmsAggregatedMrs, true),
        IDstackKms::KmsAggregatedMrRemoved::SIGNATURE_HASH => set(KmsList::KmsAggregatedMrs, false),
        IDstackKms::KmsDeviceAdded::SIGNATURE_HASH => set(KmsList::KmsDeviceIds, true),
        IDstackKms::KmsDeviceRemoved::SIGNATURE_HASH => set(KmsList::KmsDeviceIds, false),
        _ => Some(KmsEvent::Other),
    }
}

/// Decodes an app log; `None` for a log the view does not follow or a malformed one.
pub(crate) fn decode_app(log: &Log) -> Option<AppEvent> {
    let set = |list, enabled| word(log).map(|value| AppEvent::Set(list, value, enabled));
    match *log.topic0()? {
        IDstackApp::ComposeHashAdded::SIGNATURE_HASH => set(AppList::ComposeHashes, true),
        IDstackApp::ComposeHashRemoved::SIGNATURE_HASH => set(AppList::ComposeHashes, false),
        IDstackApp::DeviceAdded::SIGNATURE_HASH => set(AppList::DeviceIds, true),
        IDstackApp::DeviceRemoved::SIGNATURE_HASH => set(AppList::DeviceIds, false),
        // A malformed Upgraded must still distrust the app: the zero address is never trusted.
        IDstackApp::Upgraded::SIGNATURE_HASH => Some(AppEvent::Upgraded(
            address_word(log).unwrap_or(Address::ZERO),
        )),
        IDstackApp::AllowAnyDeviceSet::SIGNATURE_HASH
        | IDstackApp::RequireTcbUpToDateSet::SIGNATURE_HASH
        | IDstackApp::UpgradesDisabled::SIGNATURE_HASH => Some(AppEvent::FlagChanged),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{Bytes, LogData};

    fn log(topics: Vec<B256>, data: Vec<u8>) -> Log {
        Log {
            inner: alloy::primitives::Log {
                address: Address::ZERO,
                data: LogData::new_unchecked(topics, Bytes::from(data)),
            },
            ..Log::default()
        }
    }

    #[test]
    fn single_word_events_decode_indexed_or_not() {
        let value = B256::repeat_byte(7);
        let topic = IDstackApp::ComposeHashAdded::SIGNATURE_HASH;
        let expected = Some(AppEvent::Set(AppList::ComposeHashes, value, true));
        assert_eq!(decode_app(&log(vec![topic], value.to_vec())), expected);
        assert_eq!(decode_app(&log(vec![topic, value], vec![])), expected);
        // Missing word: not an event the view can apply.
        assert_eq!(decode_app(&log(vec![topic], vec![1, 2])), None);
        let removed = IDstackKms::OsImageHashRemoved::SIGNATURE_HASH;
        assert_eq!(
            decode_kms(&log(vec![removed], value.to_vec())),
            Some(KmsEvent::Set(KmsList::OsImages, value, false))
        );
    }

    #[test]
    fn addresses_must_be_left_padded() {
        let app = Address::repeat_byte(0xab);
        let registered = IDstackKms::AppRegistered::SIGNATURE_HASH;
        assert_eq!(
            decode_kms(&log(vec![registered], app.into_word().to_vec())),
            Some(KmsEvent::AppRegistered(app))
        );
        assert_eq!(decode_kms(&log(vec![registered], vec![0xff; 32])), None);
        // A malformed Upgraded distrusts the app rather than being dropped.
        let upgraded = IDstackApp::Upgraded::SIGNATURE_HASH;
        assert_eq!(
            decode_app(&log(vec![upgraded, B256::repeat_byte(0xff)], vec![])),
            Some(AppEvent::Upgraded(Address::ZERO))
        );
        assert_eq!(decode_kms(&log(vec![], vec![])), Some(KmsEvent::Other));
        assert_eq!(decode_app(&log(vec![B256::repeat_byte(1)], vec![])), None);
    }
}
