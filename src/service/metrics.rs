//! Prometheus metrics through `prometheus-client`: counters and gauges are atomics (a request
//! costs a few relaxed increments, one short lock for its latency and a map lookup for its outcome),
//! rendered in the Prometheus text format 0.0.4 on `GET /metrics`.

use crate::cache::CacheCounts;
use crate::collateral::CollateralMetrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, DescriptorEncoder, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Everything the service answers, gRPC and HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Method {
    Verify,
    IsAppAllowed,
    IsKmsAllowed,
    CheckMeasurement,
    GetRegistry,
    WatchRegistry,
    Explain,
    BootAuthApp,
    BootAuthKms,
}

impl Method {
    const ALL: [Method; 9] = [
        Method::Verify,
        Method::IsAppAllowed,
        Method::IsKmsAllowed,
        Method::CheckMeasurement,
        Method::GetRegistry,
        Method::WatchRegistry,
        Method::Explain,
        Method::BootAuthApp,
        Method::BootAuthKms,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Method::Verify => "Verify",
            Method::IsAppAllowed => "IsAppAllowed",
            Method::IsKmsAllowed => "IsKmsAllowed",
            Method::CheckMeasurement => "CheckMeasurement",
            Method::GetRegistry => "GetRegistry",
            Method::WatchRegistry => "WatchRegistry",
            Method::Explain => "Explain",
            Method::BootAuthApp => "/bootAuth/app",
            Method::BootAuthKms => "/bootAuth/kms",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Upper bounds (seconds) of the latency buckets: 50 µs to 10 s.
const BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    method: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

/// One method's series, taken out of their families once so that a request touches no map.
struct MethodSeries {
    requests: Counter,
    in_flight: Gauge,
    latency: Histogram,
}

pub(super) struct Metrics {
    /// Every series below, for rendering.
    registry: Registry,
    methods: [MethodSeries; Method::ALL.len()],
    /// (method, outcome) → count. Outcomes are static names: answer kinds, error kinds, status codes.
    outcomes: Family<OutcomeLabels, Counter>,
    registry_available: Gauge,
    registry_block: Gauge<u64, AtomicU64>,
    kms_code_trusted: Gauge,
    /// When the view last advanced (a new block, a rebuild or a reload), for the age gauge.
    last_advance: Arc<Mutex<Option<Instant>>>,
    decisions_from_view: Counter,
    decisions_from_contract: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        // `Registry::register` ends each help text with a period.
        let mut registry = Registry::default();
        let requests = Family::<MethodLabels, Counter>::default();
        registry.register(
            "tee_verifier_requests",
            "Requests received, by method",
            requests.clone(),
        );
        let in_flight = Family::<MethodLabels, Gauge>::default();
        registry.register(
            "tee_verifier_requests_in_flight",
            "Requests being handled, by method",
            in_flight.clone(),
        );
        let outcomes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "tee_verifier_request_outcomes",
            "Finished requests by method and outcome (verified, allowed, denied, registered, \
             not_registered, ok, a verification error kind, or a gRPC status)",
            outcomes.clone(),
        );
        let latency =
            Family::<MethodLabels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                Histogram::new(BUCKETS)
            });
        registry.register(
            "tee_verifier_request_duration_seconds",
            "Time to answer, by method",
            latency.clone(),
        );
        let registry_available = Gauge::default();
        registry.register(
            "tee_verifier_registry_available",
            "1 while the registry view can answer, else 0",
            registry_available.clone(),
        );
        let registry_block = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "tee_verifier_registry_block",
            "The block the registry view is as of",
            registry_block.clone(),
        );
        let kms_code_trusted = Gauge::default();
        registry.register(
            "tee_verifier_registry_kms_code_trusted",
            "1 while the KMS runs code trusted to be DstackKms (decisions from the view); 0 after \
             an upgrade to unknown code (every decision is an eth_call). Chain sources only",
            kms_code_trusted.clone(),
        );
        let last_advance = Arc::new(Mutex::new(None));
        registry.register_collector(Box::new(RegistryAge {
            last_advance: Arc::clone(&last_advance),
            started: Instant::now(),
        }));
        let decisions = Family::<SourceLabels, Counter>::default();
        registry.register(
            "tee_verifier_registry_decisions",
            "Decisions (isAppAllowed and isKmsAllowed) answered from the cached view (a hit) or \
             by eth_call to the contract (a miss: app or KMS code the view cannot evaluate)",
            decisions.clone(),
        );
        let methods = Method::ALL.map(|method| {
            let labels = MethodLabels {
                method: method.name(),
            };
            MethodSeries {
                requests: requests.get_or_create_owned(&labels),
                in_flight: in_flight.get_or_create_owned(&labels),
                latency: latency.get_or_create_owned(&labels),
            }
        });
        let source = |source| decisions.get_or_create_owned(&SourceLabels { source });
        Metrics {
            decisions_from_view: source("view"),
            decisions_from_contract: source("contract"),
            registry,
            methods,
            outcomes,
            registry_available,
            registry_block,
            kms_code_trusted,
            last_advance,
        }
    }
}

