//! The Intel collateral fetcher: given a quote and `now`, the collateral set it needs, from the
//! cache when every item is valid at `now`, else fetched from the PCS or PCCS, verified, cached.
//!
//! - One entry per item (TCB Info per FMSPC, PCK CRL per CA, one QE Identity, one root CA CRL),
//!   each served only inside the window it carries, judged at the caller's `now`.
//! - A set verifies with the quote that asked for it before any fetched item of it is cached
//!   ([`super::gate`]); what fails is a verification failure, and nothing of it is kept.
//! - Single flight per set and per item: concurrent first requests for one FMSPC make one
//!   fetch of each item; another FMSPC shares the QE Identity and CRL fetches.
//! - A request that finds an item past its refresh point is served from the cache and starts
//!   one background refresh; a refresh that fails keeps the entry (with a warning) until it ends.
//! - With a cache directory, fetched items are written through and read back at start-up as
//!   candidates, served only once a verification accepts them.

use super::assemble::{assemble, Parts};
use super::disk::DiskCache;
use super::error::{CollateralError, ConfigError, FetchError};
use super::flight::SingleFlight;
use super::gate::admit;
use super::http::{HttpClient, HttpLimits};
use super::intel::{self, DecodeError, Endpoints, IntelService, INTEL_PCS_URL};
use super::item::{Item, ItemKey, ItemKind, Raw, TcbUpdate};
use super::metrics::{entry_status, CollateralMetrics, Counters, RESULT_INVALID, RESULT_OK};
use super::refresh::RefreshPolicy;
use super::store::{Entry, Store};
use super::target::QuoteTarget;
use crate::tdx::{Collateral, TdxError, TdxVerifier, INTEL_SGX_ROOT_CA_DER};
use crate::x509::{ChainPolicy, ChainVerifier, SignatureAlgorithm};
use reqwest::header::HeaderMap;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Largest TCB Info or QE Identity response read (real ones are 5 to 20 KB).
const MAX_DOCUMENT_LEN: usize = 256 * 1024;
/// Largest CRL response read (DER, or hex of DER).
const MAX_CRL_RESPONSE_LEN: usize = crate::x509::MAX_CRL_LEN;

/// How the fetcher reaches Intel and keeps what it fetched.
#[derive(Clone, Debug)]
pub struct CollateralConfig {
    /// An Intel PCS or PCCS base URL (API v4); `/sgx|tdx/certification/v4` may be included.
    pub base_url: String,
    /// Which API `base_url` speaks; `None` decides from the host (Intel's is the PCS).
    pub service: Option<IntelService>,
    /// Intel's `update` parameter: which TCB evaluation data set is fetched.
    pub update: TcbUpdate,
    /// Where the root CA CRL is fetched instead of the PCCS or the trust anchor's CRL
    /// distribution point.
    pub root_ca_crl_url: Option<String>,
    /// The root the verifier pins (DER): quotes must chain to it, and for the PCS its CRL
    /// distribution point gives the root CA CRL.
    pub trust_anchor_der: Vec<u8>,
    /// When a cached item is refreshed in the background, ahead of its nextUpdate.
    pub refresh: RefreshPolicy,
    /// Seconds between two refreshes of one item at least (a stale upstream is not asked on
    /// every request), and before a failed refresh is retried.
    pub min_refresh_interval: u64,
    /// Write fetched items here and read them back at start-up.
    pub cache_dir: Option<PathBuf>,
    /// Timeouts, retries and the per-host request limit.
    pub http: HttpLimits,
}

impl Default for CollateralConfig {
    /// Intel's PCS, standard TCB evaluation data, the Intel SGX Root CA, refresh at 80 %.
    fn default() -> Self {
        CollateralConfig {
            base_url: INTEL_PCS_URL.to_owned(),
            service: None,
            update: TcbUpdate::Standard,
            root_ca_crl_url: None,
            trust_anchor_der: INTEL_SGX_ROOT_CA_DER.to_vec(),
            refresh: RefreshPolicy::default(),
            min_refresh_interval: 60,
            cache_dir: None,
            http: HttpLimits::default(),
        }
    }
}

/// A quote's collateral set: the verifier's [`Collateral`] and the same as `QuoteCollateralV3`
/// JSON. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct FetchedCollateral {
    collateral: Arc<Collateral>,
    json: Arc<[u8]>,
    target: QuoteTarget,
    valid_until: u64,
}

impl FetchedCollateral {
    /// The set as the TDX verifier takes it.
    pub fn collateral(&self) -> &Collateral {
        &self.collateral
    }

