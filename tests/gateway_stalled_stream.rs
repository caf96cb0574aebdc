//! An HTTP/2 client that stops taking one answer, by granting its stream no window, holds
//! neither the backend connection behind it nor the backend awake past `send_timeout`, even
//! while it goes on uploading (a gRPC bidi stream); one that takes it slowly but steadily
//! gets it whole. Real clients and servers on 127.0.0.1.

mod bidi_support;
mod common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_monitor::config::TriggerRegistry;

/// Over HTTP/2 a client can stop taking an answer without filling its socket: it grants the
/// stream no more window. The answer (and the backend connection behind it) was held for ever,
/// up to the stream limit per client connection. Once the stream has taken nothing for `send_timeout`, the
/// answer alone is ended: the backend connection is let go, the client reads a reset (not a
/// short answer taken as whole), and its other streams go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_the_client_stops_taking_releases_the_backend_after_the_send_timeout() {
    use http_body_util::BodyExt;
    let (backend, backend_released) = endless_backend().await;
    let (_gateway, mut client) = gateway_and_client(backend).await;
    let get = |path: &str| {
        http::Request::get(format!("http://app{path}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    // Its body is not read, so the stream's window is never given back.
    let stalled = client.send_request(get("/endless")).await.unwrap();
    assert_eq!(stalled.status(), 200);
    tokio::time::timeout(Duration::from_secs(20), backend_released)
        .await
        .expect("the backend connection was never released")
        .unwrap();
    let other = client.send_request(get("/other")).await.unwrap();
    let other = other.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&other[..], b"ok", "the client's other streams go on");
    let mut body = stalled.into_body();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match body.frame().await {
                Some(Ok(_)) => continue,
                end => return end,
            }
        }
    })
    .await
    .expect("the stalled stream ends once read");
    assert!(matches!(end, Some(Err(_))), "read as whole: {end:?}");
}

/// An HTTP/2 client that takes its answer slowly but without a pause of `send_timeout` gets it
/// whole: only a stream that takes nothing for the bound is ended. The backend's answer reaches
/// the gateway in chunks of up to hundreds of kilobytes, each of which a slow client takes
/// longer than the bound to drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_reads_slowly_but_steadily_gets_the_whole_answer() {
    use http_body_util::BodyExt;
    const SIZE: usize = 512 * 1024;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // `/big` is written at once, as fast as the gateway reads it; anything else is "ok".
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let Some(head) = common::read_head(&mut stream, &mut Vec::new()).await else {
                continue;
            };
            if !head.starts_with("GET /big ") {
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                continue;
            }
            tokio::spawn(async move {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {SIZE}\r\n\r\n");
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&vec![b'x'; SIZE]).await;
                // Kept open until the gateway is done with it.
                let _ = stream.read(&mut [0; 1]).await;
            });
        }
    });
    let (_gateway, mut client) = gateway_and_client(backend).await;
    let request = http::Request::get("http://app/big")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let answer = client.send_request(request).await.unwrap();
    assert_eq!(answer.status(), 200);
    let mut body = answer.into_body();
    let mut taken = 0;
    // The client's pace: a frame (at most its 16 KiB window) every 100 ms.
    let end = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    taken += frame.data_ref().map_or(0, bytes::Bytes::len);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                end => return end,
            }
        }
    })
    .await
    .expect("the answer ends");
    assert!(end.is_none(), "ended after {taken} bytes: {end:?}");
    assert_eq!(taken, SIZE);
}

/// A backend whose `/endless` writes until the gateway lets its connection go (told then, for
/// the first one), and whose other paths answer "ok".
async fn endless_backend() -> (std::net::SocketAddr, tokio::sync::oneshot::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let (released, backend_released) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut released = Some(released);
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let Some(head) = common::read_head(&mut stream, &mut Vec::new()).await else {
                continue;
            };
            if !head.starts_with("GET /endless ") {
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                continue;
            }
            let released = released.take();
            tokio::spawn(async move {
                let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
                let mut written = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                while written.is_ok() {
                    written = stream.write_all(chunk.as_bytes()).await;
                }
                if let Some(released) = released {
                    let _ = released.send(());
                }
            });
        }
    });
    (backend, backend_released)
}

