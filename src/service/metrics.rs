//! Prometheus metrics, kept in atomics (a request costs a few relaxed increments and, for its
//! outcome, one short lock) and rendered as the text exposition format on `GET /metrics`.

use crate::cache_stats::CacheCounts;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Everything the service answers, gRPC and HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Verify,
    IsAppAllowed,
    IsKmsAllowed,
    CheckMeasurement,
    GetRegistry,
    WatchRegistry,
    BootAuthApp,
    BootAuthKms,
}

impl Method {
    const ALL: [Method; 8] = [
        Method::Verify,
        Method::IsAppAllowed,
        Method::IsKmsAllowed,
        Method::CheckMeasurement,
        Method::GetRegistry,
        Method::WatchRegistry,
        Method::BootAuthApp,
        Method::BootAuthKms,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Verify => "Verify",
            Method::IsAppAllowed => "IsAppAllowed",
            Method::IsKmsAllowed => "IsKmsAllowed",
            Method::CheckMeasurement => "CheckMeasurement",
            Method::GetRegistry => "GetRegistry",
            Method::WatchRegistry => "WatchRegistry",
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

#[derive(Default)]
struct Histogram {
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        if let Some(bucket) = self.buckets.get(slot) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct MethodMetrics {
    requests: AtomicU64,
    in_flight: AtomicI64,
    latency: Histogram,
}

/// What the registry monitor last saw.
#[derive(Default)]
struct RegistryGauges {
    available: AtomicU64,
    block: AtomicU64,
    /// When the view last advanced (a new block, a rebuild or a reload), for the age gauge.
    last_advance: Mutex<Option<Instant>>,
    decisions_from_view: AtomicU64,
    decisions_from_contract: AtomicU64,
}

pub struct Metrics {
    methods: [MethodMetrics; Method::ALL.len()],
    /// (method, outcome) → count. Outcomes are static names: answer kinds, error kinds, status codes.
    outcomes: Mutex<BTreeMap<(Method, &'static str), u64>>,
    registry: RegistryGauges,
    started: Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            methods: Default::default(),
            outcomes: Mutex::new(BTreeMap::new()),
            registry: RegistryGauges::default(),
            started: Instant::now(),
        }
    }
}

/// One request being measured. Finish it with its outcome; a request dropped unfinished (its
/// client went away) counts as `cancelled`.
pub struct RequestTimer<'a> {
    metrics: &'a Metrics,
    method: Method,
    started: Instant,
    finished: bool,
}

impl RequestTimer<'_> {
    pub fn finish(mut self, outcome: &'static str) {
        self.record(outcome);
    }

    fn record(&mut self, outcome: &'static str) {
        self.finished = true;
        let method = self.metrics.method(self.method);
        method.in_flight.fetch_sub(1, Ordering::Relaxed);
        method.latency.observe(self.started.elapsed());
        if let Ok(mut outcomes) = self.metrics.outcomes.lock() {
            *outcomes.entry((self.method, outcome)).or_insert(0) += 1;
        }
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
    fn method(&self, method: Method) -> &MethodMetrics {
        // One slot per variant: the index is always in range.
        &self.methods[method.index()]
    }

    pub fn start(&self, method: Method) -> RequestTimer<'_> {
        let slot = self.method(method);
        slot.requests.fetch_add(1, Ordering::Relaxed);
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
        RequestTimer {
            metrics: self,
            method,
            started: Instant::now(),
            finished: false,
        }
    }

    pub fn set_registry(&self, available: bool, block: Option<u64>) {
        self.registry
            .available
            .store(u64::from(available), Ordering::Relaxed);
        if let Some(block) = block {
            self.registry.block.store(block, Ordering::Relaxed);
        }
    }

    pub fn registry_advanced(&self) {
        if let Ok(mut last) = self.registry.last_advance.lock() {
            *last = Some(Instant::now());
        }
    }

