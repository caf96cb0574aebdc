//! Probes that cannot be made for want of this process's own resources (file descriptors,
//! local ports, memory): they say nothing of the backend, and the layer says so.

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get as route_get;
use common::*;
use tower_monitor::{MinMonitor, MonitorError, MonitoredService, Url};

/// A probe that fails because this process is out of a resource of its own (here its memory,
/// `ENOMEM`; out of file descriptors, `EMFILE`, or local ports, alike) says nothing of the
/// backend: a service up stays up, its requests still go to it (the proxy answers for itself
/// if it cannot reach it either), and nothing starts it. It used to be marked down, and its
/// requests answered 500. A service not last up is answered as the proxy answers for the same
/// cause, a 503 to retry in a second (it was a 500), and not started; a probe's error of
/// another kind is still a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_out_of_local_resources_leaves_a_backend_up_and_forwarded_to() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tower_monitor::{BoxError, ProbeResult, ServiceState, probe};

    let short = Arc::new(AtomicBool::new(false));
    let shortage = Arc::clone(&short);
    let probe = probe::from_fn(move |_url| {
        let short = shortage.load(Ordering::SeqCst);
        async move {
            if short {
                let error = std::io::Error::from(std::io::ErrorKind::OutOfMemory);
                return Err::<bool, BoxError>(error.into());
            }
            Ok(true)
        }
    });
    let wakes = counter();
    let monitor = Arc::new(MinMonitor::new());
    let url = Url::parse("http://127.0.0.1:9/").unwrap();
    let service = MonitoredService::new(url, Duration::ZERO)
        .probe(probe)
        .on_down(counting_trigger(Arc::clone(&wakes), false));
    monitor.add("app", service).unwrap();
    assert!(monitor.status("app").await.unwrap());

    short.store(true, Ordering::SeqCst);
    let error = monitor.reprobe("app").await.unwrap_err();
    assert!(matches!(error, MonitorError::Probe { .. }), "{error}");
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Up);
    let last = monitor.snapshot()[0].last_probe.unwrap();
    assert_eq!(last.result, ProbeResult::LocalResources);

    // No grace period: the request's own probe fails so too.
    let layer = monitor.layer("app").unwrap();
    let server = serve(
        Router::new()
            .route("/", route_get(|| async { "app" }))
            .layer(layer),
    )
    .await;
    let reply = get(server.addr, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, "app");
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Up);
    assert_eq!(count(&wakes), 0, "on_down ran");

    // Never up: its status cannot be known, and it is not started for that.
    let failing = |kind: std::io::ErrorKind| {
        probe::from_fn(move |_url| async move {
            Err::<bool, BoxError>(std::io::Error::from(kind).into())
        })
    };
    let url = Url::parse("http://127.0.0.1:9/").unwrap();
    let service = MonitoredService::new(url.clone(), Duration::ZERO)
        .probe(failing(std::io::ErrorKind::OutOfMemory))
        .on_down(counting_trigger(Arc::clone(&wakes), false));
    monitor.add("cold", service).unwrap();
    let service = MonitoredService::new(url, Duration::ZERO)
        .probe(failing(std::io::ErrorKind::Other))
        .on_down(counting_trigger(Arc::clone(&wakes), false));
    monitor.add("broken", service).unwrap();
    let behind = |name| {
        let layer = monitor.layer(name).unwrap();
        serve(
            Router::new()
                .route("/", route_get(|| async { "app" }))
                .layer(layer),
        )
    };
    let (cold, broken) = (behind("cold").await, behind("broken").await);
    let reply = get(cold.addr, "/", &[]).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_eq!(reply.headers["retry-after"], "1");
    assert_eq!(
        reply.headers["cache-control"], "no-store",
        "{:?}",
        reply.headers
    );
    let grpc = get(cold.addr, "/", &[("content-type", "application/grpc")]).await;
    assert_eq!(grpc.status, StatusCode::OK);
    assert_eq!(grpc.headers["grpc-status"], "14", "UNAVAILABLE");
    let json = get(cold.addr, "/", &[("accept", "application/json")]).await;
    assert_eq!(json.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(json.body.contains(r#""status":503"#), "{}", json.body);
    let fallbacks = monitor
        .snapshot()
        .into_iter()
        .find(|service| &*service.name == "cold")
        .unwrap()
        .counters
        .fallbacks;
    assert_eq!(fallbacks, 3);
    assert_eq!(
        count(&wakes),
        0,
        "on_down ran for want of the process's resources"
    );
    let reply = get(broken.addr, "/", &[]).await;
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        reply.body
    );
    assert!(reply.headers.get("retry-after").is_none());
}

/// A start whose probes can no longer be made (this process out of its own resources) ends at
/// its start timeout saying so, rather than blaming the backend for being down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_times_out_with_no_probe_made_says_so() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tower_monitor::{BoxError, ServiceState, probe, trigger};

    let logs = common::logs(tracing::Level::INFO);
    let short = Arc::new(AtomicBool::new(false));
    let shortage = Arc::clone(&short);
    let probe = probe::from_fn(move |_url| {
        let short = shortage.load(Ordering::SeqCst);
        async move {
            match short {
                true => Err(std::io::Error::from(std::io::ErrorKind::OutOfMemory).into()),
                false => Ok::<bool, BoxError>(false),
            }
        }
    });
    let monitor = Arc::new(MinMonitor::new());
    let url = Url::parse("http://127.0.0.1:9/").unwrap();
    let service = MonitoredService::new(url, Duration::from_secs(1))
        .probe(probe)
        .on_down(trigger::from_fn(|| async { Ok::<(), BoxError>(()) }))
        .start_timeout(Duration::from_secs(1));
    monitor.add("unprobed", service).unwrap();
    let starting = Arc::clone(&monitor);
    let _start = tokio::spawn(async move { starting.start("unprobed").await });
    let state = |monitor: &MinMonitor| monitor.state("unprobed").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(&monitor) != ServiceState::Starting {
        assert!(Instant::now() < deadline, "never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    short.store(true, Ordering::SeqCst);
    while state(&monitor) != ServiceState::Down {
        assert!(Instant::now() < deadline, "the start never timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let line = (logs.line_within(&["unprobed did not come up"], Duration::from_secs(10))).await;
    assert!(
        line.contains("not probed: this process is out of"),
        "{line}"
    );
}
