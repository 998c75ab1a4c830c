//! Load generator for `tee-verifier serve`: drives one gRPC method at a chosen concurrency (closed
//! loop) or rate (open loop) against a local server, and prints throughput and latency
//! percentiles. Loopback targets only; runs are bounded in time, concurrency and request count.
//!
//! ```text
//! # terminal 1: a server that accepts the default sample (pinned at its time; test-only flag)
//! cargo run --release -- serve --dangerous-fixed-now 1705431295
//! # terminal 2
//! cargo run --release --example loadgen -- --call verify --concurrency 16 --threads 1 \
//!     --connections 1 --metrics http://127.0.0.1:8000/metrics
//! cargo run --release --example loadgen -- --call check-measurement --concurrency 64 --threads 1
//! cargo run --release --example loadgen -- --call check-measurement --rate 16000 --threads 2 \
//!     --connections 2
//! # capacity closed loop, then open loop at 80 % of it
//! cargo run --release --example loadgen -- --call check-measurement --load-percent 80 \
//!     --concurrency 64 --threads 1
//! ```
//!
//! For `verify` it first measures the warm verification time of the same evidence in this
//! process (single-threaded), and reports the achieved throughput against the ideal
//! `cores ÷ warm verify time`. With `--metrics URL` (the server's `/metrics`) it also reports the
//! server's own CPU time per request, from its `process_cpu_seconds_total`.
//!
//! The client does as little as it can, since it shares the machine with the server: it speaks
//! HTTP/2 directly (no tower stack), each request is framed once and sent as those bytes, and a
//! Verify response is decoded only as far as `verified` and `error`. It reports its own CPU time
//! per request too.
//!
//! The result of verifying byte-identical evidence may be cached by the server; to measure the
//! verification path, send distinct evidence: `--mint-nitro DIR --distinct N` writes N Nitro
//! documents with distinct nonces, signed under a fresh AWS-shaped test PKI (`DIR/root.der`,
//! valid at the time in `DIR/now`), and `--evidence-set DIR/documents.bin --nitro-root
//! DIR/root.der` sends them in turn (the server runs with `--nitro-root DIR/root.der
//! --dangerous-fixed-now $(cat DIR/now)`). The in-process baseline verifies the same documents in
//! the same order, before and after the run; the report gives the ratio of the two rates, and the
//! CPU ratio (verification CPU per document ÷ server and client CPU per request), which is what
//! the throughput ratio would be on a quiet machine. `scripts/soak.sh` drives a soak with it.
//!
//! On a small VM, read the single-threaded baseline with care: one thread alone often runs at a
//! higher clock than two busy cores, so `cores ÷ warm verify` can exceed what the cores do in
//! parallel; the second bound line (all cores verifying in-process, no RPC) is the machine's
//! real ceiling.

#[path = "../tests/it/support/nitro.rs"]
mod nitro_support;

use anyhow::{bail, ensure, Context as _};
use clap::{Parser, ValueEnum};
use prost::bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tee_verifier::evidence::{EvidenceInput, EvidenceVerifier, Expectations};
use tee_verifier::nitro::NitroVerifier;
use tee_verifier::service::process_cpu_seconds;
use tee_verifier::service::proto::{self, check_measurement_request::Measurement};
use tee_verifier::tdx::TdxVerifier;
use tee_verifier::{decode_input, InputEncoding};
use tonic::codegen::http::{self, uri::PathAndQuery, Uri};

/// An hour: long enough for a soak.
const MAX_DURATION_SECS: u64 = 3600;
/// Documents `--mint-nitro` writes at most (each ≈ 4 KiB).
const MAX_DISTINCT: usize = 200_000;
/// Largest document an `--evidence-set` holds.
const MAX_SET_DOCUMENT: usize = 1 << 20;
const MAX_CONCURRENCY: usize = 4096;
const MAX_CONNECTIONS: usize = 64;
/// Latency samples kept per worker (beyond it, calls are counted but not timed).
const MAX_SAMPLES_PER_WORKER: usize = 4_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Call {
    /// Verify the evidence file (a Nitro document by default).
    Verify,
    /// IsAppAllowed with a fixed boot info (answered from the view).
    IsAppAllowed,
    /// CheckMeasurement of an OS image hash (the monitoring probe).
    CheckMeasurement,
}

