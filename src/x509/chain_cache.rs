//! The walker's two caches of time-independent work, per verifier: parsed certificate facts by
//! DER SHA-256, and verified link signatures by (child, parent) DER SHA-256. Neither holds
//! anything time-dependent: the walker checks every window at every use, which names the precise
//! failure, so both entries are usable at any `now` ([`Window::ALWAYS`]).

use super::facts::{parse_facts, CertFacts};
use super::{SignatureAlgorithm, X509Error};
use crate::cache::{CacheCounts, VerifiedCache, Window, Windowed};
use std::sync::Arc;

/// Bytes of parsed certificates kept by one verifier: thousands of real certificates.
const CERT_CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// Verified links kept by one verifier.
const LINK_CACHE_ENTRIES: u64 = 64 * 1024;

pub(super) type DerHash = [u8; 32];

/// Lookups of a walker's two caches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainCacheCounts {
    /// One lookup per certificate of every walked chain (root included): parsed facts.
    pub certificates: CacheCounts,
    /// One lookup per (child, parent) pair whose names chain: verified link signatures.
    pub links: CacheCounts,
}

impl Windowed for CertFacts {
    fn window(&self) -> Window {
        Window::ALWAYS
    }
}

#[derive(Clone)]
pub(super) struct ChainCaches {
    certs: VerifiedCache<DerHash, Arc<CertFacts>>,
    links: VerifiedCache<(DerHash, DerHash), ()>,
}

impl ChainCaches {
    pub(super) fn new() -> Self {
        ChainCaches {
            certs: VerifiedCache::weighted(CERT_CACHE_BYTES, |_, facts: &Arc<CertFacts>| {
                u32::try_from(facts.tbs.len() + facts.signature.len() + 256).unwrap_or(u32::MAX)
            }),
            links: VerifiedCache::new(LINK_CACHE_ENTRIES),
        }
    }

    pub(super) fn counts(&self) -> ChainCacheCounts {
        ChainCacheCounts {
            certificates: self.certs.counts(),
            links: self.links.counts(),
        }
    }

    /// The facts of certificate `index` of a chain, and whether they came from the cache.
    pub(super) fn facts(
        &self,
        index: usize,
        der: &[u8],
        hash: &DerHash,
        now: u64,
        algorithm: SignatureAlgorithm,
    ) -> Result<(Arc<CertFacts>, bool), X509Error> {
        if let Some(facts) = self.certs.get(hash, now) {
            return Ok((facts, true));
        }
        Ok((Arc::new(parse_facts(index, der, algorithm)?), false))
    }

    /// Remembers the facts of a chain that verified (`hashes` in the same order) and returns
    /// them. Only such chains are remembered: unsigned junk that merely ends in the (public)
    /// pinned root must not fill the cache.
    pub(super) fn remember_verified(
        &self,
        facts: Vec<(Arc<CertFacts>, bool)>,
        hashes: &[DerHash],
    ) -> Vec<Arc<CertFacts>> {
        facts
            .into_iter()
            .zip(hashes)
            .map(|((facts, cached), hash)| {
                if !cached {
                    self.certs.insert(*hash, Arc::clone(&facts));
                }
                facts
            })
            .collect()
    }

    /// Runs `verify_signature` for the link `child` → `parent` unless that link already verified.
    pub(super) fn verified_link(
        &self,
        child: &DerHash,
        parent: &DerHash,
        now: u64,
        verify_signature: impl FnOnce() -> Result<(), X509Error>,
    ) -> Result<(), X509Error> {
        self.links
            .get_or_verify((*child, *parent), now, verify_signature)
    }
}

#[cfg(test)]
mod tests {
    use super::ChainCacheCounts;
    use crate::cache::CacheCounts;
    use crate::x509::test_pki::{kind, Pki, DAY, NOW};

    #[test]
    fn only_verified_chains_are_cached() {
        let pki = Pki::standard();
        let verifier = pki.verifier();
        let other = Pki::standard();
        // Parsable certificates that do not chain, ending in the pinned root.
        let junk = [
            other.ders[2].as_slice(),
            other.ders[1].as_slice(),
            pki.ders[0].as_slice(),
        ];
        assert_eq!(kind(verifier.verify(&junk, NOW, &[])), "signature");
        assert_eq!(verifier.caches.certs.entry_count(), 0);
        verifier.verify(&pki.chain(), NOW, &[]).unwrap();
        assert_eq!(verifier.caches.certs.entry_count(), 3);
    }

    #[test]
    fn cache_counts_one_lookup_per_certificate_and_link() {
        let pki = Pki::standard();
        let verifier = pki.verifier();
        let counts = |cert_hits, cert_misses, link_hits, link_misses| ChainCacheCounts {
            certificates: CacheCounts {
                hits: cert_hits,
                misses: cert_misses,
            },
            links: CacheCounts {
                hits: link_hits,
                misses: link_misses,
            },
        };
        assert_eq!(verifier.cache_counts(), counts(0, 0, 0, 0));
        // Cold: three certificates parsed, two links verified.
        verifier.verify(&pki.chain(), NOW, &[]).unwrap();
        assert_eq!(verifier.cache_counts(), counts(0, 3, 0, 2));
        // Warm, through a clone: it counts into the same numbers.
        let clone = verifier.clone();
        clone.verify(&pki.chain(), NOW, &[]).unwrap();
        assert_eq!(verifier.cache_counts(), counts(3, 3, 2, 2));
        // A CRL issuer chain of two cached certificates: two hits and one link hit.
        let issuer_chain = [pki.ders[1].as_slice(), pki.ders[0].as_slice()];
        verifier
            .verify_crl(&pki.crl(1, &[], -DAY, DAY), &issuer_chain, NOW)
            .unwrap();
        assert_eq!(clone.cache_counts(), counts(5, 3, 3, 2));

        // A chain that fails is not cached, so each attempt misses again. Its root is cached;
        // the walk stops at the first link, whose signature does not verify.
        let other = Pki::standard();
        let junk = [
            other.ders[2].as_slice(),
            other.ders[1].as_slice(),
            pki.ders[0].as_slice(),
        ];
        for attempt in 1..=2 {
            assert_eq!(kind(verifier.verify(&junk, NOW, &[])), "signature");
            assert_eq!(
                verifier.cache_counts(),
                counts(5 + attempt, 3 + 2 * attempt, 3, 2 + attempt),
                "attempt {attempt}"
            );
        }
        // A chain refused before any lookup (foreign root) counts nothing.
        assert_eq!(
            kind(verifier.verify(&other.chain(), NOW, &[])),
            "untrusted_root"
        );
        assert_eq!(verifier.cache_counts(), counts(7, 7, 3, 4));
    }
}
