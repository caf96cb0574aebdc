//! A refusal met by a request that waited for its turn (`max_in_flight`), with the backend's
//! life moving on meanwhile: restarted (a new up stay), or being stopped by an operator. Real
//! backends on 127.0.0.1, started by `on_down`.

mod common;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceExt};
use tower_monitor::layer::BackendGone;
use tower_monitor::proxy::Proxy;
use tower_monitor::{BoxError, MinMonitor, MonitoredService, ServiceState, trigger};

/// A monitor whose "app" on `addr` is cached up; `on_down` (counted in `starts`) serves on
/// `addr` once `gate` gives it a permit.
fn gone_backend(
    addr: SocketAddr,
    starts: &Arc<AtomicUsize>,
    gate: &Arc<Semaphore>,
) -> Arc<MinMonitor> {
    common::cached_up_but_gone(addr, starts, gate, common::serve_echo)
}

/// The only turn taken by an answer whose body does not end (dropping it gives the turn back),
/// and an echo called now (when the proxy reads the clock), waiting for its turn.
async fn waiting_for_the_turn<S>(
    service: &mut S,
) -> (
    S::Response,
    tokio::task::JoinHandle<Result<S::Response, S::Error>>,
)
where
    S: Service<
            Request<Full<Bytes>>,
            Response = http::Response<
                tower_monitor::layer::MonitorBody<tower_monitor::proxy::ProxyBody>,
            >,
        >,
    S::Future: Send + 'static,
    S::Error: std::fmt::Debug + Send + 'static,
{
    let slow = Request::get("/slow").body(Full::new(Bytes::new())).unwrap();
    let slow = service.ready().await.unwrap().call(slow).await.unwrap();
    assert_eq!(slow.status(), 200);
    let echo = Request::post("/echo").body(Full::from("waited")).unwrap();
    (
        slow,
        tokio::spawn(service.ready().await.unwrap().call(echo)),
    )
}

/// A request waits for its turn while the backend is restarted (a new up stay); the new one
/// is gone too by the turn. Its refusal is about the new backend (the connection was tried
/// after it came up), so it is marked down and started, and the request held and served; a
/// refusal taken for news of the old one would leave a dead backend cached up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_after_a_wait_for_a_turn_marks_the_backend_that_came_up_meanwhile_down() {
    for hold in [true, false] {
        let addr = common::refused_addr().await;
        let (starts, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Semaphore::new(1)));
        let monitor = gone_backend(addr, &starts, &gate);
        // The backend that was up: serving until aborted.
        let listener = TcpListener::bind(addr).await.unwrap();
        let first = tokio::spawn(common::serve_echo(listener));
        let mut proxy = Proxy::builder(common::url_for(addr))
            .max_in_flight(NonZeroUsize::MIN, Duration::from_secs(10));
        if hold {
            proxy = proxy.hold_when_gone(Arc::clone(&monitor), "app", Duration::from_secs(10));
        }
        let mut service = monitor
            .layer("app")
            .unwrap()
            .backend_gone_when(BackendGone::in_response)
            .layer(proxy.build::<Full<Bytes>>().unwrap());
        let (slow, waiting) = waiting_for_the_turn(&mut service).await;
        // Meanwhile the backend went down and came up again…
        monitor.set_status_down("app").unwrap();
        monitor.set_status_up("app").unwrap();
        // …and is gone by the time the turn comes.
        first.abort();
        let _ = first.await;
        drop(slow);
        let answer = tokio::time::timeout(Duration::from_secs(15), waiting)
            .await
            .expect("bounded")
            .unwrap()
            .unwrap();
        if hold {
            assert_eq!(answer.status(), 200, "held and sent again");
            assert!(answer.headers().contains_key("x-cold-start"));
        } else {
            assert_eq!(answer.status(), 503, "the fallback");
            // Marked down and started: not left cached up.
            common::until(
                Duration::from_secs(10),
                "the backend that came up meanwhile is started again",
                || starts.load(Ordering::SeqCst),
                |&starts| starts == 1,
            )
            .await;
        }
        assert_eq!(starts.load(Ordering::SeqCst), 1, "hold: {hold}");
    }
}

