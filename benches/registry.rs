//! Registry benchmarks: one decision from the view (target ≤ 2 µs) and the memory of a view with
//! a million registered apps (target < 256 MiB), each with one compose hash and one device.
//!
//! `cargo bench --bench registry -- --warm-up-time 1 --measurement-time 3`

#![allow(unsafe_code)] // a counting global allocator, to measure the view's memory

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{criterion_group, criterion_main, Criterion};
use tee_verifier::boot_info::BootInfo;
use tee_verifier::registry::decision::{kms_is_app_allowed, kms_is_kms_allowed};
use tee_verifier::registry::view::{AppList, AppPolicy, KmsList, RegistryView};

/// Counts live heap bytes (and the peak) so the view's size is measured, not guessed.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const APPS: u32 = 1_000_000;

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
        implementation: Some([0x11; 20]),
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

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
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

fn registry(c: &mut Criterion) {
    let rss_before = rss_kib();
    let live_before = LIVE.load(Ordering::Relaxed);
    PEAK.store(live_before, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let view = build_view(APPS);
    let built_in = started.elapsed();
    let live = LIVE.load(Ordering::Relaxed) - live_before;
    let peak = PEAK.load(Ordering::Relaxed) - live_before;
    let rss = rss_kib()
        .zip(rss_before)
        .map(|(after, before)| after.saturating_sub(before));
    println!(
        "view of {APPS} apps (1 compose hash + 1 device each): {:.1} MiB allocated ({:.1} MiB peak while building, \
         {:.0} B per app), RSS +{} MiB, built in {built_in:.2?}",
        live as f64 / (1 << 20) as f64,
        peak as f64 / (1 << 20) as f64,
        live as f64 / f64::from(APPS),
        rss.map_or("?".to_owned(), |kib| (kib / 1024).to_string()),
    );

    let allowed = boot(APPS / 2);
    assert!(matches!(
        kms_is_app_allowed(&view, &allowed),
        tee_verifier::registry::decision::AppVerdict::Decided(v) if v.allowed
    ));
    let unregistered = BootInfo {
        app_id: [0xff; 20],
        ..boot(3)
    };
    let mut group = c.benchmark_group("registry");
    group.bench_function("decide_app allowed (all checks, 1M apps)", |b| {
        b.iter(|| kms_is_app_allowed(black_box(&view), black_box(&allowed)))
    });
    group.bench_function("decide_app not registered (1M apps)", |b| {
        b.iter(|| kms_is_app_allowed(black_box(&view), black_box(&unregistered)))
    });
    group.bench_function("decide_kms allowed", |b| {
        b.iter(|| kms_is_kms_allowed(black_box(&view), black_box(&allowed)))
    });
    group.finish();
}

criterion_group!(benches, registry);
criterion_main!(benches);
