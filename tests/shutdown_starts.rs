//! A server shutting down (`MinMonitor::release_held`) starts no backend for a request: not
//! one that arrives after the release, nor one that was deciding as it came, nor one that asked
//! while the backend was stopping. Each is answered 503 with `Retry-After`, as a released held
//! request is; the refusal is said once at info, and counts as no failed start. An operator's
//! start still runs. Everything on 127.0.0.1, on multi-thread runtimes.
//!
//! The log lines are read from a subscriber of this whole binary (the requests run on the
//! runtime's threads); each test names its service apart.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get as route_get;
use common::*;
use http::StatusCode;
use tower_monitor::{BoxError, MinMonitor, MonitoredService, ServiceState, probe};

/// The log lines of this binary's tests (see `common::logs`).
fn logs() -> Captured {
    common::logs(tracing::Level::INFO)
}

/// How many info lines say a request did not start `name` because of the shutdown.
fn refusals_said(name: &str) -> usize {
    let said = format!("a request for {name} does not start it");
    logs()
        .text()
        .lines()
        .filter(|line| line.contains("INFO") && line.contains(&said))
        .count()
}

/// A backend `name` that is down (its probe answers what `up` holds, false at first), with a
/// counted `on_down` that succeeds and a counted `on_idle`.
struct Fixture {
    monitor: Arc<MinMonitor>,
    up: Arc<AtomicBool>,
    starts: Arc<AtomicUsize>,
}

async fn backend(name: &str) -> Fixture {
    let (up, starts) = (Arc::new(AtomicBool::new(false)), counter());
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .probe(switch_probe(up.clone()))
        .on_down(counting_trigger(starts.clone(), false))
        .on_idle(
            Duration::from_secs(3600),
            counting_trigger(counter(), false),
        );
    let monitor = Arc::new(MinMonitor::new());
    monitor.add(name, service).unwrap();
    Fixture {
        monitor,
        up,
        starts,
    }
}

/// An app served on 127.0.0.1 behind `monitor`'s layer for `name` (no hold mode), whose 503s
/// say `Retry-After: 7`.
async fn app(monitor: &Arc<MinMonitor>, name: &str) -> Server {
    let layer = monitor
        .layer(name)
        .unwrap()
        .retry_after(Duration::from_secs(7));
    serve(
        Router::new()
            .route("/", route_get(|| async { "the app" }))
            .layer(layer),
    )
    .await
}

/// The fallback of a server shutting down: a 503 with the layer's own `Retry-After`.
fn assert_come_back_later(reply: &Reply) {
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_eq!(
        reply.headers["retry-after"], "7",
        "the layer's own: no pause after failed starts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_released_a_request_does_not_start_a_down_backend_but_an_operator_does() {
    let name = "after-release";
    let b = backend(name).await;
    let server = app(&b.monitor, name).await;
    logs();

    b.monitor.release_held();
    // More than the failed starts retried at once before a pause: were a refusal counted as
    // one, the last would be a 500 with the pause's `Retry-After`.
    for _ in 0..4 {
        assert_come_back_later(&get(server.addr, "/", &[]).await);
    }
    assert_eq!(count(&b.starts), 0, "no request started it");
    assert_eq!(b.monitor.state(name).unwrap(), ServiceState::Down);
    assert_eq!(refusals_said(name), 1, "said once:\n{}", logs().text());

    // An explicit action: the operator's start runs.
    b.monitor.start(name).await.unwrap();
    assert_eq!(count(&b.starts), 1);
    assert_eq!(b.monitor.state(name).unwrap(), ServiceState::Starting);
}

/// A request that arrived before the release, still deciding (its probe running) as the
/// release comes, does not start the backend either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_deciding_as_the_release_comes_does_not_start_the_backend() {
    let name = "deciding";
    let (probing, gate) = (counter(), Arc::new(tokio::sync::Semaphore::new(0)));
    let starts = counter();
    let (entered, opened) = (probing.clone(), gate.clone());
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .probe(probe::from_fn(move |_url| {
            entered.fetch_add(1, Ordering::SeqCst);
            let opened = opened.clone();
            async move {
                opened.acquire().await?.forget();
                Ok::<bool, BoxError>(false)
            }
        }))
        .on_down(counting_trigger(starts.clone(), false));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add(name, service).unwrap();
    let server = app(&monitor, name).await;
    logs();

    let reply = tokio::spawn(get(server.addr, "/", &[]));
    until(
        Duration::from_secs(5),
        "the request's probe began",
        || count(&probing),
        |n| *n == 1,
    )
    .await;
    monitor.release_held();
    gate.add_permits(1);

    let reply = tokio::time::timeout(Duration::from_secs(5), reply)
        .await
        .expect("answered")
        .unwrap();
    assert_come_back_later(&reply);
    assert_eq!(count(&starts), 0);
    assert_eq!(monitor.state(name).unwrap(), ServiceState::Down);
    assert_eq!(refusals_said(name), 1);
}

/// A request for a backend that is stopping asks for a start once it is down. If the server
/// began shutting down meanwhile, that start is not made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_asked_for_while_stopping_is_not_made_once_released() {
    let name = "stopping";
    let b = backend(name).await;
    let server = app(&b.monitor, name).await;
    logs();
    b.up.store(true, Ordering::SeqCst);
    b.monitor.set_status_up(name).unwrap();
    assert!(b.monitor.stop(name).await.unwrap());
    assert_eq!(b.monitor.state(name).unwrap(), ServiceState::Stopping);
    // Answered at once; the start it asks for waits for the stop's end.
    assert_come_back_later(&get(server.addr, "/", &[]).await);

    b.monitor.release_held();
    b.up.store(false, Ordering::SeqCst);
    // The monitor polls a stopping backend: it finds it down, then turns to the start asked
    // for, which it refuses (said once the refusal is made).
    until(
        Duration::from_secs(10),
        "the start asked for while stopping refused",
        || refusals_said(name),
        |n| *n == 1,
    )
    .await;
    assert_eq!(count(&b.starts), 0);
    assert_eq!(b.monitor.state(name).unwrap(), ServiceState::Down);
}
