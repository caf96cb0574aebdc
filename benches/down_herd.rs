//! A herd of concurrent requests on a down backend: how long until all are answered, and proof
//! (checked outside the timing) that each wave ran one probe and one `on_down`.
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
use tower_monitor::{BoxError, MinMonitor, MonitoredService, Probe, Url, probe, trigger};

fn down_herd(c: &mut Criterion) {
    // Requests are tasks on one thread, as a server spawns one per connection.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _entered = runtime.enter();

    // A real TCP probe of a port where nothing listens, counted.
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let url = Url::parse(&format!("http://{refused}/")).expect("valid URL");
    let (probes, wakes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (p, w) = (probes.clone(), wakes.clone());
    let service = MonitoredService::new(url, Duration::from_secs(30))
        .probe(probe::from_fn(move |url| {
            p.fetch_add(1, Ordering::Relaxed);
            Tcp.probe(&url)
        }))
        .on_down(trigger::from_fn(move || {
            w.fetch_add(1, Ordering::Relaxed);
            async { Ok::<(), BoxError>(()) }
        }));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).expect("fresh monitor");
    let inner = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let guarded = monitor.layer("app").expect("registered above").layer(inner);

    let mut group = c.benchmark_group("down_herd");
    group.sample_size(10);
    for n in [1_000_usize, 10_000] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|waves| {
                let mut timed = Duration::ZERO;
                for _ in 0..waves {
                    let before = (
                        probes.load(Ordering::Relaxed),
                        wakes.load(Ordering::Relaxed),
                    );
                    let started = Instant::now();
                    runtime.block_on(async {
                        let requests: Vec<_> = (0..n)
                            .map(|_| tokio::spawn(guarded.clone().oneshot(Request::new(()))))
                            .collect();
                        for request in requests {
                            let response = request.await.expect("task").expect("infallible");
                            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
                        }
                    });
                    timed += started.elapsed();
                    let after = (
                        probes.load(Ordering::Relaxed),
                        wakes.load(Ordering::Relaxed),
                    );
                    assert_eq!(after.0 - before.0, 1, "one probe per wave of {n}");
                    assert_eq!(after.1 - before.1, 1, "one on_down per wave of {n}");
                }
                timed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, down_herd);
criterion_main!(benches);
