//! Races and shutdowns of the lifecycle found in review: each test failed on the code as it was.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use http::{Request, StatusCode};
use tower::{Layer, ServiceExt};
use tower_monitor::{BoxError, MinMonitor, MonitoredService, ServiceState, trigger};

fn noop() -> impl tower_monitor::Trigger {
    trigger::from_fn(|| async { Ok::<(), BoxError>(()) })
}

/// Probes until the probe that ended Stopping has finished everything it sets off.
async fn settled_after_stopping(monitor: &MinMonitor) {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
    while monitor.state("app").unwrap() == ServiceState::Stopping {
        assert!(tokio::time::Instant::now() < give_up, "never left Stopping");
        let _ = monitor.reprobe("app").await;
    }
    // One more probe: it joins the flight that ended Stopping, or starts after it has finished.
    let _ = monitor.reprobe("app").await;
}

/// A request during a stop that then fails asks for a start the backend no longer needs (it
/// stayed up). That wish must not survive: the next idle stop must really stop, not restart it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wish_to_start_made_during_a_failed_stop_does_not_restart_the_backend_after_the_next_stop()
 {
    let _logs = logs(tracing::Level::INFO);
    let up = Arc::new(AtomicBool::new(true));
    let (stops, wakes) = (counter(), counter());
    let gate = Arc::new(tokio::sync::Notify::new());
    let (s, u, g) = (stops.clone(), up.clone(), gate.clone());
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .probe(switch_probe(up.clone()))
        .on_down(counting_trigger(wakes.clone(), false))
        .on_idle(
            Duration::from_millis(100),
            trigger::from_fn(move || {
                let first = s.fetch_add(1, Ordering::SeqCst) == 0;
                let (g, u) = (g.clone(), u.clone());
                async move {
                    if first {
                        g.notified().await;
                        Err::<(), BoxError>("the first stop fails".into())
                    } else {
                        u.store(false, Ordering::SeqCst);
                        Ok(())
                    }
                }
            }),
        );
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).unwrap();
    monitor.set_status_up("app").unwrap();
    let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
    while count(&stops) < 1 {
        assert!(tokio::time::Instant::now() < give_up);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Stopping);
    // A request while the first stop runs: 503, and a wish to start once it is down.
    let status = monitor
        .layer("app")
        .unwrap()
        .layer(inner())
        .oneshot(Request::new(()))
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // The stop fails: the backend is up again, the wish fulfilled.
    gate.notify_one();
    // The idle time passes again with no request: the second stop succeeds.
    while count(&stops) < 2 {
        assert!(tokio::time::Instant::now() < give_up, "no second stop");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    settled_after_stopping(&monitor).await;
    assert_eq!(
        monitor.state("app").unwrap(),
        ServiceState::Down,
        "the idle stop was undone by a stale wish to start"
    );
    assert_eq!(count(&wakes), 0);
}

/// A runtime that shuts down just after a wake (its poller spawned but never run) must not
/// leave the service unable to ever be polled again: a held request on the next runtime is
/// released once the backend is up.
#[test]
fn a_runtime_shut_down_right_after_a_wake_does_not_wedge_the_poller() {
    let _logs = logs(tracing::Level::INFO);
    let up = Arc::new(AtomicBool::new(false));
    let monitor = Arc::new(MinMonitor::new());
    let url = tower_monitor::Url::parse("http://127.0.0.1:9/").unwrap();
    monitor
        .add(
            "app",
            MonitoredService::new(url, Duration::from_secs(60))
                .probe(switch_probe(up.clone()))
                .on_down(noop()),
        )
        .unwrap();
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    first.block_on(async {
        let start = monitor.start("app");
        tokio::pin!(start);
        assert!(futures::poll!(start.as_mut()).is_pending());
    });
    drop(first);
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Starting);

    let second = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        up.store(true, Ordering::SeqCst);
        let held = monitor
            .layer("app")
            .unwrap()
            .hold(Duration::from_secs(3))
            .layer(inner());
        let status = held.oneshot(Request::new(())).await.unwrap().status();
        assert_eq!(
            status,
            StatusCode::OK,
            "the held request was never released"
        );
    });
}

