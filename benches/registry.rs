//! Registry benchmarks at a million registered apps, each with one compose hash and one device
//! (issues 14 and 16):
//!
//! - memory: the view built from events-equivalent API calls (what the chain follower does) and
//!   from a generated registry file (`FileRegistry::open`), each in a fresh child process (this
//!   binary re-executed), so each peak (VmHWM, from `/proc/self/status`) is that build's alone.
//!   Targets: peak ≤ 256 MiB; at rest ≤ 160 B per app, counted as the heap bytes the view holds
//!   (a counting allocator) over the apps.
//! - decisions: `isAppAllowed` on uniformly random apps over the whole view (a precomputed random
//!   list, so every iteration looks up another app: target ≤ 1 µs), on random unregistered app
//!   ids, and `isKmsAllowed`.
//!
//! `cargo bench --bench registry -- --warm-up-time 1 --measurement-time 3`

#![allow(unsafe_code)] // a counting global allocator, to measure the view's memory

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{criterion_group, Criterion};
use tee_verifier::boot_info::BootInfo;
use tee_verifier::registry::decision::{kms_is_app_allowed, kms_is_kms_allowed, AppVerdict};
use tee_verifier::registry::file::FileRegistry;
use tee_verifier::registry::view::{AppList, AppPolicy, KmsList, RegistryView};
use tee_verifier::registry::{Lookup, Registry as _};

/// Counts live heap bytes so the view's size is measured, not guessed.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const APPS: u32 = 1_000_000;
/// The child-process switch: `events` or `file:<path>`.
const CHILD_ENV: &str = "TEE_VERIFIER_REGISTRY_BENCH_CHILD";
/// Random boots the decision benches cycle through (each a different app).
const RANDOM_BOOTS: usize = 1 << 16;

fn word(tag: u8, i: u32) -> [u8; 32] {
    let mut out = [tag; 32];
    out[..4].copy_from_slice(&i.to_le_bytes());
    out
}

fn app_id(i: u32) -> [u8; 20] {
    let mut out = [0xa0; 20];
    out[..4].copy_from_slice(&i.to_le_bytes());
    out
}

const IMPLEMENTATION: [u8; 20] = [0x11; 20];

