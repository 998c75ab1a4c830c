//! Bounded caches keyed by the exact bytes of their inputs: the parsed collateral JSON and whole
//! verification results ([`super::EvidenceVerifier::with_result_cache`]).
//!
//! A key is a list of byte fields, each absent or present (so an absent field and an empty one
//! differ), compared byte for byte. A hit therefore means every byte of every field is the same:
//! no digest's collision resistance is relied on, and a hit costs one comparison pass over the
//! input, where a SHA-256 of the same ~40 KB (a quote report and its collateral) would cost
//! several times the whole cached answer. Entries sit in a vector sorted by key and are found by
//! binary search; the comparisons on the way stop at the first differing byte.
//!
//! Bounded by an entry count and a byte budget (the key bytes plus the value's declared weight);
//! the oldest insert goes first when either would be exceeded, and an entry heavier than the whole
//! budget is not kept. Lookups are counted hit or miss like every other verification cache.

use crate::cache::{CacheCounter, CacheCounts};
use std::cmp::Ordering;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Bytes counted for an entry besides its key and value: the vector slot and the field headers.
const ENTRY_OVERHEAD: usize = 128;

/// Values by exact byte keys. Cloning shares the entries and the counters.
pub(super) struct ExactCache<V> {
    entries: Arc<RwLock<Entries<V>>>,
    max_entries: usize,
    max_bytes: usize,
    lookups: Arc<CacheCounter>,
}

impl<V> Clone for ExactCache<V> {
    fn clone(&self) -> Self {
        ExactCache {
            entries: Arc::clone(&self.entries),
            max_entries: self.max_entries,
            max_bytes: self.max_bytes,
            lookups: Arc::clone(&self.lookups),
        }
    }
}

/// Entries sorted by key, the bytes they weigh, and the insert counter that orders eviction.
struct Entries<V> {
    sorted: Vec<Entry<V>>,
    bytes: usize,
    inserts: u64,
}

struct Entry<V> {
    key: Box<[Option<Box<[u8]>>]>,
    value: V,
    weight: usize,
    inserted: u64,
}

/// The order of a stored key against a looked-up one: field by field, `None` first, bytes
/// lexicographically.
fn compare(stored: &[Option<Box<[u8]>>], key: &[Option<&[u8]>]) -> Ordering {
    stored.iter().map(Option::as_deref).cmp(key.iter().copied())
}

impl<V: Clone> ExactCache<V> {
    /// At most `max_entries` entries weighing at most `max_bytes` together.
    pub(super) fn new(max_entries: usize, max_bytes: usize) -> Self {
        ExactCache {
            entries: Arc::new(RwLock::new(Entries {
                sorted: Vec::new(),
                bytes: 0,
                inserts: 0,
            })),
            max_entries,
            max_bytes,
            lookups: Arc::default(),
        }
    }

    /// The value stored under exactly `key` if `usable` accepts it (a hit); otherwise `None` (a
    /// miss, also when an entry is found but refused).
    pub(super) fn get(&self, key: &[Option<&[u8]>], usable: impl Fn(&V) -> bool) -> Option<V> {
        let hit = {
            let entries = self.read();
            entries
                .sorted
                .binary_search_by(|entry| compare(&entry.key, key))
                .ok()
                .map(|index| &entries.sorted[index].value)
                .filter(|value| usable(value))
                .cloned()
        };
        match hit {
            Some(_) => self.lookups.hit(),
            None => self.lookups.miss(),
        }
        hit
    }

    /// Stores `value` under `key`, replacing an entry of the same key. `value_weight` is what the
    /// value is counted for in the byte budget, besides the key's own bytes.
    pub(super) fn insert(&self, key: &[Option<&[u8]>], value: V, value_weight: usize) {
        let key_bytes: usize = key.iter().map(|field| field.map_or(0, <[u8]>::len)).sum();
        let weight = key_bytes
            .saturating_add(value_weight)
            .saturating_add(ENTRY_OVERHEAD);
        if weight > self.max_bytes || self.max_entries == 0 {
            return;
        }
        let mut entries = self.write();
        if let Ok(index) = entries
            .sorted
            .binary_search_by(|entry| compare(&entry.key, key))
        {
            let old = entries.sorted.remove(index);
            entries.bytes -= old.weight;
        }
        while entries.sorted.len() >= self.max_entries || entries.bytes + weight > self.max_bytes {
            let Some(oldest) = entries
                .sorted
                .iter()
                .enumerate()
                .min_by_key(|(_, entry)| entry.inserted)
                .map(|(index, _)| index)
            else {
                break;
            };
            let evicted = entries.sorted.remove(oldest);
            entries.bytes -= evicted.weight;
        }
        let index = entries
            .sorted
            .binary_search_by(|entry| compare(&entry.key, key))
            .unwrap_or_else(|index| index);
        entries.inserts += 1;
        let inserted = entries.inserts;
        entries.bytes += weight;
        entries.sorted.insert(
            index,
            Entry {
                key: key.iter().map(|field| field.map(Box::from)).collect(),
                value,
                weight,
                inserted,
            },
        );
    }