    /// `QuoteCollateralV3` JSON, what `--collateral` reads.
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// The FMSPC and PCK CA the set was fetched for.
    pub fn target(&self) -> QuoteTarget {
        self.target
    }

    /// The earliest end of the four items (unix seconds).
    pub fn valid_until(&self) -> u64 {
        self.valid_until
    }
}

/// Fetches, verifies and caches Intel collateral. Cloning shares everything; `Send + Sync`.
#[derive(Clone)]
pub struct CollateralFetcher {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Endpoints,
    http: HttpClient,
    verifier: TdxVerifier,
    /// Walks the PCK chains of quotes before anything is fetched for them.
    chains: ChainVerifier,
    refresh: RefreshPolicy,
    min_refresh_interval: u64,
    store: Store<ItemKey, Item>,
    item_flights: SingleFlight<ItemKey, Result<Arc<Item>, CollateralError>>,
    set_flights: SingleFlight<QuoteTarget, Result<FetchedCollateral, CollateralError>>,
    /// The last set assembled per target, with the generations of its four entries.
    assembled: Mutex<HashMap<QuoteTarget, ([u64; 4], FetchedCollateral)>>,
    /// A quote that needed each target, to verify its refreshed items with. Targets come from
    /// PCK certificates under the pinned root: real platforms, a bounded set.
    references: Mutex<HashMap<QuoteTarget, Arc<[u8]>>>,
    disk: Option<DiskCache>,
    counters: Counters,
    background: watch::Sender<usize>,
}

/// Where each part of a set came from.
#[derive(Clone)]
enum Part {
    Verified(Entry<Item>),
    /// Read from disk, not yet accepted by a verification.
    Candidate(Entry<Item>),
    Fetched(Arc<Item>),
}

impl Part {
    fn item(&self) -> &Item {
        match self {
            Part::Verified(entry) | Part::Candidate(entry) => &entry.value,
            Part::Fetched(item) => item,
        }
    }
}

impl CollateralFetcher {
    /// A fetcher that verifies with `verifier`, which must pin `config.trust_anchor_der`.
    /// With a cache directory, its files are read now (they are verified before first use).
    pub fn new(
        config: CollateralConfig,
        verifier: TdxVerifier,
    ) -> Result<CollateralFetcher, ConfigError> {
        let endpoints = Endpoints::new(
            &config.base_url,
            config.service,
            config.update,
            config.root_ca_crl_url.as_deref(),
            &config.trust_anchor_der,
        )?;
        let disk = config
            .cache_dir
            .as_deref()
            .map(|dir| DiskCache::open(dir, config.update))
            .transpose()?;
        let fetcher = CollateralFetcher {
            inner: Arc::new(Inner {
                endpoints,
                http: HttpClient::new(config.http, None)?,
                verifier,
                chains: ChainVerifier::new(ChainPolicy {
                    algorithm: SignatureAlgorithm::EcdsaP256Sha256,
                    root_sha256: Sha256::digest(&config.trust_anchor_der).into(),
                }),
                refresh: config.refresh,
                min_refresh_interval: config.min_refresh_interval,
                store: Store::default(),
                item_flights: SingleFlight::default(),
                set_flights: SingleFlight::default(),
                assembled: Mutex::default(),
                references: Mutex::default(),
                disk,
                counters: Counters::new(&ItemKind::INTEL),
                background: watch::Sender::new(0),
            }),
        };
        fetcher.load_candidates();
        Ok(fetcher)
    }

    /// The collateral `quote` needs, valid at `now`. Served from the cache when possible;
    /// otherwise fetched, verified with `quote` at `now`, and cached.
    ///
    /// The set is verified, but the caller still verifies the quote with it: a quote whose own
    /// checks fail (signature, TCB level...) gets its collateral here and its verdict there.
    pub async fn collateral_for_quote(
        &self,
        quote: &[u8],
        now: u64,
    ) -> Result<FetchedCollateral, CollateralError> {
        let target = QuoteTarget::of_quote(quote, &self.inner.chains, now)?;
        if let Some(set) = self.cached_set(target, now, true) {
            self.refresh_in_background(target, quote, now);
            return Ok(set);
        }
        let reference: Arc<[u8]> = quote.into();
        self.inner
            .set_flights
            .run(target, || self.fill(target, reference.clone(), now))
            .await
    }