/// One request being measured. Finish it with its outcome; a request dropped unfinished (its
/// client went away) counts as `cancelled`.
pub(super) struct RequestTimer<'a> {
    metrics: &'a Metrics,
    method: Method,
    started: Instant,
    finished: bool,
}

impl RequestTimer<'_> {
    pub(super) fn finish(mut self, outcome: &'static str) {
        self.record(outcome);
    }

    fn record(&mut self, outcome: &'static str) {
        self.finished = true;
        let series = self.metrics.series(self.method);
        series.in_flight.dec();
        series.latency.observe(self.started.elapsed().as_secs_f64());
        self.metrics
            .outcomes
            .get_or_create(&OutcomeLabels {
                method: self.method.name(),
                outcome,
            })
            .inc();
    }
}

impl Drop for RequestTimer<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.record("cancelled");
        }
    }
}

impl Metrics {
    fn series(&self, method: Method) -> &MethodSeries {
        // One slot per variant: the index is always in range.
        &self.methods[method.index()]
    }

    pub(super) fn start(&self, method: Method) -> RequestTimer<'_> {
        let series = self.series(method);
        series.requests.inc();
        series.in_flight.inc();
        RequestTimer {
            metrics: self,
            method,
            started: Instant::now(),
            finished: false,
        }
    }

    pub(super) fn set_registry(&self, available: bool, block: Option<u64>) {
        self.registry_available.set(i64::from(available));
        if let Some(block) = block {
            self.registry_block.set(block);
        }
    }

    pub(super) fn set_kms_code_trusted(&self, trusted: bool) {
        self.kms_code_trusted.set(i64::from(trusted));
    }

    pub(super) fn registry_advanced(&self) {
        if let Ok(mut last) = self.last_advance.lock() {
            *last = Some(Instant::now());
        }
    }

    /// A decision was answered from the cached view (`true`) or by asking the contract.
    pub(super) fn decision_source(&self, from_view: bool) {
        let counter = if from_view {
            &self.decisions_from_view
        } else {
            &self.decisions_from_contract
        };
        counter.inc();
    }

    /// The Prometheus text exposition format, version 0.0.4, with the verifier's cache counts,
    /// the collateral fetchers' snapshots and the process's CPU time and memory (read now,
    /// beside the service's own series).
    pub(super) fn render(
        &self,
        caches: &[(&'static str, CacheCounts)],
        collateral: &[CollateralMetrics],
    ) -> String {
        let mut scrape = Registry::default();
        scrape.register_collector(Box::new(CacheLookups(caches.to_vec())));
        scrape.register_collector(Box::new(CollateralSeries(collateral.to_vec())));
        scrape.register_collector(Box::new(ProcessUsage));
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail, nor can the collectors.
        let _ = prometheus_text::encode(&mut out, &self.registry)
            .and_then(|()| prometheus_text::encode(&mut out, &scrape));
        out
    }
}

/// Seconds since the registry view last advanced (or since start, before it first did).
#[derive(Debug)]
struct RegistryAge {
    last_advance: Arc<Mutex<Option<Instant>>>,
    started: Instant,
}

impl Collector for RegistryAge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let since = self
            .last_advance
            .lock()
            .ok()
            .and_then(|last| *last)
            .unwrap_or(self.started);
        let age = ConstGauge::new(since.elapsed().as_secs_f64());
        age.encode(encoder.encode_descriptor(
            "tee_verifier_registry_age_seconds",
            "Seconds since the registry view last advanced (new block, rebuild or file reload).",
            None,
            age.metric_type(),
        )?)
    }
}

