//! The backend lifecycle on a multi-thread runtime: one start per cold start, polling while
//! starting, bounded triggers, idle stop that really stops, learning from failed forwards.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceExt};
use tower_monitor::layer::BackendGone;
use tower_monitor::{
    BoxError, MinMonitor, MonitorLayer, MonitoredService, ServiceState, probe, trigger,
};

/// A backend whose probe answers what `up` holds (counting probes), with a counted `on_down`
/// that takes `boot` and then, if `comes_up`, makes the backend answer.
struct Fixture {
    monitor: Arc<MinMonitor>,
    up: Arc<AtomicBool>,
    probes: Arc<AtomicUsize>,
    wakes: Arc<AtomicUsize>,
    forwarded: Arc<AtomicUsize>,
}

async fn fixture(
    configure: impl FnOnce(MonitoredService) -> MonitoredService,
    on_down_takes: Duration,
) -> Fixture {
    let (up, probes, wakes) = (Arc::new(AtomicBool::new(false)), counter(), counter());
    let (u, p, w) = (up.clone(), probes.clone(), wakes.clone());
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .probe(probe::from_fn(move |_url| {
            p.fetch_add(1, Ordering::SeqCst);
            let up = u.load(Ordering::SeqCst);
            async move { Ok::<bool, BoxError>(up) }
        }))
        .on_down(trigger::from_fn(move || {
            w.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(on_down_takes).await;
                Ok::<(), BoxError>(())
            }
        }));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", configure(service)).unwrap();
    Fixture {
        monitor,
        up,
        probes,
        wakes,
        forwarded: counter(),
    }
}

impl Fixture {
    fn service(
        &self,
        layer: MonitorLayer,
    ) -> tower_monitor::MonitorService<
        impl tower::Service<
            Request<()>,
            Response = Response<Full<Bytes>>,
            Error = Infallible,
            Future: Send,
        > + Clone
        + Send
        + 'static,
    > {
        let forwarded = self.forwarded.clone();
        layer.layer(tower::service_fn(move |_req: Request<()>| {
            forwarded.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Full::from("app"))) }
        }))
    }

    async fn send(&self, layer: MonitorLayer) -> StatusCode {
        self.service(layer)
            .oneshot(Request::new(()))
            .await
            .unwrap()
            .status()
    }

    /// Waits (bounded) until `on_down` has begun `n` runs, then checks there is no extra one.
    /// A run woken by no request (an idle stop's pending wake, a gone backend) is its own task.
    async fn woken(&self, n: usize) {
        let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
        while count(&self.wakes) < n {
            assert!(tokio::time::Instant::now() < give_up, "on_down never ran");
            tokio::task::yield_now().await;
        }
        assert_eq!(count(&self.wakes), n);
    }

    /// Waits (bounded) until `n` requests are held, as the monitor's snapshot counts them.
    async fn holds(&self, n: usize, within: Duration) {
        let held = || self.monitor.snapshot()[0].requests_held;
        until(within, &format!("{n} held"), held, |held| *held == n).await;
    }

    /// Waits (bounded) until the service reaches `state`.
    async fn reaches(&self, state: ServiceState, within: Duration) {
        wait_for_state(&self.monitor, "app", state, within).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_herd_arriving_at_once_runs_on_down_once() {
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
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).unwrap();
    let f = Fixture {
        monitor,
        up,
        probes: counter(),
        wakes: counter(),
        forwarded: counter(),
    };
    // Stop applies only from Up, so one stop proves it was seen up first.
    let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
    while count(&stops) == 0 {
        assert!(tokio::time::Instant::now() < give_up, "never stopped");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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
    let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
    while count(&runs) < 2 {
        assert!(
            tokio::time::Instant::now() < give_up,
            "on_idle was not retried"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f.reaches(ServiceState::Stopping, Duration::from_secs(5))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_status_down_forgets_a_cached_up() {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_probe_counts_as_failed_and_clears_the_cached_up() {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_wake_policy_answers_500() {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_as_long_as_duration_max_mean_forever_not_a_panic() {
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
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).unwrap();
    let f = Fixture {
        monitor,
        up,
        probes: counter(),
        wakes: counter(),
        forwarded: counter(),
    };
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stop_that_fails_late_does_not_undo_a_later_stop() {
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
    // While it hangs, the backend goes round the cycle: marked down, woken, up, stopped again.
    f.monitor.set_status_down("app").unwrap();
    f.monitor.start("app").await.unwrap();
    f.reaches(ServiceState::Up, Duration::from_secs(5)).await;
    assert!(f.monitor.stop("app").await.unwrap());
    assert_eq!(f.monitor.state("app").unwrap(), ServiceState::Stopping);

    release.notify_one();
    assert!(first_stop.await.unwrap().is_err());
    assert_eq!(
        f.monitor.state("app").unwrap(),
        ServiceState::Stopping,
        "the first stop's late failure undid the second stop"
    );
    assert_eq!(count(&runs), 2);
}