    /// The four items of `target` as `QuoteCollateralV3` JSON, **not verified**, for a quote
    /// that is not at hand (`collateral fetch --fmspc`): whoever reads the file verifies it.
    /// Verified cached items are used; what is fetched is not cached.
    pub async fn unverified_json(
        &self,
        target: QuoteTarget,
        now: u64,
    ) -> Result<Vec<u8>, CollateralError> {
        let parts = self.gather(target, now, false).await?;
        let (json, _) = assemble(&parts_of(&parts)).map_err(CollateralError::Verification)?;
        Ok(json)
    }

    /// Refreshes every item past its refresh point, for a periodic task (requests also start
    /// refreshes; this covers the quiet hours). Returns when the refreshes have ended.
    pub async fn refresh_due(&self, now: u64) {
        let references: Vec<(QuoteTarget, Arc<[u8]>)> = self
            .lock_references()
            .iter()
            .map(|(target, quote)| (*target, quote.clone()))
            .collect();
        for (target, quote) in references {
            let due = self.claim_due(target, now);
            if !due.is_empty() {
                self.refresh(target, due, quote, now).await;
            }
        }
    }

    /// Waits until no background refresh is running.
    pub async fn refreshes_settled(&self) {
        let mut running = self.inner.background.subscribe();
        // The sender lives as long as `self`.
        let _ = running.wait_for(|count| *count == 0).await;
    }

    /// The counters, and every cached entry's age and time left at `now`.
    pub fn metrics(&self, now: u64) -> CollateralMetrics {
        let entries = self
            .inner
            .store
            .entries()
            .into_iter()
            .map(|(key, entry)| {
                entry_status(
                    key.kind(),
                    key.discriminator(),
                    entry.fetched_at,
                    entry.validity.until,
                    entry.verified,
                    now,
                )
            })
            .collect();
        self.inner.counters.snapshot(entries)
    }

    /// The set from verified entries valid at `now`, if all four are.
    fn cached_set(&self, target: QuoteTarget, now: u64, count: bool) -> Option<FetchedCollateral> {
        let store = &self.inner.store;
        let entries = keys(target).map(|key| {
            let entry = store.get(&key, now).filter(|entry| entry.verified);
            if count {
                self.inner.counters.looked_up(key.kind(), entry.is_some());
            }
            entry
        });
        let [Some(tcb), Some(qe), Some(pck), Some(root)] = entries else {
            return None;
        };
        let generations = [&tcb, &qe, &pck, &root].map(|entry| entry.generation);
        if let Some((seen, set)) = self.lock_assembled().get(&target) {
            if *seen == generations {
                return Some(set.clone());
            }
        }
        let parts = [tcb, qe, pck, root].map(Part::Verified);
        let set = self.finish(target, &parts).ok()?;
        self.lock_assembled()
            .insert(target, (generations, set.clone()));
        Some(set)
    }

    /// The flight of a set missing from the cache.
    async fn fill(
        &self,
        target: QuoteTarget,
        quote: Arc<[u8]>,
        now: u64,
    ) -> Result<FetchedCollateral, CollateralError> {
        // The flight before this one may have filled it.
        if let Some(set) = self.cached_set(target, now, false) {
            return Ok(set);
        }
        let mut parts = self.gather(target, now, true).await?;
        let verdict = self.judge(&parts, &quote, now);
        if verdict.is_err() && parts.iter().any(|p| matches!(p, Part::Candidate(_))) {
            // What the disk held does not verify (now): drop it and ask the network.
            for part in &parts {
                if let Part::Candidate(entry) = part {
                    self.inner.store.remove(&entry.value.key, entry.generation);
                }
            }
            parts = self.gather(target, now, false).await?;
            self.judge(&parts, &quote, now)?;
        } else {
            verdict?;
        }
        self.admit_parts(&parts).await;
        self.lock_references().insert(target, quote);
        let set = self.finish(target, &parts)?;
        Ok(set)
    }

    /// The four parts of `target` at `now`: verified entries, then (if `candidates`) entries
    /// read from disk, then fetches for the rest, all at once.
    async fn gather(
        &self,
        target: QuoteTarget,
        now: u64,
        candidates: bool,
    ) -> Result<[Part; 4], CollateralError> {
        let known = keys(target).map(|key| match self.inner.store.get(&key, now) {
            Some(entry) if entry.verified => Some(Part::Verified(entry)),
            Some(entry) if candidates => Some(Part::Candidate(entry)),
            _ => None,
        });
        let part = |index: usize| {
            let known = known[index].clone();
            let key = keys(target)[index];
            async move {
                match known {
                    Some(part) => Ok(part),
                    None => self.fetch_item(key, now).await.map(Part::Fetched),
                }
            }
        };
        let (tcb, qe, pck, root) = tokio::join!(part(0), part(1), part(2), part(3));
        Ok([tcb?, qe?, pck?, root?])
    }

