//! The in-memory store of fetched items, each served only inside its validity window at the
//! caller's `now`.
//!
//! This is the fetchers' whole view of their cache: `get`, `insert`, `remove`, `claim_refresh`
//! and `entries`. It is not a `crate::cache::VerifiedCache`: the fetchers also remove an entry
//! only if it is still the one they saw, claim each due refresh once, and list every entry for
//! the metrics and the scheduled refresh, none of which the verifiers' cache offers; the window
//! it serves by is the same `crate::cache::Window`.

use super::validity::Validity;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Entry generations are unique within the process, so a memo keyed by them never confuses
/// two entries.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

/// One cached value and what the cache knows about it.
#[derive(Debug)]
pub(crate) struct Entry<V> {
    pub(crate) value: Arc<V>,
    pub(crate) validity: Validity,
    pub(crate) fetched_at: u64,
    /// Verified by this process. Entries loaded from disk are candidates until a verification
    /// at some `now` accepts them.
    pub(crate) verified: bool,
    /// The first second a refresh is due.
    pub(crate) refresh_at: u64,
    /// Unique per inserted entry.
    pub(crate) generation: u64,
}

impl<V> Clone for Entry<V> {
    fn clone(&self) -> Self {
        Entry {
            value: self.value.clone(),
            validity: self.validity,
            fetched_at: self.fetched_at,
            verified: self.verified,
            refresh_at: self.refresh_at,
            generation: self.generation,
        }
    }
}

impl<V> Entry<V> {
    pub(crate) fn new(
        value: Arc<V>,
        validity: Validity,
        fetched_at: u64,
        verified: bool,
        refresh_at: u64,
    ) -> Entry<V> {
        Entry {
            value,
            validity,
            fetched_at,
            verified,
            refresh_at,
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
        }
    }
}

pub(crate) struct Store<K, V> {
    entries: Mutex<HashMap<K, Entry<V>>>,
}

impl<K, V> Default for Store<K, V> {
    fn default() -> Self {
        Store {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V> Store<K, V> {
    /// The entry for `key` if `now` lies inside its window; never one past its end.
    pub(crate) fn get(&self, key: &K, now: u64) -> Option<Entry<V>> {
        self.lock()
            .get(key)
            .filter(|entry| entry.validity.contains(now))
            .cloned()
    }

    pub(crate) fn insert(&self, key: K, entry: Entry<V>) {
        self.lock().insert(key, entry);
    }

    /// Drops the entry for `key` if it is still the one of `generation`.
    pub(crate) fn remove(&self, key: &K, generation: u64) {
        let mut entries = self.lock();
        if entries.get(key).is_some_and(|e| e.generation == generation) {
            entries.remove(key);
        }
    }

    /// Claims the due refresh of `key` for the caller: true once per due time. The next one is
    /// due at `retry_at` unless a fresh entry replaces this one first.
    pub(crate) fn claim_refresh(&self, key: &K, now: u64, retry_at: u64) -> bool {
        match self.lock().get_mut(key) {
            Some(entry) if entry.refresh_at <= now => {
                entry.refresh_at = retry_at;
                true
            }
            _ => false,
        }
    }

    /// Every entry, in no particular order (metrics, scheduled refresh).
    pub(crate) fn entries(&self) -> Vec<(K, Entry<V>)> {
        self.lock()
            .iter()
            .map(|(key, entry)| (key.clone(), entry.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Entry<V>>> {
        self.entries.lock().expect("collateral store lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(from: u64, until: u64, refresh_at: u64) -> Entry<&'static str> {
        Entry::new(
            Arc::new("v"),
            Validity { from, until },
            from,
            true,
            refresh_at,
        )
    }

    #[test]
    fn served_only_inside_the_window() {
        let store = Store::default();
        store.insert(1, entry(10, 20, 18));
        assert!(store.get(&1, 9).is_none());
        assert!(store.get(&1, 10).is_some() && store.get(&1, 20).is_some());
        assert!(store.get(&1, 21).is_none(), "never past the end");
        assert!(store.get(&2, 15).is_none());
    }

    #[test]
    fn a_due_refresh_is_claimed_once() {
        let store = Store::default();
        store.insert(1, entry(10, 20, 18));
        assert!(!store.claim_refresh(&1, 17, 19));
        assert!(store.claim_refresh(&1, 18, 19));
        assert!(!store.claim_refresh(&1, 18, 19));
        assert!(store.claim_refresh(&1, 19, 25));
        assert!(!store.claim_refresh(&2, 19, 25));
    }

    #[test]
    fn removal_is_by_generation() {
        let store = Store::default();
        let first = entry(10, 20, 18);
        let stale = first.generation;
        store.insert(1, first);
        let second = entry(10, 20, 18);
        let current = second.generation;
        store.insert(1, second);
        store.remove(&1, stale);
        assert_eq!(store.get(&1, 15).map(|e| e.generation), Some(current));
        store.remove(&1, current);
        assert!(store.entries().is_empty());
    }
}