/// A stream the client grants no window at all is reset by the gateway past `send_timeout`,
/// without the client asking for anything more. Found in the field: the answer was let go,
/// but hyper, waiting for window, reset the stream only once the client granted some; one
/// that never did kept the stream (and its place among the connection's 200) for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_given_no_window_is_reset_without_the_client_asking() {
    let (backend, backend_released) = endless_backend().await;
    let gateway = gateway(backend).await;
    let stream = TcpStream::connect(gateway.addr).await.unwrap();
    // Streams start with no window, and the client never grants any.
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, bytes::Bytes>(stream)
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::get("http://app/endless").body(()).unwrap();
    let (answer, _) = client.send_request(request, true).unwrap();
    let answer = answer.await.unwrap();
    assert_eq!(answer.status(), 200);
    let mut body = answer.into_body();
    // Reset within 1.5 × the 1 s bound; 10 s leaves room for a loaded machine.
    let reset = tokio::time::timeout(Duration::from_secs(10), body.data())
        .await
        .expect("the stream was not reset while the client granted no window");
    let reason = reset
        .expect("a reset, not an end")
        .err()
        .and_then(|e| e.reason());
    assert_eq!(reason, Some(h2::Reason::CANCEL));
    tokio::time::timeout(Duration::from_secs(10), backend_released)
        .await
        .expect("the backend connection was never released")
        .unwrap();
}

/// A gateway to `backend` with a `send_timeout` of 1 s.
async fn gateway(backend: std::net::SocketAddr) -> common::InProcessGateway {
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                           "send_timeout": "1s" }},
             "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s" }} }} }}"#
    );
    common::start_gateway(&config, &TriggerRegistry::new()).await
}

/// A gateway to `backend` with a `send_timeout` of 1 s, and an HTTP/2 client of it whose
/// streams start with a 16 KiB window (given back as the client reads).
async fn gateway_and_client(
    backend: std::net::SocketAddr,
) -> (
    common::InProcessGateway,
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
) {
    let gateway = gateway(backend).await;
    let stream = TcpStream::connect(gateway.addr).await.unwrap();
    let (client, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(16 * 1024)
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    (gateway, client)
}

/// A bidi stream whose client takes none of its answer but goes on uploading (a few bytes
/// every 100 ms) is reset past `send_timeout` all the same, on both sides: the client reads
/// the reset, the backend sees its answer let go and its upload broken off, and the stream's
/// turn of the service's limit is free. Found when it was checked: to an HTTP/2 backend the
/// stream was reset only when the client ended its upload (one of 6 s: reset at 6.0 s, where
/// an HTTP/1.1 backend's was at 1.5 s), which it need never do: hyper sends a request's body
/// on, once the answer's head has come, for as long as the client sends it, which held the
/// stream on both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_still_uploading_to_an_http2_backend_is_reset_after_the_send_timeout() {
    stalled_while_uploading(true).await;
}

/// The same to an HTTP/1.1 backend (a chunked upload beside a chunked answer), whose
/// connection is closed when the answer is let go: reset after the bound already before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_still_uploading_to_an_http1_backend_is_reset_after_the_send_timeout() {
    stalled_while_uploading(false).await;
}

