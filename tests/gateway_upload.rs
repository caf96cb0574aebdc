//! A client's upload that breaks off (the client went away in the middle) through the proxy
//! and the layer in front of it: the client's failure, not the backend's, so the backend is
//! neither marked down nor started again. Real backend on 127.0.0.1, over HTTP/1.1 and h2c.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use tower::{Layer, ServiceExt};
use tower_monitor::layer::BackendGone;
use tower_monitor::proxy::Proxy;

/// An upload of 100 kB whose body, if `broken`, breaks off after its first bytes, as a client's
/// does when it goes away in the middle.
fn upload(
    broken: bool,
) -> http::Request<http_body_util::StreamBody<futures::stream::Iter<UploadParts>>> {
    let parts: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = if broken {
        vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"first bytes"))),
            Err(std::io::ErrorKind::UnexpectedEof.into()),
        ]
    } else {
        vec![Ok(http_body::Frame::data(Bytes::from(vec![b'x'; 100_000])))]
    };
    http::Request::post("/upload")
        .header("host", "app.localhost")
        .header("content-length", "100000")
        .body(http_body_util::StreamBody::new(futures::stream::iter(
            parts,
        )))
        .unwrap()
}

type UploadParts = std::vec::IntoIter<Result<http_body::Frame<Bytes>, std::io::Error>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_upload_that_breaks_off_does_not_mark_the_backend_down() {
    // The backend reads the whole body before it answers: the body's end decides the exchange.
    let backend = common::serve(
        Router::new().fallback(|body: Bytes| async move { format!("{} bytes\n", body.len()) }),
    )
    .await;
    for http2 in [false, true] {
        let monitor = Arc::new(tower_monitor::MinMonitor::new());
        let starts = common::counter();
        let service = tower_monitor::MonitoredService::new(
            common::url_for(backend.addr),
            Duration::from_secs(30),
        )
        .on_down(common::counting_trigger(starts.clone(), false));
        monitor.add("app", service).unwrap();
        monitor.set_status_up("app").unwrap();
        let proxy = Proxy::builder(common::url_for(backend.addr))
            .http2(http2)
            .service_name("app")
            .build()
            .unwrap();
        let guarded = monitor
            .layer("app")
            .unwrap()
            .backend_gone_when(BackendGone::in_response)
            .layer(proxy);
        // On a new connection; then, after a whole exchange, on the one kept from it (over
        // HTTP/1.1 the proxy's own pool takes that path).
        for kept in [false, true] {
            if kept {
                let whole = guarded.clone().oneshot(upload(false)).await.unwrap();
                assert_eq!(whole.status(), 200);
                http_body_util::BodyExt::collect(whole.into_body())
                    .await
                    .unwrap();
            }
            let response = tokio::time::timeout(
                Duration::from_secs(10),
                guarded.clone().oneshot(upload(true)),
            )
            .await
            .expect("answered in time")
            .unwrap();
            // The client's own failure: not the backend's, which stays up and is not started
            // again (over HTTP/2 hyper reports it as a stream reset of the proxy's own).
            assert_eq!(response.status(), 400, "kept: {kept}, http2: {http2}");
            assert!(response.extensions().get::<BackendGone>().is_none());
        }
        assert_eq!(
            monitor.state("app").unwrap(),
            tower_monitor::ServiceState::Up,
            "http2: {http2}"
        );
        assert_eq!(common::count(&starts), 0, "on_down ran; http2: {http2}");
    }
}
