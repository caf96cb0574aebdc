//! A backend that sends its answer's head and part of its body, then nothing, held the client
//! and the backend connection for ever. Past the service's `response_body_timeout` (nginx's
//! `proxy_read_timeout`) without a byte more, the client's answer is cut short, so that it
//! sees it as truncated (HTTP/1.1: the connection closed before the last chunk or short of
//! `Content-Length`; HTTP/2: the stream reset, the connection kept), the backend connection is
//! closed, and a warning names the service. An answer whose pauses are each shorter goes
//! through whole, however long it takes. A raw TCP backend and raw TCP and hyper clients on
//! 127.0.0.1, the gateway in the test's process.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The log lines (up to WARN) of every test of this file, from the one global subscriber that
/// each test installs first (see `common::logs`).
fn logs() -> common::Captured {
    common::logs(tracing::Level::WARN)
}

/// The paced answer's pause between chunks: each under the timeout, all three over it.
const PAUSE: Duration = Duration::from_millis(700);

/// A raw HTTP/1.1 backend. `/chunked` and `/length` send a head and five bytes of the body
/// (chunked; of a `Content-Length` of 100), then nothing until the gateway closes the
/// connection, which is told on `closed`; `/paced` sends three chunks `PAUSE` apart and its
/// end; anything else gets `ok` at once. Connections are kept alive.
async fn backend() -> (SocketAddr, mpsc::UnboundedReceiver<&'static str>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed, closes) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, closed.clone()));
        }
    });
    (addr, closes)
}

async fn serve(mut stream: TcpStream, closed: mpsc::UnboundedSender<&'static str>) {
    let mut pending = Vec::new();
    while let Some(head) = common::read_head(&mut stream, &mut pending).await {
        let path = head.split_whitespace().nth(1).unwrap_or("/");
        let stalled = match path {
            "/chunked" => Some((
                "/chunked",
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n",
            )),
            "/length" => Some((
                "/length",
                "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst",
            )),
            _ => None,
        };
        if let Some((path, partial)) = stalled {
            let _ = stream.write_all(partial.as_bytes()).await;
            let mut buffer = [0u8; 1024];
            while let Ok(1..) = stream.read(&mut buffer).await {}
            let _ = closed.send(path);
            return;
        }
        if path == "/paced" {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            for chunk in ["1\r\na\r\n", "1\r\nb\r\n", "1\r\nc\r\n"] {
                let _ = stream.write_all(chunk.as_bytes()).await;
                tokio::time::sleep(PAUSE).await;
            }
            let _ = stream.write_all(b"0\r\n\r\n").await;
        } else {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
        }
    }
}

/// A gateway in front of `backend` whose service "app" has a 2 s `response_body_timeout`.
async fn gateway(backend: SocketAddr) -> common::InProcessGateway {
    common::gateway_to_app(
        &format!("http://{backend}/"),
        r#"{ "response_body_timeout": "2s" }"#,
    )
    .await
}

/// Sends a kept-alive `GET path` and reads all the gateway sends until it closes the
/// connection (bounded).
async fn until_closed(addr: SocketAddr, path: &str) -> String {
    let mut client = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: app\r\n\r\n");
    client.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut reply))
        .await
        .unwrap_or_else(|_| panic!("{path}: the gateway kept the connection open"))
        .ok();
    String::from_utf8_lossy(&reply).into_owned()
}

/// Waits (bounded) for the backend to see the gateway close its connection of `path`.
async fn backend_closed(closes: &mut mpsc::UnboundedReceiver<&'static str>, path: &str) {
    let closed = tokio::time::timeout(Duration::from_secs(10), closes.recv())
        .await
        .unwrap_or_else(|_| panic!("{path}: the backend connection was kept"));
    assert_eq!(closed, Some(path));
}

/// Over HTTP/1.1, a chunked answer is cut before its last chunk and one of known length short
/// of it, by closing the client's connection; each backend connection is closed, and a
/// warning names the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_answer_is_cut_short_for_an_http1_client() {
    let logs = logs();
    let (backend, mut closes) = backend().await;
    let gateway = gateway(backend).await;

    let reply = until_closed(gateway.addr, "/chunked").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.ends_with("5\r\nfirst\r\n"),
        "not cut short: {reply:?}"
    );
    backend_closed(&mut closes, "/chunked").await;

    let reply = until_closed(gateway.addr, "/length").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("content-length: 100\r\n"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nfirst"), "{reply:?}");
    backend_closed(&mut closes, "/length").await;

    let text = logs.text();
    let line = text
        .lines()
        .find(|line| line.contains("WARN") && line.contains("response_body_timeout"))
        .unwrap_or_else(|| panic!("no warning in {text}"));
    assert!(line.contains("service=app"), "{line}");
}

/// An answer whose every pause is under the timeout goes through whole, though it takes
/// longer than the timeout in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_keeps_coming_is_not_cut() {
    let _logs = logs();
    let (backend, _closes) = backend().await;
    let gateway = gateway(backend).await;
    let started = std::time::Instant::now();
    let reply = common::exchange(
        gateway.addr,
        "GET /paced HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.ends_with("1\r\nc\r\n0\r\n\r\n"), "{reply:?}");
    assert!(started.elapsed() >= PAUSE * 3, "{:?}", started.elapsed());
}

/// Over HTTP/2, the stalled answer's stream is reset; the client's connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_answer_resets_its_http2_stream_only() {
    let _logs = logs();
    let (backend, mut closes) = backend().await;
    let gateway = gateway(backend).await;
    let (mut sender, _connection) = common::http2_connection(gateway.addr).await;

    let request = http::Request::get("http://app/chunked")
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("a head in time")
        .expect("a head");
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
        .await
        .expect("the stream was left open");
    let error = body.expect_err("a stalled answer read as whole");
    assert!(format!("{error:?}").contains("INTERNAL_ERROR"), "{error:?}");
    backend_closed(&mut closes, "/chunked").await;

    let request = http::Request::get("http://app/ok")
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("an answer in time")
        .expect("the connection lives");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "ok");
}
