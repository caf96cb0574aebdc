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

/// A backend that reads each request's whole body before it answers, and counts the
/// connections that end (closed by the proxy: it closes none itself).
async fn counting_backend() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&closed);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counted = Arc::clone(&counted);
            let answer = hyper::service::service_fn(
                |request: http::Request<hyper::body::Incoming>| async move {
                    let body = request.into_body().collect().await?.to_bytes();
                    let answer =
                        http_body_util::Full::new(Bytes::from(format!("{} bytes", body.len())));
                    Ok::<_, hyper::Error>(http::Response::new(answer))
                },
            );
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), answer);
            tokio::spawn(async move {
                let _ = connection.await;
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
    });
    (addr, closed)
}

type Boxed = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// Whole uploads, however their body ends, leave their HTTP/1.1 backend connection open for
/// the next request: only an answer that came before the whole body went closes it. (Counted
/// as closes, not as connections: one back in the pool a moment after its answer is a race
/// of the test's, not a close.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_uploads_keep_their_backend_connection_however_their_body_ends() {
    use http_body::Frame;
    use http_body_util::BodyExt;
    let (backend, closed) = counting_backend().await;
    let proxy = Proxy::builder(common::url_for(backend))
        .service_name("app")
        .build()
        .unwrap();
    let data = |bytes: &'static [u8]| Ok(Frame::data(Bytes::from_static(bytes)));
    let stream = |frames: Vec<Result<Frame<Bytes>, std::io::Error>>| {
        http_body_util::StreamBody::new(futures::stream::iter(frames)).boxed()
    };
    let mut trailers = http::HeaderMap::new();
    trailers.insert("checksum", http::HeaderValue::from_static("abc"));
    let uploads: Vec<(&str, Option<&str>, Boxed)> = vec![
        // A length, and a body that never says it has ended (it just has no more).
        (
            "a length",
            Some("10"),
            stream(vec![data(b"01234"), data(b"56789")]),
        ),
        // No length: hyper sends the exact size its hint gives, and asks no more.
        (
            "an exact size",
            None,
            http_body_util::Full::new(Bytes::from_static(b"0123456789"))
                .map_err(|never| match never {})
                .boxed(),
        ),
        // Chunked, ended by trailers.
        (
            "trailers",
            None,
            stream(vec![
                data(b"01234"),
                data(b"56789"),
                Ok(Frame::trailers(trailers)),
            ]),
        ),
        // Chunked, ended by the stream's end.
        ("chunks", None, stream(vec![data(b"01234"), data(b"56789")])),
    ];
    for (how, length, body) in uploads {
        let mut request = http::Request::post("/upload").header("host", "app.localhost");
        if let Some(length) = length {
            request = request.header("content-length", length);
        }
        let response = tokio::time::timeout(
            Duration::from_secs(10),
            proxy.clone().oneshot(request.body(body).unwrap()),
        )
        .await
        .expect("answered in time")
        .unwrap();
        assert_eq!(response.status(), 200, "{how}");
        let answer = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(answer, "10 bytes", "{how}");
        assert_eq!(
            closed.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "a backend connection closed by the upload with {how} or before"
        );
    }
    // One more exchange, for the last upload's close to be seen if it made one. The proxy is
    // kept until the count is read: dropping its last clone drops its pool, whose idle
    // connections then close, which a preempted test thread could count.
    let request = http::Request::get("/").header("host", "app.localhost");
    let empty = http_body_util::Empty::new().map_err(|never| match never {});
    let response = proxy.clone().oneshot(request.body(empty.boxed()).unwrap());
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("answered in time")
        .unwrap();
    response.into_body().collect().await.unwrap();
    assert_eq!(closed.load(std::sync::atomic::Ordering::SeqCst), 0);
    drop(proxy);
}
