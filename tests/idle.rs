//! Idle shutdown counts a request as in flight until its response body has been sent.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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

/// A monitor whose "app" is up (and stays up for probes), with `on_idle` after `after` that
/// records when it ran.
fn recording_stops(after: Duration) -> (Arc<MinMonitor>, Arc<std::sync::Mutex<Vec<Instant>>>) {
    let stops = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = stops.clone();
    let stop = tower_monitor::trigger::from_fn(move || {
        recorded.lock().unwrap().push(Instant::now());
        async { Ok::<(), tower_monitor::BoxError>(()) }
    });
    let url = tower_monitor::Url::parse("http://127.0.0.1:9/").unwrap();
    let service = MonitoredService::new(url, Duration::from_secs(60))
        .probe(counting_probe(counter(), true))
        .on_idle(after, stop);
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).unwrap();
    (monitor, stops)
}

/// When the first stop ran, waiting for it at most 5 s.
async fn first_stop(stops: &std::sync::Mutex<Vec<Instant>>) -> Instant {
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(at) = stops.lock().unwrap().first() {
            return *at;
        }
        assert!(Instant::now() < give_up, "on_idle never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_stop_comes_at_least_the_idle_time_after_the_last_request_ends() {
    let after = Duration::from_millis(400);
    let (monitor, stops) = recording_stops(after);
    monitor.set_status_up("app").unwrap();
    let request = monitor.activity("app").unwrap();
    tokio::time::sleep(after * 2).await;
    assert!(
        stops.lock().unwrap().is_empty(),
        "stopped while a request was in flight"
    );
    let ended = Instant::now();
    drop(request);
    let waited = first_stop(&stops).await - ended;
    assert!(waited >= after, "stopped {waited:?} after the last request");
    // Documented: within after × 1.25; the rest is slack for a loaded machine's timers.
    assert!(
        waited < after * 2,
        "stopped only {waited:?} after the last request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_starts_and_ends_between_two_looks_starts_the_idle_time_again() {
    // Looks every 100 ms; the request below lives a few microseconds, so no look sees it in
    // flight: only that it ended.
    let after = Duration::from_millis(400);
    let (monitor, stops) = recording_stops(after);
    monitor.set_status_up("app").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(monitor.activity("app").unwrap());
    let ended = Instant::now();
    let waited = first_stop(&stops).await - ended;
    assert!(waited >= after, "stopped {waited:?} after the last request");
}

/// When the snapshot says the idle stop is due, counted from `since` (a wall-clock time taken
/// at the event it follows, so that a test thread descheduled before it looks does not move
/// it); `None` for null.
fn idle_stop_due(monitor: &MinMonitor, since: SystemTime) -> Option<Duration> {
    let due = monitor.snapshot()[0].idle_deadline?;
    Some(due.duration_since(since).unwrap_or_default())
}

/// What the clocks may differ by: the snapshot converts the watch's instants to wall-clock time.
const CLOCKS: Duration = Duration::from_millis(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_shows_when_the_idle_stop_is_due_as_soon_as_the_last_request_ends() {
    // The watch looks every 500 ms.
    let after = Duration::from_secs(2);
    let (monitor, stops) = recording_stops(after);
    // Up with a request in flight, as when the request that woke the backend is held for it.
    let request = monitor.activity("app").unwrap();
    monitor.set_status_up("app").unwrap();
    assert_eq!(
        monitor.snapshot()[0].idle_deadline,
        None,
        "an idle stop planned while a request is in flight"
    );

    let (ended, ended_at) = (Instant::now(), SystemTime::now());
    drop(request);
    let due = idle_stop_due(&monitor, ended_at)
        .expect("no idle stop planned once the last request ended");
    // As documented: between the idle time and 1.25 times it after the last request ended.
    assert!(
        due + CLOCKS >= after && due <= after * 5 / 4 + CLOCKS,
        "due {due:?} after the last request ended"
    );
    let stopped = first_stop(&stops).await - ended;
    assert!(
        stopped + CLOCKS >= due,
        "stopped {stopped:?} after the last request, before the {due:?} the snapshot said"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_between_two_looks_moves_the_snapshots_idle_deadline_at_once() {
    let after = Duration::from_secs(2);
    let (monitor, stops) = recording_stops(after);
    let up_at = SystemTime::now();
    monitor.set_status_up("app").unwrap();
    let first = idle_stop_due(&monitor, up_at).expect("no idle stop planned for an idle service");
    assert!(
        first + CLOCKS >= after && first <= after * 5 / 4 + CLOCKS,
        "due {first:?} after it came up"
    );

    // Later, but before the next look (every 500 ms): a request comes and goes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ended, ended_at) = (Instant::now(), SystemTime::now());
    drop(monitor.activity("app").unwrap());
    let due = idle_stop_due(&monitor, ended_at).expect("no idle stop planned after the request");
    assert!(
        due + CLOCKS >= after && due <= after * 5 / 4 + CLOCKS,
        "due {due:?} after the request ended: the deadline from before the request"
    );
    let stopped = first_stop(&stops).await - ended;
    assert!(
        stopped + CLOCKS >= due,
        "stopped {stopped:?} after the last request, before the {due:?} the snapshot said"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_is_not_up_has_no_idle_deadline() {
    let (monitor, _stops) = recording_stops(Duration::from_secs(2));
    assert_eq!(
        monitor.snapshot()[0].idle_deadline,
        None,
        "planned before it was up"
    );
    monitor.set_status_up("app").unwrap();
    assert!(monitor.snapshot()[0].idle_deadline.is_some());
    monitor.set_status_down("app").unwrap();
    let snapshot = &monitor.snapshot()[0];
    assert_ne!(snapshot.state, tower_monitor::ServiceState::Up);
    assert_eq!(
        snapshot.idle_deadline, None,
        "planned for a service {:?}",
        snapshot.state
    );
}