/// Drive one method of a local tee-verifier and report throughput and latency.
#[derive(Parser, Debug, Clone)]
struct Args {
    /// gRPC address of the server (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    #[arg(long, value_enum, default_value = "check-measurement")]
    call: Call,
    /// Requests in flight at once (closed loop), or workers sharing --rate (open loop).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds of load, after a one-second warm-up.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Open loop: total requests per second, each taken at its scheduled time by whichever
    /// worker is free; latency is measured from that time, so a stalled server is not hidden.
    #[arg(long, conflicts_with = "load_percent")]
    rate: Option<u64>,
    /// Measure the capacity closed loop first (for --duration), then run open loop at this
    /// percentage of it: `--load-percent 80` is "p99 at 80 % load" in one command.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100))]
    load_percent: Option<u64>,
    /// HTTP/2 connections the workers share.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Stop after this many requests (besides --duration).
    #[arg(long, default_value_t = 50_000_000)]
    max_requests: u64,
    /// Evidence for --call verify (raw, hex or base64); default: the Signal Nitro sample.
    #[arg(long, conflicts_with = "evidence_set")]
    evidence: Option<PathBuf>,
    /// Nitro documents for --call verify, sent in turn (as --mint-nitro writes them: each a
    /// big-endian u32 length and the document).
    #[arg(long)]
    evidence_set: Option<PathBuf>,
    /// The Nitro root the evidence chains to, for the local baseline (DER); default: AWS's.
    #[arg(long)]
    nitro_root: Option<PathBuf>,
    /// Write --distinct Nitro documents with distinct nonces, signed under a fresh AWS-shaped test
    /// PKI, to DIR (documents.bin, root.der, and `now`: a time they are valid at), and exit.
    #[arg(long, value_name = "DIR")]
    mint_nitro: Option<PathBuf>,
    /// How many documents --mint-nitro writes; more than the server's result cache holds, so
    /// that each request is verified.
    #[arg(long, default_value_t = 20_000)]
    distinct: usize,
    /// Skip the in-process baseline (a soak driving two methods at once).
    #[arg(long)]
    no_baseline: bool,
    /// Print one JSON object (for scripts) instead of the report.
    #[arg(long)]
    json: bool,
    /// The time the evidence is valid at, for the local warm-verify baseline (unix seconds).
    #[arg(long, default_value_t = 1_705_431_295)]
    now: u64,
    /// Client runtime threads [default: CPUs].
    #[arg(long)]
    threads: Option<usize>,
    /// The server's Prometheus endpoint (e.g. http://127.0.0.1:8000/metrics), to report its CPU
    /// time per request (loopback only).
    #[arg(long)]
    metrics: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if let Some(dir) = &args.mint_nitro {
        return mint_nitro(dir, args.distinct);
    }
    ensure!(
        args.duration >= 1 && args.duration <= MAX_DURATION_SECS,
        "--duration must be 1..={MAX_DURATION_SECS}"
    );
    ensure!(
        args.concurrency >= 1 && args.concurrency <= MAX_CONCURRENCY,
        "--concurrency must be 1..={MAX_CONCURRENCY}"
    );
    ensure!(
        args.connections >= 1 && args.connections <= MAX_CONNECTIONS,
        "--connections must be 1..={MAX_CONNECTIONS}"
    );
    ensure_loopback(&args.target)?;
    if let Some(url) = &args.metrics {
        ensure_loopback(url)?;
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);

    let (requests, evidence) = build_requests(&args)?;
    let verifier = baseline_verifier(args.nitro_root.as_deref())?;
    let baseline = |when| match (&evidence, args.no_baseline) {
        (Some(evidence), false) => {
            warm_verify_baseline(&verifier, evidence, args.now, cores, when).map(Some)
        }
        _ => Ok(None),
    };
    let before = baseline("before")?;