/// A runtime that shuts down while the service is Starting (its poller dropped mid-way) must
/// not leave it Starting forever: on the next runtime, requests find it up once it is, or the
/// start timeout ends Starting.
#[test]
fn a_runtime_shut_down_while_starting_does_not_strand_the_service_in_starting() {
    let _logs = logs(tracing::Level::INFO);
    let up = Arc::new(AtomicBool::new(false));
    let probes = counter();
    let monitor = Arc::new(MinMonitor::new());
    let url = tower_monitor::Url::parse("http://127.0.0.1:9/").unwrap();
    let (u, p) = (up.clone(), probes.clone());
    monitor
        .add(
            "app",
            MonitoredService::new(url, Duration::from_secs(60))
                .probe(tower_monitor::probe::from_fn(move |_url| {
                    p.fetch_add(1, Ordering::SeqCst);
                    let up = u.load(Ordering::SeqCst);
                    async move { Ok::<bool, BoxError>(up) }
                }))
                .on_down(noop())
                .start_timeout(Duration::from_millis(500)),
        )
        .unwrap();
    let first = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    first.block_on(async {
        monitor.start("app").await.unwrap();
        // The poller is running: it has probed at least once.
        let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
        while count(&probes) < 1 {
            assert!(tokio::time::Instant::now() < give_up);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    drop(first);
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Starting);

    let second = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        up.store(true, Ordering::SeqCst);
        let service = monitor.layer("app").unwrap().layer(inner());
        let give_up = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let status = service
                .clone()
                .oneshot(Request::new(()))
                .await
                .unwrap()
                .status();
            if status == StatusCode::OK {
                break;
            }
            assert!(
                tokio::time::Instant::now() < give_up,
                "still {:?} after 3 s (start timeout 0.5 s, backend up)",
                monitor.state("app").unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// `on_idle` that closes the backend's port at once but returns later (as `docker stop` or
/// `systemctl stop` do: the app shuts its listener, then the process takes a while to exit).
/// A request during the stop must not start the backend while `on_idle` is still running: the
/// start would be a no-op on the still-running backend, and the stop would then take it down
/// for good while the service sits in Starting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_is_not_started_again_while_on_idle_still_runs() {
    let _logs = logs(tracing::Level::INFO);
    let stop = StopUnderWay::begin("again-app").await;
    assert_eq!(stop.request().await, StatusCode::SERVICE_UNAVAILABLE);
    // Probes find the port closed while on_idle still runs.
    for _ in 0..3 {
        let _ = stop.monitor.reprobe(stop.name).await;
    }
    assert_eq!(
        count(&stop.wakes),
        0,
        "on_down ran while on_idle was still running"
    );
    assert_eq!(
        stop.monitor.state(stop.name).unwrap(),
        ServiceState::Stopping
    );
    // Once on_idle has returned and the backend is down, the request's wish starts it.
    stop.finish().await;
}

/// `set_status_down` while `on_idle` still runs (found by the soak, seed 105): it forgets the
/// cached up, as a failed probe would, but must not end Stopping as a failed probe does not:
/// the next request would run `on_down` beside the stop that has not finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_status_down_does_not_end_a_stop_whose_on_idle_still_runs() {
    let _logs = logs(tracing::Level::INFO);
    let stop = StopUnderWay::begin("down-app").await;
    stop.monitor.set_status_down(stop.name).unwrap();
    assert_eq!(
        stop.monitor.state(stop.name).unwrap(),
        ServiceState::Stopping
    );
    assert_eq!(stop.request().await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(count(&stop.wakes), 0, "on_down ran while on_idle still ran");
    // Once on_idle has returned, the backend is down and the request's wish starts it.
    stop.finish().await;
}

/// `set_status_up` while `on_idle` still runs: an operator's word said during a stop does not
/// undo it (the service stays Stopping, nothing is forwarded, no second stop begins) and is said
/// at info; the stop's end decides (here done: down, and a request's wish starts it again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_status_up_does_not_undo_a_stop_whose_on_idle_still_runs() {
    let logs = logs(tracing::Level::INFO);
    let stop = StopUnderWay::begin("up-app").await;
    stop.monitor.set_status_up(stop.name).unwrap();
    assert_eq!(
        stop.monitor.state(stop.name).unwrap(),
        ServiceState::Stopping,
        "set_status_up undid the stop under way"
    );
    logs.line_with(&["up-app is being stopped", "set_status_up changes nothing"]);
    assert_eq!(stop.request().await, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !stop.monitor.stop(stop.name).await.unwrap(),
        "a second stop began"
    );
    assert_eq!(count(&stop.stops), 1, "on_idle ran twice at once");
    stop.finish().await;
}

/// An operator's stop whose `on_idle` has closed the backend's port and not yet returned (as
/// `docker stop` or `systemctl stop` do), with `on_down` counted.
struct StopUnderWay {
    name: &'static str,
    monitor: Arc<MinMonitor>,
    stops: Arc<std::sync::atomic::AtomicUsize>,
    wakes: Arc<std::sync::atomic::AtomicUsize>,
    gate: Arc<tokio::sync::Notify>,
    stopping: tokio::task::JoinHandle<Result<bool, tower_monitor::MonitorError>>,
    give_up: tokio::time::Instant,
}

impl StopUnderWay {
    async fn begin(name: &'static str) -> Self {
        let up = Arc::new(AtomicBool::new(true));
        let (stops, wakes) = (counter(), counter());
        let gate = Arc::new(tokio::sync::Notify::new());
        let (s, u, g) = (stops.clone(), up.clone(), gate.clone());
        let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
            .probe(switch_probe(up.clone()))
            .on_down(counting_trigger(wakes.clone(), false))
            .on_idle(
                Duration::from_secs(3600),
                trigger::from_fn(move || {
                    s.fetch_add(1, Ordering::SeqCst);
                    u.store(false, Ordering::SeqCst);
                    let g = g.clone();
                    async move {
                        g.notified().await;
                        Ok::<(), BoxError>(())
                    }
                }),
            );
        let monitor = Arc::new(MinMonitor::new());
        monitor.add(name, service).unwrap();
        monitor.set_status_up(name).unwrap();
        let stopping = tokio::spawn({
            let monitor = monitor.clone();
            async move { monitor.stop(name).await }
        });
        let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
        while count(&stops) < 1 {
            assert!(tokio::time::Instant::now() < give_up);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Self {
            name,
            monitor,
            stops,
            wakes,
            gate,
            stopping,
            give_up,
        }
    }

    /// The status a request through the layer gets now.
    async fn request(&self) -> StatusCode {
        let layer = self.monitor.layer(self.name).unwrap();
        let response = layer.layer(inner()).oneshot(Request::new(())).await;
        response.unwrap().status()
    }

    /// Lets `on_idle` return; the stop succeeds, and the wish to start that a request left
    /// runs `on_down` (bounded).
    async fn finish(self) {
        self.gate.notify_one();
        assert!(self.stopping.await.unwrap().unwrap());
        while count(&self.wakes) < 1 {
            assert!(
                tokio::time::Instant::now() < self.give_up,
                "the wish was lost"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
