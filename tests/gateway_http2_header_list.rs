//! A request's header list past what an HTTP/2 backend accepts (its
//! `SETTINGS_MAX_HEADER_LIST_SIZE`, 16 KiB for hyper's, h2's and tonic's servers) is answered
//! 431 by the proxy and never sent. Found in the field: the gateway takes heads up to 64 KiB,
//! h2's client does not check the backend's limit, and a backend's h2 ends the whole shared
//! connection (`GOAWAY COMPRESSION_ERROR`) for a block past its limit spread over
//! `CONTINUATION` frames, failing every other client's request in flight on it. A hyper HTTP/2
//! backend on 127.0.0.1, raw HTTP/1.1 clients, a gateway served in the test's process. And the
//! client side's count of fields: an HTTP/2 client's request with more than an HTTP/1.1 head
//! may have lines is answered 431 by the gateway, its connection going on (hyper HTTP/2
//! clients).

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tower_monitor::config::TriggerRegistry;
use tower_monitor::gateway::Gateway;

/// What the backend received of each request: its path, the size of its header list as RFC
/// 9113 section 6.5.2 counts it (pseudo-header fields included), and its `x-a` value's length.
type Seen = Arc<Mutex<Vec<(String, usize, usize)>>>;

/// The log lines (up to WARN) of every test of this file, from the one global subscriber that
/// each test installs first (see `common::logs`).
fn logs() -> common::Captured {
    common::logs(tracing::Level::WARN)
}

/// The default bound: hyper's, h2's and tonic's `SETTINGS_MAX_HEADER_LIST_SIZE`.
const BOUND: usize = 16 * 1024;

