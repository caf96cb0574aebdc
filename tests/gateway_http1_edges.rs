//! HTTP/1.1 edge cases of a field test against nginx and RFC 9110/9112: a body on a `GET`
//! without a length, a backend's answer whose `Content-Length` is a list or stands on a `204`,
//! pipelined requests, answers that end with their connection, informational answers, a
//! `204` with bytes after it, `OPTIONS *`, and `Expect: 100-continue` answered early. A
//! gateway served in the test's process.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that answers each request with its method, path and body: `GET /x body=hello`.
async fn echo_backend() -> common::Server {
    common::serve(Router::new().fallback(
        |method: http::Method, uri: http::Uri, body: Bytes| async move {
            format!(
                "{method} {} body={}",
                uri.path(),
                String::from_utf8_lossy(&body)
            )
        },
    ))
    .await
}

async fn gateway(backend: SocketAddr) -> common::InProcessGateway {
    common::gateway_to_app(&format!("http://{backend}/"), "{}").await
}

/// Reads from `stream` until `expected` answers have ended with `tail`, or it closes (bounded).
async fn read_until(stream: &mut TcpStream, tail: &str, expected: usize) -> String {
    let mut reply = Vec::new();
    let read = async {
        let mut buffer = [0u8; 8192];
        while String::from_utf8_lossy(&reply).matches(tail).count() < expected {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => reply.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the answers in time");
    String::from_utf8_lossy(&reply).into_owned()
}

/// hyper's client sends a `GET` whose body has no length (chunked over HTTP/1.1, or HTTP/2's
/// without `content-length`) with no body at all, unless told its coding: the backend got an
/// empty search where nginx passes the body on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_body_of_unknown_length_reaches_the_backend() {
    let backend = echo_backend().await;
    let gateway = gateway(backend.addr).await;
    let reply = common::exchange(
        gateway.addr,
        "GET /search HTTP/1.1\r\nhost: app\r\ntransfer-encoding: chunked\r\n\
         connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    assert!(reply.ends_with("GET /search body=hello world"), "{reply}");

    let (mut sender, _connection) = common::http2_connection(gateway.addr).await;
    let chunks = ["hel", "lo"].map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from(c))));
    let request = http::Request::get("http://app/search")
        .body(StreamBody::new(futures::stream::iter(chunks)))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("an answer in time")
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "GET /search body=hello");
}

/// A backend that answers `/list` with `Content-Length: 5, 5` (which RFC 9110 lets a
/// recipient take as 5), `/no-content` with a `204` that announces a length, `/zeros` with
/// `Content-Length: 005`.
async fn length_backend() -> SocketAddr {
    let (addr, _) = common::recording_backend(|head| {
        let answer: &[u8] = if head.starts_with("GET /list ") {
            b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\nhello"
        } else if head.starts_with("GET /no-content ") {
            b"HTTP/1.1 204 No Content\r\ncontent-length: 7\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 005\r\n\r\nhello"
        };
        answer.into()
    })
    .await;
    addr
}

/// Passed on as it came, `5, 5` made an HTTP/2 client (curl, h2) reset the stream, and so did
/// a `204` announcing 7 bytes it never has (RFC 9110 forbids the header there); the client
/// gets one plain number, and no length on the `204`, over either version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backends_content_length_reaches_the_client_as_one_plain_number() {
    let gateway = gateway(length_backend().await).await;
    let (mut sender, _connection) = common::http2_connection(gateway.addr).await;
    for (path, status, length, body) in [
        ("/list", 200, Some("5"), "hello"),
        ("/zeros", 200, Some("5"), "hello"),
        ("/no-content", 204, None, ""),
    ] {
        let request = http::Request::get(format!("http://app{path}"))
            .body(Empty::new())
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
            .await
            .expect("an answer in time")
            .unwrap_or_else(|error| panic!("{path}: {error}"));
        assert_eq!(response.status(), status, "{path}");
        let header = response.headers().get(http::header::CONTENT_LENGTH);
        assert_eq!(header.map(|v| v.to_str().unwrap()), length, "{path}");
        let got = response.into_body().collect().await;
        let got = got.unwrap_or_else(|error| panic!("{path}: {error}"));
        assert_eq!(got.to_bytes(), body, "{path}");

        let reply = common::exchange(
            gateway.addr,
            &format!("GET {path} HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n"),
        )
        .await
        .to_ascii_lowercase();
        let lengths: Vec<&str> = reply
            .lines()
            .filter_map(|line| line.strip_prefix("content-length: "))
            .collect();
        assert_eq!(lengths, length.into_iter().collect::<Vec<_>>(), "{reply}");
    }
}