async fn stalled_while_uploading(http2: bool) {
    use bidi_support::{BidiBackend, Seen, Uploaded};
    use tokio::time::Instant;
    let mut backend = BidiBackend::start(http2).await;
    let gateway = gateway_with_limit_of_one(backend.addr, http2).await;
    let (mut client, _connection) = bidi_support::h2_client(gateway.addr, 0).await;
    let request = http::Request::post("http://app/endless").body(()).unwrap();
    let (answer, upload) = client.send_request(request, false).unwrap();
    // On past the bound below: a reset within it is not the upload's end.
    let stop = tokio::time::sleep(Duration::from_secs(30));
    let uploading = tokio::spawn(bidi_support::upload(upload, stop));
    let answer = tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .expect("no answer head")
        .unwrap();
    let head = Instant::now();
    assert_eq!(answer.status(), 200);
    // Reset within 1.5 × the 1 s bound; 8 s leaves room for a loaded machine.
    let uploaded = tokio::time::timeout(Duration::from_secs(8), uploading)
        .await
        .expect("the stream was not reset while its client uploaded")
        .unwrap();
    let Ok(Uploaded::Reset(reason, reset)) = uploaded else {
        panic!("not reset: {uploaded:?}");
    };
    assert_eq!(reason, h2::Reason::CANCEL);
    assert!(
        reset - head >= Duration::from_millis(900),
        "reset {:?} after the head, before the bound",
        reset - head
    );
    let mut seen = [
        backend.next(Duration::from_secs(5)).await,
        backend.next(Duration::from_secs(5)).await,
    ];
    seen.sort_by_key(|seen| format!("{seen:?}"));
    assert_eq!(
        seen,
        [Some(Seen::AnswerDropped), Some(Seen::UploadFailed)],
        "the backend's stream goes on"
    );
    // The limit lets one request in at once, and a request waits 300 ms for its turn.
    let mut client = client.ready().await.unwrap();
    let next = http::Request::get("http://app/ok").body(()).unwrap();
    let (next, _) = client.send_request(next, true).unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), next)
        .await
        .expect("no answer head")
        .unwrap();
    assert_eq!(
        next.status(),
        200,
        "the stalled stream's turn was not given back"
    );
}

/// A bidi stream whose client takes its answer slowly but steadily (16 KiB every 100 ms)
/// while it uploads gets the whole answer, and its upload, which goes on after the answer's
/// end, reaches the backend whole: only an answer let go before its end ends the upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_bidi_stream_read_slowly_gets_its_whole_answer_and_sends_its_whole_upload() {
    use bidi_support::{BidiBackend, CHUNK, Seen, Uploaded};
    const CHUNKS: usize = 16;
    let mut backend = BidiBackend::start(true).await;
    let gateway = gateway_with_limit_of_one(backend.addr, true).await;
    let (mut client, _connection) = bidi_support::h2_client(gateway.addr, CHUNK as u32).await;
    let request = http::Request::post(format!("http://app/chunks/{CHUNKS}"))
        .body(())
        .unwrap();
    let (answer, upload) = client.send_request(request, false).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let uploading = tokio::spawn(bidi_support::upload(upload, async move {
        let _ = stopped.await;
    }));
    let answer = tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .expect("no answer head")
        .unwrap();
    assert_eq!(answer.status(), 200);
    let mut body = answer.into_body();
    let mut taken = 0;
    let end = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match body.data().await {
                Some(Ok(data)) => {
                    taken += data.len();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    body.flow_control().release_capacity(data.len()).unwrap();
                }
                end => return end,
            }
        }
    })
    .await
    .expect("the answer ends");
    assert!(end.is_none(), "ended after {taken} bytes: {end:?}");
    assert_eq!(taken, CHUNKS * CHUNK);
    // A few more bytes of upload after the answer's end, then the end of the upload.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop.send(());
    let uploaded = tokio::time::timeout(Duration::from_secs(10), uploading)
        .await
        .expect("the upload ends")
        .unwrap();
    assert_eq!(uploaded.unwrap(), Uploaded::Whole);
    assert_eq!(
        backend.next(Duration::from_secs(10)).await,
        Some(Seen::UploadEnded)
    );
}

/// A gateway to `backend` (HTTP/2 if `http2`) with a `send_timeout` of 1 s, and a limit of
/// one request at once, waited for 300 ms at most.
async fn gateway_with_limit_of_one(
    backend: std::net::SocketAddr,
    http2: bool,
) -> common::InProcessGateway {
    let protocol = if http2 { r#""protocol": "http2","# } else { "" };
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                           "send_timeout": "1s",
                           "services": {{ "app": {{ {protocol}
                             "limit": {{ "max_in_flight": 1, "max_wait": "300ms" }} }} }} }},
             "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s" }} }} }}"#
    );
    common::start_gateway(&config, &TriggerRegistry::new()).await
}
