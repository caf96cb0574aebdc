//! An operator's stop (`monitor.stop`, the admin's `POST /services/{name}/stop`) and the start
//! it meets: `on_idle` never runs beside `on_down`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use http::{Request, StatusCode};
use tokio::sync::{Mutex, Notify};
use tower::{Layer, ServiceExt};
use tower_monitor::{BoxError, MinMonitor, MonitoredService, ServiceState, trigger};

/// A backend on a loopback port whose first `on_down` opens it once `boot` is notified and
/// returns only once `finish` is (a start command that waits for more than the port); later
/// starts open it at once. `on_idle` closes it, noting whether `on_down` still ran.
struct Fixture {
    monitor: Arc<MinMonitor>,
    boot: Arc<Notify>,
    finish: Arc<Notify>,
    overlapped: Arc<AtomicBool>,
    wakes: Arc<std::sync::atomic::AtomicUsize>,
    stops: Arc<std::sync::atomic::AtomicUsize>,
}

impl Fixture {
    async fn new() -> Self {
        let addr = refused_addr().await;
        let backend: Arc<Mutex<Option<Backend>>> = Arc::default();
        let (boot, finish) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let starting = Arc::new(AtomicBool::new(false));
        let overlapped = Arc::new(AtomicBool::new(false));
        let (wakes, stops) = (counter(), counter());
        let (b, bo, fi, st, w) = (
            backend.clone(),
            boot.clone(),
            finish.clone(),
            starting.clone(),
            wakes.clone(),
        );
        let on_down = trigger::from_fn(move || {
            let first = w.fetch_add(1, Ordering::SeqCst) == 0;
            let (b, bo, fi, st) = (b.clone(), bo.clone(), fi.clone(), st.clone());
            async move {
                st.store(true, Ordering::SeqCst);
                if first {
                    bo.notified().await;
                }
                *b.lock().await = Some(Backend::start_on(addr).await);
                if first {
                    fi.notified().await;
                }
                st.store(false, Ordering::SeqCst);
                Ok::<(), BoxError>(())
            }
        });
        let (b, s, o) = (backend.clone(), stops.clone(), overlapped.clone());
        let on_idle = trigger::from_fn(move || {
            s.fetch_add(1, Ordering::SeqCst);
            o.fetch_or(starting.load(Ordering::SeqCst), Ordering::SeqCst);
            let b = b.clone();
            async move {
                if let Some(mut backend) = b.lock().await.take() {
                    backend.stop().await;
                }
                Ok::<(), BoxError>(())
            }
        });
        let service = MonitoredService::new(url_for(addr), Duration::from_secs(60))
            .on_down(on_down)
            .on_idle(Duration::from_secs(3600), on_idle)
            .trigger_timeout(Duration::from_secs(10));
        let monitor = Arc::new(MinMonitor::new());
        monitor.add("app", service).unwrap();
        Self {
            monitor,
            boot,
            finish,
            overlapped,
            wakes,
            stops,
        }
    }

    async fn reaches(&self, state: ServiceState) {
        wait_for_state(&self.monitor, "app", state, Duration::from_secs(5)).await;
    }
}

/// An operator's stop of a backend that answered before its `on_down` returned waits for that
/// `on_down` to end before `on_idle` begins (Stopping meanwhile, its requests held); one of a
/// service still Starting stops nothing, and the start goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_stop_waits_for_the_on_down_that_still_runs() {
    let f = Fixture::new().await;
    let monitor = f.monitor.clone();
    let start = tokio::spawn(async move { monitor.start("app").await });
    f.reaches(ServiceState::Starting).await;
    assert!(
        !f.monitor.stop("app").await.unwrap(),
        "a starting service was stopped"
    );
    assert_eq!(f.monitor.state("app").unwrap(), ServiceState::Starting);

    // The port opens before on_down returns: the poller finds the backend up.
    f.boot.notify_one();
    f.reaches(ServiceState::Up).await;
    let monitor = f.monitor.clone();
    let stopping = tokio::spawn(async move { monitor.stop("app").await });
    until(
        Duration::from_secs(5),
        "stopping, or on_idle run",
        || (f.monitor.state("app").unwrap(), count(&f.stops)),
        |(state, stops)| *state == ServiceState::Stopping || *stops > 0,
    )
    .await;
    assert!(
        !f.overlapped.load(Ordering::SeqCst),
        "on_idle ran while on_down still ran"
    );
    assert_eq!(count(&f.stops), 0, "on_idle began before on_down ended");

    // A request meanwhile is held: the stop is under way.
    let held = tokio::spawn(
        f.monitor
            .layer("app")
            .unwrap()
            .hold(Duration::from_secs(10))
            .layer(inner())
            .oneshot(Request::new(())),
    );
    until(
        Duration::from_secs(5),
        "the request held",
        || f.monitor.snapshot()[0].requests_held,
        |&held| held == 1,
    )
    .await;
    assert_eq!(f.monitor.state("app").unwrap(), ServiceState::Stopping);

    f.finish.notify_one();
    let stopped = tokio::time::timeout(Duration::from_secs(5), stopping).await;
    assert!(stopped.expect("the stop never ended").unwrap().unwrap());
    assert!(
        !f.overlapped.load(Ordering::SeqCst),
        "on_idle ran while on_down still ran"
    );
    start.await.unwrap().unwrap();
    assert_eq!(count(&f.stops), 1);

    // Once stopped, the held request's wish starts the backend again, and it is answered.
    let answered = tokio::time::timeout(Duration::from_secs(10), held).await;
    let status = answered.expect("never answered").unwrap().unwrap().status();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(count(&f.wakes), 2);
}