/// Several requests written at once on one connection, a `POST` and a chunked `GET` among
/// them, are each answered, in order, with their own bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let backend = echo_backend().await;
    let gateway = gateway(backend.addr).await;
    let mut client = TcpStream::connect(gateway.addr).await.unwrap();
    client
        .write_all(
            b"GET /a HTTP/1.1\r\nhost: app\r\n\r\n\
              POST /b HTTP/1.1\r\nhost: app\r\ncontent-length: 5\r\n\r\nhello\
              GET /c HTTP/1.1\r\nhost: app\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
              GET /d HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), client.read_to_string(&mut reply))
        .await
        .expect("all answered in time")
        .unwrap();
    let bodies: Vec<&str> = reply
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|answer| answer.split("\r\n\r\n").nth(1).unwrap_or_default())
        .collect();
    assert_eq!(
        bodies,
        [
            "GET /a body=",
            "POST /b body=hello",
            "GET /c body=abc",
            "GET /d body="
        ],
        "{reply}"
    );
}

/// A backend that answers one request per connection with `answer`, then closes it; counts
/// the requests (the monitor's probe connects too, without one).
async fn closing_backend(answer: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                if common::read_head(&mut stream, &mut pending).await.is_some() {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.write_all(answer).await;
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, requests)
}

/// An answer that ends with its connection (no length, no chunks; HTTP/1.0 or 1.1), or that
/// says `Connection: close`, reaches an HTTP/1.1 client whole (in chunks) and an HTTP/2 client
/// whole; the client's connection goes on, and its next request gets a new backend connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_ended_by_its_connection_arrives_whole_and_the_next_one_too() {
    let body = "x".repeat(100_000) + "END";
    for status_line in ["HTTP/1.1 200 OK", "HTTP/1.0 200 OK"] {
        let answer = format!("{status_line}\r\nserver: raw\r\n\r\n{body}");
        let (backend, requests) = closing_backend(answer.leak().as_bytes()).await;
        let gateway = gateway(backend).await;
        let mut client = TcpStream::connect(gateway.addr).await.unwrap();
        let request = "GET / HTTP/1.1\r\nhost: app\r\n\r\n";
        client
            .write_all(request.repeat(2).as_bytes())
            .await
            .unwrap();
        let reply = read_until(&mut client, "END\r\n0\r\n\r\n", 2).await;
        // Chunk sizes are hex digits: no `x` among them.
        assert_eq!(
            reply.matches("END\r\n0\r\n\r\n").count(),
            2,
            "{status_line}"
        );
        assert_eq!(reply.matches('x').count(), 200_000, "{status_line}");
        assert_eq!(requests.load(Ordering::SeqCst), 2, "{status_line}");

        let (mut sender, _connection) = common::http2_connection(gateway.addr).await;
        let request = http::Request::get("http://app/")
            .body(Empty::new())
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            let response = sender.send_request(request).await.unwrap();
            response.into_body().collect().await.unwrap().to_bytes()
        })
        .await
        .expect("the whole answer in time");
        assert_eq!(got, body.as_bytes(), "{status_line}");
    }

    let (backend, requests) =
        closing_backend(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
            .await;
    let gateway = gateway(backend).await;
    let mut client = TcpStream::connect(gateway.addr).await.unwrap();
    let request = "GET / HTTP/1.1\r\nhost: app\r\n\r\n";
    client
        .write_all(request.repeat(3).as_bytes())
        .await
        .unwrap();
    let reply = read_until(&mut client, "\r\n\r\nok", 3).await;
    assert_eq!(reply.matches("HTTP/1.1 200 OK").count(), 3, "{reply}");
    assert_eq!(requests.load(Ordering::SeqCst), 3);
}

