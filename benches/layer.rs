//! What wrapping a service in the monitor layer costs while the backend is cached up, beside the
//! bare service and an ordinary tower layer.
//!
//! Run: cargo bench --bench layer
//!
//! With `--features metrics`, `monitor_up_with_recorder` runs the same cached-up request with
//! a metrics recorder installed: the cached-up path records nothing, so it costs the same as
//! `monitor_up` (and `monitor_up` costs the same with and without the feature).

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures::FutureExt;
use http::{Request, Response};
use tower::limit::ConcurrencyLimit;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_monitor::{MinMonitor, MonitoredService, Url};

/// poll_ready, call, and the response future polled to completion (all resolve at once).
fn one_request<S>(service: &mut S) -> Option<S::Response>
where
    S: Service<Request<()>>,
{
    service.ready().now_or_never()?.ok()?;
    service.call(Request::new(())).now_or_never()?.ok()
}

fn layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _entered = runtime.enter();
    let inner = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });

    let monitor = Arc::new(MinMonitor::new());
    let url = Url::parse("http://127.0.0.1:9/").expect("static URL");
    monitor
        .add("app", MonitoredService::new(url, Duration::from_secs(3600)))
        .expect("fresh monitor");
    monitor.set_status_up("app").expect("registered above");

    let mut bare = inner;
    let mut monitored = monitor.layer("app").expect("registered above").layer(inner);
    let mut limited = ConcurrencyLimit::new(inner, 1024);
    assert!(one_request(&mut monitored).is_some_and(|r| !r.body().is_fallback()));

    let mut group = c.benchmark_group("layer");
    group.bench_function("bare", |b| b.iter(|| black_box(one_request(&mut bare))));
    group.bench_function("monitor_up", |b| {
        b.iter(|| black_box(one_request(&mut monitored)))
    });
    group.bench_function("concurrency_limit", |b| {
        b.iter(|| black_box(one_request(&mut limited)))
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
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! { name = benches; config = config(); targets = layer }
criterion_main!(benches);
