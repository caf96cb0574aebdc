//! HTTP/1.x rules a reverse proxy keeps, as nginx does, found by a field test with real clients
//! (curl, ab, raw sockets): how a body is framed when a message has both a length and chunks or
//! a transfer coding besides `chunked`, which host a request may name, the path an
//! absolute-form target without one asks for, and an HTTP/1.0 client's keep-alive. A gateway served in the test's process, in front of a raw backend on 127.0.0.1
//! that records each request head and answers as the path says.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A backend (requests without a body) that records each head and answers by its path:
/// `/length-and-chunks` with a `Content-Length: 2` beside ten bytes of chunks, `/gzip` with
/// chunks of a gzip coding, `/unsized` with `ok` in chunks, anything else with `ok`.
async fn raw_backend() -> (SocketAddr, common::Heads) {
    common::recording_backend(|head| {
        let answer: &[u8] = if head.starts_with("GET /length-and-chunks ") {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n\
              a\r\n0123456789\r\n0\r\n\r\n"
        } else if head.starts_with("GET /gzip ") {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n\
              5\r\nGZIPD\r\n0\r\n\r\n"
        } else if head.starts_with("GET /unsized ") {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        };
        answer.into()
    })
    .await
}

async fn gateway(backend: SocketAddr) -> common::InProcessGateway {
    common::gateway_to_app(&format!("http://{backend}/"), "{}").await
}