    // One thread: a current-thread runtime, so no call crosses threads.
    let threads = args.threads.unwrap_or(cores);
    let runtime = match threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        _ => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
    }
    .enable_all()
    .build()?;
    let requests = Arc::new(requests);
    let capacity = match args.load_percent {
        Some(percent) => {
            let closed = runtime.block_on(run(&args, Arc::clone(&requests)))?;
            let capacity = closed.ok as f64 / closed.elapsed.as_secs_f64();
            args.rate = Some(((capacity * percent as f64 / 100.0) as u64).max(1));
            Some(capacity)
        }
        None => None,
    };
    let client_before = process_cpu_seconds();
    let (report, server_cpu) = runtime.block_on(async {
        let cpu_before = server_cpu_seconds(args.metrics.as_deref()).await?;
        let report = run(&args, Arc::clone(&requests)).await?;
        let cpu_after = server_cpu_seconds(args.metrics.as_deref()).await?;
        anyhow::Ok((report, cpu_before.zip(cpu_after)))
    })?;
    let client_cpu = process_cpu_seconds().zip(client_before);
    let after = baseline("after")?;

    // CPU per request, over every request sent (warm-up included).
    let per_request = |seconds: f64| seconds / report.sent.max(1) as f64;
    let summary = Summary {
        throughput: report.ok as f64 / report.elapsed.as_secs_f64(),
        client_cpu: client_cpu.map(|(after, before)| per_request(after - before)),
        server_cpu: server_cpu.map(|(before, after)| per_request(after - before)),
        baseline: before.zip(after),
        capacity,
    };
    if args.json {
        println!("{}", summary.json(&args, &report, cores));
    } else {
        summary.print(&args, &report, cores);
    }
    Ok(())
}

/// What a run measured, besides the latencies.
struct Summary {
    throughput: f64,
    /// Seconds of CPU per request, the load generator's and the server's.
    client_cpu: Option<f64>,
    server_cpu: Option<f64>,
    /// In-process verification, before and after the run.
    baseline: Option<(Baseline, Baseline)>,
    /// The closed-loop rate measured first (`--load-percent`).
    capacity: Option<f64>,
}

impl Summary {
    /// The in-process all-core rate: the mean of the rates before and after the run (the
    /// machine's speed drifts; the run sits between them).
    fn in_process_rate(&self) -> Option<f64> {
        self.baseline
            .as_ref()
            .map(|(before, after)| (before.parallel_rate + after.parallel_rate) / 2.0)
    }

    /// Verification CPU per document ÷ (server + client CPU per request): the throughput ratio a
    /// quiet machine would show, since both share its cores.
    fn cpu_ratio(&self) -> Option<f64> {
        let (before, after) = self.baseline.as_ref()?;
        let verification = (before.cpu_per_verification + after.cpu_per_verification) / 2.0;
        Some(verification / (self.server_cpu? + self.client_cpu?))
    }

    fn json(&self, args: &Args, report: &Report, cores: usize) -> serde_json::Value {
        let us = |seconds: Option<f64>| seconds.map(|s| (s * 1e6).round());
        serde_json::json!({
            "call": format!("{:?}", args.call),
            "rate": args.rate,
            "capacity": self.capacity.map(f64::round),
            "load_percent": args.load_percent,
            "concurrency": args.concurrency,
            "cores": cores,
            "ok": report.ok,
            "errors": report.errors,
            "seconds": report.elapsed.as_secs_f64(),
            "throughput": self.throughput.round(),
            "p50_us": report.percentile(50.0),
            "p90_us": report.percentile(90.0),
            "p99_us": report.percentile(99.0),
            "p999_us": report.percentile(99.9),
            "max_us": report.latencies.last().copied().unwrap_or(0),
            "client_cpu_us": us(self.client_cpu),
            "server_cpu_us": us(self.server_cpu),
            "in_process_rate": self.in_process_rate().map(f64::round),
            "in_process_rates": self.baseline.as_ref().map(|(before, after)| [before.parallel_rate.round(), after.parallel_rate.round()]),
            "verification_cpu_us": self.baseline.as_ref().map(|(before, after)| ((before.cpu_per_verification + after.cpu_per_verification) * 5e5).round()),
            "ratio": self.in_process_rate().map(|rate| self.throughput / rate),
            "cpu_ratio": self.cpu_ratio(),
            "first_error": report.first_error,
        })
    }

