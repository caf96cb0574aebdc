//! The gateway's reverse proxy with real clients and servers on 127.0.0.1: curl over HTTP/1.1
//! and HTTP/2, the header rules and base path, timeouts and refused connections, and gRPC unary
//! and streaming calls (WebSockets: `gateway_websocket.rs`). The gateway runs in the
//! test's process; every server is stopped when its test ends.

mod common;

use common::curl;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use bytes::Bytes;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_monitor::Url;
use tower_monitor::config::TriggerRegistry;
use tower_monitor::layer::BackendGone;
use tower_monitor::proxy::Proxy;

/// A backend that answers with the request's target and every header, one per line; and
/// `/slow` after 5 s.
async fn echo_backend() -> common::Server {
    common::serve(Router::new().fallback(|request: Request| async move {
        if request.uri().path().ends_with("/slow") {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let mut text = format!("target: {}\n", request.uri());
        for (name, value) in request.headers() {
            text.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
        }
        text
    }))
    .await
}

fn header<'a>(echo: &'a str, name: &str) -> Option<&'a str> {
    echo.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
}

fn echo_config(backend: SocketAddr) -> String {
    format!(
        r#"{{
  "gateway": {{
    "listen": "127.0.0.1:0",
    "routes": [
      {{ "host": "rewrite.localhost", "service": "rewrite" }},
      {{ "path_prefix": "/slow", "service": "slow" }},
      {{ "path_prefix": "/h2/", "service": "h2echo" }},
      {{ "service": "echo" }}
    ],
    "services": {{
      "echo": {{ "forwarded": "both" }},
      "rewrite": {{ "rewrite_host": true, "forwarded": "none" }},
      "slow": {{ "response_timeout": "300ms" }},
      "h2echo": {{ "protocol": "http2" }}
    }}
  }},
  "services": {{
    "echo": {{ "url": "http://{backend}/base/", "grace_period": "30s" }},
    "rewrite": {{ "url": "http://{backend}/", "grace_period": "30s" }},
    "slow": {{ "url": "http://{backend}/", "grace_period": "30s" }},
    "h2echo": {{ "url": "http://{backend}/", "grace_period": "30s" }}
  }}
}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_http1_and_http2_reaches_an_http1_backend_with_the_header_rules() {
    let backend = echo_backend().await;
    let gateway = common::start_gateway(&echo_config(backend.addr), &TriggerRegistry::new()).await;
    let url = format!("http://{}/x?y=1", gateway.addr);
    let authority = gateway.addr.to_string();

    // HTTP/1.1: base path, Host kept, forwarded headers, hop-by-hop gone.
    let echo = curl(&[
        "--http1.1",
        "-H",
        "Connection: keep-alive, x-hop",
        "-H",
        "x-hop: secret",
        "-H",
        "Keep-Alive: timeout=5",
        "-H",
        "Proxy-Authorization: Basic Zm9vOmJhcg==",
        &url,
    ])
    .await;
    assert_eq!(header(&echo, "target"), Some("/base/x?y=1"), "{echo}");
    assert_eq!(header(&echo, "host"), Some(authority.as_str()), "{echo}");
    assert_eq!(
        header(&echo, "x-forwarded-for"),
        Some("127.0.0.1"),
        "{echo}"
    );
    assert_eq!(header(&echo, "x-forwarded-host"), Some(authority.as_str()));
    assert_eq!(header(&echo, "x-forwarded-proto"), Some("http"));
    assert_eq!(
        header(&echo, "forwarded"),
        Some(format!("for=127.0.0.1;host=\"{authority}\";proto=http").as_str())
    );
    for hop in ["x-hop", "keep-alive", "proxy-authorization", "connection"] {
        assert_eq!(header(&echo, hop), None, "{hop} leaked: {echo}");
    }

    // HTTP/2 with prior knowledge, forwarded to the HTTP/1.1 backend as HTTP/1.1; `:authority`
    // becomes the backend's `Host`.
    let reply = curl(&[
        "--http2-prior-knowledge",
        "-w",
        "\nversion %{http_version}",
        &url,
    ])
    .await;
    assert!(reply.ends_with("version 2"), "{reply}");
    assert_eq!(header(&reply, "target"), Some("/base/x?y=1"), "{reply}");
    assert_eq!(header(&reply, "host"), Some(authority.as_str()), "{reply}");
    // The client's address reaches the backend over HTTP/2 as over HTTP/1.1.
    assert_eq!(
        header(&reply, "x-forwarded-for"),
        Some("127.0.0.1"),
        "{reply}"
    );

    // An HTTP/1.1 request to an HTTP/2 backend: the client's `Host` becomes `:authority`.
    let reply = curl(&["--http1.1", &format!("http://{authority}/h2/x")]).await;
    assert_eq!(
        header(&reply, "target"),
        Some(format!("http://{authority}/h2/x").as_str()),
        "{reply}"
    );

    // Routing by HTTP/2's `:authority`; this route's service rewrites `Host` and adds nothing.
    let host = format!("rewrite.localhost:{}", gateway.addr.port());
    let resolve = format!("{host}:127.0.0.1");
    let reply = curl(&[
        "--http2-prior-knowledge",
        "--resolve",
        &resolve,
        &format!("http://{host}/r"),
    ])
    .await;
    assert_eq!(header(&reply, "target"), Some("/r"), "{reply}");
    assert_eq!(
        header(&reply, "host"),
        Some(backend.addr.to_string().as_str())
    );
    assert_eq!(header(&reply, "x-forwarded-for"), None, "{reply}");
    assert_eq!(header(&reply, "forwarded"), None, "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_slower_than_the_response_timeout_is_answered_504() {
    let backend = echo_backend().await;
    let gateway = common::start_gateway(&echo_config(backend.addr), &TriggerRegistry::new()).await;
    // The backend answers after 5 s; curl gives up at 4 s: a 504 can only be the gateway's.
    let status = curl(&[
        "--max-time",
        "4",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://{}/slow", gateway.addr),
    ])
    .await;
    assert_eq!(status, "504");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_that_is_not_a_websocket_is_refused_501_not_tunnelled() {
    // The backend answers every method 200: forwarded, the CONNECT would open a tunnel.
    let backend = echo_backend().await;
    let proxy = Proxy::builder(common::url_for(backend.addr))
        .build::<Full<Bytes>>()
        .unwrap();
    let connect = http::Request::connect("example.test:443")
        .body(Full::default())
        .unwrap();
    assert_eq!(proxy.clone().oneshot(connect).await.unwrap().status(), 501);
    // Through the gateway, no route takes a CONNECT (it has no path): 404.
    let gateway = common::start_gateway(&echo_config(backend.addr), &TriggerRegistry::new()).await;
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(b"CONNECT example.test:443 HTTP/1.1\r\nhost: example.test:443\r\n\r\n")
        .await
        .unwrap();
    let mut reply = vec![0; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut reply))
        .await
        .expect("an answer in time")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
}

fn request() -> http::Request<Full<Bytes>> {
    http::Request::get("/")
        .header("host", "app.localhost")
        .body(Full::default())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_a_502_carrying_backend_gone() {
    let refused = common::refused_addr().await;
    let proxy = Proxy::builder(Url::parse(&format!("http://{refused}/")).unwrap())
        .service_name("gone")
        .build::<Full<Bytes>>()
        .unwrap();
    let response = proxy.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(
        response.extensions().get::<BackendGone>(),
        Some(&BackendGone::new())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_timeout_is_a_504_without_backend_gone() {
    let (hole, _fillers) = common::blackhole().await;
    let addr = hole.local_addr().unwrap();
    let proxy = Proxy::builder(Url::parse(&format!("http://{addr}/")).unwrap())
        .connect_timeout(Duration::from_millis(200))
        .build::<Full<Bytes>>()
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), proxy.oneshot(request()))
        .await
        .expect("the connect timeout bounds the request")
        .unwrap();
    assert_eq!(response.status(), 504);
    assert!(response.extensions().get::<BackendGone>().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_that_mean_forever_forward_instead_of_panicking() {
    let backend = echo_backend().await;
    for http2 in [false, true] {
        let proxy = Proxy::builder(common::url_for(backend.addr))
            .http2(http2)
            .connect_timeout(Duration::MAX)
            .response_timeout(Duration::MAX)
            .build::<Full<Bytes>>()
            .unwrap();
        let response = proxy.oneshot(request()).await.unwrap();
        assert_eq!(response.status(), 200, "http2: {http2}");
    }
}

/// A registry with a `count` trigger type that counts its runs in `runs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_and_server_streaming_calls_pass_through_to_an_http2_backend() {
    use tonic_health::ServingStatus;
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus as Status,
        health_client::HealthClient,
    };

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("chat", ServingStatus::Serving)
        .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "grpc" }} ],
                           "services": {{ "grpc": {{ "protocol": "http2" }} }} }},
             "services": {{ "grpc": {{ "url": "http://{backend}/", "grace_period": "30s" }} }} }}"#
    );
    let gateway = common::start_gateway(&config, &TriggerRegistry::new()).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", gateway.addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let ask = || HealthCheckRequest {
        service: "chat".into(),
    };

    let unary = client.check(ask()).await.expect("a unary call");
    assert_eq!(unary.into_inner().status(), Status::Serving);

    let mut stream = client
        .watch(ask())
        .await
        .expect("a streaming call")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.status(), Status::Serving);
    // The next message comes when the status changes: streamed, not buffered.
    reporter
        .set_service_status("chat", ServingStatus::NotServing)
        .await;
    let second = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.status(), Status::NotServing);
    server.abort();
}