/// `GET path` over HTTP/2 (prior knowledge): the status and the body, or the stream's error.
async fn http2_get(addr: SocketAddr, path: &str) -> Result<(u16, String), hyper::Error> {
    let (mut sender, _connection) = common::http2_connection(addr).await;
    let request = http::Request::get(format!("http://app{path}"))
        .body(Empty::new())
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("an answer in time")?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A backend answer with both a length and chunks is framed by its chunks (RFC 9112 section
/// 6.3), and the length must not go on with it: forwarded, it cut the body to its first two
/// bytes for an HTTP/1.1 client, who took the rest for nothing (a clean, short answer), and
/// made an HTTP/2 client's stream a protocol error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_with_a_length_and_chunks_reaches_the_client_whole() {
    let (backend, _heads) = raw_backend().await;
    let gateway = gateway(backend).await;

    let reply = common::exchange(
        gateway.addr,
        "GET /length-and-chunks HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = reply.split_once("\r\n\r\n").expect("a whole head");
    assert!(head.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{head}"
    );
    assert!(body.contains("0123456789"), "{reply}");

    let answer = http2_get(gateway.addr, "/length-and-chunks").await;
    assert_eq!(answer.unwrap(), (200, "0123456789".to_string()));
}

/// A transfer coding besides `chunked` (`gzip, chunked`): the proxy undoes the chunks only and
/// drops the hop-by-hop header that named the rest, so the other side would read gzip bytes as
/// the content. A request is answered 501 (RFC 9112 section 6.1) and never reaches the
/// backend; an answer is a 502, as nginx makes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_coding_besides_chunked_never_goes_on_unannounced() {
    let (backend, heads) = raw_backend().await;
    let gateway = gateway(backend).await;

    for coding in [
        "transfer-encoding: gzip, chunked\r\n",
        "transfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n",
    ] {
        let reply = common::exchange(
            gateway.addr,
            &format!(
                "POST /upload HTTP/1.1\r\nhost: app\r\n{coding}connection: close\r\n\r\n\
                 5\r\nGZIPD\r\n0\r\n\r\n"
            ),
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 501"), "{coding}: {reply}");
    }
    assert!(heads.lock().unwrap().is_empty(), "{:?}", heads.lock());

    let reply = common::exchange(
        gateway.addr,
        "GET /gzip HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
    assert!(!reply.contains("GZIPD"), "{reply}");
    let answer = http2_get(gateway.addr, "/gzip").await.unwrap();
    assert_eq!(answer.0, 502, "{answer:?}");
}

/// The backend reads no host the routes did not see: two `Host` headers (the gateway routed
/// by the first, a backend may read the last), none in an HTTP/1.1 request, or a host with
/// userinfo (an absolute-form target's `user:pw@app`, routed as `app`), a path or a space
/// (RFC 9112 section 3.2; nginx answers each 400). HTTP/1.0 without `Host`, an absolute-form
/// target without one, and a host with a port still go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_naming_no_single_valid_host_is_refused() {
    let (backend, heads) = raw_backend().await;
    let gateway = gateway(backend).await;

    for request in [
        "GET /a HTTP/1.1\r\nhost: app\r\nhost: evil.example\r\nconnection: close\r\n\r\n",
        "GET /a HTTP/1.1\r\nconnection: close\r\n\r\n",
        "GET http://user:pw@app/a HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n",
        "GET /a HTTP/1.1\r\nhost: app/x\r\nconnection: close\r\n\r\n",
        "GET /a HTTP/1.1\r\nhost: app x\r\nconnection: close\r\n\r\n",
    ] {
        let reply = common::exchange(gateway.addr, request).await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{request:?}: {reply}");
    }
    assert!(heads.lock().unwrap().is_empty(), "{:?}", heads.lock());

    for (request, host) in [
        ("GET /b HTTP/1.0\r\n\r\n", format!("host: {backend}")),
        (
            "GET http://app:8080/b HTTP/1.1\r\nconnection: close\r\n\r\n",
            "host: app:8080".to_string(),
        ),
        (
            "GET /b HTTP/1.1\r\nhost: app:8080\r\nconnection: close\r\n\r\n",
            "host: app:8080".to_string(),
        ),
    ] {
        let reply = common::exchange(gateway.addr, request).await;
        assert!(reply.contains(" 200 OK\r\n"), "{request:?}: {reply}");
        let last = heads.lock().unwrap().pop().expect("forwarded");
        assert!(
            last.contains(&format!("\r\n{host}\r\n")),
            "{request:?}: {last}"
        );
    }
}

/// A host whose port is not digits, or with more than one (`app:abc`, `app:1:2`, `[::1]x`), is
/// no `host[:port]` (RFC 9110 section 7.2: 400), whether in `Host` or in an absolute-form target.
/// nginx lets them through; here the routes took `app:1:2` as host `app:1` (all before the
/// last `:`), and a backend that takes all before the first read `app`, a host the request
/// was not routed by. An empty port (`app:`) is one (RFC 3986) and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_port_is_not_one_number_is_refused() {
    let (backend, heads) = raw_backend().await;
    let gateway = gateway(backend).await;

    for request in [
        "GET /a HTTP/1.1\r\nhost: app:abc\r\nconnection: close\r\n\r\n",
        "GET /a HTTP/1.1\r\nhost: app:1:2\r\nconnection: close\r\n\r\n",
        "GET /a HTTP/1.1\r\nhost: [::1]x\r\nconnection: close\r\n\r\n",
        "GET /a HTTP/1.1\r\nhost: a]b\r\nconnection: close\r\n\r\n",
        "GET http://app:abc/a HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n",
    ] {
        let reply = common::exchange(gateway.addr, request).await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{request:?}: {reply}");
    }
    assert!(heads.lock().unwrap().is_empty(), "{:?}", heads.lock());

    for host in ["app:", "[::1]:8080", "[::1]"] {
        let request = format!("GET /b HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
        let reply = common::exchange(gateway.addr, &request).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{host}: {reply}");
    }
    assert_eq!(heads.lock().unwrap().len(), 3);
}

/// An HTTP/1.0 client that asks for keep-alive (`ab -k`) keeps its connection: the answer says
/// `Connection: keep-alive` and the next request goes on the same connection. The proxy made
/// the answer HTTP/1.0 itself, and hyper then closed every such connection after one answer.
/// An answer without a length (chunks from the backend) can only end with the connection, so
/// it does not say keep-alive (hyper said it all the same, and `ab -k` counted failures).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_client_asking_for_keep_alive_keeps_its_connection() {
    let (backend, heads) = raw_backend().await;
    let gateway = gateway(backend).await;

    let mut client = TcpStream::connect(gateway.addr).await.unwrap();
    let mut pending = Vec::new();
    for _ in 0..2 {
        client
            .write_all(b"GET /c HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let head = tokio::time::timeout(
            Duration::from_secs(10),
            common::read_head(&mut client, &mut pending),
        )
        .await
        .expect("an answer in time")
        .expect("an answer, not a closed connection");
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("\r\nconnection: keep-alive\r\n"),
            "{head}"
        );
        while pending.len() < 2 {
            let mut buffer = [0u8; 64];
            let read = client.read(&mut buffer).await.unwrap();
            assert!(read > 0, "closed before the body");
            pending.extend_from_slice(&buffer[..read]);
        }
        assert_eq!(pending.drain(..2).as_slice(), b"ok");
    }
    client
        .write_all(b"GET /unsized HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let head = common::read_head(&mut client, &mut pending).await;
    let head = head.expect("an answer");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("keep-alive"), "{head}");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut rest))
        .await
        .expect("the connection ends with the answer")
        .unwrap();
    pending.extend_from_slice(&rest);
    assert_eq!(pending, b"ok");
    assert_eq!(heads.lock().unwrap().len(), 3);
}

/// An absolute-form target with no path before its query (`GET http://app?x=1`) asks for `/`
/// (RFC 9110 section 4.2.3), as nginx takes it: behind a base path the backend got
/// `/base?x=1`, another resource.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_target_without_a_path_asks_for_the_root() {
    let (backend, heads) = raw_backend().await;
    let gateway = common::gateway_to_app(&format!("http://{backend}/base/"), "{}").await;
    for (target, forwarded) in [
        ("http://app?x=1", "/base/?x=1"),
        ("http://app", "/base/"),
        ("http://app/?x=1", "/base/?x=1"),
    ] {
        let request = format!("GET {target} HTTP/1.1\r\nconnection: close\r\n\r\n");
        let reply = common::exchange(gateway.addr, &request).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{target}: {reply}");
        let head = heads.lock().unwrap().pop().expect("forwarded");
        let line = format!("GET {forwarded} HTTP/1.1\r\n");
        assert!(head.starts_with(&line), "{target}: {head}");
    }
}
