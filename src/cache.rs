//! One cache of verified values, each usable within its validity window, counted hit or miss.
//!
//! Every verification cache of the crate is a [`VerifiedCache`]: the X.509 walker's parsed
//! certificates and link signatures, and TDX's collateral sets, PCK CRLs and QEs. A value is
//! inserted only once it verified; a lookup at `now` answers only with a value whose
//! [`Window`] covers `now`, so a cached value is never trusted outside the window in which it was
//! verified. An entry found outside its window is left to be verified again, which reports the
//! precise failure (an expired CRL, a stale TCB Info).
//!
//! Each lookup is counted for the service's metrics: one answered from the cache is a hit; one that
//! has to verify is a miss (an entry found but not usable at `now` too). Inserts are not counted.
//! The counters sit beside the cache, behind the same sharing, so clones count into the same
//! numbers.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
/// An inclusive range of unix seconds in which a verified value may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub from: u64,
    pub until: u64,
}

impl Window {
    /// Every second: for values whose use does not depend on time.
    pub(crate) const ALWAYS: Window = Window {
        from: 0,
        until: u64::MAX,
    };

    pub(crate) fn contains(self, now: u64) -> bool {
        self.from <= now && now <= self.until
    }

    /// This window, shortened to lie within `from..=until` as well.
    pub(crate) fn narrow(self, from: u64, until: u64) -> Window {
        Window {
            from: self.from.max(from),
            until: self.until.min(until),
        }
    }

    pub(crate) fn intersect(self, other: Window) -> Window {
        self.narrow(other.from, other.until)
    }
}

/// A verified value that knows when it may be used.
pub(crate) trait Windowed {
    fn window(&self) -> Window;
}

/// A link signature that verified: no time of its own.
impl Windowed for () {
    fn window(&self) -> Window {
        Window::ALWAYS
    }
}

impl<T: Windowed> Windowed for Arc<T> {
    fn window(&self) -> Window {
        T::window(self)
    }
}

/// Verified values by key, bounded by a count or a total weight, with hit and miss counts. `V` is
/// cloned out of every hit: use an `Arc` for anything larger than a few words. Cloning the cache
/// shares its entries and counters.
///
/// The store is a plain map behind a read-write lock, evicting the oldest insert first when full:
/// the keys are digests of what was verified, the sets are small (a few roots, an FMSPC or two),
/// and a lookup is one hash under a shared lock. No cache crate is needed in the core.
pub(crate) struct VerifiedCache<K, V> {
    entries: Arc<RwLock<Entries<K, V>>>,
    weigher: Arc<Weigher<K, V>>,
    max_weight: u64,
    lookups: Arc<CacheCounter>,
}

type Weigher<K, V> = dyn Fn(&K, &V) -> u32 + Send + Sync;

/// The values with their weights, and their keys in insertion order for eviction. Every key of
/// `values` is in `order` exactly once.
struct Entries<K, V> {
    values: HashMap<K, (V, u32)>,
    order: VecDeque<K>,
    weight: u64,
}

impl<K, V> Clone for VerifiedCache<K, V> {
    fn clone(&self) -> Self {
        VerifiedCache {
            entries: Arc::clone(&self.entries),
            weigher: Arc::clone(&self.weigher),
            max_weight: self.max_weight,
            lookups: Arc::clone(&self.lookups),
        }
    }
}

impl<K, V> VerifiedCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Windowed + Clone + Send + Sync + 'static,
{
    /// At most `max_entries` values.
    pub(crate) fn new(max_entries: u64) -> Self {
        Self::weighted(max_entries, |_, _| 1)
    }

    /// Values whose `weigher` weights (e.g. bytes) sum to at most `max_weight`. A value heavier
    /// than the whole budget is not kept.
    pub(crate) fn weighted(
        max_weight: u64,
        weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static,
    ) -> Self {
        VerifiedCache {
            entries: Arc::new(RwLock::new(Entries {
                values: HashMap::new(),
                order: VecDeque::new(),
                weight: 0,
            })),
            weigher: Arc::new(weigher),
            max_weight,
            lookups: Arc::default(),
        }
    }

    /// The cached value for `key` if its window covers `now` (a hit); otherwise `None` (a miss),
    /// and the caller verifies and [`Self::insert`]s.
    pub(crate) fn get(&self, key: &K, now: u64) -> Option<V> {
        self.get_if(key, now, |_| true)
    }

    /// As [`Self::get`], and only if `matches` accepts the value (a refused value is a miss):
    /// for values that hold part of what they were verified from instead of hashing it into
    /// the key.
    pub(crate) fn get_if(&self, key: &K, now: u64, matches: impl Fn(&V) -> bool) -> Option<V> {
        let hit = self
            .read()
            .values
            .get(key)
            .filter(|(value, _)| value.window().contains(now) && matches(value))
            .map(|(value, _)| value.clone());
        match hit {
            Some(_) => self.lookups.hit(),
            None => self.lookups.miss(),
        }
        hit
    }

    /// Remembers `value`, which must have verified. Replaces an entry of the same key; evicts the
    /// oldest entries while the budget would be exceeded.
    pub(crate) fn insert(&self, key: K, value: V) {
        let weight = (self.weigher)(&key, &value);
        if u64::from(weight) > self.max_weight {
            return;
        }
        let mut entries = self.write();
        if let Some((_, old)) = entries.values.remove(&key) {
            entries.weight -= u64::from(old);
            entries.order.retain(|queued| queued != &key);
        }
        while entries.weight + u64::from(weight) > self.max_weight {
            let Some(oldest) = entries.order.pop_front() else {
                break;
            };
            if let Some((_, evicted)) = entries.values.remove(&oldest) {
                entries.weight -= u64::from(evicted);
            }
        }
        entries.weight += u64::from(weight);
        entries.order.push_back(key.clone());
        entries.values.insert(key, (value, weight));
    }

