//! Requests and answers a gateway must not pass on as they are, found in the field: a `TRACE`
//! (it would echo cookies and credentials), and a backend's answer with more header lines than
//! the proxy parses by default. A gateway served in the test's process, in front of a raw
//! backend on 127.0.0.1 that records each request head and answers as the path says.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use tower::ServiceExt;
use tower_monitor::proxy::Proxy;

/// How many header lines the backend's answers to `/headers` have.
const MANY: usize = 150;

/// A backend (requests without a body) that records each head and answers `ok`; to
/// `/headers`, with [`MANY`] header lines `x-h<i>: v<i>` besides its length.
async fn raw_backend() -> (SocketAddr, common::Heads) {
    common::recording_backend(|head| {
        let mut answer = String::from("HTTP/1.1 200 OK\r\n");
        if head.starts_with("GET /headers ") {
            for i in 0..MANY {
                answer.push_str(&format!("x-h{i}: v{i}\r\n"));
            }
        }
        answer.push_str("content-length: 2\r\n\r\nok");
        answer.into()
    })
    .await
}

/// A gateway with one service, "app", on `backend`, with the per-service `settings` (JSON).
async fn gateway(backend: SocketAddr, settings: &str) -> common::InProcessGateway {
    common::gateway_to_app(&format!("http://{backend}/"), settings).await
}

/// A request `method path` for host `app` over HTTP/2 (prior knowledge): the status and the
/// body.
async fn http2_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let response = http2_response(addr, method, path).await;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The answer to `method path` for host `app` over HTTP/2 (prior knowledge), its body unread.
async fn http2_response(
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> http::Response<hyper::body::Incoming> {
    let (mut sender, _connection) = common::http2_connection(addr).await;
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://app{path}"))
        .body(Empty::new())
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("an answer in time")
        .expect("an answer")
}

/// The methods a 405 to a `TRACE` allows: the standard ones the proxy forwards.
const ALLOWED: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH";

/// A `TRACE` is answered 405 by the gateway itself, over either HTTP version, and never reaches
/// the backend, which would send it back with the client's cookie and credentials for a
/// script to read (cross-site tracing); nginx answers it 405 too. The backend still gets the
/// next `GET`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_is_answered_405_and_never_reaches_the_backend() {
    let _logs = common::logs(tracing::Level::WARN);
    let (backend, heads) = raw_backend().await;
    let gateway = gateway(backend, "{}").await;

    let reply = common::exchange(
        gateway.addr,
        "TRACE /a HTTP/1.1\r\nhost: app\r\ncookie: session=secret\r\n\
         authorization: Basic dTpw\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");
    assert!(!reply.contains("secret"), "{reply}");
    // RFC 9110 requires a 405 to say which methods are allowed.
    assert!(
        reply.contains(&format!("\r\nallow: {ALLOWED}\r\n")),
        "{reply}"
    );
    let response = http2_response(gateway.addr, "TRACE", "/a").await;
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()[http::header::ALLOW], ALLOWED);
    assert!(heads.lock().unwrap().is_empty(), "{:?}", heads.lock());

    let reply = common::exchange(
        gateway.addr,
        "GET /b HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].starts_with("GET /b "), "{heads:?}");
}

/// A `TRACE` to a service that is down is answered 405 before the monitor's layer sees it: it
/// neither wakes the backend (its `on_down` does not run) nor counts as activity. The layer
/// sits in front of the proxy, whose own refusal came after the wake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_to_a_down_service_does_not_wake_it() {
    let _logs = common::logs(tracing::Level::WARN);
    let down = common::refused_addr().await;
    let starts = common::counter();
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ] }},
             "services": {{ "app": {{ "url": "http://{down}/", "grace_period": "30s",
                                     "on_down": {{ "type": "count" }} }} }} }}"#
    );
    let gateway = common::start_gateway(&config, &common::counting_registry(starts.clone())).await;

    let reply = common::exchange(
        gateway.addr,
        "TRACE /a HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");
    let (status, _) = http2_request(gateway.addr, "TRACE", "/a").await;
    assert_eq!(status, 405);
    assert_eq!(common::count(&starts), 0, "on_down ran");
    let counters = &gateway.monitor.snapshot()[0].counters;
    assert_eq!((counters.wakes, counters.fallbacks), (0, 0), "{counters:?}");
}

/// The library's proxy refuses `TRACE` by default too, and forwards it when built with
/// `allow_trace(true)`.
#[tokio::test]
async fn the_proxy_forwards_a_trace_only_when_allowed() {
    let _logs = common::logs(tracing::Level::WARN);
    let (backend, heads) = raw_backend().await;
    let trace = || {
        http::Request::builder()
            .method("TRACE")
            .uri("http://app/t")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let url = common::url_for(backend);

    let refusing = Proxy::builder(url.clone()).build().unwrap();
    let response = refusing.oneshot(trace()).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[http::header::ALLOW], ALLOWED);
    assert!(heads.lock().unwrap().is_empty(), "{:?}", heads.lock());

    let allowing = Proxy::builder(url).allow_trace(true).build().unwrap();
    let response = allowing.oneshot(trace()).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].starts_with("TRACE /t "), "{heads:?}");
}

/// A backend's answer with more header lines than hyper's client parses by default (100) is a
/// 502, as before; but the log now says which limit it passed and the setting that raises it,
/// with the service's name, where it said "backend request failed: message head is too large".
#[tokio::test]
async fn an_answer_with_too_many_header_lines_is_a_502_that_names_the_setting() {
    let logs = common::logs(tracing::Level::WARN);
    let (backend, heads) = raw_backend().await;
    let gateway = gateway(backend, "{}").await;

    let reply = common::exchange(
        gateway.addr,
        "GET /headers HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
    assert_eq!(heads.lock().unwrap().len(), 1, "the backend was asked");
    // Found by its path: only this test's backend answers it with too many lines.
    let line = logs.line_with(&["WARN", "/headers"]);
    assert!(line.contains("service=app"), "{line}");
    assert!(line.contains("more than 100 header lines"), "{line}");
    assert!(line.contains("max_response_headers"), "{line}");
}

/// With `max_response_headers` raised above the count, the answer reaches the client with every
/// header line, over either HTTP version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_max_response_headers_delivers_every_header_line() {
    let _logs = common::logs(tracing::Level::WARN);
    let (backend, _heads) = raw_backend().await;
    let gateway = gateway(backend, r#"{ "max_response_headers": 200 }"#).await;

    let reply = common::exchange(
        gateway.addr,
        "GET /headers HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = reply.split_once("\r\n\r\n").expect("a whole head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "ok");
    let lines: Vec<&str> = head.lines().collect();
    for i in 0..MANY {
        let line = format!("x-h{i}: v{i}");
        assert!(lines.contains(&line.as_str()), "{line} missing: {head}");
    }

    let response = http2_response(gateway.addr, "GET", "/headers").await;
    assert_eq!(response.status(), http::StatusCode::OK);
    for i in 0..MANY {
        let value = response.headers().get(format!("x-h{i}"));
        assert_eq!(
            value.and_then(|v| v.to_str().ok()),
            Some(format!("v{i}").as_str())
        );
    }
}
