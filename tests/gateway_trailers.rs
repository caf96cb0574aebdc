//! Trailer fields cross the gateway both ways, as RFC 9110 section 6.5 has them: the `Trailer`
//! header that announces them is end-to-end (RFC 2616 listed it as hop-by-hop; RFC 9110 does
//! not), and hyper sends an HTTP/1.1 message's trailers only for the names it announces. A
//! gateway served in the test's process, in front of raw backends on 127.0.0.1.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A chunked answer whose `x-checksum` trailer its `Trailer` header announces.
const WITH_TRAILER: &str = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\
                            trailer: x-checksum\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: abc123\r\n\r\n";

/// A backend's trailer reaches an HTTP/1.1 client, announced and in the last chunk, and an
/// HTTP/2 client as its trailers. Before, the gateway removed the announcement as hop-by-hop,
/// so hyper dropped the trailer on its way to an HTTP/1.1 client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backends_trailer_reaches_http1_and_http2_clients() {
    let (backend, _heads) = common::recording_backend(|_| WITH_TRAILER.as_bytes().into()).await;
    let gateway = common::gateway_to_app(&format!("http://{backend}/"), "{}").await;

    let reply = common::exchange(
        gateway.addr,
        "GET / HTTP/1.1\r\nhost: app\r\nte: trailers\r\nconnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = reply.split_once("\r\n\r\n").expect("a head and a body");
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\ntrailer: x-checksum"),
        "announced: {reply:?}"
    );
    assert_eq!(body, "5\r\nhello\r\n0\r\nx-checksum: abc123\r\n\r\n");

    let (mut sender, _connection) = common::http2_connection(gateway.addr).await;
    let request = http::Request::get("http://app/")
        .body(Empty::new())
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("an answer in time")
        .expect("an answer");
    let collected = response.into_body().collect().await.expect("the body");
    let trailers = collected.trailers().cloned().expect("trailers");
    assert_eq!(trailers["x-checksum"], "abc123");
    assert_eq!(collected.to_bytes(), "hello");
}

/// A client's trailer, announced, reaches an HTTP/1.1 backend in the upload's last chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_trailer_reaches_the_backend() {
    let (backend, uploads) = upload_backend().await;
    let gateway = common::gateway_to_app(&format!("http://{backend}/"), "{}").await;

    let reply = common::exchange(
        gateway.addr,
        "POST / HTTP/1.1\r\nhost: app\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\
         connection: close\r\n\r\n5\r\nhello\r\n0\r\nx-sum: 42\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    let uploads = uploads.lock().unwrap();
    let upload = uploads.first().expect("the backend got the upload");
    assert!(
        upload
            .to_ascii_lowercase()
            .contains("\r\ntrailer: x-sum\r\n"),
        "announced: {upload:?}"
    );
    assert!(
        upload.ends_with("5\r\nhello\r\n0\r\nx-sum: 42\r\n\r\n"),
        "in the last chunk: {upload:?}"
    );
}

/// A client's forwarded headers sent as trailers do not reach the backend, as those it sends as
/// headers do not (the gateway replaces them with its own): a backend that reads trailers
/// would take them for the gateway's word. Before, an announced `X-Forwarded-For` trailer went
/// through whole. Its other trailers still go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_forwarded_headers_in_its_trailers_do_not_reach_the_backend() {
    let (backend, uploads) = upload_backend().await;
    let gateway = common::gateway_to_app(&format!("http://{backend}/"), "{}").await;

    let reply = common::exchange(
        gateway.addr,
        "POST / HTTP/1.1\r\nhost: app\r\ntransfer-encoding: chunked\r\n\
         trailer: x-sum, x-forwarded-for, forwarded\r\nconnection: close\r\n\r\n\
         5\r\nhello\r\n0\r\nx-sum: 42\r\nx-forwarded-for: 6.6.6.6\r\n\
         forwarded: for=6.6.6.6\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    let uploads = uploads.lock().unwrap();
    let upload = uploads.first().expect("the backend got the upload");
    let (head, body) = upload.split_once("\r\n\r\n").expect("a head");
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\nx-forwarded-for: 127.0.0.1"),
        "the gateway's own: {head:?}"
    );
    assert!(
        body.contains("x-sum: 42\r\n"),
        "the other trailer: {body:?}"
    );
    assert!(
        !upload.contains("6.6.6.6"),
        "the client's claim: {upload:?}"
    );
}

/// A raw HTTP/1.1 backend that answers a request without a body at once (the gateway's probe
/// is a TCP connect; nothing else comes without one here) and records each chunked upload,
/// head and body, up to its last chunk's end, then answers `200`.
async fn upload_backend() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let uploads = Arc::new(Mutex::new(Vec::new()));
    let recorded = uploads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buffer = [0u8; 4096];
                while !ends_upload(&seen) {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buffer[..n]),
                    }
                }
                recorded
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&seen).into_owned());
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                let _ = stream.write_all(answer).await;
            });
        }
    });
    (addr, uploads)
}

/// Whether `seen` holds a head and a chunked body through its last chunk and trailer section.
fn ends_upload(seen: &[u8]) -> bool {
    let Some(head_end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let body = &seen[head_end + 4..];
    match body.windows(5).position(|w| w == b"\r\n0\r\n") {
        Some(last) => {
            body[last + 5..].windows(4).any(|w| w == b"\r\n\r\n")
                || body.ends_with(b"\r\n0\r\n\r\n")
        }
        None => false,
    }
}