    /// The cached value valid at `now`, or else the result of `verify`, inserted only if it is
    /// `Ok`. A failure is returned as is and leaves the cache unchanged, so the next lookup of
    /// `key` verifies again.
    pub(crate) fn get_or_verify<E>(
        &self,
        key: K,
        now: u64,
        verify: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        if let Some(hit) = self.get(&key, now) {
            return Ok(hit);
        }
        let verified = verify()?;
        self.insert(key, verified.clone());
        Ok(verified)
    }

    /// Lookups since this cache (or the one it was cloned from) was created.
    pub(crate) fn counts(&self) -> CacheCounts {
        self.lookups.snapshot()
    }

    /// Entries held.
    #[cfg(test)]
    pub(crate) fn entry_count(&self) -> u64 {
        self.read().values.len() as u64
    }

    // A panic while holding the lock cannot leave `Entries` inconsistent in a way that matters
    // here (at worst a stale weight), so a poisoned lock is used as is rather than panicking.
    fn read(&self) -> RwLockReadGuard<'_, Entries<K, V>> {
        self.entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Entries<K, V>> {
        self.entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Lookups of one cache. Relaxed atomics: one `fetch_add` per lookup, no ordering with the cache.
#[derive(Debug, Default)]
pub(crate) struct CacheCounter {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CacheCounter {
    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far. Under concurrent lookups the two values are read one after the other,
    /// which monotonic metrics tolerate.
    pub(crate) fn snapshot(&self) -> CacheCounts {
        CacheCounts {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

/// Lookups of one cache since its verifier was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCounts {
    /// Lookups answered from the cache (entry present and valid at `now`).
    pub hits: u64,
    /// Lookups that had to verify (absent, evicted, or outside its window).
    pub misses: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_hits_and_misses_apart() {
        let counter = CacheCounter::default();
        assert_eq!(counter.snapshot(), CacheCounts::default());
        counter.hit();
        counter.miss();
        counter.hit();
        assert_eq!(counter.snapshot(), CacheCounts { hits: 2, misses: 1 });
    }

    #[test]
    fn windows_are_inclusive_and_narrow() {
        let window = Window::ALWAYS.narrow(10, 20).narrow(5, 15);
        assert_eq!(
            window,
            Window {
                from: 10,
                until: 15
            }
        );
        assert!(window.contains(10) && window.contains(15));
        assert!(!window.contains(9) && !window.contains(16));
        let empty = window.intersect(Window {
            from: 16,
            until: 30,
        });
        assert!(!(0..40).any(|now| empty.contains(now)));
    }

    /// A value verified for `window`.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Valid(Window);

    impl Windowed for Valid {
        fn window(&self) -> Window {
            self.0
        }
    }

    fn counts(hits: u64, misses: u64) -> CacheCounts {
        CacheCounts { hits, misses }
    }

    #[test]
    fn a_value_is_used_only_within_its_window() {
        let cache = VerifiedCache::new(16);
        let value = Valid(Window {
            from: 10,
            until: 20,
        });
        let verify = |result: Result<Valid, &'static str>| move || result;
        assert_eq!(
            cache.get_or_verify(1, 15, verify(Ok(value.clone()))),
            Ok(value.clone())
        );
        assert_eq!(cache.counts(), counts(0, 1));
        // Inside the window: answered from the cache, whatever `verify` would say.
        for now in [10, 20] {
            assert_eq!(
                cache.get_or_verify(1, now, verify(Err("unused"))),
                Ok(value.clone())
            );
        }
        assert_eq!(cache.counts(), counts(2, 1));
        // Outside it: verified again, a miss, and the failure is returned.
        assert_eq!(
            cache.get_or_verify(1, 21, verify(Err("expired"))),
            Err("expired")
        );
        assert_eq!(cache.get(&1, 9), None);
        assert_eq!(cache.counts(), counts(2, 3));
        // The failure did not replace the entry.
        assert_eq!(cache.get(&1, 15), Some(value));
        assert_eq!(cache.counts(), counts(3, 3));
    }

    #[test]
    fn failures_are_not_cached_and_clones_share_entries_and_counts() {
        let cache: VerifiedCache<u8, Valid> = VerifiedCache::new(16);
        let clone = cache.clone();
        for _ in 0..2 {
            assert_eq!(
                clone.get_or_verify(7, 0, || Err("bad")),
                Err::<Valid, _>("bad")
            );
        }
        assert_eq!(cache.entry_count(), 0);
        cache.insert(7, Valid(Window::ALWAYS));
        assert_eq!(clone.get(&7, u64::MAX), Some(Valid(Window::ALWAYS)));
        assert_eq!(cache.entry_count(), 1);
        assert_eq!(cache.counts(), counts(1, 2));
    }

    #[test]
    fn the_oldest_entries_go_first_when_the_budget_is_exceeded() {
        let cache: VerifiedCache<u8, Valid> =
            VerifiedCache::weighted(3, |key: &u8, _: &Valid| u32::from(*key));
        let always = || Valid(Window::ALWAYS);
        cache.insert(1, always());
        cache.insert(2, always());
        assert_eq!(cache.entry_count(), 2);
        cache.insert(1, always());
        cache.insert(3, always());
        // 1 + 2 + 3 > 3: both older entries made room for the newest.
        assert_eq!(cache.entry_count(), 1);
        assert_eq!(cache.get(&3, 0), Some(always()));
        cache.insert(4, always());
        assert_eq!(
            cache.get(&3, 0),
            Some(always()),
            "too heavy to be kept at all"
        );
        assert_eq!(cache.get(&4, 0), None);
    }
}
