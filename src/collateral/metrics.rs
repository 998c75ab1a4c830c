//! Counters of the collateral fetchers, read as a snapshot at the caller's `now`: fetches by
//! item and result, cache lookups by item, and per cached entry its age and the seconds left
//! until its nextUpdate.

use super::item::ItemKind;
use crate::cache::{CacheCounter, CacheCounts};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The `result` label of a fetch that delivered an item that verified (or, for the CA fetcher,
/// that parsed).
pub const RESULT_OK: &str = "ok";
/// The `result` label of a fetch whose item did not verify.
pub const RESULT_INVALID: &str = "invalid";

/// Fetches of one item kind that ended one way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchCount {
    /// What was fetched.
    pub item: ItemKind,
    /// [`RESULT_OK`], [`RESULT_INVALID`] or a [`super::FetchError::kind`].
    pub result: &'static str,
    /// How many such fetches.
    pub count: u64,
}

/// Cache lookups of one item kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupCount {
    /// What was looked up.
    pub item: ItemKind,
    /// Hits (answered from the cache) and misses.
    pub counts: CacheCounts,
}

/// One cached entry at the snapshot's `now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryStatus {
    /// What the entry holds.
    pub item: ItemKind,
    /// What distinguishes entries of one kind: the FMSPC, the CA, the URL, or empty.
    pub key: String,
    /// Seconds since it was fetched.
    pub age_seconds: u64,
    /// Zero once the entry has ended (it is then never served).
    pub seconds_until_next_update: u64,
    /// False for an entry loaded from disk that no verification has accepted yet.
    pub verified: bool,
}

/// A snapshot of the counters, ordered by item (then result, then key).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CollateralMetrics {
    /// Fetches by item and result.
    pub fetches: Vec<FetchCount>,
    /// Cache lookups by item.
    pub lookups: Vec<LookupCount>,
    /// Every cached entry.
    pub entries: Vec<EntryStatus>,
}

impl CollateralMetrics {
    /// Fetches of `item` that ended with `result`.
    pub fn fetches_of(&self, item: ItemKind, result: &str) -> u64 {
        self.fetches
            .iter()
            .filter(|f| f.item == item && f.result == result)
            .map(|f| f.count)
            .sum()
    }

    /// Lookups of `item`.
    pub fn lookups_of(&self, item: ItemKind) -> CacheCounts {
        self.lookups
            .iter()
            .find(|l| l.item == item)
            .map(|l| l.counts)
            .unwrap_or_default()
    }
}

/// The live counters of one fetcher.
pub(crate) struct Counters {
    fetches: Mutex<BTreeMap<(ItemKind, &'static str), u64>>,
    lookups: BTreeMap<ItemKind, CacheCounter>,
}

impl Counters {
    pub(crate) fn new(items: &[ItemKind]) -> Counters {
        Counters {
            fetches: Mutex::default(),
            lookups: items
                .iter()
                .map(|&item| (item, CacheCounter::default()))
                .collect(),
        }
    }

    pub(crate) fn fetched(&self, item: ItemKind, result: &'static str) {
        let mut fetches = self.fetches.lock().expect("fetch counters lock");
        *fetches.entry((item, result)).or_default() += 1;
    }

    pub(crate) fn looked_up(&self, item: ItemKind, hit: bool) {
        if let Some(counter) = self.lookups.get(&item) {
            if hit {
                counter.hit();
            } else {
                counter.miss();
            }
        }
    }

    pub(crate) fn snapshot(&self, mut entries: Vec<EntryStatus>) -> CollateralMetrics {
        let fetches = self.fetches.lock().expect("fetch counters lock");
        entries.sort_by(|a, b| (a.item, &a.key).cmp(&(b.item, &b.key)));
        CollateralMetrics {
            fetches: fetches
                .iter()
                .map(|(&(item, result), &count)| FetchCount {
                    item,
                    result,
                    count,
                })
                .collect(),
            lookups: self
                .lookups
                .iter()
                .map(|(&item, counter)| LookupCount {
                    item,
                    counts: counter.snapshot(),
                })
                .collect(),
            entries,
        }
    }
}

/// The status of an entry fetched at `fetched_at` and served until `until`, at `now`.
pub(crate) fn entry_status(
    item: ItemKind,
    key: String,
    fetched_at: u64,
    until: u64,
    verified: bool,
    now: u64,
) -> EntryStatus {
    EntryStatus {
        item,
        key,
        age_seconds: now.saturating_sub(fetched_at),
        seconds_until_next_update: until.saturating_sub(now),
        verified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_item_and_result() {
        let counters = Counters::new(&ItemKind::INTEL);
        counters.fetched(ItemKind::TcbInfo, RESULT_OK);
        counters.fetched(ItemKind::TcbInfo, RESULT_OK);
        counters.fetched(ItemKind::TcbInfo, "timeout");
        counters.looked_up(ItemKind::QeIdentity, true);
        counters.looked_up(ItemKind::QeIdentity, false);
        let entry = entry_status(ItemKind::PckCrl, "platform".into(), 100, 400, true, 150);
        assert_eq!(
            (entry.age_seconds, entry.seconds_until_next_update),
            (50, 250)
        );
        let late = entry_status(ItemKind::PckCrl, "platform".into(), 100, 400, true, 500);
        assert_eq!(late.seconds_until_next_update, 0);
        let snapshot = counters.snapshot(vec![entry]);
        assert_eq!(snapshot.fetches_of(ItemKind::TcbInfo, RESULT_OK), 2);
        assert_eq!(snapshot.fetches_of(ItemKind::TcbInfo, "timeout"), 1);
        assert_eq!(snapshot.fetches_of(ItemKind::PckCrl, RESULT_OK), 0);
        assert_eq!(
            snapshot.lookups_of(ItemKind::QeIdentity),
            CacheCounts { hits: 1, misses: 1 }
        );
        assert_eq!(snapshot.lookups.len(), 4);
        assert_eq!(snapshot.entries.len(), 1);
    }
}
