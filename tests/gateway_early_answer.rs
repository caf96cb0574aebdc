//! A backend that answers an upload before reading its body (a `413` to one too large) and
//! closes the connection at once, the body unread, which its kernel answers with a reset. The
//! rest of the body then fails to go (a broken pipe, a reset), and hyper's client failed the
//! exchange with that error, the answer already on the socket unread: the client got a 502 for
//! its `413` (nginx 1.22 too), and the backend was taken for gone (marked down and woken), so
//! the next client got a 503. The client gets the backend's answer instead. A raw backend on
//! 127.0.0.1, raw clients, the gateway in the test's process.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tower::ServiceExt;
use tower_monitor::layer::BackendGone;
use tower_monitor::proxy::Proxy;

/// The upload's size: many times what the sockets' buffers hold, so that most of it is still
/// to go when the backend closes.
const UPLOAD: usize = 16 << 20;

/// The backend's answer to an upload: a `413` that closes its connection.
const TOO_LARGE: &[u8] =
    b"HTTP/1.1 413 Payload Too Large\r\nconnection: close\r\ncontent-length: 9\r\n\r\ntoo large";

/// A backend that answers a `POST` `answer` once some of its body has come, then closes the
/// connection with the rest unread (which resets it); and a `GET` `200 mine`.
async fn refusing_backend(answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut pending = Vec::new();
                while let Some(head) = common::read_head(&mut stream, &mut pending).await {
                    if !head.starts_with("POST ") {
                        let mine = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nmine";
                        if stream.write_all(mine).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    if pending.is_empty() {
                        let mut buffer = [0u8; 1024];
                        if let Ok(0) | Err(_) = stream.read(&mut buffer).await {
                            return;
                        }
                    }
                    let _ = stream.write_all(answer).await;
                    // Dropped with the body unread: the backend's kernel resets the connection.
                    return;
                }
            });
        }
    });
    addr
}

/// A `POST` of `length` bytes to `gateway`, sent by a task of its own (which ends with the
/// first write that fails), and the connection's reading half.
async fn uploading(
    gateway: SocketAddr,
    length: usize,
) -> (OwnedReadHalf, JoinHandle<std::io::Result<()>>) {
    let client = TcpStream::connect(gateway).await.unwrap();
    let (reader, mut writer) = client.into_split();
    let sending = tokio::spawn(async move {
        let head =
            format!("POST /upload HTTP/1.1\r\nhost: app\r\ncontent-length: {length}\r\n\r\n");
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b'z'; 64 << 10];
        for _ in 0..length / chunk.len() {
            writer.write_all(&chunk).await?;
        }
        Ok(())
    });
    (reader, sending)
}

/// The head of the answer on `reader`, within 10 s.
async fn answer_head(reader: &mut OwnedReadHalf) -> String {
    let mut pending = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        common::read_head(reader, &mut pending),
    )
    .await
    .expect("an answer in time")
    .expect("an answer before the connection ends")
}

/// Sends a `POST` of [`UPLOAD`] bytes to `gateway` and gives the answer's head, read while the
/// body is still being sent.
async fn upload(gateway: SocketAddr) -> String {
    let (mut reader, sending) = uploading(gateway, UPLOAD).await;
    let head = answer_head(&mut reader).await;
    sending.abort();
    head
}

/// The same upload from an HTTP/2 client: its answer's status, once its head has come.
async fn upload_over_http2(gateway: SocketAddr) -> http::StatusCode {
    let (mut sender, _connection) = common::http2_connection(gateway).await;
    let chunk = Bytes::from(vec![b'z'; 64 << 10]);
    let chunks = std::iter::repeat_n(chunk, UPLOAD / (64 << 10))
        .map(|chunk| Ok::<_, std::convert::Infallible>(Frame::data(chunk)));
    let request = http::Request::post("http://app/upload")
        .header(http::header::CONTENT_LENGTH, UPLOAD)
        .body(StreamBody::new(futures::stream::iter(chunks)))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("an answer in time")
        .expect("an answer, not a reset");
    response.status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_answers_and_closes_mid_upload_is_heard_not_taken_for_gone() {
    let gateway = common::gateway_to_app(
        &format!("http://{}/", refusing_backend(TOO_LARGE).await),
        "{}",
    )
    .await;
    // The answer and the reset come together: which hyper met first was a matter of timing.
    for round in 0..8 {
        let head = upload(gateway.addr).await;
        assert!(
            head.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
            "round {round}: {head}"
        );
    }
    // The gateway ends the stream with the answer (a reset with NO_ERROR, as RFC 9113 section
    // 8.1 has a server that answers early do), which a client takes as the end of its upload.
    for round in 0..4 {
        let status = upload_over_http2(gateway.addr).await;
        assert_eq!(status, 413, "HTTP/2, round {round}");
    }
    let reply = common::exchange(
        gateway.addr,
        "GET /next HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nmine"), "{reply}");
}

/// An upload many times what the gateway drops of one once its backend closed.
const ENDLESS: usize = 64 << 20;

/// A backend's early answer with a byte past its end: hyper, which then does not read on, did
/// not see the connection's end, and read the whole upload from the client to drop it (10 GB
/// of one too). The gateway stops reading it past a bound and closes the client's connection,
/// its answer sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_the_backend_closed_on_is_not_read_on_without_bound() {
    let answer = [TOO_LARGE, b"!"].concat().leak();
    let gateway =
        common::gateway_to_app(&format!("http://{}/", refusing_backend(answer).await), "{}").await;
    let (mut reader, sending) = uploading(gateway.addr, ENDLESS).await;
    let head = answer_head(&mut reader).await;
    assert!(
        head.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{head}"
    );
    let sent = tokio::time::timeout(Duration::from_secs(20), sending)
        .await
        .expect("the upload ended in time")
        .unwrap();
    assert!(sent.is_err(), "the whole upload was read");
}

/// A backend gone in the middle of an upload, without an answer (no bytes before the reset):
/// the gateway's read meets the connection's end at once, as its write did, so this is still a
/// prompt 502 that carries `BackendGone`, not a wait for the response timeout while the rest of
/// the upload is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_gone_mid_upload_is_still_a_prompt_502_carrying_backend_gone() {
    let proxy = Proxy::builder(common::url_for(refusing_backend(b"").await))
        .response_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let pulled = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&pulled);
    let chunk = Bytes::from(vec![b'z'; 64 << 10]);
    let chunks = std::iter::repeat_n(chunk, ENDLESS / (64 << 10)).map(move |chunk| {
        counted.fetch_add(chunk.len(), Ordering::Relaxed);
        Ok::<_, std::convert::Infallible>(Frame::data(chunk))
    });
    let request = http::Request::post("/upload")
        .header(http::header::HOST, "app")
        .header(http::header::CONTENT_LENGTH, ENDLESS)
        .body(StreamBody::new(futures::stream::iter(chunks)))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), proxy.oneshot(request))
        .await
        .expect("an answer long before the response timeout")
        .unwrap();
    assert_eq!(response.status(), 502);
    assert!(response.extensions().get::<BackendGone>().is_some());
    assert!(
        pulled.load(Ordering::Relaxed) < ENDLESS,
        "the whole upload was read"
    );
}