/// One request through the layer, not held: the backend's answer if it is forwarded, the
/// fallback's otherwise.
async fn request(monitor: &Arc<MinMonitor>) -> StatusCode {
    let answer = monitor
        .layer("app")
        .unwrap()
        .layer(inner())
        .oneshot(Request::new(()));
    let answer = tokio::time::timeout(Duration::from_secs(5), answer).await;
    answer.expect("never answered").unwrap().status()
}

/// An operator's stop whose future is dropped while it waits for `on_down` (before `on_idle`
/// began) is called off: the service is Up again and requests are forwarded, rather than left
/// Stopping, with nothing forwarded, until the stop timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_stop_dropped_while_it_waits_for_on_down_is_called_off() {
    let f = Fixture::new().await;
    let monitor = f.monitor.clone();
    let start = tokio::spawn(async move { monitor.start("app").await });
    f.reaches(ServiceState::Starting).await;
    f.boot.notify_one();
    f.reaches(ServiceState::Up).await;
    let monitor = f.monitor.clone();
    let stopping = tokio::spawn(async move { monitor.stop("app").await });
    f.reaches(ServiceState::Stopping).await;

    stopping.abort();
    assert!(stopping.await.unwrap_err().is_cancelled());
    f.reaches(ServiceState::Up).await;
    assert_eq!(request(&f.monitor).await, StatusCode::OK);

    // Once on_down has ended, nothing of the stop is left to run on_idle.
    f.finish.notify_one();
    let started = tokio::time::timeout(Duration::from_secs(5), start).await;
    started.expect("on_down never ended").unwrap().unwrap();
    assert_eq!(request(&f.monitor).await, StatusCode::OK);
    assert_eq!(f.monitor.state("app").unwrap(), ServiceState::Up);
    assert_eq!(count(&f.stops), 0, "on_idle ran");
}

/// An operator's stop of a service found up while its start still waits for its dependencies
/// (a wait bounded by their own timeouts, far longer than the trigger timeout) calls that
/// start off rather than waiting for it or being refused: the start never runs `on_down`
/// (the backend is up already), `on_idle` runs, and the request that made the start is
/// answered 503 at once, not when the dependency comes up or is given up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_stop_calls_off_a_start_still_waiting_for_its_dependencies() {
    let db_addr = refused_addr().await;
    let (on_downs, stops) = (counter(), counter());
    let app_up = Arc::new(AtomicBool::new(false));
    let monitor = Arc::new(MinMonitor::new());
    let db = MonitoredService::new(url_for(db_addr), Duration::from_secs(60))
        .on_down(trigger::from_fn(|| async { Ok::<(), BoxError>(()) }))
        .start_timeout(Duration::from_secs(30));
    monitor.add("db", db).unwrap();
    let app = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .probe(switch_probe(app_up.clone()))
        .depends_on("db")
        .on_down(counting_trigger(on_downs.clone(), false))
        .on_idle(
            Duration::from_secs(3600),
            counting_trigger(stops.clone(), false),
        )
        .trigger_timeout(Duration::from_millis(300));
    monitor.add("app", app).unwrap();

    // A request finds app down and starts it: the start waits for db, which does not come
    // up, and the request waits for the start.
    let request = tokio::spawn({
        let monitor = monitor.clone();
        async move { request(&monitor).await }
    });
    wait_for_state(
        &monitor,
        "db",
        ServiceState::Starting,
        Duration::from_secs(5),
    )
    .await;
    // app answers meanwhile: found up, while its start still waits.
    app_up.store(true, Ordering::SeqCst);
    wait_for_state(&monitor, "app", ServiceState::Up, Duration::from_secs(5)).await;

    let stopped = tokio::time::timeout(Duration::from_secs(5), monitor.stop("app")).await;
    assert!(
        stopped
            .expect("the stop never ended")
            .expect("the stop failed"),
        "nothing was stopped"
    );
    assert_eq!(count(&stops), 1);
    assert_eq!(count(&on_downs), 0, "the called-off start ran on_down");
    let answered = tokio::time::timeout(Duration::from_secs(5), request).await;
    let status = answered
        .expect("the request waited for the dependency")
        .unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(count(&on_downs), 0, "the called-off start ran on_down");
    // db's own start goes on: it is its own, not the called-off start's.
    assert_eq!(monitor.state("db").unwrap(), ServiceState::Starting);
}

/// A trigger timeout of `Duration::MAX` (no bound, as `tokio::time::timeout` takes it) also
/// bounds the stop's wait for a start's `on_down`: the stop runs `on_idle`, and does not panic
/// on an `Instant` past its range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_runs_on_idle_with_an_unbounded_trigger_timeout() {
    let stops = counter();
    let s = stops.clone();
    let on_idle = trigger::from_fn(move || {
        s.fetch_add(1, Ordering::SeqCst);
        async { Ok::<(), BoxError>(()) }
    });
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .on_idle(Duration::from_secs(3600), on_idle)
        .trigger_timeout(Duration::MAX);
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).unwrap();
    monitor.set_status_up("app").unwrap();

    let m = monitor.clone();
    let stop = tokio::spawn(async move { m.stop("app").await });
    let stopped = tokio::time::timeout(Duration::from_secs(5), stop).await;
    let stopped = stopped.expect("the stop never ended");
    assert!(
        stopped.expect("the stop panicked").unwrap(),
        "nothing was stopped"
    );
    assert_eq!(count(&stops), 1);
    // Stopping, or Down already: its port is closed.
    let state = monitor.state("app").unwrap();
    assert!(
        matches!(state, ServiceState::Stopping | ServiceState::Down),
        "{state}"
    );
}
