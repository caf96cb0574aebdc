//! Hold mode and the wake policy.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get as route_get;
use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceExt};
use tower_monitor::layer::DEFAULT_MAX_HELD;
use tower_monitor::{BoxError, MinMonitor, MonitorLayer, MonitoredService, ServiceState, probe};

/// A down backend whose probes are counted, with a counted `on_down`.
struct Fixture {
    monitor: Arc<MinMonitor>,
    up: Arc<AtomicBool>,
    probes: Arc<std::sync::atomic::AtomicUsize>,
    wakes: Arc<std::sync::atomic::AtomicUsize>,
}

async fn fixture() -> Fixture {
    let (up, probes, wakes) = (Arc::new(AtomicBool::new(false)), counter(), counter());
    let (u, p) = (up.clone(), probes.clone());
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .probe(probe::from_fn(move |_url| {
            p.fetch_add(1, Ordering::SeqCst);
            let up = u.load(Ordering::SeqCst);
            async move { Ok::<bool, BoxError>(up) }
        }))
        .on_down(counting_trigger(wakes.clone(), false));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).unwrap();
    Fixture {
        monitor,
        up,
        probes,
        wakes,
    }
}

fn guarded(
    layer: MonitorLayer,
) -> tower_monitor::MonitorService<
    impl tower::Service<Request<()>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
    + Clone
    + Send,
> {
    layer.layer(tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::from("app")))
    }))
}

/// The fixture's backend guarded in hold mode (30 s), holding at most `max_held`.
fn held(
    f: &Fixture,
    max_held: usize,
) -> tower_monitor::MonitorService<
    impl tower::Service<Request<()>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
    + Clone
    + Send
    + use<>,
> {
    guarded(
        f.monitor
            .layer("app")
            .unwrap()
            .hold(Duration::from_secs(30))
            .max_held(max_held),
    )
}

fn request(path: &str) -> Request<()> {
    Request::get(path).body(()).unwrap()
}

#[tokio::test]
async fn a_held_request_is_forwarded_once_the_backend_is_up() {
    let f = fixture().await;
    let router = Router::new()
        .route("/", route_get(|| async { "the app" }))
        .layer(
            f.monitor
                .layer("app")
                .unwrap()
                .hold(Duration::from_secs(20)),
        );
    let server = serve(router).await;
    let up = f.up.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        up.store(true, Ordering::SeqCst);
    });
    let reply = get(server.addr, "/", &[]).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "the app")
    );
    let waited: u64 = reply.headers["x-cold-start"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(waited >= 300, "x-cold-start: {waited}");
    assert_eq!(count(&f.wakes), 1, "on_down ran before holding");
}

#[tokio::test(start_paused = true)]
async fn a_held_request_times_out_with_504() {
    let f = fixture().await;
    let service = held(&f, DEFAULT_MAX_HELD);
    let response = service.oneshot(request("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(response.body().is_fallback());
    assert!(response.headers().contains_key("retry-after"));
}

#[tokio::test(start_paused = true)]
async fn beyond_the_bound_requests_are_answered_503_at_once() {
    let f = fixture().await;
    let service = held(&f, 2);
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(service.clone().oneshot(request("/"))))
        .collect();
    // With the clock paused, this sleep ends only once every task is idle: both are held.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let third = service.clone().oneshot(request("/")).await.unwrap();
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    f.up.store(true, Ordering::SeqCst);
    for response in held {
        let response = response.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().contains_key("x-cold-start"));
    }
}

/// `max_held` written before `hold` bounds it too (it was silently dropped: every request was
/// held, however many).
#[tokio::test(start_paused = true)]
async fn max_held_set_before_hold_bounds_it_too() {
    let f = fixture().await;
    let layer = f.monitor.layer("app").unwrap().max_held(1);
    let service = guarded(layer.hold(Duration::from_secs(30)));
    let held = tokio::spawn(service.clone().oneshot(request("/")));
    // With the clock paused, this sleep ends only once every task is idle: the first is held.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let second = service.clone().oneshot(request("/")).await.unwrap();
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    f.up.store(true, Ordering::SeqCst);
    assert_eq!(held.await.unwrap().unwrap().status(), StatusCode::OK);
}