/// A hyper HTTP/2 backend that records each request ([`Seen`]); `/slow` tells `arrived` and
/// is answered once `release` is notified, any other path at once. `max_header_list_size`:
/// hyper's default unless given.
async fn backend(
    max_header_list_size: Option<u32>,
) -> (SocketAddr, Seen, mpsc::UnboundedReceiver<()>, Arc<Notify>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let (arrived, arrivals) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let (recorded, waiting) = (seen.clone(), release.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (recorded, arrived, waiting) = (recorded.clone(), arrived.clone(), waiting.clone());
            let service = hyper::service::service_fn(move |request: http::Request<_>| {
                let path = request.uri().path().to_owned();
                let x_a = request.headers().get("x-a").map_or(0, |v| v.len());
                recorded
                    .lock()
                    .unwrap()
                    .push((path.clone(), list_size(&request), x_a));
                let (arrived, waiting) = (arrived.clone(), waiting.clone());
                async move {
                    if path == "/slow" {
                        let _ = arrived.send(());
                        waiting.notified().await;
                    }
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
                }
            });
            let mut server = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            if let Some(max) = max_header_list_size {
                server.max_header_list_size(max);
            }
            tokio::spawn(async move {
                let _ = server.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (addr, seen, arrivals, release)
}

/// The size of `request`'s header list as it came over HTTP/2: each field's name and value
/// and 32 octets, the four pseudo-header fields included.
fn list_size<B>(request: &http::Request<B>) -> usize {
    let uri = request.uri();
    let pseudo = [
        (":method", request.method().as_str().len()),
        (":scheme", uri.scheme_str().map_or(0, str::len)),
        (
            ":authority",
            uri.authority().map_or(0, |a| a.as_str().len()),
        ),
        (
            ":path",
            uri.path_and_query().map_or(0, |p| p.as_str().len()),
        ),
    ];
    let pseudo: usize = pseudo.iter().map(|(name, len)| name.len() + len + 32).sum();
    let fields: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum();
    pseudo + fields
}

/// A raw HTTP/1.1 `GET path` for host `app` with the header lines `extra`.
fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: app\r\n{extra}connection: close\r\n\r\n")
}

/// Two header fields of 20 kB each: a header list past 16 KiB whose block h2 spreads over
/// `HEADERS` and `CONTINUATION` frames. Every visible character in turn, as a token's are
/// varied: HPACK's Huffman code takes each about a byte, so that the bytes of the second field
/// still to come, once the first has put the list past the backend's bound, are more than the
/// bound, which ends the backend's connection (`COMPRESSION_ERROR`). (Of `a`s, five bits
/// each, the backend would answer 431 on the stream alone.)
fn two_large_headers() -> String {
    let value: String = (0..20_000u32)
        .map(|i| char::from(b'!' + (i % 94) as u8))
        .collect();
    format!("x-a: {value}\r\nx-b: {value}\r\n")
}

/// One client's request past the bound is answered 431 by the gateway, logged at warn with
/// the service, the size and the bound, and never reaches the backend; another client's
/// request in flight on the same backend connection is answered 200 all the same. A list one
/// byte under the bound goes through; one at it (which h2 refuses) does not.
#[tokio::test]
async fn a_header_list_past_the_bound_is_answered_431_and_the_shared_connection_lives() {
    let logs = logs();
    let (backend, seen, mut arrivals, release) = backend(None).await;
    let gateway =
        common::gateway_to_app(&format!("http://{backend}/"), r#"{ "protocol": "http2" }"#).await;
    let addr = gateway.addr;

    let slow = tokio::spawn(async move { common::exchange(addr, &get("/slow", "")).await });
    tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
        .await
        .expect("the slow request reached the backend in time");

    let reply = common::exchange(addr, &get("/large", &two_large_headers())).await;
    assert!(
        reply.starts_with("HTTP/1.1 431"),
        "{}",
        &reply[..reply.len().min(300)]
    );
    assert!(
        reply.ends_with("request header fields too large\n"),
        "{reply}"
    );
    release.notify_one();
    let slow = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("the slow request answered in time")
        .unwrap();
    assert!(slow.starts_with("HTTP/1.1 200"), "{slow}");
    assert!(slow.ends_with("ok"), "{slow}");

    let text = logs.text();
    let line = text
        .lines()
        .find(|line| line.contains("WARN") && line.contains("path=/large"))
        .unwrap_or_else(|| panic!("no warning in {text}"));
    assert!(line.contains("service=app"), "{line}");
    assert!(line.contains(&format!("bound={BOUND}")), "{line}");
    assert!(line.contains("size=40"), "{line}");

    // The same request with a one-byte `x-a`, measured by the backend, then padded to one byte
    // under the bound: it passes; one byte more, it is the proxy's 431.
    let reply = common::exchange(addr, &get("/pad", "x-a: a\r\n")).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let measured = seen.lock().unwrap().last().unwrap().1;
    let under = 1 + (BOUND - 1 - measured);
    let reply = common::exchange(
        addr,
        &get("/pad", &format!("x-a: {}\r\n", "a".repeat(under))),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(seen.lock().unwrap().last().unwrap().1, BOUND - 1);
    let at = "a".repeat(under + 1);
    let reply = common::exchange(addr, &get("/pad", &format!("x-a: {at}\r\n"))).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    assert!(
        reply.ends_with("request header fields too large\n"),
        "{reply}"
    );

    let seen = seen.lock().unwrap();
    let paths: Vec<(&str, usize)> = seen.iter().map(|(p, _, a)| (p.as_str(), *a)).collect();
    assert_eq!(
        paths,
        [("/slow", 0), ("/pad", 1), ("/pad", under)],
        "what reached the backend"
    );
}

/// A gRPC call past the bound gets gRPC's answer, in a trailers-only response a gRPC client
/// reads: `RESOURCE_EXHAUSTED`, which it does not retry (the same call would fail again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_call_past_the_bound_is_resource_exhausted() {
    let _logs = logs();
    let (backend, seen, _arrivals, _release) = backend(None).await;
    let gateway =
        common::gateway_to_app(&format!("http://{backend}/"), r#"{ "protocol": "http2" }"#).await;
    let (mut sender, _connection) = common::http2_connection(gateway.addr).await;
    let value = "a".repeat(20_000);
    let request = http::Request::post("http://app/pkg.Service/Method")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-a", &value)
        .header("x-b", &value)
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("an answer in time")
        .expect("an answer");
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "application/grpc");
    assert_eq!(headers["grpc-status"], "8", "{headers:?}");
    assert!(seen.lock().unwrap().is_empty(), "the backend was sent it");
}

/// A bound raised to what the backend accepts lets the list through, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_bound_lets_a_larger_list_through() {
    let _logs = logs();
    let (backend, seen, _arrivals, _release) = backend(Some(64 * 1024)).await;
    let gateway = common::gateway_to_app(
        &format!("http://{backend}/"),
        r#"{ "protocol": "http2", "http2_max_header_list_size": 65536 }"#,
    )
    .await;

    let reply = common::exchange(gateway.addr, &get("/large", &two_large_headers())).await;
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "{}",
        &reply[..reply.len().min(300)]
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "one request reached the backend");
    let (path, size, x_a) = &seen[0];
    assert_eq!((path.as_str(), *x_a), ("/large", 20_000));
    assert!(*size > 40_000, "{size}");
}

/// The setting is checked with its field named: more than zero, at most 16 MiB, and only with
/// `"protocol": "http2"` (an HTTP/1.1 backend's head is not bounded by it).
#[test]
fn bad_bounds_are_errors_naming_the_field() {
    let _logs = logs();
    let cases = [
        (
            r#""protocol": "http2", "http2_max_header_list_size": 0"#,
            "more than 0",
        ),
        (
            r#""protocol": "http2", "http2_max_header_list_size": 16777217"#,
            "at most 16777216",
        ),
        (
            r#""protocol": "http2", "http2_max_header_list_size": "16k""#,
            "\"16k\"",
        ),
        (
            r#""http2_max_header_list_size": 65536"#,
            "applies to HTTP/2 backends only",
        ),
        (
            r#""protocol": "http1", "http2_max_header_list_size": 65536"#,
            "applies to HTTP/2 backends only",
        ),
    ];
    for (settings, text) in cases {
        let config = format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                               "services": {{ "app": {{ {settings} }} }} }},
                 "services": {{ "app": {{ "url": "http://127.0.0.1:9/", "grace_period": "1s" }} }} }}"#
        );
        let error = Gateway::from_config(&config, &TriggerRegistry::new())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("gateway.services.app.http2_max_header_list_size"),
            "{settings}: {error}"
        );
        assert!(error.contains(text), "{settings}: {error}");
    }
    let fine = r#"{ "gateway": { "listen": "127.0.0.1:0", "routes": [ { "service": "app" } ],
                   "services": { "app": { "protocol": "http2", "http2_max_header_list_size": 16777216 } } },
                   "services": { "app": { "url": "http://127.0.0.1:9/", "grace_period": "1s" } } }"#;
    assert!(Gateway::from_config(fine, &TriggerRegistry::new()).is_ok());
}

