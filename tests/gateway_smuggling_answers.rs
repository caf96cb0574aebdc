//! Response desync through the gateway, backend side: answers whose framing is in doubt or
//! that carry bytes past their end, which must never become the answer to another request,
//! on the client's connection or on the kept backend connection (the pool) that another
//! client's request takes next. Raw bytes both ways, a gateway served in the test's process.
//! (The client's requests: `gateway_smuggling.rs`.)

mod common;
mod smuggling_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use smuggling_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The answer the backend's stray bytes make, should they be read as one.
const EVIL: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nEVIL!";

async fn gateway(backend: std::net::SocketAddr) -> common::InProcessGateway {
    common::gateway_to_app(&format!("http://{backend}/"), "{}").await
}

/// An answer with both `Content-Length` and chunks is read as its chunks (RFC 9112 section
/// 6.3), but the backend that framed it both ways may have meant the length: here the chunks
/// end early, and the rest of the length, an answer of its own, arrives after the gateway has
/// read the chunks to their end. Kept for the next request, the connection gave that request,
/// another client's, the stray answer (as nginx 1.22 does); it is closed instead, as Apache's
/// proxy closes it, and the next request goes on a new connection.
#[tokio::test(flavor = "current_thread")]
async fn an_answer_framed_both_ways_does_not_leave_its_connection_for_another_request() {
    let (backend, received) = raw_backend(|head| {
        if head.starts_with("GET /split ") {
            Reply {
                now: b"HTTP/1.1 200 OK\r\ncontent-length: 45\r\ntransfer-encoding: chunked\r\n\r\n\
                       0\r\n\r\n"
                    .to_vec(),
                late: EVIL.to_vec(),
            }
        } else {
            MINE.into()
        }
    })
    .await;
    let gateway = gateway(backend).await;
    let reply = send(
        gateway.addr,
        b"GET /split HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.ends_with("\r\n\r\n0\r\n\r\n"), "{reply}");
    assert!(!reply.contains("content-length"), "{reply}");

    let other = send(gateway.addr, LAST).await;
    assert!(
        other.ends_with("\r\n\r\nmine"),
        "another client's answer: {other}"
    );
    let received = received.lock().unwrap();
    let connections: Vec<usize> = received.iter().map(|(number, _)| *number).collect();
    assert_eq!(connections, [1, 2], "{received:?}");
}

/// How a client's connection goes on after a stray answer.
#[derive(Clone, Copy)]
enum Then {
    /// The answer has this status line and the pipelined request gets its own answer.
    Mine(&'static str),
    /// The body broke off: the connection ends (with or without the head), and the pipelined
    /// request is never answered.
    Cut,
}

/// Bytes past the end of an answer in the same read (a length shorter than the body, a body
/// on a `304`, on an answer to `HEAD`, after `Connection: close` or on a `100`), and answers
/// that cannot be framed (two lengths, `Transfer-Encoding: identity` beside a length, a chunk
/// size that is no hex number, chunk data without its CRLF): the client gets the answer as
/// framed, a 502, or a cut-off body, and its next request (pipelined on the same connection,
/// and another client's) gets its own answer, never the stray bytes; the backend's connection
/// is not taken again. nginx 1.22 passes a `100` with its body on as the final answer, and
/// the second of two lengths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_past_an_answer_never_answer_another_request() {
    const CASES: [(&str, &str, &[u8], Then); 9] = [
        (
            "GET",
            "/short",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nEVIL!",
            Then::Mine("200 OK"),
        ),
        (
            "GET",
            "/not-modified",
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\nEVIL!",
            Then::Mine("304 Not Modified"),
        ),
        (
            "HEAD",
            "/head",
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nEVIL!",
            Then::Mine("200 OK"),
        ),
        (
            "GET",
            "/close",
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nokEVIL!",
            Then::Mine("200 OK"),
        ),
        (
            "GET",
            "/interim",
            b"HTTP/1.1 100 Continue\r\ncontent-length: 5\r\n\r\nEVIL!HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            Then::Mine("502 Bad Gateway"),
        ),
        (
            "GET",
            "/two-lengths",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 7\r\n\r\nokEVIL!",
            Then::Mine("502 Bad Gateway"),
        ),
        (
            "GET",
            "/identity",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: identity\r\ncontent-length: 2\r\n\r\nokEVIL!",
            Then::Mine("502 Bad Gateway"),
        ),
        (
            "GET",
            "/plus",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n+5\r\nEVIL!\r\n0\r\n\r\n",
            Then::Cut,
        ),
        (
            "GET",
            "/no-crlf",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nokEVIL!\r\n0\r\n\r\n",
            Then::Cut,
        ),
    ];
    let (backend, received) = raw_backend(|head| {
        let case = CASES
            .iter()
            .find(|(method, path, ..)| head.starts_with(&format!("{method} {path} ")));
        case.map_or(MINE, |(_, _, answer, _)| answer).into()
    })
    .await;
    let gateway = gateway(backend).await;
    for (method, path, _, then) in CASES {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: app\r\n\r\nGET /next HTTP/1.1\r\nhost: app\r\n\r\n"
        );
        let mut client = TcpStream::connect(gateway.addr).await.unwrap();
        client.write_all(request.as_bytes()).await.unwrap();
        let reply = read_until_mine_or_closed(&mut client).await;
        assert!(!reply.contains("EVIL"), "{path}: {reply}");
        match then {
            Then::Mine(status) => {
                assert_eq!(statuses(&reply)[0], format!("HTTP/1.1 {status}"), "{path}");
                assert!(reply.ends_with("\r\n\r\nmine"), "{path}: {reply}");
            }
            Then::Cut => assert!(!reply.contains("mine"), "{path}: {reply}"),
        }
        let other = send(gateway.addr, LAST).await;
        assert!(
            other.ends_with("\r\n\r\nmine"),
            "{path}: another client's: {other}"
        );
    }
    // No connection carried a request after an answer with stray bytes.
    let received = received.lock().unwrap();
    for (i, (connection, request)) in received.iter().enumerate() {
        let after = received[i + 1..].iter().find(|(c, _)| c == connection);
        let stray = CASES
            .iter()
            .any(|(m, p, ..)| request.starts_with(&format!("{m} {p} ")));
        assert!(!stray || after.is_none(), "{request:?} then {after:?}");
    }
}