/// The verification caches' hit and miss counts, as the verifier reports them at a scrape.
#[derive(Debug)]
struct CacheLookups(Vec<(&'static str, CacheCounts)>);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
    result: &'static str,
}

impl Collector for CacheLookups {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "tee_verifier_cache_lookups",
            "Verification cache lookups by cache and result: a hit reuses checked signatures \
             (time, revocation and policy checks still run), a miss verifies them.",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for &(cache, counts) in &self.0 {
            for (result, count) in [("hit", counts.hits), ("miss", counts.misses)] {
                ConstCounter::new(count)
                    .encode(family.encode_family(&CacheLabels { cache, result })?)?;
            }
        }
        Ok(())
    }
}

/// The collateral fetchers' counters and cached entries, as snapshot at a scrape.
#[derive(Debug)]
struct CollateralSeries(Vec<CollateralMetrics>);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ItemResultLabels {
    item: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EntryLabels {
    item: &'static str,
    key: String,
}

impl Collector for CollateralSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::MetricType;
        let snapshots = &self.0;
        let mut fetches = encoder.encode_descriptor(
            "tee_verifier_collateral_fetches",
            "Collateral fetches by item and result: ok, invalid (fetched but does not verify), or              why nothing usable came (not_found, http_status, timeout, transport, too_large,              malformed, redirect_refused).",
            None,
            MetricType::Counter,
        )?;
        for fetch in snapshots.iter().flat_map(|s| &s.fetches) {
            let labels = ItemResultLabels {
                item: fetch.item.as_str(),
                result: fetch.result,
            };
            ConstCounter::new(fetch.count).encode(fetches.encode_family(&labels)?)?;
        }
        let mut lookups = encoder.encode_descriptor(
            "tee_verifier_collateral_cache_lookups",
            "Collateral cache lookups by item and result: a hit is served from memory, a miss              fetches (or reads the disk cache).",
            None,
            MetricType::Counter,
        )?;
        for lookup in snapshots.iter().flat_map(|s| &s.lookups) {
            let item = lookup.item.as_str();
            for (result, count) in [("hit", lookup.counts.hits), ("miss", lookup.counts.misses)] {
                let labels = ItemResultLabels { item, result };
                ConstCounter::new(count).encode(lookups.encode_family(&labels)?)?;
            }
        }
        let entries = || snapshots.iter().flat_map(|s| &s.entries);
        let entry_labels = |entry: &crate::collateral::EntryStatus| EntryLabels {
            item: entry.item.as_str(),
            key: entry.key.clone(),
        };
        let mut age = encoder.encode_descriptor(
            "tee_verifier_collateral_age_seconds",
            "Seconds since each cached collateral item was fetched, by item and key (FMSPC, CA,              URL, or empty).",
            None,
            MetricType::Gauge,
        )?;
        for entry in entries() {
            ConstGauge::new(i64::try_from(entry.age_seconds).unwrap_or(i64::MAX))
                .encode(age.encode_family(&entry_labels(entry))?)?;
        }
        let mut left = encoder.encode_descriptor(
            "tee_verifier_collateral_seconds_until_next_update",
            "Seconds until each cached collateral item's nextUpdate, after which it is never              served (0: ended).",
            None,
            MetricType::Gauge,
        )?;
        for entry in entries() {
            ConstGauge::new(i64::try_from(entry.seconds_until_next_update).unwrap_or(i64::MAX))
                .encode(left.encode_family(&entry_labels(entry))?)?;
        }
        Ok(())
    }
}

/// The process's CPU time and resident memory, under the names Prometheus's process collectors
/// use (read from Linux's `/proc/self`; absent elsewhere).
#[derive(Debug)]
struct ProcessUsage;

