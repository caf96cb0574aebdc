//! Every metric moves as documented through a scripted cold start (a held request) → up →
//! idle stop cycle, a refused wake and a failed start, read with `metrics-util`'s debugging recorder.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get as route_get;
use common::*;
use http::StatusCode;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower_monitor::{BoxError, MinMonitor, MonitoredService, ServiceState, trigger};

/// What the recorder saw, added up over its snapshots (each snapshot resets what it read).
#[derive(Default)]
struct Seen {
    counters: HashMap<String, u64>,
    samples: HashMap<String, Vec<f64>>,
}

impl Seen {
    /// Takes a snapshot; returns the gauges it holds (those set since the last one).
    fn take(&mut self, snapshotter: &Snapshotter) -> HashMap<String, f64> {
        let mut gauges = HashMap::new();
        for (key, _unit, _description, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<_> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            match value {
                DebugValue::Counter(n) => *self.counters.entry(name).or_default() += n,
                DebugValue::Gauge(v) => {
                    gauges.insert(name, v.into_inner());
                }
                DebugValue::Histogram(values) => self
                    .samples
                    .entry(name)
                    .or_default()
                    .extend(values.into_iter().map(|v| v.into_inner())),
            }
        }
        gauges
    }

    fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    fn samples(&self, name: &str) -> &[f64] {
        self.samples.get(name).map_or(&[], Vec::as_slice)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_moves_as_documented_through_a_cold_start_an_idle_stop_and_a_failed_start() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");
    let mut seen = Seen::default();

    // "app": up when `running` says so; `on_down` is asked to start it (the test plays the
    // backend coming up), `on_idle` stops it after 300 ms without requests.
    let running = Arc::new(AtomicBool::new(false));
    let stop = running.clone();
    let monitor = Arc::new(MinMonitor::new());
    let backend = url_for(refused_addr().await);
    monitor
        .add(
            "app",
            MonitoredService::new(backend.clone(), Duration::from_secs(60))
                .probe(switch_probe(running.clone()))
                .on_down(trigger::from_fn(|| async { Ok::<(), BoxError>(()) }))
                .on_idle(
                    Duration::from_millis(300),
                    trigger::from_fn(move || {
                        stop.store(false, Ordering::SeqCst);
                        async { Ok::<(), BoxError>(()) }
                    }),
                ),
        )
        .unwrap();
    monitor
        .add(
            "broken",
            MonitoredService::new(backend, Duration::ZERO).on_down(trigger::from_fn(|| async {
                Err::<(), BoxError>("cannot start".into())
            })),
        )
        .unwrap();
    let held = serve(
        Router::new()
            .route("/", route_get(|| async { "app" }))
            .layer(monitor.layer("app").unwrap().hold(Duration::from_secs(20))),
    )
    .await;

    // 1. A request wakes "app" and is held while it starts.
    let request = tokio::spawn(async move { get(held.addr, "/", &[]).await });
    wait_for_state(
        &monitor,
        "app",
        ServiceState::Starting,
        Duration::from_secs(5),
    )
    .await;
    let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
    while monitor.snapshot()[0].requests_held != 1 {
        assert!(tokio::time::Instant::now() < give_up, "never held");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let gauges = seen.take(&snapshotter);
    assert_eq!(gauges["tower_monitor_requests_held{service=app}"], 1.0);
    assert_eq!(gauges["tower_monitor_requests_in_flight{service=app}"], 1.0);
    assert_eq!(
        gauges["tower_monitor_state{service=app,state=starting}"],
        1.0
    );
    assert_eq!(seen.counter("tower_monitor_wakes_total{service=app}"), 1);
    assert_eq!(
        seen.counter("tower_monitor_transitions_total{from=down,service=app,to=starting}"),
        1
    );
    assert_eq!(seen.counter("tower_monitor_holds_total{service=app}"), 1);

    // 2. The backend comes up: the held request is forwarded, the cold start measured.
    running.store(true, Ordering::SeqCst);
    let reply = tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .expect("released in time")
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Up);
    let gauges = seen.take(&snapshotter);
    assert_eq!(gauges["tower_monitor_state{service=app,state=up}"], 1.0);
    assert_eq!(
        gauges["tower_monitor_state{service=app,state=starting}"],
        0.0
    );
    assert_eq!(
        seen.counter("tower_monitor_transitions_total{from=starting,service=app,to=up}"),
        1
    );
    let cold_starts = seen.samples("tower_monitor_cold_start_seconds{service=app}");
    assert_eq!(cold_starts.len(), 1);
    let cold_start = monitor.snapshot()[0].last_cold_start.expect("measured");
    assert!((cold_starts[0] - cold_start.as_secs_f64()).abs() < 1e-9);
    assert!(seen.counter("tower_monitor_probes_total{result=down,service=app}") >= 1);
    assert!(seen.counter("tower_monitor_probes_total{result=up,service=app}") >= 1);

    // 3. No request for 300 ms: `on_idle` runs, the backend stops, a probe sees it down.
    wait_for_state(&monitor, "app", ServiceState::Down, Duration::from_secs(10)).await;
    let snapshot = monitor.snapshot();
    let gauges = seen.take(&snapshotter);
    assert_eq!(
        seen.counter("tower_monitor_idle_stops_total{service=app}"),
        1
    );
    assert_eq!(
        seen.counter("tower_monitor_transitions_total{from=up,service=app,to=stopping}"),
        1
    );
    assert_eq!(
        seen.counter("tower_monitor_transitions_total{from=stopping,service=app,to=down}"),
        1
    );
    assert_eq!(gauges["tower_monitor_state{service=app,state=down}"], 1.0);
    assert_eq!(
        gauges["tower_monitor_state{service=app,state=stopping}"],
        0.0
    );
    assert_eq!(gauges["tower_monitor_requests_held{service=app}"], 0.0);
    assert_eq!(gauges["tower_monitor_requests_in_flight{service=app}"], 0.0);

    // Every probe was counted once and timed once, and the snapshot counted the same.
    let probes: u64 = ["up", "down", "error"]
        .iter()
        .map(|r| {
            seen.counter(&format!(
                "tower_monitor_probes_total{{result={r},service=app}}"
            ))
        })
        .sum();
    let timed: usize = ["up", "down", "error"]
        .iter()
        .map(|r| {
            seen.samples(&format!(
                "tower_monitor_probe_duration_seconds{{result={r},service=app}}"
            ))
            .len()
        })
        .sum();
    assert_eq!(probes as usize, timed);
    let app = &snapshot[0];
    assert_eq!(app.counters.probes, probes);
    assert_eq!(
        (
            app.counters.wakes,
            app.counters.idle_stops,
            app.counters.cold_starts
        ),
        (1, 1, 1)
    );
    assert_eq!(app.counters.fallbacks, 0, "the held request was forwarded");
    assert_eq!((app.counters.holds, app.counters.failed_starts), (1, 0));

    // 4. A request that may not wake it gets the fallback: counted by reason.
    let refused = serve(
        Router::new()
            .route("/", route_get(|| async { "app" }))
            .layer(
                monitor
                    .layer("app")
                    .unwrap()
                    .wake_when(|_method, _uri, _headers| false),
            ),
    )
    .await;
    let reply = get(refused.addr, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    seen.take(&snapshotter);
    assert_eq!(
        seen.counter("tower_monitor_fallbacks_total{reason=not_ready,service=app}"),
        1
    );
    assert_eq!(
        seen.counter("tower_monitor_wakes_total{service=app}"),
        1,
        "no wake"
    );

    // 5. A start that fails: a trigger failure by trigger, a fallback by reason, and back down.
    let broken = serve(
        Router::new()
            .route("/", route_get(|| async { "app" }))
            .layer(monitor.layer("broken").unwrap()),
    )
    .await;
    let reply = get(broken.addr, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    seen.take(&snapshotter);
    assert_eq!(
        seen.counter("tower_monitor_trigger_failures_total{service=broken,trigger=on_down}"),
        1
    );
    assert_eq!(
        seen.counter("tower_monitor_fallbacks_total{reason=start_failed,service=broken}"),
        1
    );
    assert_eq!(
        seen.counter("tower_monitor_transitions_total{from=starting,service=broken,to=down}"),
        1
    );
    assert_eq!(
        seen.counter("tower_monitor_failed_starts_total{service=broken}"),
        1
    );
    let broken = &monitor.snapshot()[1];
    assert_eq!(
        (
            broken.counters.wakes,
            broken.counters.trigger_failures,
            broken.counters.fallbacks,
            broken.counters.failed_starts
        ),
        (1, 1, 1, 1)
    );

    // 6. The proxy's own answers, by reason: a backend that refuses connections (502), and a
    // request that waits past its limit's bound for a turn (503).
    use tower::ServiceExt;
    use tower_monitor::proxy::Proxy;
    let unreachable = Proxy::builder(url_for(refused_addr().await))
        .service_name("app")
        .build::<http_body_util::Empty<bytes::Bytes>>()
        .unwrap();
    let request = || {
        http::Request::get("/")
            .body(http_body_util::Empty::new())
            .unwrap()
    };
    let answer = unreachable.oneshot(request()).await.unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_GATEWAY);
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let limited = Proxy::builder(url_for(silent.local_addr().unwrap()))
        .service_name("app")
        .max_in_flight(std::num::NonZeroUsize::MIN, Duration::from_millis(100))
        .response_timeout(Duration::from_secs(30))
        .build::<http_body_util::Empty<bytes::Bytes>>()
        .unwrap();
    // The first request takes the only turn (its answer never comes); the second waits 100 ms.
    let first = tokio::spawn(limited.clone().oneshot(request()));
    let _connection = silent.accept().await.unwrap();
    let busy = limited.oneshot(request()).await.unwrap();
    assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
    first.abort();
    seen.take(&snapshotter);
    assert_eq!(
        seen.counter("tower_monitor_proxy_failures_total{reason=unreachable,service=app}"),
        1
    );
    assert_eq!(
        seen.counter("tower_monitor_proxy_failures_total{reason=busy,service=app}"),
        1
    );

    // 7. A backend answer the proxy refuses to pass on (here a 101 to a request that asked for
    // no switch) is the proxy's own 502 too.
    let switching = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let switching_addr = switching.local_addr().unwrap();
    let backend = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let (mut stream, _) = switching.accept().await.unwrap();
        read_head(&mut stream, &mut Vec::new()).await;
        let _ = stream
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: other\r\n\r\n",
            )
            .await;
        stream
    });
    let unasked = Proxy::builder(url_for(switching_addr))
        .service_name("app")
        .build::<http_body_util::Empty<bytes::Bytes>>()
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), unasked.oneshot(request()))
        .await
        .expect("the proxy answered")
        .unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_GATEWAY);
    drop(backend.await.unwrap());
    seen.take(&snapshotter);
    assert_eq!(
        seen.counter("tower_monitor_proxy_failures_total{reason=failed,service=app}"),
        1,
        "a refused backend answer is not counted"
    );
}
