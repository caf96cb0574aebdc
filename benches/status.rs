//! The cached-up status check, beside what a user would otherwise write.
//!
//! Run: cargo bench --bench status

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, RwLock};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::FutureExt;
use tower::Layer;
use tower_monitor::{MinMonitor, MonitorService, MonitoredService, Url};

const GRACE: Duration = Duration::from_secs(3600);

/// A monitor with "app" cached up, and the layer's service around a unit inner service.
fn cached_up(runtime: &tokio::runtime::Runtime) -> (Arc<MinMonitor>, MonitorService<()>) {
    let _entered = runtime.enter();
    let monitor = Arc::new(MinMonitor::new());
    let url = Url::parse("http://127.0.0.1:9/").expect("static URL");
    monitor
        .add("app", MonitoredService::new(url, GRACE))
        .expect("fresh monitor");
    monitor.set_status_up("app").expect("registered above");
    let service = monitor.layer("app").expect("registered above").layer(());
    assert!(service.is_cached_up());
    (monitor, service)
}

fn status(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (monitor, service) = cached_up(&runtime);
    let mut group = c.benchmark_group("status");

    let floor = AtomicU64::new(1);
    group.bench_function("atomic_load", |b| {
        b.iter(|| black_box(&floor).load(Ordering::Relaxed))
    });

    group.bench_function("tower_monitor_cached_up", |b| {
        b.iter(|| black_box(&service).is_cached_up())
    });

    group.bench_function("tower_monitor_status_by_name", |b| {
        b.iter(|| monitor.status(black_box("app")).now_or_never())
    });

    let entry = || HashMap::from([("app".to_string(), (true, Instant::now()))]);
    let rwlock = RwLock::new(entry());
    group.bench_function("rwlock_hashmap", |b| {
        b.iter(|| {
            let map = rwlock.read().expect("not poisoned");
            let (up, at) = map[black_box("app")];
            up && at.elapsed() < GRACE
        })
    });

    let mutex = Mutex::new(entry());
    group.bench_function("mutex_hashmap", |b| {
        b.iter(|| {
            let map = mutex.lock().expect("not poisoned");
            let (up, at) = map[black_box("app")];
            up && at.elapsed() < GRACE
        })
    });

    let moka: moka::sync::Cache<String, bool> =
        moka::sync::Cache::builder().time_to_live(GRACE).build();
    moka.insert("app".to_string(), true);
    group.bench_function("moka_ttl", |b| {
        b.iter(|| moka.get(black_box("app")).unwrap_or(false))
    });
    group.finish();
}

/// The cached-up check from 1 and 2 threads at once: with no shared write on the hot path, two
/// threads should do twice the checks per second.
fn status_threads(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (_monitor, service) = cached_up(&runtime);
    let mut group = c.benchmark_group("status_threads");
    for threads in [1_u64, 2] {
        group.throughput(Throughput::Elements(threads));
        group.bench_function(format!("{threads}_thread"), |b| {
            b.iter_custom(|iters| {
                let start = Barrier::new(threads as usize + 1);
                std::thread::scope(|scope| {
                    let workers: Vec<_> = (0..threads)
                        .map(|_| {
                            scope.spawn(|| {
                                start.wait();
                                let begun = Instant::now();
                                for _ in 0..iters {
                                    black_box(black_box(&service).is_cached_up());
                                }
                                begun.elapsed()
                            })
                        })
                        .collect();
                    start.wait();
                    // Each iteration is one check per thread; the slowest thread sets the time.
                    workers
                        .into_iter()
                        .map(|w| w.join().expect("worker"))
                        .max()
                        .unwrap_or_default()
                })
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! { name = benches; config = config(); targets = status, status_threads }
criterion_main!(benches);
