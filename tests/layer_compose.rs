//! The layer among others: tower-http, axum's `layer` and `route_layer`, tower's contract, and
//! a herd of requests on a down backend.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get as route_get;
use bytes::Bytes;
use common::*;
use futures::FutureExt;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio::sync::Notify;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tower_monitor::{BoxError, MinMonitor, MonitoredService, trigger};

async fn switchable(name: &str, up: bool, grace: Duration) -> (Arc<MinMonitor>, Arc<AtomicBool>) {
    let flag = Arc::new(AtomicBool::new(up));
    let monitor = Arc::new(MinMonitor::new());
    let service = MonitoredService::new(url_for(refused_addr().await), grace)
        .probe(switch_probe(flag.clone()));
    monitor.add(name, service).unwrap();
    (monitor, flag)
}

#[tokio::test]
async fn composes_with_trace_and_timeout_in_any_order() {
    let (monitor, up) = switchable("app", false, Duration::ZERO).await;
    let timeout =
        || TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, Duration::from_secs(5));
    let innermost = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .layer(timeout())
        .layer(monitor.layer("app").unwrap());
    let middle = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .layer(monitor.layer("app").unwrap())
        .layer(timeout());
    // tower-http's timeout must sit inside the trace layer: its answer needs a `Default` body.
    let outermost = ServiceBuilder::new()
        .layer(monitor.layer("app").unwrap())
        .layer(TraceLayer::new_for_http())
        .layer(timeout());
    let handler = route_get(|| async { "app" });
    let router = Router::new()
        .merge(
            Router::new()
                .route("/innermost", handler.clone())
                .route_layer(innermost),
        )
        .merge(
            Router::new()
                .route("/middle", handler.clone())
                .route_layer(middle),
        )
        .merge(
            Router::new()
                .route("/outermost", handler)
                .route_layer(outermost),
        );
    let server = serve(router).await;
    for path in ["/innermost", "/middle", "/outermost"] {
        up.store(false, Ordering::SeqCst);
        assert_eq!(
            get(server.addr, path, &[]).await.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}"
        );
        up.store(true, Ordering::SeqCst);
        let reply = get(server.addr, path, &[]).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (StatusCode::OK, "app"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn router_layer_guards_every_request_and_route_layer_only_matched_routes() {
    let (monitor, _up) = switchable("app", false, Duration::ZERO).await;
    let guarded_all = Router::new()
        .route("/api", route_get(|| async { "api" }))
        .layer(monitor.layer("app").unwrap());
    let server = serve(guarded_all).await;
    assert_eq!(
        get(server.addr, "/api", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(server.addr, "/nope", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let guarded_routes = Router::new()
        .route("/api", route_get(|| async { "api" }))
        .route_layer(monitor.layer("app").unwrap())
        .route("/healthz", route_get(|| async { "ok" }));
    let server = serve(guarded_routes).await;
    assert_eq!(
        get(server.addr, "/api", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(server.addr, "/nope", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(server.addr, "/healthz", &[]).await.status,
        StatusCode::OK
    );
}

type Mock = tower_test::mock::Mock<Request<()>, Response<Full<Bytes>>>;

/// `tower_test`'s mock panics when an instance that was not polled ready is called, so a
/// request that reaches it proves the ready instance was the one used.
#[tokio::test]
async fn the_instance_polled_ready_is_the_one_called() {
    let on_up = counter();
    let (monitor, _up) = switchable("app", true, Duration::ZERO).await;
    // `on_up` forces the slow path: the request waits for the decision before reaching inner.
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::ZERO)
        .probe(switch_probe(Arc::new(AtomicBool::new(true))))
        .on_up(counting_trigger(on_up.clone(), false));
    monitor.add("slow-path", service).unwrap();

    for name in ["app", "slow-path"] {
        let (mock, mut handle): (Mock, _) = tower_test::mock::pair();
        let mut service = monitor.layer(name).unwrap().layer(mock);
        handle.allow(1);
        service.ready().await.unwrap();
        let response = tokio::spawn(service.call(Request::new(())));
        let (request, reply) = handle
            .next_request()
            .await
            .expect("the request reached the inner service");
        assert_eq!(request.uri(), "/");
        reply.send_response(Response::new(Full::from("inner")));
        let response = response.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!response.body().is_fallback());
    }
    assert_eq!(count(&on_up), 1);
}

#[tokio::test]
async fn a_short_circuited_request_never_reaches_the_inner_service() {
    let (monitor, _up) = switchable("app", false, Duration::ZERO).await;
    let (mock, mut handle): (Mock, _) = tower_test::mock::pair();
    let mut service = monitor.layer("app").unwrap().layer(mock);
    handle.allow(1);
    service.ready().await.unwrap();
    let response = service.call(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.body().is_fallback());
    assert!(
        handle.next_request().now_or_never().is_none(),
        "inner was called"
    );
}

#[tokio::test]
async fn poll_ready_reflects_the_inner_service() {
    let (monitor, _up) = switchable("app", true, Duration::ZERO).await;
    let (mock, mut handle): (Mock, _) = tower_test::mock::pair();
    let mut service = monitor.layer("app").unwrap().layer(mock);
    handle.allow(0);
    assert!(
        service.ready().now_or_never().is_none(),
        "ready while inner is not"
    );
    handle.allow(1);
    assert!(service.ready().now_or_never().is_some());
}

/// 1,000 concurrent requests on a down backend run `on_down` once. `always` counts arrivals;
/// `on_down` holds until every request has arrived, so all of them find it in flight.
#[tokio::test]
async fn a_thousand_requests_on_a_down_backend_run_on_down_once() {
    const N: usize = 1_000;
    let (arrived, wakes) = (counter(), counter());
    let all_arrived = Arc::new(Notify::new());
    let (a, notify) = (arrived.clone(), all_arrived.clone());
    let (w, wait) = (wakes.clone(), all_arrived.clone());
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .always(trigger::from_fn(move || {
            if a.fetch_add(1, Ordering::SeqCst) + 1 == N {
                notify.notify_one();
            }
            async { Ok::<(), BoxError>(()) }
        }))
        .on_down(trigger::from_fn(move || {
            w.fetch_add(1, Ordering::SeqCst);
            let wait = wait.clone();
            async move {
                wait.notified().await;
                Ok::<(), BoxError>(())
            }
        }));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).unwrap();
    let inner = tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("up")))
    });
    let service = monitor.layer("app").unwrap().layer(inner);
    let requests = (0..N).map(|_| service.clone().oneshot(Request::new(())));
    // Without coalescing, the runs past the first would wait forever: bound it.
    let responses =
        tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(requests))
            .await
            .expect("on_down runs were not coalesced");
    assert!(
        responses
            .iter()
            .all(|r| r.as_ref().unwrap().status() == StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(count(&arrived), N);
    assert_eq!(count(&wakes), 1);
}

#[tokio::test]
async fn the_cached_up_path_does_not_probe_again() {
    let probes = Arc::new(AtomicUsize::new(0));
    let monitor = Arc::new(MinMonitor::new());
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .probe(counting_probe(probes.clone(), true));
    monitor.add("app", service).unwrap();
    let inner = tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("up")))
    });
    let service = monitor.layer("app").unwrap().layer(inner);
    for _ in 0..10 {
        let response = service.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(count(&probes), 1, "one probe, then the cache");
}

