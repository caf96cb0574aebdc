//! A herd of requests on a down backend, on a multi-thread runtime as servers run: how long
//! until all are answered, and proof (checked outside the timing) that each wave, a fresh cold
//! start, ran exactly one `on_down`, whether the requests arrive at once or spread over time.
//!
//! Run: cargo bench --bench down_herd

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response, StatusCode};
use tower::{Layer, ServiceExt, service_fn};
use tower_monitor::probe::Tcp;
use tower_monitor::{
    BoxError, MinMonitor, MonitorService, MonitoredService, Probe, Url, probe, trigger,
};

type Inner =
    tower::util::ServiceFn<fn(Request<()>) -> std::future::Ready<Result<Response<()>, Infallible>>>;

/// A fresh monitor whose backend refuses connections (probed for real over TCP), with a counted
/// `on_down` that takes `boot`.
fn cold(
    refused: std::net::SocketAddr,
    probes: &Arc<AtomicUsize>,
    wakes: &Arc<AtomicUsize>,
    boot: Duration,
) -> MonitorService<Inner> {
    let url = Url::parse(&format!("http://{refused}/")).expect("valid URL");
    let (p, w) = (probes.clone(), wakes.clone());
    let service = MonitoredService::new(url, Duration::from_secs(30))
        .probe(probe::from_fn(move |url| {
            p.fetch_add(1, Ordering::Relaxed);
            Tcp.probe(&url)
        }))
        .on_down(trigger::from_fn(move || {
            w.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::time::sleep(boot).await;
                Ok::<(), BoxError>(())
            }
        }))
        // Each wave leaves its backend Starting; its poller stops at this timeout.
        .start_timeout(Duration::from_secs(5));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).expect("fresh monitor");
    let inner: Inner = service_fn(|_req| std::future::ready(Ok(Response::new(()))));
    monitor.layer("app").expect("registered above").layer(inner)
}

fn down_herd(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let (probes, wakes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));

    let mut group = c.benchmark_group("down_herd");
    group.sample_size(10);
    // (name, requests, a pause of 1 ms after every this many arrivals; 0: none)
    let patterns = [
        ("at_once", 1_000_usize, 0_usize),
        ("at_once", 10_000, 0),
        ("spread_100ms", 1_000, 10),
    ];
    for (pattern, n, gap) in patterns {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new(pattern, n), &n, |b, &n| {
            b.iter_custom(|waves| {
                let mut timed = Duration::ZERO;
                for _ in 0..waves {
                    let guarded = runtime.block_on(async {
                        cold(refused, &probes, &wakes, Duration::from_millis(20))
                    });
                    let before = wakes.load(Ordering::Relaxed);
                    let started = Instant::now();
                    runtime.block_on(async {
                        let mut requests = Vec::with_capacity(n);
                        for i in 1..=n {
                            requests.push(tokio::spawn(guarded.clone().oneshot(Request::new(()))));
                            if gap > 0 && i % gap == 0 {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                        }
                        for request in requests {
                            let response = request.await.expect("task").expect("infallible");
                            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
                        }
                    });
                    timed += started.elapsed();
                    let ran = wakes.load(Ordering::Relaxed) - before;
                    assert_eq!(
                        ran, 1,
                        "one on_down per cold start ({pattern}, {n} requests)"
                    );
                }
                timed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, down_herd);
criterion_main!(benches);