    fn print(&self, args: &Args, report: &Report, cores: usize) {
        println!("call          {:?}", args.call);
        println!(
            "load          {} workers over {} connections, {}",
            args.concurrency,
            args.connections,
            match (args.rate, self.capacity, args.load_percent) {
                (Some(rate), Some(capacity), Some(percent)) => format!(
                    "open loop at {rate} req/s ({percent} % of the {capacity:.0} req/s measured closed loop first)"
                ),
                (Some(rate), _, _) => format!("open loop at {rate} req/s"),
                (None, _, _) => "closed loop".to_owned(),
            }
        );
        println!(
            "requests      {} ok, {} errors in {:.2} s",
            report.ok,
            report.errors,
            report.elapsed.as_secs_f64()
        );
        println!("throughput    {:.0} req/s", self.throughput);
        println!(
            "latency       p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            micros(report.percentile(50.0)),
            micros(report.percentile(90.0)),
            micros(report.percentile(99.0)),
            micros(report.percentile(99.9)),
            micros(report.latencies.last().copied().unwrap_or(0)),
        );
        let us = |seconds: f64| micros((seconds * 1e6) as u64);
        if let Some(client) = self.client_cpu {
            println!("client CPU    {} per request", us(client));
        }
        if let Some(server) = self.server_cpu {
            println!("server CPU    {} per request", us(server));
        }
        if let Some((before, after)) = &self.baseline {
            let single = before.single.min(after.single);
            let ideal = cores as f64 / single.as_secs_f64();
            println!(
                "verify bound  warm verify {} single-threaded → {cores} cores ÷ that = {ideal:.0} req/s; achieved {:.0} %",
                micros(u64::try_from(single.as_micros()).unwrap_or(u64::MAX)),
                100.0 * self.throughput / ideal
            );
            let rate = self.in_process_rate().unwrap_or(f64::NAN);
            println!(
                "              in-process on {cores} threads at once: {:.0} before, {:.0} after the run → {rate:.0} verifications/s; achieved {:.0} % of that",
                before.parallel_rate,
                after.parallel_rate,
                100.0 * self.throughput / rate
            );
            let verification = (before.cpu_per_verification + after.cpu_per_verification) / 2.0;
            match self.cpu_ratio() {
                Some(ratio) => println!(
                    "              CPU: verification {} per document ÷ (server + client) per request = {:.0} %",
                    us(verification),
                    100.0 * ratio
                ),
                None => println!(
                    "              CPU: verification {} per document (--metrics for the server's)",
                    us(verification)
                ),
            }
        }
        if let Some(first_error) = &report.first_error {
            println!("first error   {first_error}");
        }
    }
}

fn micros(value: u64) -> String {
    if value >= 10_000 {
        format!("{:.1} ms", value as f64 / 1000.0)
    } else {
        format!("{value} µs")
    }
}

/// Refuses anything but a loopback target: this tool is for measuring a local server.
fn ensure_loopback(target: &str) -> anyhow::Result<()> {
    let uri: tonic::codegen::http::Uri = target.parse().context("--target is not a URI")?;
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("{target}: only loopback addresses (127.0.0.1, ::1 or localhost) are measured, not {host:?}");
    }
    Ok(())
}

/// The server's `process_cpu_seconds_total`, if a metrics URL was given.
async fn server_cpu_seconds(url: Option<&str>) -> anyhow::Result<Option<f64>> {
    let Some(url) = url else {
        return Ok(None);
    };
    let text = reqwest::get(url)
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("reading {url}"))?
        .text()
        .await?;
    let seconds = text
        .lines()
        .find_map(|line| line.strip_prefix("process_cpu_seconds_total "))
        .with_context(|| format!("{url} has no process_cpu_seconds_total"))?;
    Ok(Some(seconds.trim().parse()?))
}

/// One method's request, framed once (gRPC's 5-byte prefix and the encoded message): workers
/// send these bytes as they are.
#[derive(Clone)]
struct Prepared {
    call: Call,
    path: PathAndQuery,
    frame: Bytes,
}

impl Prepared {
    fn new(call: Call, path: &'static str, message: &impl prost::Message) -> Self {
        let encoded = message.encode_to_vec();
        let length = u32::try_from(encoded.len()).unwrap_or(u32::MAX);
        let mut frame = Vec::with_capacity(5 + encoded.len());
        frame.push(0); // not compressed
        frame.extend_from_slice(&length.to_be_bytes());
        frame.extend_from_slice(&encoded);
        Prepared {
            call,
            path: PathAndQuery::from_static(path),
            frame: frame.into(),
        }
    }
}

