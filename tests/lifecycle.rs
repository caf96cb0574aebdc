//! The backend lifecycle on a multi-thread runtime: one start per cold start, polling while
//! starting, bounded triggers, idle stop that really stops, learning from failed forwards.

mod common;
mod lifecycle_support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use lifecycle_support::*;
use tower::{Layer, ServiceExt};
use tower_monitor::layer::BackendGone;
use tower_monitor::{
    BoxError, MinMonitor, MonitorError, MonitoredService, ServiceState, probe, trigger,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_herd_arriving_at_once_runs_on_down_once() {
    let _logs = logs(tracing::Level::ERROR);
    let f = fixture(|s| s, Duration::from_millis(20)).await;
    let service = f.service(f.monitor.layer("app").unwrap());
    let requests: Vec<_> = (0..2_000)
        .map(|_| tokio::spawn(service.clone().oneshot(Request::new(()))))
        .collect();
    for request in requests {
        assert_eq!(
            request.await.unwrap().unwrap().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert_eq!(count(&f.wakes), 1, "one on_down per cold start");
    assert_eq!(f.monitor.state("app").unwrap(), ServiceState::Starting);
    assert_eq!(count(&f.forwarded), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_spread_over_the_boot_run_on_down_once_and_do_not_probe_each() {
    let _logs = logs(tracing::Level::ERROR);
    let f = fixture(|s| s, Duration::from_millis(20)).await;
    let layer = f.monitor.layer("app").unwrap();
    let mut sent = Vec::new();
    let started = tokio::time::Instant::now();
    for _ in 0..100 {
        sent.push(tokio::spawn(
            f.service(layer.clone()).oneshot(Request::new(())),
        ));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for request in sent {
        assert_eq!(
            request.await.unwrap().unwrap().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert_eq!(count(&f.wakes), 1);
    // The poller's 20 a second while Starting, plus the first request's probe (and one more for
    // a poll under way at the end): not one per request.
    let probes = count(&f.probes);
    let allowed = 2.0 + 20.0 * started.elapsed().as_secs_f64();
    assert!(
        probes as f64 <= allowed,
        "{probes} probes while starting for {:?}",
        started.elapsed()
    );
    f.up.store(true, Ordering::SeqCst);
    f.reaches(ServiceState::Up, Duration::from_secs(5)).await;
    assert_eq!(f.send(layer).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_requests_are_released_when_the_poller_finds_the_backend_up() {
    let _logs = logs(tracing::Level::ERROR);
    let f = fixture(|s| s, Duration::ZERO).await;
    let layer = f
        .monitor
        .layer("app")
        .unwrap()
        .hold(Duration::from_secs(20));
    let held: Vec<_> = (0..50)
        .map(|_| tokio::spawn(f.service(layer.clone()).oneshot(Request::new(()))))
        .collect();
    f.reaches(ServiceState::Starting, Duration::from_secs(5))
        .await;
    // Every request must be held before the backend comes up: a task the runtime polls only
    // later would find it up and be forwarded directly (no x-cold-start), as it should.
    f.holds(50, Duration::from_secs(5)).await;
    f.up.store(true, Ordering::SeqCst);
    for request in held {
        let response = request.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().contains_key("x-cold-start"));
    }
    assert_eq!(count(&f.wakes), 1);
    assert_eq!(count(&f.forwarded), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_ends_at_the_start_timeout_and_the_next_request_wakes_again() {
    let _logs = logs(tracing::Level::ERROR);
    let f = fixture(
        |s| s.start_timeout(Duration::from_millis(300)),
        Duration::ZERO,
    )
    .await;
    let layer = f.monitor.layer("app").unwrap();
    assert_eq!(f.send(layer.clone()).await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(f.monitor.state("app").unwrap(), ServiceState::Starting);
    f.reaches(ServiceState::Down, Duration::from_secs(5)).await;
    assert_eq!(f.send(layer).await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(count(&f.wakes), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_down_that_never_returns_is_cut_at_the_trigger_timeout() {
    let _logs = logs(tracing::Level::ERROR);
    let f = fixture(
        |s| s.trigger_timeout(Duration::from_millis(200)),
        Duration::MAX,
    )
    .await;
    let layer = f.monitor.layer("app").unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), f.send(layer.clone())).await;
    assert_eq!(
        answer.expect("bounded by the trigger timeout"),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        f.monitor.state("app").unwrap(),
        ServiceState::Down,
        "a failed start is down at once"
    );
    // Hold mode keeps waiting within max_wait, and answers 504 then, not later.
    let held = layer.hold(Duration::from_millis(500));
    let started = tokio::time::Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(10), f.send(held)).await;
    assert_eq!(answer.unwrap(), StatusCode::GATEWAY_TIMEOUT);
    // Generous for a loaded machine; the old code answered after on_down + max_wait + a probe.
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "504 after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_held_counts_requests_while_on_down_runs() {
    let _logs = logs(tracing::Level::ERROR);
    let f = fixture(|s| s, Duration::from_secs(2)).await;
    let layer = f
        .monitor
        .layer("app")
        .unwrap()
        .hold(Duration::from_millis(300))
        .max_held(2);
    let sent: Vec<_> = (0..10)
        .map(|_| tokio::spawn(f.service(layer.clone()).oneshot(Request::new(()))))
        .collect();
    let mut statuses = Vec::new();
    for request in sent {
        statuses.push(request.await.unwrap().unwrap().status());
    }
    let timed_out = statuses
        .iter()
        .filter(|s| **s == StatusCode::GATEWAY_TIMEOUT)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!((timed_out, refused), (2, 8), "{statuses:?}");
    assert_eq!(count(&f.wakes), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_status_down_forgets_a_cached_up() {
    let _logs = logs(tracing::Level::ERROR);
    let f = fixture(|s| s, Duration::ZERO).await;
    let layer = f.monitor.layer("app").unwrap();
    f.monitor.set_status_up("app").unwrap();
    assert_eq!(f.send(layer.clone()).await, StatusCode::OK);
    f.monitor.set_status_down("app").unwrap();
    assert_eq!(f.monitor.state("app").unwrap(), ServiceState::Down);
    assert_eq!(
        f.send(layer).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "probed, found down, woken"
    );
    assert_eq!(count(&f.wakes), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_that_finds_the_backend_gone_marks_it_down_and_wakes_it() {
    let _logs = logs(tracing::Level::ERROR);
    let f = fixture(|s| s, Duration::ZERO).await;
    f.monitor.set_status_up("app").unwrap();
    let layer = f
        .monitor
        .layer("app")
        .unwrap()
        .backend_gone_when(BackendGone::in_response);
    let service = layer.layer(tower::service_fn(|_req: Request<()>| async {
        let mut response = Response::new(Full::<Bytes>::from("bad gateway"));
        *response.status_mut() = StatusCode::BAD_GATEWAY;
        response.extensions_mut().insert(BackendGone::new());
        Ok::<_, Infallible>(response)
    }));
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    f.reaches(ServiceState::Starting, Duration::from_secs(5))
        .await;
    f.woken(1).await;
}

/// An `on_down` whose `Trigger::ended` panics: the start it made stands (503, Starting), not
/// a 500 "failed to start" for every request that shared it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_ended_leaves_the_start_standing() {
    let _logs = logs(tracing::Level::ERROR);
    struct EndedPanics;
    impl tower_monitor::Trigger for EndedPanics {
        fn trigger(&self) -> futures::future::BoxFuture<'static, Result<(), BoxError>> {
            Box::pin(async { Ok(()) })
        }
        fn ended(&self) -> Option<futures::future::BoxFuture<'static, ()>> {
            panic!("ended bug")
        }
    }
    let monitor = Arc::new(MinMonitor::new());
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .on_down(EndedPanics);
    monitor.add("app", service).unwrap();
    let service =
        monitor
            .layer("app")
            .unwrap()
            .layer(tower::service_fn(|_req: Request<()>| async {
                Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
            }));
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Starting);
}

/// A `backend_gone_when` predicate that panics: the answer is forwarded, the backend stays
/// up, and the panic is logged with the service (it was swallowed without a word).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_gone_predicate_forwards_the_answer_and_is_logged() {
    let logs = logs(tracing::Level::ERROR);
    let monitor = Arc::new(MinMonitor::new());
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60));
    monitor.add("app", service).unwrap();
    monitor.set_status_up("app").unwrap();
    let layer = monitor
        .layer("app")
        .unwrap()
        .backend_gone_when(|_, _, _| panic!("predicate bug"));
    let service = layer.layer(tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("app")))
    }));
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!response.body().is_fallback());
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Up);
    // Found by its words (only this test's predicate panics); it must name the service.
    let line = logs.line_with(&["backend_gone_when predicate panicked"]);
    assert!(line.contains("service=app"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_probe_counts_as_failed_and_clears_the_cached_up() {
    let _logs = logs(tracing::Level::ERROR);
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .probe(probe::from_fn(|_url| async {
            if true {
                panic!("probe bug");
            }
            Ok::<bool, BoxError>(true)
        }));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).unwrap();
    monitor.set_status_up("app").unwrap();
    assert!(monitor.reprobe("app").await.is_err());
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Down);
    let layer_service = monitor.layer("app").unwrap().layer(());
    assert!(!layer_service.is_cached_up());
}

/// A `probe::from_fn` closure that panics in its own code, before it returns a future: the
/// same failed probe. It used to skip the bookkeeping: the service stayed Up in `state` and
/// the snapshot (last probe "up") while every request was answered 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_panicking_before_its_future_counts_as_failed_too() {
    let _logs = logs(tracing::Level::ERROR);
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::ZERO).probe(
        probe::from_fn(|url| {
            assert!(url.path() != "/", "probe bug");
            async { Ok::<bool, BoxError>(true) }
        }),
    );
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).unwrap();
    monitor.set_status_up("app").unwrap();
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Up);
    assert!(monitor.reprobe("app").await.is_err());
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Down);
    let snapshot = &monitor.snapshot()[0];
    let last = snapshot.last_probe.as_ref().expect("the probe is recorded");
    assert_eq!(last.result, tower_monitor::ProbeResult::Error);
    assert_eq!(snapshot.counters.probes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_wake_policy_answers_500() {
    let _logs = logs(tracing::Level::ERROR);
    let f = fixture(|s| s, Duration::ZERO).await;
    let layer = f
        .monitor
        .layer("app")
        .unwrap()
        .wake_when(|_, _, _| panic!("policy bug"));
    assert_eq!(f.send(layer).await, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(count(&f.wakes), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_stop_on_request() {
    let _logs = logs(tracing::Level::ERROR);
    let f = fixture(
        |s| {
            s.on_idle(
                Duration::from_secs(3600),
                trigger::from_fn(|| async { Ok::<(), BoxError>(()) }),
            )
        },
        Duration::ZERO,
    )
    .await;
    f.monitor.start("app").await.unwrap();
    assert_eq!(f.monitor.state("app").unwrap(), ServiceState::Starting);
    f.monitor.start("app").await.unwrap();
    assert_eq!(count(&f.wakes), 1, "already starting");
    f.up.store(true, Ordering::SeqCst);
    f.reaches(ServiceState::Up, Duration::from_secs(5)).await;
    assert!(f.monitor.stop("app").await.unwrap());
    assert_eq!(f.monitor.state("app").unwrap(), ServiceState::Stopping);
    assert!(
        !f.monitor.stop("app").await.unwrap(),
        "nothing left to stop"
    );
}

/// A start that has nothing to run says so, rather than answering as if it had started the
/// service: down or up, the service is left as it was.
#[tokio::test]
async fn a_start_without_on_down_fails_and_changes_nothing() {
    let monitor = MinMonitor::new();
    let url = url_for(refused_addr().await);
    monitor
        .add(
            "watched",
            MonitoredService::new(url, Duration::from_secs(60)),
        )
        .unwrap();
    for state in [ServiceState::Down, ServiceState::Up] {
        if state == ServiceState::Up {
            monitor.set_status_up("watched").unwrap();
        }
        let err = monitor.start("watched").await.unwrap_err();
        assert!(
            matches!(err, MonitorError::NothingToStart(ref name) if name == "watched"),
            "{err:?}"
        );
        assert!(err.to_string().contains("on_down"), "{err}");
        assert_eq!(monitor.state("watched").unwrap(), state);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_as_long_as_duration_max_mean_forever_not_a_panic() {
    let _logs = logs(tracing::Level::ERROR);
    let up = Arc::new(AtomicBool::new(false));
    let noop = || trigger::from_fn(|| async { Ok::<(), BoxError>(()) });
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::MAX)
        .probe(switch_probe(up.clone()))
        .on_down(noop())
        .on_idle(Duration::MAX, noop())
        .start_timeout(Duration::MAX)
        .stop_timeout(Duration::MAX)
        .trigger_timeout(Duration::MAX)
        .probe_timeout(Duration::MAX);
    let f = Fixture::around(service, up);
    f.monitor.set_status_up("app").unwrap();
    assert!(f.monitor.status("app").await.unwrap());
    let held = f.monitor.layer("app").unwrap().hold(Duration::MAX);
    // Forwarded, and the request's end arms the idle time (on_idle(MAX)) without overflowing.
    assert_eq!(f.send(held.clone()).await, StatusCode::OK);
    f.monitor.set_status_down("app").unwrap();
    let waiting = tokio::spawn(f.service(held).oneshot(Request::new(())));
    f.reaches(ServiceState::Starting, Duration::from_secs(5))
        .await;
    f.up.store(true, Ordering::SeqCst);
    assert_eq!(waiting.await.unwrap().unwrap().status(), StatusCode::OK);
}