/// An inner service whose body data is not `Bytes` (here `BytesMut`) keeps its data type, and
/// its fallback answers come in that type too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inner_body_of_other_data_keeps_its_type_up_and_down() {
    use bytes::BytesMut;
    use http_body_util::BodyExt;
    use tower_monitor::layer::MonitorBody;

    let (monitor, up) = switchable("app", true, Duration::ZERO).await;
    let inner = tower::service_fn(|_request: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(BytesMut::from("from the app"))))
    });
    let service = monitor.layer("app").unwrap().layer(inner);
    let call = || async {
        let response: Response<MonitorBody<Full<BytesMut>>> =
            service.clone().oneshot(Request::new(())).await.unwrap();
        let (head, body) = response.into_parts();
        let fallback = body.is_fallback();
        let data: Bytes = body.collect().await.unwrap().to_bytes();
        (head.status, fallback, data)
    };

    let (status, fallback, data) = call().await;
    assert_eq!((status, fallback), (StatusCode::OK, false));
    assert_eq!(&data[..], b"from the app");

    up.store(false, Ordering::SeqCst);
    monitor.set_status_down("app").unwrap();
    let (status, fallback, data) = call().await;
    assert_eq!((status, fallback), (StatusCode::SERVICE_UNAVAILABLE, true));
    assert!(
        !data.is_empty(),
        "the fallback's page, as the inner data type"
    );
}

/// A monitor kept without an `Arc` (a field of the app's state, a static) makes layers too:
/// `MonitorLayer::new` takes it by reference.
#[tokio::test]
async fn a_monitor_outside_an_arc_makes_a_layer() {
    let monitor = MinMonitor::new();
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .probe(switch_probe(Arc::new(AtomicBool::new(false))));
    monitor.add("app", service).unwrap();
    let layer = tower_monitor::MonitorLayer::new(&monitor, "app").unwrap();
    let service = layer.layer(tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("app")))
    }));
    let answer = service.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    monitor.set_status_up("app").unwrap();
    let answer = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
}