/// The requests of a run, sent in turn by all workers (one, or one per distinct document).
struct Requests {
    prepared: Vec<Prepared>,
    next: AtomicUsize,
}

impl Requests {
    fn next(&self) -> &Prepared {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.prepared.len();
        &self.prepared[index]
    }
}

/// The requests for `--call`, and for Verify the evidence (for the local baseline).
fn build_requests(args: &Args) -> anyhow::Result<(Requests, Option<Vec<Vec<u8>>>)> {
    let (prepared, evidence) = match args.call {
        Call::Verify => {
            let documents = match &args.evidence_set {
                Some(path) => read_evidence_set(path)?,
                None => {
                    let path = args.evidence.clone().unwrap_or_else(default_evidence);
                    let bytes = std::fs::read(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    vec![decode_input(&bytes, InputEncoding::Auto)?]
                }
            };
            let prepared = documents
                .iter()
                .map(|document| {
                    let request = proto::VerifyRequest {
                        evidence: Some(proto::verify_request::Evidence::NitroDocument(
                            document.clone(),
                        )),
                        ..Default::default()
                    };
                    Prepared::new(Call::Verify, "/tee_verifier.v1.Verifier/Verify", &request)
                })
                .collect();
            (prepared, Some(documents))
        }
        Call::IsAppAllowed => {
            let request = proto::IsAppAllowedRequest {
                boot_info: Some(proto::BootInfo {
                    app_id: "0x".to_owned() + &"ab".repeat(20),
                    compose_hash: "0x".to_owned() + &"cd".repeat(32),
                    device_id: "0x".to_owned() + &"ef".repeat(32),
                    os_image_hash: "0x".to_owned() + &"01".repeat(32),
                    tcb_status: "UpToDate".to_owned(),
                    ..Default::default()
                }),
            };
            let prepared = Prepared::new(
                Call::IsAppAllowed,
                "/tee_verifier.v1.Verifier/IsAppAllowed",
                &request,
            );
            (vec![prepared], None)
        }
        Call::CheckMeasurement => {
            let request = proto::CheckMeasurementRequest {
                measurement: Some(Measurement::OsImageHash("0x".to_owned() + &"01".repeat(32))),
            };
            let prepared = Prepared::new(
                Call::CheckMeasurement,
                "/tee_verifier.v1.Verifier/CheckMeasurement",
                &request,
            );
            (vec![prepared], None)
        }
    };
    let requests = Requests {
        prepared,
        next: AtomicUsize::new(0),
    };
    Ok((requests, evidence))
}

fn default_evidence() -> PathBuf {
    let samples = std::env::var_os("TEE_VERIFIER_SAMPLES").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/samples"),
        PathBuf::from,
    );
    samples.join("nitro/signal_test_cose_sign1_02.cbor")
}

/// Writes `count` documents that differ only in their nonce (so in their signature too), under
/// one AWS-shaped test PKI, with its root and a time they are valid at.
fn mint_nitro(dir: &Path, count: usize) -> anyhow::Result<()> {
    ensure!(
        (1..=MAX_DISTINCT).contains(&count),
        "--distinct must be 1..={MAX_DISTINCT}"
    );
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let pki = nitro_support::TestPki::aws_like();
    let mut document = nitro_support::Document::new(&pki);
    let mut set = Vec::new();
    for index in 0..count {
        let nonce = format!("loadgen-{index:08}");
        document
            .payload
            .set("nonce", nitro_support::Cbor::bytes(nonce.as_bytes()));
        let signed = document.sign(&pki);
        set.extend_from_slice(&u32::try_from(signed.len())?.to_be_bytes());
        set.extend_from_slice(&signed);
    }
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    write("documents.bin", &set)?;
    write("root.der", pki.root())?;
    write("now", nitro_support::NOW.to_string().as_bytes())?;
    println!(
        "{count} documents ({} bytes) in {}; serve with --nitro-root {} --dangerous-fixed-now {}",
        set.len(),
        dir.join("documents.bin").display(),
        dir.join("root.der").display(),
        nitro_support::NOW
    );
    Ok(())
}