/// A request with more header fields than an HTTP/1.1 head may have lines (100, hyper's bound,
/// where the gateway answers 431) is answered 431 over HTTP/2 too, on its own stream, and
/// never reaches the backend: the client's other stream in flight on the same connection is
/// answered, and so is its next request. At the bound it goes through. A `Cookie` sent as one
/// field per cookie counts once, as its HTTP/1.1 line would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_request_with_more_fields_than_http1_allows_is_answered_431_on_its_stream() {
    let _logs = logs();
    let (backend, seen, mut arrivals, release) = backend(None).await;
    let gateway =
        common::gateway_to_app(&format!("http://{backend}/"), r#"{ "protocol": "http2" }"#).await;
    let (sender, _connection) = common::http2_connection(gateway.addr).await;
    let get = |path: &str, fields: usize, cookies: usize| {
        let mut request = http::Request::get(format!("http://app{path}"));
        for i in 0..fields {
            request = request.header(format!("x-h{i}"), "v");
        }
        for i in 0..cookies {
            request = request.header("cookie", format!("c{i}=v"));
        }
        request.body(http_body_util::Empty::new()).unwrap()
    };
    let send = |request| {
        let mut sender = sender.clone();
        async move {
            let response =
                tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
                    .await
                    .expect("an answer in time")
                    .expect("an answer: the connection lives");
            response.status().as_u16()
        }
    };

    let slow = tokio::spawn(send(get("/slow", 0, 0)));
    tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
        .await
        .expect("the slow request reached the backend in time");
    assert_eq!(send(get("/many", 101, 0)).await, 431);
    assert_eq!(send(get("/cookies", 100, 2)).await, 431);
    release.notify_one();
    let slow = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("the slow request answered in time")
        .unwrap();
    assert_eq!(slow, 200);
    assert_eq!(send(get("/hundred", 100, 0)).await, 200);
    assert_eq!(send(get("/crumbs", 99, 30)).await, 200);

    let seen = seen.lock().unwrap();
    let paths: Vec<&str> = seen.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["/slow", "/hundred", "/crumbs"],
        "what reached the backend"
    );
}

/// The HTTP/1.1 bound the HTTP/2 one follows: a head with more than 100 header lines is
/// answered 431 (by hyper), never forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_head_with_more_than_100_lines_is_answered_431() {
    let _logs = logs();
    let (backend, seen, _arrivals, _release) = backend(None).await;
    let gateway =
        common::gateway_to_app(&format!("http://{backend}/"), r#"{ "protocol": "http2" }"#).await;
    let lines: String = (0..100).map(|i| format!("x-h{i}: v\r\n")).collect();
    let reply = common::exchange(gateway.addr, &get("/many", &lines)).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    let lines: String = (0..97).map(|i| format!("x-h{i}: v\r\n")).collect();
    let reply = common::exchange(gateway.addr, &get("/hundred", &lines)).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let seen = seen.lock().unwrap();
    let paths: Vec<&str> = seen.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(paths, ["/hundred"], "what reached the backend");
}
