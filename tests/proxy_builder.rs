//! The proxy's builder as a library user holds it: cloned to build a proxy per runtime, and
//! made by `Proxy::for_service`, which names the monitored service once. Over real sockets on
//! 127.0.0.1.

mod common;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use tokio::sync::Notify;
use tower::{Layer, ServiceExt};
use tower_monitor::proxy::Proxy;
use tower_monitor::{BoxError, MinMonitor, MonitorError, MonitoredService, trigger};

fn request(path: &str) -> Request<Body> {
    Request::get(path)
        .header("host", "app.localhost")
        .body(Body::empty())
        .unwrap()
}

/// Has the other runtime send a request; its answer's status.
async fn ask(
    to: &std::sync::mpsc::Sender<()>,
    from: &mut tokio::sync::mpsc::UnboundedReceiver<StatusCode>,
) -> StatusCode {
    to.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), from.recv())
        .await
        .expect("answered in time")
        .expect("the other runtime answers")
}

/// A proxy built from a clone of a builder and used on a runtime of its own reaches the
/// backend, and shares the builder's in-flight limit with the proxy built from the original.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloned_builder_builds_a_proxy_per_runtime_sharing_its_limit() {
    let (arrived, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (on_arrival, on_release) = (arrived.clone(), release.clone());
    let backend = common::serve(
        Router::new()
            .route(
                "/slow",
                axum::routing::get(move || async move {
                    on_arrival.notify_one();
                    on_release.notified().await;
                    "slow"
                }),
            )
            .route("/", axum::routing::get(|| async { "ok" })),
    )
    .await;
    let builder = Proxy::builder(common::url_for(backend.addr))
        .max_in_flight(NonZeroUsize::MIN, Duration::ZERO)
        .service_name("app");
    let here = builder.clone().build::<Body>().unwrap();
    let elsewhere = builder.build::<Body>().unwrap();
    let (to_other, requests) = std::sync::mpsc::channel::<()>();
    let (answers, mut from_other) = tokio::sync::mpsc::unbounded_channel();
    let other = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        while requests.recv().is_ok() {
            let response = runtime.block_on(elsewhere.clone().oneshot(request("/")));
            answers.send(response.unwrap().status()).unwrap();
        }
    });

    let slow = tokio::spawn(here.oneshot(request("/slow")));
    tokio::time::timeout(Duration::from_secs(10), arrived.notified())
        .await
        .expect("the slow request reached the backend");
    assert_eq!(
        ask(&to_other, &mut from_other).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "the one turn is the slow request's"
    );
    release.notify_one();
    assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(ask(&to_other, &mut from_other).await, StatusCode::OK);
    drop(to_other);
    other.join().unwrap();
}

/// `Proxy::for_service` proxies to the service's URL and keeps the service awake while a
/// WebSocket is open through it, as `keep_awake` does: the open socket counts as a request
/// in flight once its upgrade's answer has gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_for_a_service_sends_to_its_url_and_keeps_it_awake() {
    let (backend, echo_server) = common::websocket_echo_backend().await;
    let monitor = Arc::new(MinMonitor::new());
    let stop = trigger::from_fn(|| async { Ok::<(), BoxError>(()) });
    let service = MonitoredService::new(common::url_for(backend), Duration::from_secs(60))
        .on_idle(Duration::from_secs(3600), stop);
    monitor.add("chat", service).unwrap();
    monitor.set_status_up("chat").unwrap();
    assert!(matches!(
        Proxy::for_service(&monitor, "chta"),
        Err(MonitorError::UnknownService(name)) if name == "chta"
    ));

    let proxy = Proxy::for_service(&monitor, "chat")
        .unwrap()
        .build::<Body>()
        .unwrap();
    let guarded = monitor.layer("chat").unwrap().layer(proxy);
    let front = common::serve(Router::new().fallback_service(guarded)).await;
    let in_flight = || monitor.snapshot()[0].requests_in_flight;

    let (mut socket, response) =
        tokio_tungstenite::connect_async(format!("ws://{}/chat", front.addr))
            .await
            .expect("the upgrade reaches the service's backend");
    assert_eq!(response.status(), 101);
    common::echoes(&mut socket, "hello").await;
    assert_eq!(in_flight(), Some(1), "the open socket counts");
    socket.close(None).await.unwrap();
    drop(socket);
    common::until(
        Duration::from_secs(5),
        "the closed socket no longer counted",
        in_flight,
        |count| *count == Some(0),
    )
    .await;
    echo_server.abort();
}
