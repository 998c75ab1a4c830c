//! Hit and miss counters for the verification caches, for the service's metrics.
//!
//! A lookup answered from a cache is a hit; one that had to compute and verify is a miss (an
//! entry found but no longer usable at `now` is re-verified, so it is a miss too). Inserts are not
//! counted. Each counter sits beside its cache, behind the same sharing as the cache, so clones of
//! a verifier count into the same numbers.

use std::sync::atomic::{AtomicU64, Ordering};

/// Lookups of one cache. Relaxed atomics: one `fetch_add` per lookup, no ordering with the cache.
#[derive(Debug, Default)]
pub struct CacheCounter {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CacheCounter {
    pub fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far. Under concurrent lookups the two values are read one after the other,
    /// which monotonic metrics tolerate.
    pub fn snapshot(&self) -> CacheCounts {
        CacheCounts {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

/// Lookups of one cache since its verifier was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCounts {
    pub hits: u64,
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
}