/// Informational answers the backend sends unasked (`100`, `102`, `103`) are not taken for
/// the answer: the client gets the final one, and the connection's next answer is its own.
/// A `204` followed by bytes (a body it cannot have, here a whole answer) gets its connection
/// closed rather than kept: the next request must not get those bytes for its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_answers_and_bytes_after_a_204_do_not_reach_the_next_request() {
    let (backend, heads) = common::recording_backend(|head| {
        let answer: &[u8] = if head.starts_with("GET /interim ") {
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n\
              HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\n\
              HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal"
        } else if head.starts_with("GET /no-content ") {
            b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nsmugg"
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nmine"
        };
        answer.into()
    })
    .await;
    let gateway = gateway(backend).await;
    let mut client = TcpStream::connect(gateway.addr).await.unwrap();
    for first in ["/interim", "/no-content"] {
        let request = format!(
            "GET {first} HTTP/1.1\r\nhost: app\r\n\r\nGET /next HTTP/1.1\r\nhost: app\r\n\r\n"
        );
        client.write_all(request.as_bytes()).await.unwrap();
        let reply = read_until(&mut client, "\r\n\r\nmine", 1).await;
        assert_eq!(reply.matches("HTTP/1.1 ").count(), 2, "{first}: {reply}");
        assert!(!reply.contains("smugg"), "{reply}");
        if first == "/interim" {
            assert!(reply.contains("\r\n\r\nfinal"), "{reply}");
        }
    }
    assert_eq!(heads.lock().unwrap().len(), 4);
}

/// `OPTIONS *` (asterisk form) asks about the server, not a resource: it is not forwarded
/// (nginx answers it 400), and the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_asterisk_is_not_forwarded() {
    let (backend, heads) = common::recording_backend(|_| {
        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nmine"[..].into()
    })
    .await;
    let gateway = gateway(backend).await;
    let reply = common::exchange(
        gateway.addr,
        "OPTIONS * HTTP/1.1\r\nhost: app\r\n\r\nGET /next HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n",
    )
    .await;
    let first = reply.lines().next().unwrap_or_default();
    assert!(first.starts_with("HTTP/1.1 4"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nmine"), "{reply}");
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].starts_with("GET /next "), "{heads:?}");
}

/// A client that sends `Expect: 100-continue` and waits before its body gets the answer that
/// comes without it: the fallback's 503 of a down service, with no `100` before it (the body
/// is never asked for), and a backend's 413 given before it read the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_awaiting_100_continue_gets_an_early_answer() {
    let head = "POST /up HTTP/1.1\r\nhost: app\r\ncontent-length: 100000\r\n\
                expect: 100-continue\r\n\r\n";
    let down = common::refused_addr().await;
    let gateway_to_down = gateway(down).await;
    let mut client = TcpStream::connect(gateway_to_down.addr).await.unwrap();
    client.write_all(head.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        common::read_head(&mut client, &mut pending),
    )
    .await
    .expect("an answer without the body")
    .expect("an answer before the connection ends");
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");

    let (backend, _) = common::recording_backend(|_| {
        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"[..]
            .into()
    })
    .await;
    let gateway = gateway(backend).await;
    let mut client = TcpStream::connect(gateway.addr).await.unwrap();
    client.write_all(head.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let mut answer = String::new();
    for _ in 0..2 {
        answer = tokio::time::timeout(
            Duration::from_secs(10),
            common::read_head(&mut client, &mut pending),
        )
        .await
        .expect("an answer in time")
        .expect("an answer before the connection ends");
        if answer.starts_with("HTTP/1.1 100 ") {
            // Asked for the body: it may go, the backend will not read it.
            let _ = client.write_all(&[b'z'; 100_000]).await;
        } else {
            break;
        }
    }
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
}