    /// An empty cache with the same bounds and fresh counters.
    pub(super) fn emptied(&self) -> Self {
        ExactCache::new(self.max_entries, self.max_bytes)
    }

    /// Lookups since this cache (or the one it was cloned from) was created.
    pub(super) fn counts(&self) -> CacheCounts {
        self.lookups.snapshot()
    }

    /// Entries held and the bytes they weigh.
    #[cfg(test)]
    pub(super) fn size(&self) -> (usize, usize) {
        let entries = self.read();
        (entries.sorted.len(), entries.bytes)
    }

    // A panic while holding the lock cannot leave the entries inconsistent in a way that matters
    // (at worst a stale byte count), so a poisoned lock is used as is rather than panicking.
    fn read(&self) -> RwLockReadGuard<'_, Entries<V>> {
        self.entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Entries<V>> {
        self.entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(hits: u64, misses: u64) -> CacheCounts {
        CacheCounts { hits, misses }
    }

    #[test]
    fn only_the_exact_bytes_hit() {
        let cache = ExactCache::new(8, 1 << 20);
        cache.insert(&[Some(b"abc"), None], 1, 0);
        assert_eq!(cache.get(&[Some(b"abc"), None], |_| true), Some(1));
        for other in [
            [Some(&b"abd"[..]), None],
            [Some(b"ab"), None],
            [Some(b"abcd"), None],
            [Some(b"abc"), Some(b"")],
            [None, Some(b"abc")],
        ] {
            assert_eq!(cache.get(&other, |_| true), None, "{other:?}");
        }
        assert_eq!(cache.counts(), counts(1, 5));
        // Found but refused by the caller: a miss.
        assert_eq!(cache.get(&[Some(b"abc"), None], |_| false), None);
        assert_eq!(cache.counts(), counts(1, 6));
    }

    #[test]
    fn bounded_by_entries_and_bytes_oldest_first() {
        let cache = ExactCache::new(3, 3 * (ENTRY_OVERHEAD + 10));
        for key in [b"a", b"b", b"c", b"d"] {
            cache.insert(&[Some(key)], key[0], 9);
        }
        assert_eq!(cache.size(), (3, 3 * (ENTRY_OVERHEAD + 10)));
        assert_eq!(cache.get(&[Some(b"a")], |_| true), None, "the oldest went");
        assert_eq!(cache.get(&[Some(b"d")], |_| true), Some(b'd'));

        // Heavier than two entries' share: two older ones make room.
        cache.insert(&[Some(b"e")], b'e', ENTRY_OVERHEAD + 9 + 10);
        assert_eq!(cache.size().0, 2);
        assert_eq!(cache.get(&[Some(b"b")], |_| true), None);
        assert_eq!(cache.get(&[Some(b"c")], |_| true), None);
        assert_eq!(cache.get(&[Some(b"d")], |_| true), Some(b'd'));

        // Heavier than the whole budget: not kept, nothing evicted.
        cache.insert(&[Some(b"f")], b'f', 1 << 20);
        assert_eq!(cache.get(&[Some(b"f")], |_| true), None);
        assert_eq!(cache.size().0, 2);

        // A replaced entry is counted once.
        cache.insert(&[Some(b"d")], b'D', 9);
        assert_eq!(cache.get(&[Some(b"d")], |_| true), Some(b'D'));
        assert_eq!(cache.size().0, 2);
    }

    #[test]
    fn clones_share_entries_and_counts_and_zero_entries_keeps_nothing() {
        let cache = ExactCache::new(4, 1 << 10);
        let clone = cache.clone();
        clone.insert(&[Some(b"k")], 7u8, 0);
        assert_eq!(cache.get(&[Some(b"k")], |_| true), Some(7));
        assert_eq!(clone.counts(), counts(1, 0));

        let none = ExactCache::new(0, 1 << 10);
        none.insert(&[Some(b"k")], 7u8, 0);
        assert_eq!(none.get(&[Some(b"k")], |_| true), None);
    }
}
