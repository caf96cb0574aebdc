//! Idle shutdown counts a request as in flight until its response body has been sent.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get as route_get;
use common::*;
use tower_monitor::{MinMonitor, MonitoredService};

const IDLE: Duration = Duration::from_millis(300);

/// A response that streams 10 chunks, 100 ms apart: it lasts about a second.
async fn slow_stream() -> Body {
    let chunks = futures::stream::unfold(0, |i| async move {
        if i == 10 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((Ok::<_, std::io::Error>(format!("chunk {i}\n")), i + 1))
    });
    Body::from_stream(chunks)
}

/// An app streaming `/stream`, guarded by a backend that is up, with `on_idle` after `IDLE`.
async fn streaming_app(on_idle: impl tower_monitor::Trigger) -> (Server, Backend) {
    let backend = Backend::start().await;
    let monitor = Arc::new(MinMonitor::new());
    let service =
        MonitoredService::new(backend.url(), Duration::from_secs(60)).on_idle(IDLE, on_idle);
    monitor.add("app", service).unwrap();
    let router = Router::new()
        .route("/stream", route_get(slow_stream))
        .layer(monitor.layer("app").unwrap());
    (serve(router).await, backend)
}

#[tokio::test]
async fn a_stream_that_outlives_the_idle_time_keeps_the_backend_awake() {
    let idle_runs = counter();
    let (server, _backend) = streaming_app(counting_trigger(idle_runs.clone(), false)).await;

    let download = tokio::spawn(async move { get(server.addr, "/stream", &[]).await });
    // Well past the idle time since the request started, but the body is still streaming.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        count(&idle_runs),
        0,
        "on_idle ran while a response was still streaming"
    );

    let reply = download.await.unwrap();
    assert_eq!(reply.body.lines().count(), 10);
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while count(&idle_runs) == 0 && std::time::Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(&idle_runs), 1);
    tokio::time::sleep(IDLE * 3).await;
    assert_eq!(count(&idle_runs), 1, "once per idle period");
}

#[tokio::test]
async fn a_dropped_response_ends_the_request() {
    let idle_runs = counter();
    let (server, _backend) = streaming_app(counting_trigger(idle_runs.clone(), false)).await;
    // The client goes away mid-stream: the body is dropped, and the idle time starts.
    let download = tokio::spawn(async move { get(server.addr, "/stream", &[]).await });
    tokio::time::sleep(Duration::from_millis(250)).await;
    download.abort();
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while count(&idle_runs) == 0 && std::time::Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(&idle_runs), 1);
}
