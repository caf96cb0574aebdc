//! The proxy's builder as a library user holds it: cloned to build a proxy per runtime. Over
//! real sockets on 127.0.0.1.

mod common;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use tokio::sync::Notify;
use tower::ServiceExt;
use tower_monitor::proxy::Proxy;

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
