//! Runtimes that shut down: a backend first seen up on a runtime that has since shut down, or
//! marked up where there was none, is still stopped once idle on the next one; a start whose
//! `on_down` a runtime's end cut short is over then, and the next runtime starts it again.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get as route_get;
use common::*;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tower_monitor::{BoxError, MinMonitor, MonitoredService, trigger};

/// "app", up for every probe, with `on_idle` after `idle` that says so on the returned channel.
fn monitor(idle: Duration) -> (Arc<MinMonitor>, mpsc::UnboundedReceiver<()>) {
    let (stopped, stops) = mpsc::unbounded_channel();
    let stop = trigger::from_fn(move || {
        let _ = stopped.send(());
        async { Ok::<(), BoxError>(()) }
    });
    let url = tower_monitor::Url::parse("http://127.0.0.1:9/").unwrap();
    let service = MonitoredService::new(url, Duration::from_secs(60))
        .probe(counting_probe(counter(), true))
        .on_idle(idle, stop);
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).unwrap();
    (monitor, stops)
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// One request through an app guarded by `monitor`'s "app", served on this runtime.
async fn one_request(monitor: &Arc<MinMonitor>) {
    let router = Router::new()
        .route("/", route_get(|| async { "app" }))
        .layer(monitor.layer("app").unwrap());
    let server = serve(router).await;
    assert_eq!(get(server.addr, "/", &[]).await.body, "app");
}

/// Before, the idle watch's timer went with the first runtime, and nothing armed it again
/// (the backend was already up: no transition), so `on_idle` never ran.
#[test]
fn a_backend_first_seen_up_on_a_runtime_that_shut_down_is_stopped_when_idle() {
    let idle = Duration::from_secs(1);
    let (monitor, mut stops) = monitor(idle);
    let first = runtime();
    let started = Instant::now();
    first.block_on(one_request(&monitor));
    drop(first);
    assert!(
        stops.try_recv().is_err() && started.elapsed() < idle,
        "the first runtime lasted the idle time: this test needs a shorter one"
    );

    runtime().block_on(async {
        one_request(&monitor).await;
        let stop = tokio::time::timeout(idle * 5, stops.recv()).await;
        assert!(
            matches!(stop, Ok(Some(()))),
            "on_idle never ran on the second runtime"
        );
    });
}

/// Marked up outside any runtime, the watch looks on a plain thread, where `on_idle` (async)
/// cannot run: it runs once the backend is next seen up on a runtime.
#[test]
fn an_idle_time_passed_outside_a_runtime_stops_the_backend_once_seen_up_on_one() {
    let idle = Duration::from_millis(100);
    let (monitor, mut stops) = monitor(idle);
    monitor.set_status_up("app").unwrap();
    // The plain thread's look found the idle time over (and had no runtime to stop it on).
    let give_up = Instant::now() + Duration::from_secs(5);
    while monitor.snapshot()[0].idle_deadline.is_some() {
        assert!(Instant::now() < give_up, "the idle time never passed");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(stops.try_recv().is_err());

    runtime().block_on(async {
        assert!(monitor.reprobe("app").await.unwrap());
        let stop = tokio::time::timeout(Duration::from_secs(5), stops.recv()).await;
        assert!(
            matches!(stop, Ok(Some(()))),
            "on_idle never ran once the backend was seen up on a runtime"
        );
    });
}

/// Before, the service stayed Starting until its start timeout (a minute): every request got
/// the 503 and none ran `on_down` again.
#[test]
fn a_start_cut_short_by_its_runtimes_end_is_over_and_runs_again_on_the_next() {
    let runs = counter();
    let counted = runs.clone();
    let on_down = trigger::from_fn(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::future::pending::<Result<(), BoxError>>()
    });
    let url = tower_monitor::Url::parse("http://127.0.0.1:9/").unwrap();
    let service = MonitoredService::new(url, Duration::from_secs(60))
        .probe(counting_probe(counter(), false))
        .on_down(on_down)
        .trigger_timeout(Duration::from_secs(600))
        .start_timeout(Duration::from_secs(600));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).unwrap();
    let start_until_run = |runs_now: usize| {
        let monitor = Arc::clone(&monitor);
        let runs = runs.clone();
        async move {
            let starting = Arc::clone(&monitor);
            tokio::spawn(async move { starting.start("app").await });
            until(
                Duration::from_secs(5),
                "on_down runs",
                || count(&runs),
                |n| *n == runs_now,
            )
            .await;
        }
    };

    let first = runtime();
    first.block_on(start_until_run(1));
    assert_eq!(
        monitor.state("app").unwrap(),
        tower_monitor::ServiceState::Starting
    );
    drop(first);
    assert_eq!(
        monitor.state("app").unwrap(),
        tower_monitor::ServiceState::Down
    );

    let second = runtime();
    second.block_on(start_until_run(2));
}