/// The documents of an `--evidence-set` file.
fn read_evidence_set(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut rest = bytes.as_slice();
    let mut documents = Vec::new();
    while let Some((length, tail)) = rest.split_first_chunk::<4>() {
        let length = usize::try_from(u32::from_be_bytes(*length))?;
        ensure!(
            length <= MAX_SET_DOCUMENT && length <= tail.len(),
            "{}: a document of {length} bytes is cut off or over {MAX_SET_DOCUMENT}",
            path.display()
        );
        let (document, tail) = tail.split_at(length);
        documents.push(document.to_vec());
        rest = tail;
    }
    ensure!(
        rest.is_empty() && !documents.is_empty(),
        "{}: not a set of length-prefixed documents",
        path.display()
    );
    Ok(documents)
}

/// The verifier of the local baseline: the service's defaults, or another Nitro root.
fn baseline_verifier(nitro_root: Option<&Path>) -> anyhow::Result<EvidenceVerifier> {
    Ok(match nitro_root {
        Some(path) => {
            let der = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            EvidenceVerifier::new(NitroVerifier::with_root_der(&der), TdxVerifier::new())
        }
        None => EvidenceVerifier::default(),
    })
}

/// The local cost of verifying the request's evidence, warm: one thread alone, and all cores at
/// once (what this machine can do with no RPC at all), with the CPU time that took.
struct Baseline {
    single: Duration,
    parallel_rate: f64,
    /// Process CPU seconds per verification while all cores verified.
    cpu_per_verification: f64,
}