impl Collector for ProcessUsage {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(seconds) = process_cpu_seconds() {
            let cpu = ConstCounter::new(seconds);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                cpu.metric_type(),
            )?)?;
        }
        if let Some(bytes) = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| resident_bytes(&status))
        {
            let memory = ConstGauge::new(bytes);
            memory.encode(encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                None,
                memory.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// CPU time (user + system) this process has used, in seconds (Linux only).
pub fn process_cpu_seconds() -> Option<f64> {
    cpu_seconds(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// utime + stime from `/proc/self/stat`, in seconds. Fields are counted after the last `)`, since
/// the command name before it may hold spaces; their unit, USER_HZ, is 100 on Linux's ABI.
fn cpu_seconds(stat: &str) -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    let (_, fields) = stat.rsplit_once(')')?;
    let mut fields = fields.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user.checked_add(system)? as f64 / USER_HZ)
}

/// `VmRSS` from `/proc/self/status`, in bytes.
fn resident_bytes(status: &str) -> Option<u64> {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_time_and_resident_memory_from_proc() {
        let stat =
            "4242 (tee (verifier)) S 1 4242 4242 0 -1 4194560 1500 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(cpu_seconds(stat), Some(3.25));
        assert_eq!(cpu_seconds("4242 (short) S 1"), None);
        let status = "Name:\ttee-verifier\nVmPeak:\t  99 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n";
        assert_eq!(resident_bytes(status), Some(20480 * 1024));
        assert_eq!(resident_bytes("Name:\tx\n"), None);
        if cfg!(target_os = "linux") {
            let text = Metrics::default().render(&[], &[]);
            assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");
            assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
        }
    }

    #[test]
    fn renders_collateral_fetches_lookups_and_entries() {
        use crate::collateral::{EntryStatus, FetchCount, ItemKind, LookupCount};
        let snapshot = CollateralMetrics {
            fetches: vec![FetchCount {
                item: ItemKind::TcbInfo,
                result: "timeout",
                count: 2,
            }],
            lookups: vec![LookupCount {
                item: ItemKind::PckCrl,
                counts: CacheCounts { hits: 5, misses: 1 },
            }],
            entries: vec![EntryStatus {
                item: ItemKind::TcbInfo,
                key: "90C06F000000".into(),
                age_seconds: 30,
                seconds_until_next_update: 600,
                verified: true,
            }],
        };
        let text = Metrics::default().render(&[], &[snapshot]);
        for series in [
            "tee_verifier_collateral_fetches_total{item=\"tcb_info\",result=\"timeout\"} 2\n",
            "tee_verifier_collateral_cache_lookups_total{item=\"pck_crl\",result=\"hit\"} 5\n",
            "tee_verifier_collateral_cache_lookups_total{item=\"pck_crl\",result=\"miss\"} 1\n",
            "tee_verifier_collateral_age_seconds{item=\"tcb_info\",key=\"90C06F000000\"} 30\n",
            "tee_verifier_collateral_seconds_until_next_update{item=\"tcb_info\",key=\"90C06F000000\"} 600\n",
        ] {
            assert!(text.contains(series), "{series} not in:\n{text}");
        }
    }

    #[test]
    fn renders_counters_outcomes_and_cumulative_buckets() {
        let metrics = Metrics::default();
        metrics.start(Method::Verify).finish("verified");
        metrics.start(Method::Verify).finish("untrusted_root");
        drop(metrics.start(Method::IsAppAllowed));
        metrics.set_registry(true, Some(42));
        metrics.decision_source(true);
        let caches = [("nitro_x509_links", CacheCounts { hits: 7, misses: 4 })];
        let text = metrics.render(&caches, &[]);
        assert!(text.contains(
            "tee_verifier_cache_lookups_total{cache=\"nitro_x509_links\",result=\"hit\"} 7\n"
        ));
        assert!(text.contains(
            "tee_verifier_cache_lookups_total{cache=\"nitro_x509_links\",result=\"miss\"} 4\n"
        ));
        assert!(
            text.contains("tee_verifier_requests_total{method=\"Verify\"} 2"),
            "{text}"
        );
        assert!(text.contains("outcome=\"untrusted_root\"} 1"), "{text}");
        assert!(
            text.contains("{method=\"IsAppAllowed\",outcome=\"cancelled\"} 1"),
            "a dropped timer is a cancelled request: {text}"
        );
        assert!(
            text.contains("tee_verifier_requests_in_flight{method=\"Verify\"} 0"),
            "{text}"
        );
        assert!(text.contains(
            "tee_verifier_request_duration_seconds_bucket{method=\"Verify\",le=\"+Inf\"} 2"
        ));
        assert!(text.contains(
            "tee_verifier_request_duration_seconds_bucket{method=\"Verify\",le=\"10\"} 2"
        ));
        assert!(text.contains("tee_verifier_registry_block 42"));
        assert!(text.contains("tee_verifier_registry_available 1"));
        assert!(text.contains("tee_verifier_registry_decisions_total{source=\"view\"} 1"));
    }
}
