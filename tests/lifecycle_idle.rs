//! The idle stop on a multi-thread runtime: a running backend is stopped after its idle time,
//! a request during the stop wakes it once it is down, a failing `on_idle` is retried, and a
//! late failure does not undo a later stop.

mod common;
mod lifecycle_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use http::StatusCode;
use lifecycle_support::*;
use tower_monitor::{BoxError, MonitoredService, ServiceState, trigger};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_backend_is_stopped_after_the_idle_time_with_no_request() {
    let stops = counter();
    let up = Arc::new(AtomicBool::new(true));
    let (s, u) = (stops.clone(), up.clone());
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .probe(switch_probe(up.clone()))
        .probe_on_add(true)
        .on_idle(
            Duration::from_millis(200),
            trigger::from_fn(move || {
                s.fetch_add(1, Ordering::SeqCst);
                u.store(false, Ordering::SeqCst);
                async { Ok::<(), BoxError>(()) }
            }),
        );
    let f = Fixture::around(service, up);
    // Stop applies only from Up, so one stop proves it was seen up first.
    until(
        Duration::from_secs(5),
        "stopped",
        || count(&stops),
        |&n| n > 0,
    )
    .await;
    f.reaches(ServiceState::Down, Duration::from_secs(5)).await;
    assert_eq!(count(&stops), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_idle_stop_a_request_wakes_the_backend_instead_of_being_forwarded() {
    let stops = counter();
    let (s, gate) = (stops.clone(), Arc::new(AtomicBool::new(false)));
    let g = gate.clone();
    let f = fixture(
        move |service| {
            service.on_idle(
                Duration::from_millis(100),
                trigger::from_fn(move || {
                    s.fetch_add(1, Ordering::SeqCst);
                    g.store(true, Ordering::SeqCst);
                    async { Ok::<(), BoxError>(()) }
                }),
            )
        },
        Duration::ZERO,
    )
    .await;
    let layer = f.monitor.layer("app").unwrap();
    f.up.store(true, Ordering::SeqCst);
    assert_eq!(f.send(layer.clone()).await, StatusCode::OK);
    f.reaches(ServiceState::Stopping, Duration::from_secs(5))
        .await;
    assert!(
        !f.service(layer.clone()).is_cached_up(),
        "the cached up is gone at once"
    );
    // While it stops (it still answers probes), requests are not forwarded.
    assert_eq!(f.send(layer.clone()).await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(count(&f.forwarded), 1);
    // The request above asked for a start: once the backend is down, it is woken again.
    f.up.store(false, Ordering::SeqCst);
    f.reaches(ServiceState::Starting, Duration::from_secs(5))
        .await;
    f.woken(1).await;
    assert_eq!(count(&stops), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_on_idle_is_retried() {
    let runs = counter();
    let r = runs.clone();
    let f = fixture(
        move |service| {
            service.on_idle(
                Duration::from_millis(100),
                trigger::from_fn(move || {
                    let first = r.fetch_add(1, Ordering::SeqCst) == 0;
                    async move {
                        if first {
                            Err::<(), BoxError>("not this time".into())
                        } else {
                            Ok(())
                        }
                    }
                }),
            )
        },
        Duration::ZERO,
    )
    .await;
    // The backend keeps answering probes, so a successful stop stays Stopping.
    f.up.store(true, Ordering::SeqCst);
    f.monitor.set_status_up("app").unwrap();
    until(
        Duration::from_secs(5),
        "on_idle retried",
        || count(&runs),
        |&n| n >= 2,
    )
    .await;
    f.reaches(ServiceState::Stopping, Duration::from_secs(5))
        .await;
}

/// A stop whose `on_idle` hangs, then fails, while the backend was marked up meanwhile: the
/// word changes nothing, no second stop begins beside it (two `on_idle` would run at once), and
/// its late failure decides (Up again); once it has ended, a stop begins again. (That a late
/// failure changes nothing of a later stay is the lifecycle's `apply_to`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_fails_late_is_not_doubled_and_its_failure_decides() {
    let release = Arc::new(tokio::sync::Notify::new());
    let runs = counter();
    let (r, n) = (release.clone(), runs.clone());
    // The first `on_idle` hangs until released, then fails; later ones succeed at once.
    let on_idle = trigger::from_fn(move || {
        let first = n.fetch_add(1, Ordering::SeqCst) == 0;
        let r = r.clone();
        async move {
            if first {
                r.notified().await;
                return Err::<(), BoxError>("the first stop failed, late".into());
            }
            Ok(())
        }
    });
    let f = fixture(
        move |s| s.on_idle(Duration::from_secs(3600), on_idle),
        Duration::ZERO,
    )
    .await;
    f.up.store(true, Ordering::SeqCst);
    f.monitor.set_status_up("app").unwrap();
    let monitor = f.monitor.clone();
    let first_stop = tokio::spawn(async move { monitor.stop("app").await });
    f.reaches(ServiceState::Stopping, Duration::from_secs(5))
        .await;
    // While it hangs, the backend is marked up: it stays Stopping (marked down too, see
    // lifecycle_races). No second stop begins beside the first.
    f.monitor.set_status_up("app").unwrap();
    assert_eq!(f.monitor.state("app").unwrap(), ServiceState::Stopping);
    assert!(!f.monitor.stop("app").await.unwrap(), "a second stop began");
    assert_eq!(count(&runs), 1);

    release.notify_one();
    assert!(first_stop.await.unwrap().is_err());
    // Its failure decides: the backend still runs.
    assert_eq!(f.monitor.state("app").unwrap(), ServiceState::Up);
    // The first stop is over: the next one begins.
    assert!(f.monitor.stop("app").await.unwrap());
    assert_eq!(f.monitor.state("app").unwrap(), ServiceState::Stopping);
    assert_eq!(count(&runs), 2);
}

/// A backend that answers before its `on_down` returns (a start command that waits for more
/// than the port), and stays quiet for longer than the idle time meanwhile: the idle stop
/// waits for `on_down` to return, so that `on_idle` never runs beside it (found by the soak,
/// with an `on_down` that returned 100 ms after the port opened).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_stop_waits_for_an_on_down_that_still_runs() {
    let up = Arc::new(AtomicBool::new(false));
    let (starting, overlapped, stops) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
        counter(),
    );
    let gate = Arc::new(tokio::sync::Notify::new());
    let (u, st, g) = (up.clone(), starting.clone(), gate.clone());
    let (s, st2, o) = (stops.clone(), starting.clone(), overlapped.clone());
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .probe(switch_probe(up.clone()))
        .on_down(trigger::from_fn(move || {
            let (u, st, g) = (u.clone(), st.clone(), g.clone());
            async move {
                st.store(true, Ordering::SeqCst);
                u.store(true, Ordering::SeqCst);
                g.notified().await;
                st.store(false, Ordering::SeqCst);
                Ok::<(), BoxError>(())
            }
        }))
        .on_idle(
            Duration::from_millis(40),
            trigger::from_fn(move || {
                s.fetch_add(1, Ordering::SeqCst);
                o.fetch_or(st2.load(Ordering::SeqCst), Ordering::SeqCst);
                async { Ok::<(), BoxError>(()) }
            }),
        );
    let f = Fixture::around(service, up);
    // An operator's start: no request in flight keeps the backend awake meanwhile.
    let monitor = f.monitor.clone();
    let start = tokio::spawn(async move { monitor.start("app").await });
    f.reaches(ServiceState::Up, Duration::from_secs(5)).await;
    // Many idle times with on_down still running: an idle stop would have come by now.
    tokio::time::sleep(Duration::from_millis(400)).await;
    gate.notify_one();
    start.await.unwrap().unwrap();
    until(
        Duration::from_secs(5),
        "stopped",
        || count(&stops),
        |&n| n > 0,
    )
    .await;
    assert!(
        !overlapped.load(Ordering::SeqCst),
        "on_idle ran while on_down still ran"
    );
}