    /// A decision was answered from the cached view (`true`) or by asking the contract.
    pub fn decision_source(&self, from_view: bool) {
        let counter = if from_view {
            &self.registry.decisions_from_view
        } else {
            &self.registry.decisions_from_contract
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition format, version 0.0.4, with the verifier's cache counts.
    pub fn render(&self, caches: &[(&'static str, CacheCounts)]) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let _ = self.write(&mut out, caches);
        out
    }

    fn write(&self, out: &mut String, caches: &[(&'static str, CacheCounts)]) -> std::fmt::Result {
        writeln!(
            out,
            "# HELP tee_verifier_requests_total Requests received, by method."
        )?;
        writeln!(out, "# TYPE tee_verifier_requests_total counter")?;
        for method in Method::ALL {
            let count = self.method(method).requests.load(Ordering::Relaxed);
            writeln!(
                out,
                "tee_verifier_requests_total{{method=\"{}\"}} {count}",
                method.name()
            )?;
        }

        writeln!(
            out,
            "# HELP tee_verifier_requests_in_flight Requests being handled, by method."
        )?;
        writeln!(out, "# TYPE tee_verifier_requests_in_flight gauge")?;
        for method in Method::ALL {
            let count = self.method(method).in_flight.load(Ordering::Relaxed);
            writeln!(
                out,
                "tee_verifier_requests_in_flight{{method=\"{}\"}} {count}",
                method.name()
            )?;
        }

        writeln!(
            out,
            "# HELP tee_verifier_request_outcomes_total Finished requests by method and outcome \
             (verified, allowed, denied, registered, not_registered, ok, a verification error \
             kind, or a gRPC status)."
        )?;
        writeln!(out, "# TYPE tee_verifier_request_outcomes_total counter")?;
        let outcomes = self
            .outcomes
            .lock()
            .map(|outcomes| outcomes.clone())
            .unwrap_or_default();
        for ((method, outcome), count) in outcomes {
            writeln!(
                out,
                "tee_verifier_request_outcomes_total{{method=\"{}\",outcome=\"{outcome}\"}} {count}",
                method.name()
            )?;
        }

        writeln!(
            out,
            "# HELP tee_verifier_request_duration_seconds Time to answer, by method."
        )?;
        writeln!(
            out,
            "# TYPE tee_verifier_request_duration_seconds histogram"
        )?;
        for method in Method::ALL {
            let histogram = &self.method(method).latency;
            let name = method.name();
            let mut cumulative = 0u64;
            for (bound, bucket) in BUCKETS.iter().zip(&histogram.buckets) {
                cumulative = cumulative.saturating_add(bucket.load(Ordering::Relaxed));
                writeln!(
                    out,
                    "tee_verifier_request_duration_seconds_bucket{{method=\"{name}\",le=\"{bound}\"}} {cumulative}"
                )?;
            }
            let count = histogram.count.load(Ordering::Relaxed);
            writeln!(
                out,
                "tee_verifier_request_duration_seconds_bucket{{method=\"{name}\",le=\"+Inf\"}} {count}"
            )?;
            let sum =
                Duration::from_nanos(histogram.sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
            writeln!(
                out,
                "tee_verifier_request_duration_seconds_sum{{method=\"{name}\"}} {sum}"
            )?;
            writeln!(
                out,
                "tee_verifier_request_duration_seconds_count{{method=\"{name}\"}} {count}"
            )?;
        }

        let registry = &self.registry;
        writeln!(
            out,
            "# HELP tee_verifier_registry_available 1 while the registry view can answer, else 0."
        )?;
        writeln!(out, "# TYPE tee_verifier_registry_available gauge")?;
        writeln!(
            out,
            "tee_verifier_registry_available {}",
            registry.available.load(Ordering::Relaxed)
        )?;
        writeln!(
            out,
            "# HELP tee_verifier_registry_block The block the registry view is as of."
        )?;
        writeln!(out, "# TYPE tee_verifier_registry_block gauge")?;
        writeln!(
            out,
            "tee_verifier_registry_block {}",
            registry.block.load(Ordering::Relaxed)
        )?;
        let age = registry
            .last_advance
            .lock()
            .ok()
            .and_then(|last| *last)
            .unwrap_or(self.started)
            .elapsed()
            .as_secs_f64();
        writeln!(
            out,
            "# HELP tee_verifier_registry_age_seconds Seconds since the registry view last advanced \
             (new block, rebuild or file reload)."
        )?;
        writeln!(out, "# TYPE tee_verifier_registry_age_seconds gauge")?;
        writeln!(out, "tee_verifier_registry_age_seconds {age}")?;
        writeln!(
            out,
            "# HELP tee_verifier_registry_decisions_total App decisions answered from the cached \
             view (a hit) or by eth_call to the contract (a miss: app code the view cannot evaluate)."
        )?;
        writeln!(out, "# TYPE tee_verifier_registry_decisions_total counter")?;
        writeln!(
            out,
            "tee_verifier_registry_decisions_total{{source=\"view\"}} {}",
            registry.decisions_from_view.load(Ordering::Relaxed)
        )?;
        writeln!(
            out,
            "tee_verifier_registry_decisions_total{{source=\"contract\"}} {}",
            registry.decisions_from_contract.load(Ordering::Relaxed)
        )?;
        writeln!(
            out,
            "# HELP tee_verifier_cache_lookups_total Verification cache lookups by cache and result: \
             a hit reuses checked signatures (time, revocation and policy checks still run), a miss \
             verifies them."
        )?;
        writeln!(out, "# TYPE tee_verifier_cache_lookups_total counter")?;
        for (cache, counts) in caches {
            for (result, count) in [("hit", counts.hits), ("miss", counts.misses)] {
                writeln!(
                    out,
                    "tee_verifier_cache_lookups_total{{cache=\"{cache}\",result=\"{result}\"}} {count}"
                )?;
            }
        }
        write_process(out)
    }
}

/// The process's CPU time and resident memory, under the names Prometheus's process collectors
/// use (read from Linux's `/proc/self`; absent elsewhere).
fn write_process(out: &mut String) -> std::fmt::Result {
    if let Some(seconds) = process_cpu_seconds() {
        writeln!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds."
        )?;
        writeln!(out, "# TYPE process_cpu_seconds_total counter")?;
        writeln!(out, "process_cpu_seconds_total {seconds}")?;
    }
    if let Some(bytes) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| resident_bytes(&status))
    {
        writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory size in bytes."
        )?;
        writeln!(out, "# TYPE process_resident_memory_bytes gauge")?;
        writeln!(out, "process_resident_memory_bytes {bytes}")?;
    }
    Ok(())
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
            let text = Metrics::default().render(&[]);
            assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");
            assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
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
        let text = metrics.render(&caches);
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