    /// Verifies a set holding anything not yet verified; counts the fetched items' outcome.
    fn judge(&self, parts: &[Part; 4], quote: &[u8], now: u64) -> Result<(), CollateralError> {
        if parts.iter().all(|p| matches!(p, Part::Verified(_))) {
            return Ok(());
        }
        let verdict = assemble(&parts_of(parts))
            .and_then(|(_, collateral)| admit(&self.inner.verifier, quote, &collateral, now));
        let result = if verdict.is_ok() {
            RESULT_OK
        } else {
            RESULT_INVALID
        };
        for part in parts {
            if let Part::Fetched(item) = part {
                self.inner.counters.fetched(item.key.kind(), result);
            }
        }
        verdict.map_err(CollateralError::Verification)
    }

    /// Caches the parts of a set that verified; writes the fetched ones to disk.
    async fn admit_parts(&self, parts: &[Part; 4]) {
        for part in parts {
            let item = match part {
                Part::Verified(_) => continue,
                Part::Candidate(entry) => entry.value.clone(),
                Part::Fetched(item) => item.clone(),
            };
            let key = item.key;
            let refresh_at = self.inner.refresh.refresh_at(
                item.fetched_at,
                item.validity.until,
                self.inner.min_refresh_interval,
            );
            let entry = Entry::new(
                item.clone(),
                item.validity,
                item.fetched_at,
                true,
                refresh_at,
            );
            self.inner.store.insert(key, entry);
            if let (Part::Fetched(_), Some(disk)) = (part, &self.inner.disk) {
                disk.save(key, &item.raw, item.fetched_at).await;
            }
        }
    }

    fn finish(
        &self,
        target: QuoteTarget,
        parts: &[Part; 4],
    ) -> Result<FetchedCollateral, CollateralError> {
        let (json, collateral) =
            assemble(&parts_of(parts)).map_err(CollateralError::Verification)?;
        let valid_until = parts
            .iter()
            .map(|part| part.item().validity.until)
            .min()
            .unwrap_or(0);
        Ok(FetchedCollateral {
            collateral: Arc::new(collateral),
            json: json.into(),
            target,
            valid_until,
        })
    }

    /// One network fetch of `key` at a time, shared by everyone who needs it meanwhile.
    async fn fetch_item(&self, key: ItemKey, now: u64) -> Result<Arc<Item>, CollateralError> {
        let inner = &self.inner;
        inner
            .item_flights
            .run(key, || async move {
                let kind = key.kind();
                let url = inner.endpoints.url(key);
                let max = match key {
                    ItemKey::TcbInfo { .. } | ItemKey::QeIdentity => MAX_DOCUMENT_LEN,
                    ItemKey::PckCrl { .. } | ItemKey::RootCaCrl => MAX_CRL_RESPONSE_LEN,
                };
                let unavailable = |source: FetchError| {
                    inner.counters.fetched(kind, source.kind());
                    CollateralError::Unavailable { item: kind, source }
                };
                let response = inner.http.get(&url, max).await.map_err(unavailable)?;
                let issuer_chain = issuer_chain(&response.headers, key).map_err(|message| {
                    unavailable(FetchError::Malformed {
                        url: url.clone(),
                        message,
                    })
                })?;
                let raw = Raw {
                    body: response.body,
                    issuer_chain,
                };
                match intel::decode(key, raw, now) {
                    Ok(item) => Ok(Arc::new(item)),
                    Err(DecodeError::Malformed(message)) => {
                        Err(unavailable(FetchError::Malformed { url, message }))
                    }
                    Err(DecodeError::Mismatch(message)) => {
                        inner.counters.fetched(kind, RESULT_INVALID);
                        Err(CollateralError::Verification(TdxError::CollateralMismatch(
                            message,
                        )))
                    }
                }
            })
            .await
    }

    /// Starts one background refresh of `target`'s items that are due, if any.
    fn refresh_in_background(&self, target: QuoteTarget, quote: &[u8], now: u64) {
        let due = self.claim_due(target, now);
        if due.is_empty() {
            return;
        }
        let fetcher = self.clone();
        let quote: Arc<[u8]> = quote.into();
        self.inner.background.send_modify(|count| *count += 1);
        tokio::spawn(async move {
            let _running = Running(fetcher.inner.background.clone());
            fetcher.refresh(target, due, quote, now).await;
        });
    }