/// `max_held(0)` (as one might write for "no limit") holds none, and still wakes the backend:
/// it used to answer 503 without ever running `on_down`, so the backend never started.
#[tokio::test(start_paused = true)]
async fn max_held_zero_holds_none_and_still_wakes_the_backend() {
    let f = fixture().await;
    let response = held(&f, 0).oneshot(request("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(count(&f.wakes), 1, "on_down ran");
    assert_eq!(f.monitor.state("app").unwrap(), ServiceState::Starting);
}

#[tokio::test(start_paused = true)]
async fn a_held_request_whose_client_left_frees_its_place() {
    let f = fixture().await;
    let service = held(&f, 1);
    let gone = tokio::spawn(service.clone().oneshot(request("/")));
    tokio::time::sleep(Duration::from_millis(10)).await;
    gone.abort();
    assert!(gone.await.unwrap_err().is_cancelled());
    // The place is free again: this one is held (not refused) and forwarded once up.
    let waiting = tokio::spawn(service.clone().oneshot(request("/")));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!waiting.is_finished(), "held, not answered 503");
    f.up.store(true, Ordering::SeqCst);
    assert_eq!(waiting.await.unwrap().unwrap().status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn held_requests_do_not_probe_the_monitor_polls_for_them() {
    let f = fixture().await;
    let service = held(&f, DEFAULT_MAX_HELD);
    let held: Vec<_> = (0..100)
        .map(|_| tokio::spawn(service.clone().oneshot(request("/"))))
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    f.up.store(true, Ordering::SeqCst);
    for response in held {
        assert_eq!(response.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    // 100 requests held for 3 s: the monitor's poller (every 50 ms), not one probe per request.
    let probes = count(&f.probes);
    assert!(
        probes <= 3 * 20 + 3,
        "{probes} probes for 100 held requests"
    );
    assert_eq!(count(&f.wakes), 1);
}

#[tokio::test]
async fn the_wake_policy_keeps_some_requests_from_waking_the_backend() {
    let f = fixture().await;
    let layer = f
        .monitor
        .layer("app")
        .unwrap()
        .hold(Duration::from_secs(30))
        .wake_when(|_method, uri, headers| {
            let crawler = headers
                .get("user-agent")
                .is_some_and(|ua| ua.as_bytes().ends_with(b"bot"));
            uri.path() != "/healthz" && !crawler
        });
    let service = guarded(layer);
    let health = service.clone().oneshot(request("/healthz")).await.unwrap();
    assert_eq!(
        health.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "answered at once, not held"
    );
    let crawler = Request::get("/")
        .header("user-agent", "Searchbot")
        .body(())
        .unwrap();
    assert_eq!(
        service.clone().oneshot(crawler).await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        count(&f.wakes),
        0,
        "no request the policy rejects ran on_down"
    );

    let up = f.up.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        up.store(true, Ordering::SeqCst);
    });
    assert_eq!(
        service
            .clone()
            .oneshot(request("/"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(count(&f.wakes), 1);
}

/// A held request pauses before starting the backend again after a start that failed; a
/// backend that comes up meanwhile (here: slower than the start timeout, found up by another
/// request's probe) releases it at once, not at the end of the pause.
#[tokio::test(start_paused = true)]
async fn a_backend_up_during_the_pause_after_a_failed_start_releases_the_held_request() {
    let (up, wakes) = (Arc::new(AtomicBool::new(false)), counter());
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .probe(switch_probe(up.clone()))
        .on_down(counting_trigger(wakes.clone(), false))
        .start_timeout(Duration::from_millis(200));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).unwrap();
    let layer = monitor.layer("app").unwrap().hold(Duration::from_secs(30));
    let first = tokio::spawn(guarded(layer.clone()).oneshot(request("/")));
    until(
        Duration::from_secs(5),
        "started once",
        || count(&wakes),
        |n| *n == 1,
    )
    .await;
    wait_for_state(&monitor, "app", ServiceState::Down, Duration::from_secs(5)).await;

    // The backend answers now, late: the next request finds it up and is forwarded.
    up.store(true, Ordering::SeqCst);
    let came_up = tokio::time::Instant::now();
    let second = guarded(layer).oneshot(request("/")).await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Up);

    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let late = came_up.elapsed();
    assert!(
        late < Duration::from_millis(500),
        "released {late:?} after the up"
    );
    assert_eq!(count(&wakes), 1, "not started again: it was up");
}

/// A server shutting down releases its held requests (`MinMonitor::release_held`): each is
/// answered 503 at once, not at its `max_wait`, and from then on a request for the down
/// backend is neither held nor starts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_held_requests_are_answered_503_and_none_is_held_after() {
    let f = fixture().await;
    let service = held(&f, DEFAULT_MAX_HELD);
    let waiting: Vec<_> = (0..3)
        .map(|_| tokio::spawn(service.clone().oneshot(request("/"))))
        .collect();
    until(
        Duration::from_secs(5),
        "three requests held",
        || f.monitor.snapshot()[0].requests_held,
        |held| *held == 3,
    )
    .await;

    f.monitor.release_held();
    for response in waiting {
        let response = tokio::time::timeout(Duration::from_secs(5), response)
            .await
            .expect("answered at once, not at max_wait (30 s)")
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("retry-after"));
    }
    assert_eq!(f.monitor.snapshot()[0].requests_held, 0);
    assert_eq!(count(&f.wakes), 1);

    f.monitor.set_status_down("app").unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), service.oneshot(request("/")))
        .await
        .expect("answered at once")
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(count(&f.wakes), 1, "no start once released");
}

/// A status probe slower than `max_wait` (a blackholed backend, under a long probe timeout):
/// the held request is answered 504 at `max_wait`, as documented ("the status probe and the
/// run of `on_down` included"), not once the probe ends (found by review beside the soak).
#[tokio::test(start_paused = true)]
async fn a_held_request_is_answered_at_max_wait_even_while_its_status_probe_runs() {
    let wakes = counter();
    let url = url_for(refused_addr().await);
    let service = MonitoredService::new(url, Duration::from_secs(60))
        .probe_timeout(Duration::from_secs(30))
        .probe(probe::from_fn(|_url| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<bool, BoxError>(false)
        }))
        .on_down(counting_trigger(wakes.clone(), false));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).unwrap();
    let max_wait = Duration::from_millis(200);
    let layer = monitor.layer("app").unwrap().hold(max_wait);
    let arrived = tokio::time::Instant::now();
    let response = guarded(layer).oneshot(request("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(arrived.elapsed(), max_wait, "answered when the probe ended");
    // The probe's down still wakes the backend, as the request would have.
    let give_up = arrived + Duration::from_secs(60);
    while count(&wakes) == 0 {
        assert!(tokio::time::Instant::now() < give_up, "never woken");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count(&wakes), 1);
}