fn build_view(apps: u32) -> RegistryView {
    let mut view = RegistryView::new();
    view.set_gateway_app_id("gateway".into());
    for i in 0..16 {
        view.set(KmsList::OsImages, word(1, i), true);
        view.set(KmsList::KmsAggregatedMrs, word(2, i), true);
        view.set(KmsList::KmsDeviceIds, word(3, i), true);
    }
    let policy = AppPolicy {
        require_tcb_up_to_date: true,
        implementation: Some(IMPLEMENTATION),
        ..AppPolicy::default()
    };
    for i in 0..apps {
        let id = app_id(i);
        view.register_app(id);
        view.set_app_policy(&id, policy);
        view.set_app_value(&id, AppList::ComposeHashes, word(4, i), true);
        view.set_app_value(&id, AppList::DeviceIds, word(5, i), true);
    }
    view.shrink_to_fit();
    view
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The registry file of [`build_view`]'s view, in the format `registry show` prints.
fn write_registry_file(path: &std::path::Path, apps: u32) -> std::io::Result<u64> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let list = |tag: u8| {
        (0..16)
            .map(|i| format!("\"0x{}\"", hex(&word(tag, i))))
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(out, "block = 1\ngateway_app_id = \"gateway\"")?;
    writeln!(out, "os_images = [{}]", list(1))?;
    writeln!(out, "kms_aggregated_mrs = [{}]", list(2))?;
    writeln!(out, "kms_device_ids = [{}]", list(3))?;
    let implementation = hex(&IMPLEMENTATION);
    for i in 0..apps {
        writeln!(
            out,
            "\n[[apps]]\napp_id = \"0x{}\"\ncompose_hashes = [\"0x{}\"]\ndevice_ids = [\"0x{}\"]\n\
             allow_any_device = false\nrequire_tcb_up_to_date = true\ncode = \"known\"\n\
             implementation = \"0x{implementation}\"",
            hex(&app_id(i)),
            hex(&word(4, i)),
            hex(&word(5, i)),
        )?;
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| {
            line.strip_prefix(field)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// One build in this (fresh) process: prints its figures as one line for the parent.
fn child(mode: &str) {
    let rss_before = status_kib("VmRSS:");
    let live_before = LIVE.load(Ordering::Relaxed);
    let started = std::time::Instant::now();
    let (label, keep): (&str, Box<dyn std::any::Any>) = if mode == "events" {
        ("events", Box::new(build_view(APPS)))
    } else {
        let path = mode
            .strip_prefix("file:")
            .expect("mode is events or file:<path>");
        let registry = FileRegistry::open(path).expect("the generated file loads");
        let probe = Lookup::RegisteredApp(app_id(APPS - 1));
        assert!(registry.lookup(&probe).unwrap().present);
        ("file", Box::new(registry))
    };
    let built_in = started.elapsed();
    let live = LIVE.load(Ordering::Relaxed) - live_before;
    let hwm = status_kib("VmHWM:");
    let rss = status_kib("VmRSS:").saturating_sub(rss_before);
    println!(
        "registry build from {label}: {APPS} apps in {built_in:.2?}; at rest {:.1} MiB heap \
         ({:.0} B per app, target 160), RSS +{:.1} MiB; peak VmHWM {:.1} MiB (target 256, \
         process baseline {:.1} MiB)",
        live as f64 / f64::from(1 << 20),
        live as f64 / f64::from(APPS),
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        rss_before as f64 / 1024.0,
    );
    drop(keep);
}

/// Runs [`child`] in a fresh copy of this binary and relays what it printed.
fn in_child_process(mode: &str) {
    let exe = std::env::current_exe().expect("the bench binary's path");
    let output = std::process::Command::new(exe)
        .env(CHILD_ENV, mode)
        .output()
        .expect("the bench re-executes itself");
    assert!(
        output.status.success(),
        "child {mode} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    print!("{}", String::from_utf8_lossy(&output.stdout));
}

fn memory() {
    in_child_process("events");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("registry.toml");
    let bytes = write_registry_file(&path, APPS).expect("the registry file is written");
    println!(
        "registry file of {APPS} apps: {:.1} MiB",
        bytes as f64 / f64::from(1 << 20)
    );
    in_child_process(&format!("file:{}", path.display()));
}

/// xorshift64*: a fixed, dependency-free sequence of uniformly spread indices.
fn random_indices(count: usize, below: u32) -> Vec<u32> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..count)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
            u32::try_from((r >> 32) % u64::from(below)).expect("below a u32")
        })
        .collect()
}

fn boot(i: u32) -> BootInfo {
    BootInfo {
        app_id: app_id(i),
        compose_hash: word(4, i),
        device_id: word(5, i),
        mr_aggregated: word(2, 3),
        os_image_hash: word(1, 7),
        tcb_status: "UpToDate".into(),
        ..BootInfo::default()
    }
}

/// Cycles through `boots`, one per iteration.
fn cycling<'a>(boots: &'a [BootInfo]) -> impl FnMut() -> &'a BootInfo + 'a {
    let mut next = 0;
    move || {
        let boot = &boots[next];
        next = (next + 1) % boots.len();
        boot
    }
}

fn decisions(c: &mut Criterion) {
    let view = build_view(APPS);
    let allowed: Vec<BootInfo> = random_indices(RANDOM_BOOTS, APPS)
        .into_iter()
        .map(boot)
        .collect();
    for boot in &allowed {
        assert!(matches!(kms_is_app_allowed(&view, boot), AppVerdict::Decided(v) if v.allowed));
    }
    let unregistered: Vec<BootInfo> = random_indices(RANDOM_BOOTS, u32::MAX)
        .into_iter()
        .map(|i| BootInfo {
            app_id: {
                let mut id = app_id(i);
                id[4] = 0x5e;
                id
            },
            ..boot(i)
        })
        .collect();
    for boot in &unregistered {
        assert!(view.app(&boot.app_id).is_none());
    }
    let mut group = c.benchmark_group("registry");
    group.bench_function("decide_app allowed, random app of 1M", |b| {
        let mut next = cycling(&allowed);
        b.iter(|| kms_is_app_allowed(black_box(&view), black_box(next())))
    });
    group.bench_function("decide_app not registered, random id (1M apps)", |b| {
        let mut next = cycling(&unregistered);
        b.iter(|| kms_is_app_allowed(black_box(&view), black_box(next())))
    });
    group.bench_function("decide_kms allowed", |b| {
        b.iter(|| kms_is_kms_allowed(black_box(&view), black_box(&allowed[0])))
    });
    group.finish();
}

criterion_group!(benches, decisions);

fn main() {
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        child(&mode);
        return;
    }
    // Only under `cargo bench` (which passes `--bench`): `cargo test --benches` runs this binary
    // too, unoptimized, and needs only the decisions' one pass each.
    if std::env::args().any(|arg| arg == "--bench") {
        memory();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