fn warm_verify_baseline(
    verifier: &EvidenceVerifier,
    documents: &[Vec<u8>],
    now: u64,
    cores: usize,
    when: &str,
) -> anyhow::Result<Baseline> {
    let input = |document| EvidenceInput {
        evidence: document,
        ..Default::default()
    };
    let expect = Expectations::default();
    if let Some(document) = documents.first() {
        verifier
            .verify(&input(document), now, &expect)
            .map_err(|e| {
                anyhow::anyhow!("the evidence does not verify at --now {now} ({when} the run): {e}")
            })?;
    }
    const ROUNDS: usize = 200;
    const BATCHES: usize = 5;
    // Each thread walks the documents as the server sees them: in turn, from its own offset.
    // Returns how many did not verify (none may: a rejection is cheaper than a verification).
    let rounds = |verifier: &EvidenceVerifier, offset: usize| {
        (0..ROUNDS)
            .filter(|round| {
                let document = &documents[(offset + round) % documents.len()];
                verifier.verify(&input(document), now, &expect).is_err()
            })
            .count()
    };
    // The median of a few batches: this machine's speed drifts by tens of percent.
    let mut failed = 0;
    let mut batches: Vec<Duration> = (0..BATCHES)
        .map(|batch| {
            let started = Instant::now();
            failed += rounds(verifier, batch * ROUNDS);
            started.elapsed() / ROUNDS as u32
        })
        .collect();
    batches.sort_unstable();
    let single = batches[BATCHES / 2];
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    failed += std::thread::scope(|scope| {
        let threads: Vec<_> = (0..cores)
            .map(|thread| {
                let verifier = verifier.clone();
                scope.spawn(move || {
                    (0..BATCHES)
                        .map(|batch| rounds(&verifier, (thread * BATCHES + batch) * ROUNDS))
                        .sum::<usize>()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| thread.join().unwrap_or(ROUNDS * BATCHES))
            .sum::<usize>()
    });
    let elapsed = started.elapsed().as_secs_f64();
    ensure!(
        failed == 0,
        "{failed} documents did not verify at --now {now} ({when} the run)"
    );
    let verifications = (ROUNDS * BATCHES * cores) as f64;
    let cpu = process_cpu_seconds()
        .zip(cpu_before)
        .map_or(f64::NAN, |(after, before)| after - before);
    Ok(Baseline {
        single,
        parallel_rate: verifications / elapsed,
        cpu_per_verification: cpu / verifications,
    })
}

struct Report {
    ok: u64,
    errors: u64,
    /// Every request sent, warm-up included.
    sent: u64,
    elapsed: Duration,
    /// Sorted, in microseconds.
    latencies: Vec<u64>,
    first_error: Option<String>,
}

impl Report {
    fn percentile(&self, percent: f64) -> u64 {
        if self.latencies.is_empty() {
            return 0;
        }
        let rank = ((percent / 100.0) * (self.latencies.len() - 1) as f64).round() as usize;
        self.latencies.get(rank).copied().unwrap_or(0)
    }
}

struct WorkerResult {
    ok: u64,
    errors: u64,
    sent: u64,
    latencies: Vec<u64>,
    first_error: Option<String>,
}

async fn run(args: &Args, requests: Arc<Requests>) -> anyhow::Result<Report> {
    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        channels.push(
            Connection::open(&args.target)
                .await
                .with_context(|| format!("connecting to {}", args.target))?,
        );
    }
    // One checked call first: a server that rejects the evidence would make numbers meaningless.
    let mut probe = channels[0].clone();
    call(&mut probe, requests.next())
        .await
        .map_err(|e| anyhow::anyhow!("first call failed: {e}"))?;

    let warmup = Duration::from_secs(1);
    let start = Instant::now() + warmup;
    let end = start + Duration::from_secs(args.duration);
    let per_worker_budget = args.max_requests / args.concurrency as u64 + 1;
    // Open loop: a pacer thread queues each request's scheduled send time, and whichever worker
    // is free takes the next one; latency counts from that time, so a server that falls behind
    // (or a client short of workers) is not hidden.
    let schedule = args.rate.map(|rate| {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        std::thread::spawn(move || pace(rate.max(1), start - warmup, end, sender));
        Arc::new(tokio::sync::Mutex::new(receiver))
    });
    let mut workers = Vec::with_capacity(args.concurrency);
    for index in 0..args.concurrency {
        let channel = channels[index % channels.len()].clone();
        let requests = Arc::clone(&requests);
        let schedule = schedule.clone();
        workers.push(tokio::spawn(async move {
            let mut client = channel;
            let mut result = WorkerResult {
                ok: 0,
                errors: 0,
                sent: 0,
                latencies: Vec::new(),
                first_error: None,
            };
            loop {
                let began = match &schedule {
                    // The lock is held only until the next send time is taken, in FIFO order.
                    Some(schedule) => match schedule.lock().await.recv().await {
                        Some(at) => at,
                        None => break,
                    },
                    None => Instant::now(),
                };
                if began >= end || result.sent >= per_worker_budget {
                    break;
                }
                let outcome = call(&mut client, requests.next()).await;
                result.sent += 1;
                if began < start {
                    continue;
                }
                match outcome {
                    Ok(()) => {
                        result.ok += 1;
                        if result.latencies.len() < MAX_SAMPLES_PER_WORKER {
                            let micros =
                                u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
                            result.latencies.push(micros);
                        }
                    }
                    Err(error) => {
                        result.errors += 1;
                        result.first_error.get_or_insert(error);
                    }
                }
            }
            result
        }));
    }
    let mut report = Report {
        ok: 0,
        errors: 0,
        sent: 1,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        first_error: None,
    };
    for worker in workers {
        let result = worker.await?;
        report.ok += result.ok;
        report.errors += result.errors;
        report.sent += result.sent;
        report.latencies.extend(result.latencies);
        if report.first_error.is_none() {
            report.first_error = result.first_error;
        }
    }
    report.elapsed = Instant::now().min(end).saturating_duration_since(start);
    report.latencies.sort_unstable();
    Ok(report)
}

/// Queues `rate` send times per second from `begin` to `end`, each its exact scheduled instant,
/// released in batches every 100 µs (a thread of its own, so the schedule never waits on the
/// workers' runtime; a request released up to 100 µs late counts that time as latency).
fn pace(
    rate: u64,
    begin: Instant,
    end: Instant,
    schedule: tokio::sync::mpsc::UnboundedSender<Instant>,
) {
    let interval = 1.0 / rate as f64;
    let mut sent = 0u64;
    loop {
        let now = Instant::now();
        loop {
            let at = begin + Duration::from_secs_f64(sent as f64 * interval);
            if at >= end {
                return;
            }
            if at > now {
                break;
            }
            if schedule.send(at).is_err() {
                return;
            }
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// One call; a rejected verification counts as an error (the server must accept the evidence).
async fn call(client: &mut Connection, request: &Prepared) -> Result<(), String> {
    match request.call {
        Call::Verify => {
            let response: VerifyOutcome = unary(client, request).await?;
            if response.verified {
                Ok(())
            } else {
                Err(format!(
                    "not verified: {:?} (start the server with --dangerous-fixed-now matching the evidence)",
                    response.error
                ))
            }
        }
        Call::IsAppAllowed => unary::<proto::Decision>(client, request).await.map(drop),
        Call::CheckMeasurement => unary::<proto::CheckMeasurementResponse>(client, request)
            .await
            .map(drop),
    }
}

async fn unary<Response>(client: &mut Connection, request: &Prepared) -> Result<Response, String>
where
    Response: prost::Message + Default,
{
    let answer = client.unary(request).await?;
    Response::decode(answer).map_err(|e| format!("undecodable answer: {e}"))
}

/// A bare HTTP/2 connection speaking unary gRPC: each call is one HEADERS and one DATA frame out
/// and the answer's frames in, with no per-call encoding and no middleware. The load generator
/// shares the two cores with the server, so it does as little per call as a client can.
#[derive(Clone)]
struct Connection {
    sender: h2::client::SendRequest<Bytes>,
    authority: http::uri::Authority,
}

impl Connection {
    async fn open(target: &str) -> anyhow::Result<Connection> {
        let uri: Uri = target.parse().context("--target is not a URI")?;
        let authority = uri
            .authority()
            .context("--target has no host:port")?
            .clone();
        let tcp = tokio::net::TcpStream::connect(authority.as_str()).await?;
        tcp.set_nodelay(true)?;
        let (sender, connection) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 24)
            .handshake(tcp)
            .await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                eprintln!("connection closed: {error}");
            }
        });
        Ok(Connection { sender, authority })
    }

    /// Sends the prepared frame; returns the answer's message bytes, or the gRPC status.
    async fn unary(&mut self, request: &Prepared) -> Result<Bytes, String> {
        let uri = Uri::builder()
            .scheme("http")
            .authority(self.authority.clone())
            .path_and_query(request.path.clone())
            .build()
            .map_err(|e| e.to_string())?;
        let head = http::Request::post(uri)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(())
            .map_err(|e| e.to_string())?;
        let h2_error = |e: h2::Error| e.to_string();
        let mut sender = self.sender.clone().ready().await.map_err(h2_error)?;
        let (answer, mut outgoing) = sender.send_request(head, false).map_err(h2_error)?;
        outgoing
            .send_data(request.frame.clone(), true)
            .map_err(h2_error)?;
        let (head, mut body) = answer.await.map_err(h2_error)?.into_parts();
        if head.status != http::StatusCode::OK {
            return Err(format!("HTTP {}", head.status));
        }
        grpc_status(&head.headers)?; // a trailers-only answer carries its status here
        let mut frames = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(h2_error)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            frames.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await.map_err(h2_error)?.unwrap_or_default();
        grpc_status(&trailers)?;
        match frames.split_first_chunk::<5>() {
            Some(([0, length @ ..], message))
                if usize::try_from(u32::from_be_bytes(*length)).ok() == Some(message.len()) =>
            {
                Ok(Bytes::copy_from_slice(message))
            }
            _ => Err(format!(
                "not one uncompressed gRPC message ({} bytes)",
                frames.len()
            )),
        }
    }
}

/// An error for a `grpc-status` other than 0 (OK), with its `grpc-message`.
fn grpc_status(headers: &http::HeaderMap) -> Result<(), String> {
    match headers.get("grpc-status").map(http::HeaderValue::as_bytes) {
        None | Some(b"0") => Ok(()),
        Some(code) => Err(format!(
            "grpc-status {}: {}",
            String::from_utf8_lossy(code),
            headers
                .get("grpc-message")
                .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
                .unwrap_or_default()
        )),
    }
}

/// The part of a `VerifyResponse` a run checks; prost skips the other fields undecoded.
#[derive(Clone, PartialEq, prost::Message)]
struct VerifyOutcome {
    #[prost(bool, tag = "1")]
    verified: bool,
    #[prost(message, optional, tag = "2")]
    error: Option<proto::VerificationError>,
}