/// A request that waited for its turn while an operator's stop began finds the backend gone:
/// the stop's doing, not a crash. It is held until the stop has ended, and the backend is
/// started only then; a refusal seen while `on_idle` runs does not mark the backend down (a
/// probe does not either), or `on_down` would run beside `on_idle`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_seen_while_the_backend_is_being_stopped_waits_for_the_stop() {
    let addr = common::refused_addr().await;
    let (starts, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Semaphore::new(1)));
    let listener = TcpListener::bind(addr).await.unwrap();
    let first = Arc::new(std::sync::Mutex::new(Some(tokio::spawn(
        common::serve_echo(listener),
    ))));
    // `on_idle` closes the backend's port, then takes as long as the test says.
    let stopping = Arc::new(AtomicUsize::new(0));
    let stop_gate = Arc::new(Semaphore::new(0));
    let on_idle = trigger::from_fn({
        let (first, stopping, stop_gate) = (first.clone(), stopping.clone(), stop_gate.clone());
        move || {
            if let Some(first) = first.lock().unwrap().take() {
                first.abort();
            }
            stopping.fetch_add(1, Ordering::SeqCst);
            let (stopping, stop_gate) = (stopping.clone(), stop_gate.clone());
            async move {
                stop_gate.acquire().await?.forget();
                stopping.fetch_sub(1, Ordering::SeqCst);
                Ok::<(), BoxError>(())
            }
        }
    });
    let overlapped = Arc::new(AtomicUsize::new(0));
    let start = trigger::from_fn({
        let (starts, gate, stopping, overlapped) = (
            starts.clone(),
            gate.clone(),
            stopping.clone(),
            overlapped.clone(),
        );
        move || {
            starts.fetch_add(1, Ordering::SeqCst);
            if stopping.load(Ordering::SeqCst) > 0 {
                overlapped.fetch_add(1, Ordering::SeqCst);
            }
            let gate = gate.clone();
            async move {
                gate.acquire().await?.forget();
                let listener = TcpListener::bind(addr).await?;
                tokio::spawn(common::serve_echo(listener));
                Ok::<(), BoxError>(())
            }
        }
    });
    let service = MonitoredService::new(common::url_for(addr), Duration::from_secs(30))
        .on_down(start)
        .on_idle(Duration::from_secs(3600), on_idle);
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).unwrap();
    monitor.set_status_up("app").unwrap();
    let proxy = Proxy::builder(common::url_for(addr))
        .max_in_flight(NonZeroUsize::MIN, Duration::from_secs(10))
        .hold_when_gone(Arc::clone(&monitor), "app", Duration::from_secs(10));
    let mut service = monitor
        .layer("app")
        .unwrap()
        .hold(Duration::from_secs(10))
        .backend_gone_when(BackendGone::in_response)
        .layer(proxy.build::<Full<Bytes>>().unwrap());
    let (slow, waiting) = waiting_for_the_turn(&mut service).await;
    let stop = tokio::spawn({
        let monitor = Arc::clone(&monitor);
        async move { monitor.stop("app").await }
    });
    common::until(
        Duration::from_secs(10),
        "on_idle runs",
        || stopping.load(Ordering::SeqCst),
        |&running| running == 1,
    )
    .await;
    // The turn comes: the connection is refused while `on_idle` still runs.
    drop(slow);
    // What must not happen (a start beside the stop) has no event: watched for a while.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Stopping);
    assert_eq!(starts.load(Ordering::SeqCst), 0, "started while stopping");
    stop_gate.add_permits(1);
    assert!(stop.await.unwrap().unwrap());
    let answer = tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .expect("bounded")
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), 200, "held through the stop, then served");
    assert!(answer.headers().contains_key("x-cold-start"));
    assert_eq!(starts.load(Ordering::SeqCst), 1);
    assert_eq!(overlapped.load(Ordering::SeqCst), 0);
}