/// A gRPC backend that accepts and never answers: the proxy's 504 reaches a tonic client as
/// UNAVAILABLE, a status it retries on, not as a text body it read as "protocol error:
/// received message with invalid compression flag: 103" (INTERNAL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_call_to_a_silent_backend_is_unavailable_not_a_protocol_error() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let (backend, silent) = silent_backend().await;
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "grpc" }} ],
                           "services": {{ "grpc": {{ "protocol": "http2", "response_timeout": "300ms" }} }} }},
             "services": {{ "grpc": {{ "url": "http://{backend}/", "grace_period": "30s" }} }} }}"#
    );
    let gateway = common::start_gateway(&config, &TriggerRegistry::new()).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", gateway.addr))
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::Unavailable, "gateway timeout"),
        "{status:?}"
    );
    silent.abort();
}

/// A backend that accepts connections and never answers, until the task is aborted.
async fn silent_backend() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            kept.push(connection);
        }
    });
    (backend, silent)
}

/// The proxy's own failure answer to a HEAD has no body: served by hyper over HTTP/2, the text
/// went out after HEAD and curl saw "stream 1 was not closed cleanly: PROTOCOL_ERROR".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_head_is_answered_without_a_body() {
    use http_body_util::BodyExt;

    let (backend, silent) = silent_backend().await;
    let proxy = Proxy::builder(common::url_for(backend))
        .response_timeout(Duration::from_millis(200))
        .build::<Full<Bytes>>()
        .unwrap();
    let head = http::Request::head("/").body(Full::default()).unwrap();
    let (parts, body) = proxy.oneshot(head).await.unwrap().into_parts();
    assert_eq!(parts.status, 504);
    let nothing = body.collect().await.unwrap().to_bytes();
    assert!(nothing.is_empty(), "a body after HEAD: {nothing:?}");
    silent.abort();
}
