//! What wrapping a service in the monitor layer costs while the backend is cached up, beside the
//! bare service, the floor (a minimal flag-check layer with the same response type) and two
//! ordinary layers; and whether two threads serve twice the requests of one.
//!
//! Run: cargo bench --bench layer (instruction counts: bash benches/instructions.sh)
//!
//! With `--features metrics`, `monitor_up_with_recorder` runs the same cached-up request with
//! a metrics recorder installed: the cached-up path records nothing, so it costs the same as
//! `monitor_up` (and `monitor_up` costs the same with and without the feature).

mod stacks;

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::Request;
use tower::Service;

use stacks::one_request;

fn layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _entered = runtime.enter();
    let (plain, idle) = (stacks::monitor(false), stacks::monitor(true));

    let mut group = c.benchmark_group("layer");
    let mut bare = stacks::inner();
    group.bench_function("bare", |b| b.iter(|| black_box(one_request(&mut bare))));
    let mut floor = stacks::floor();
    group.bench_function("floor", |b| b.iter(|| black_box(one_request(&mut floor))));
    let mut floor_with_drop = stacks::floor_with_drop();
    group.bench_function("floor_with_drop", |b| {
        b.iter(|| black_box(one_request(&mut floor_with_drop)))
    });
    let mut validate = stacks::validate_request();
    group.bench_function("validate_request", |b| {
        b.iter(|| black_box(one_request(&mut validate)))
    });
    let mut limited = stacks::concurrency_limit();
    group.bench_function("concurrency_limit", |b| {
        b.iter(|| black_box(one_request(&mut limited)))
    });
    let mut monitored = stacks::monitor_up(&plain);
    group.bench_function("monitor_up", |b| {
        b.iter(|| black_box(one_request(&mut monitored)))
    });
    #[cfg(feature = "metrics")]
    {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the first recorder of this process");
        group.bench_function("monitor_up_with_recorder", |b| {
            b.iter(|| black_box(one_request(&mut monitored)))
        });
        // Nothing was recorded on the way: the cached-up path makes no facade call.
        assert!(snapshotter.snapshot().into_vec().is_empty());
    }
    let mut monitored_idle = stacks::monitor_up(&idle);
    group.bench_function("monitor_up_idle", |b| {
        b.iter(|| black_box(one_request(&mut monitored_idle)))
    });
    group.finish();
}

/// Requests through the monitor layer (cached up) from 1 and 2 threads at once, each thread with
/// its own clone of the service, as a server's worker threads have; and through the bare
/// service the same way, in the same run: how far two threads get on this machine with no layer
/// at all is the ceiling for the layer's rows.
fn layer_threads(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _entered = runtime.enter();
    let mut group = c.benchmark_group("layer_threads");
    threads_rows(&mut group, "bare", &stacks::inner());
    for (name, idle) in [("monitor_up", false), ("monitor_up_idle", true)] {
        let monitor = stacks::monitor(idle);
        threads_rows(&mut group, name, &stacks::monitor_up(&monitor));
    }
    group.finish();
}

/// `name/1_thread` and `name/2_thread`: `service` from 1 and from 2 threads at once.
fn threads_rows<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    service: &S,
) where
    S: Service<Request<()>> + Clone + Send,
{
    for threads in [1_u64, 2] {
        group.throughput(Throughput::Elements(threads));
        group.bench_function(format!("{name}/{threads}_thread"), |b| {
            b.iter_custom(|iters| in_threads(service, threads, iters))
        });
    }
}

/// The time the slowest of `threads` threads takes to send `iters` requests each.
fn in_threads<S>(service: &S, threads: u64, iters: u64) -> Duration
where
    S: Service<Request<()>> + Clone + Send,
{
    let start = Barrier::new(threads as usize + 1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let mut service = service.clone();
                let start = &start;
                scope.spawn(move || {
                    start.wait();
                    let begun = Instant::now();
                    for _ in 0..iters {
                        black_box(one_request(&mut service).is_some());
                    }
                    begun.elapsed()
                })
            })
            .collect();
        start.wait();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .max()
            .unwrap_or_default()
    })
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! { name = benches; config = config(); targets = layer, layer_threads }
criterion_main!(benches);
