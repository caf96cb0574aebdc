//! The per-request order of the layer, over real sockets: status, `always`, then `on_up` and
//! forward, or `on_down` and 503; every failure a 500 that stops what comes after it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get as route_get;
use common::*;
use http::StatusCode;
use tower_monitor::{BoxError, MinMonitor, MonitorError, MonitoredService, probe, trigger};

#[derive(Default, Clone, Copy)]
struct Failing {
    always: bool,
    on_up: bool,
    on_down: bool,
}

struct Fixture {
    always: Arc<AtomicUsize>,
    on_up: Arc<AtomicUsize>,
    on_down: Arc<AtomicUsize>,
    inner: Arc<AtomicUsize>,
    server: Server,
    monitor: Arc<MinMonitor>,
}

impl Fixture {
    fn runs(&self) -> [usize; 4] {
        [&self.always, &self.on_up, &self.on_down, &self.inner].map(|c| count(c))
    }
}

async fn fixture(service: MonitoredService, failing: Failing) -> Fixture {
    let (always, on_up, on_down, inner) = (counter(), counter(), counter(), counter());
    let service = service
        .always(counting_trigger(always.clone(), failing.always))
        .on_up(counting_trigger(on_up.clone(), failing.on_up))
        .on_down(counting_trigger(on_down.clone(), failing.on_down));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).unwrap();
    let calls = inner.clone();
    let router = Router::new()
        .route(
            "/",
            route_get(move || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { "from the inner service" }
            }),
        )
        .layer(monitor.layer("app").unwrap());
    let server = serve(router).await;
    Fixture {
        monitor,
        always,
        on_up,
        on_down,
        inner,
        server,
    }
}

async fn backend(up: bool) -> MonitoredService {
    let flag = Arc::new(AtomicBool::new(up));
    MonitoredService::new(url_for(refused_addr().await), Duration::ZERO).probe(switch_probe(flag))
}

#[tokio::test]
async fn up_runs_always_then_on_up_and_forwards_unchanged() {
    let app = fixture(backend(true).await, Failing::default()).await;
    let reply = get(app.server.addr, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "from the inner service");
    assert_eq!(app.runs(), [1, 1, 0, 1], "[always, on_up, on_down, inner]");
}

#[tokio::test]
async fn down_runs_always_then_on_down_and_answers_503() {
    let app = fixture(backend(false).await, Failing::default()).await;
    let reply = get(app.server.addr, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.body.contains("is starting"), "{}", reply.body);
    assert_eq!(app.runs(), [1, 0, 1, 0], "[always, on_up, on_down, inner]");
}

#[tokio::test]
async fn failing_always_when_up_is_500_and_nothing_else_runs() {
    let failing = Failing {
        always: true,
        ..Failing::default()
    };
    let app = fixture(backend(true).await, failing).await;
    let reply = get(app.server.addr, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(app.runs(), [1, 0, 0, 0]);
}

#[tokio::test]
async fn failing_always_when_down_is_500_and_on_down_does_not_run() {
    let failing = Failing {
        always: true,
        ..Failing::default()
    };
    let app = fixture(backend(false).await, failing).await;
    let reply = get(app.server.addr, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(app.runs(), [1, 0, 0, 0]);
}

#[tokio::test]
async fn failing_on_up_is_500_and_the_inner_service_is_not_called() {
    let failing = Failing {
        on_up: true,
        ..Failing::default()
    };
    let app = fixture(backend(true).await, failing).await;
    let reply = get(app.server.addr, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(app.runs(), [1, 1, 0, 0]);
}

#[tokio::test]
async fn failing_on_down_is_500() {
    let failing = Failing {
        on_down: true,
        ..Failing::default()
    };
    let app = fixture(backend(false).await, failing).await;
    let reply = get(app.server.addr, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        reply.body.contains("could not be started"),
        "the waiting page says the start failed: {}",
        reply.body
    );
    assert!(
        !reply.body.contains("on purpose"),
        "no error text in the answer"
    );
    assert_eq!(app.runs(), [1, 0, 1, 0]);
}

#[tokio::test]
async fn a_status_error_is_500_and_no_trigger_runs() {
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::ZERO).probe(
        probe::from_fn(|_url| async { Err::<bool, BoxError>("probe is broken".into()) }),
    );
    let app = fixture(service, Failing::default()).await;
    let reply = get(app.server.addr, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!reply.body.contains("probe is broken"));
    assert_eq!(app.runs(), [0, 0, 0, 0]);
}

#[tokio::test]
async fn a_panicking_trigger_is_500_and_the_server_keeps_serving() {
    let calls = counter();
    let c = calls.clone();
    let service = backend(true).await.on_up(trigger::from_fn(move || {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("on_up bug");
        }
        async { Ok::<(), BoxError>(()) }
    }));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).unwrap();
    let router = Router::new()
        .route("/", route_get(|| async { "ok" }))
        .layer(monitor.layer("app").unwrap());
    let server = serve(router).await;
    assert_eq!(
        get(server.addr, "/", &[]).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(get(server.addr, "/", &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_panicking_on_down_and_a_panicking_probe_are_500() {
    let service = backend(false).await.on_down(trigger::from_fn(|| async {
        panic!("on_down bug") as Result<(), BoxError>
    }));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("down", service).unwrap();
    let probe_panics = MonitoredService::new(url_for(refused_addr().await), Duration::ZERO).probe(
        probe::from_fn(|_url| async { panic!("probe bug") as Result<bool, BoxError> }),
    );
    monitor.add("broken", probe_panics).unwrap();
    let router = Router::new()
        .route(
            "/down",
            route_get(|| async { "unreachable" }).layer(monitor.layer("down").unwrap()),
        )
        .route(
            "/broken",
            route_get(|| async { "unreachable" }).layer(monitor.layer("broken").unwrap()),
        );
    let server = serve(router).await;
    assert_eq!(
        get(server.addr, "/down", &[]).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        get(server.addr, "/broken", &[]).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[tokio::test]
async fn an_unknown_name_fails_when_the_layer_is_built() {
    let monitor = Arc::new(MinMonitor::new());
    let err = monitor.layer("ghost").unwrap_err();
    assert!(matches!(err, MonitorError::UnknownService(ref n) if n == "ghost"));
    assert!(tower_monitor::MonitorLayer::new(monitor.clone(), "ghost").is_err());
}

#[tokio::test]
async fn a_backend_that_comes_up_is_forwarded_to_from_then_on() {
    let up = Arc::new(AtomicBool::new(false));
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .probe(switch_probe(up.clone()));
    let app = fixture(service, Failing::default()).await;
    assert_eq!(
        get(app.server.addr, "/", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    up.store(true, Ordering::SeqCst);
    // Starting now: the monitor's poller, not each request, finds the backend up.
    let up_state = tower_monitor::ServiceState::Up;
    wait_for_state(&app.monitor, "app", up_state, Duration::from_secs(5)).await;
    assert_eq!(get(app.server.addr, "/", &[]).await.status, StatusCode::OK);
    // Cached up now: the backend's probe says down, but the grace period holds.
    up.store(false, Ordering::SeqCst);
    assert_eq!(get(app.server.addr, "/", &[]).await.status, StatusCode::OK);
    assert_eq!(app.runs(), [3, 2, 1, 2]);
}