    /// The due items of `target`, each claimed so that one refresh runs per due time.
    fn claim_due(&self, target: QuoteTarget, now: u64) -> Vec<ItemKey> {
        let retry_at = now.saturating_add(self.inner.min_refresh_interval);
        keys(target)
            .into_iter()
            .filter(|key| self.inner.store.claim_refresh(key, now, retry_at))
            .collect()
    }

    /// Fetches `due` and verifies them with the rest of the cached set; keeps the cached
    /// entries, with a warning, if that fails.
    async fn refresh(&self, target: QuoteTarget, due: Vec<ItemKey>, quote: Arc<[u8]>, now: u64) {
        let mut parts = Vec::with_capacity(4);
        for key in keys(target) {
            let part = if due.contains(&key) {
                match self.fetch_item(key, now).await {
                    Ok(item) => Part::Fetched(item),
                    Err(error) => {
                        tracing::warn!(
                            item = %key.kind(),
                            key = %key.discriminator(),
                            %error,
                            "collateral refresh failed; serving the cached item until it ends"
                        );
                        return;
                    }
                }
            } else {
                match self.inner.store.get(&key, now) {
                    Some(entry) if entry.verified => Part::Verified(entry),
                    // The rest of the set has ended meanwhile: the next request fills it.
                    _ => return,
                }
            };
            parts.push(part);
        }
        let Ok(parts) = <[Part; 4]>::try_from(parts) else {
            return;
        };
        match self.judge(&parts, &quote, now) {
            Ok(()) => self.admit_parts(&parts).await,
            Err(error) => tracing::warn!(
                fmspc = %crate::encoding::hex_upper(target.fmspc),
                ca = %target.ca,
                %error,
                "refreshed collateral does not verify; serving the cached items until they end"
            ),
        }
    }

    /// Puts what the cache directory holds into the store as candidates.
    fn load_candidates(&self) {
        let Some(disk) = &self.inner.disk else {
            return;
        };
        for stored in disk.load() {
            match intel::decode(stored.key, stored.raw, stored.fetched_at) {
                Ok(item) => {
                    let refresh_at = self.inner.refresh.refresh_at(
                        item.fetched_at,
                        item.validity.until,
                        self.inner.min_refresh_interval,
                    );
                    let item = Arc::new(item);
                    let entry = Entry::new(
                        item.clone(),
                        item.validity,
                        item.fetched_at,
                        false,
                        refresh_at,
                    );
                    self.inner.store.insert(item.key, entry);
                }
                Err(error) => tracing::warn!(
                    item = %stored.key.kind(),
                    ?error,
                    "cached collateral does not decode; it will be fetched"
                ),
            }
        }
    }

    fn lock_assembled(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<QuoteTarget, ([u64; 4], FetchedCollateral)>> {
        self.inner.assembled.lock().expect("assembled sets lock")
    }

    fn lock_references(&self) -> std::sync::MutexGuard<'_, HashMap<QuoteTarget, Arc<[u8]>>> {
        self.inner.references.lock().expect("reference quotes lock")
    }
}

/// Counts a background refresh out when it ends, however it ends.
struct Running(watch::Sender<usize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.send_modify(|count| *count -= 1);
    }
}

/// The four keys of a target, in [`Parts`] order.
fn keys(target: QuoteTarget) -> [ItemKey; 4] {
    [
        ItemKey::TcbInfo {
            fmspc: target.fmspc,
        },
        ItemKey::QeIdentity,
        ItemKey::PckCrl { ca: target.ca },
        ItemKey::RootCaCrl,
    ]
}

fn parts_of(parts: &[Part; 4]) -> Parts<'_> {
    Parts {
        tcb_info: parts[0].item(),
        qe_identity: parts[1].item(),
        pck_crl: parts[2].item(),
        root_ca_crl: parts[3].item(),
    }
}

/// The URL-decoded issuer chain header of `key`'s response, if it has one.
fn issuer_chain(headers: &HeaderMap, key: ItemKey) -> Result<Option<String>, String> {
    let Some((name, value)) = intel::issuer_chain_headers(key)
        .iter()
        .find_map(|name| headers.get(*name).map(|value| (name, value)))
    else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| format!("{name} is not ASCII"))?;
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|pem| Some(pem.into_owned()))
        .map_err(|_| format!("{name} is not URL-encoded UTF-8"))
}