/// Reads from `client` until the answer `mine` has come or the connection ends (at most
/// 10 s).
async fn read_until_mine_or_closed(client: &mut TcpStream) -> String {
    let mut reply = Vec::new();
    let read = async {
        let mut buffer = [0u8; 4096];
        while !reply.ends_with(b"\r\n\r\nmine") {
            match client.read(&mut buffer).await {
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

/// A backend that answers a request before it has read its body, and keeps the connection,
/// reads what is left of the body as the next request: a request smuggled in an upload runs
/// there, and its answer, written when the backend gets to it, answered the next request
/// sent on that connection, another client's. Here the client sends its body only once it
/// has the early answer, so the gateway cannot have handed the body on before the answer
/// came; the connection is closed after that answer (as nginx does), and the other client's
/// request goes on a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_whole_body_went_does_not_leave_its_connection_for_another_request() {
    let smuggled: &[u8] = b"GET /admin HTTP/1.1\r\nhost: app\r\n\r\n";
    let (backend, heads) = early_answering_backend().await;
    let gateway = gateway(backend).await;

    let mut uploader = TcpStream::connect(gateway.addr).await.unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nhost: app\r\ncontent-length: {}\r\n\r\n",
        smuggled.len()
    );
    uploader.write_all(head.as_bytes()).await.unwrap();
    let mut early = Vec::new();
    let mut buffer = [0u8; 1024];
    while !early.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(10), uploader.read(&mut buffer));
        let n = read.await.expect("the early answer in time").unwrap();
        assert!(n > 0, "closed before the early answer");
        early.extend_from_slice(&buffer[..n]);
    }
    let early = String::from_utf8_lossy(&early);
    assert!(early.starts_with("HTTP/1.1 401"), "{early}");
    uploader.write_all(smuggled).await.unwrap();
    // The body has reached the backend, which took it for a request.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !heads
        .lock()
        .unwrap()
        .iter()
        .any(|(_, h)| h.starts_with("GET /admin"))
    {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", heads.lock());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let other = send(gateway.addr, LAST).await;
    assert!(
        other.ends_with("\r\n\r\nmine"),
        "another client's answer: {other}"
    );
    let heads = heads.lock().unwrap();
    let last = heads.iter().find(|(_, h)| h.starts_with("GET /last"));
    assert!(matches!(last, Some((2, _))), "{heads:?}");
}

/// A backend that answers a `POST` 401 at once without reading its body, and answers a
/// `GET /admin` only when the next request comes on the same connection, just before that
/// one's `mine` (as a slow handler would); records each head with its connection's number.
async fn early_answering_backend() -> (std::net::SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Received::default();
    let recorded = heads.clone();
    // Numbered by their first request: the monitor's probe connects and sends none.
    let numbers = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (recorded, numbers) = (recorded.clone(), numbers.clone());
            let mut pending = Vec::new();
            let mut counted = None;
            tokio::spawn(async move {
                let mut admin_owed = false;
                while let Some(head) = common::read_head(&mut stream, &mut pending).await {
                    let this =
                        *counted.get_or_insert_with(|| numbers.fetch_add(1, Ordering::SeqCst) + 1);
                    recorded.lock().unwrap().push((this, head.clone()));
                    let answer: Vec<u8> = if head.starts_with("POST ") {
                        b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n".to_vec()
                    } else if head.starts_with("GET /admin ") {
                        admin_owed = true;
                        continue;
                    } else if std::mem::take(&mut admin_owed) {
                        [EVIL, MINE].concat()
                    } else {
                        MINE.to_vec()
                    };
                    if stream.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, heads)
}
