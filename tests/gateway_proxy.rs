//! The gateway's reverse proxy with real clients and servers on 127.0.0.1: curl over HTTP/1.1
//! and HTTP/2, the header rules and base path, timeouts and refused connections, a WebSocket
//! that keeps its backend awake, and gRPC unary and streaming calls. The gateway runs in the
//! test's process; every server is stopped when its test ends.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::Full;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceExt;
use tower_monitor::config::TriggerRegistry;
use tower_monitor::gateway::Gateway;
use tower_monitor::layer::BackendGone;
use tower_monitor::proxy::Proxy;
use tower_monitor::{BoxError, Trigger, Url};

/// A gateway served in this process until dropped.
struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<bool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        self.task.abort();
    }
}

async fn start_gateway(config: &str, registry: &TriggerRegistry) -> Running {
    let gateway = Gateway::from_config(config, registry).expect("a valid configuration");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(gateway.serve(listener, async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

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

/// Runs curl (bounded) with `args`; returns its standard output.
async fn curl(args: &[&str]) -> String {
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(args)
        .output()
        .await
        .expect("curl is installed (.ci/run installs it)");
    assert!(
        output.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
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
    let gateway = start_gateway(&echo_config(backend.addr), &TriggerRegistry::new()).await;
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
    let gateway = start_gateway(&echo_config(backend.addr), &TriggerRegistry::new()).await;
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

/// A registry with a `count` trigger type that counts its runs in `runs`.
fn counting_registry(runs: Arc<AtomicUsize>) -> TriggerRegistry {
    let mut registry = TriggerRegistry::new();
    registry.register("count", move |_spec| {
        let runs = runs.clone();
        Ok(Arc::new(tower_monitor::trigger::from_fn(move || {
            runs.fetch_add(1, Ordering::SeqCst);
            async { Ok::<(), BoxError>(()) }
        })) as Arc<dyn Trigger>)
    });
    registry
}

async fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let give_up = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < give_up, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A WebSocket echo server on 127.0.0.1 (text messages), until its task is aborted.
async fn websocket_echo_backend() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_text() && socket.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (backend, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_an_open_websocket_within_the_grace() {
    let (backend, server) = websocket_echo_backend().await;
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "chat" }} ],
                           "shutdown_grace": "10s" }},
             "services": {{ "chat": {{ "url": "http://{backend}/", "grace_period": "30s" }} }} }}"#
    );
    let gateway = Gateway::from_config(&config, &TriggerRegistry::new()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let mut serving = tokio::spawn(gateway.serve(listener, async move {
        let _ = stopped.await;
    }));
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/chat"))
        .await
        .unwrap();
    socket.send(Message::text("before")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("before")
    );

    stop.send(()).unwrap();
    // Shut down, but the socket is open: still serving it. (Watched for a while: what must not
    // happen has no event to await.)
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut serving)
            .await
            .is_err(),
        "shutdown did not wait for the open WebSocket"
    );
    socket.send(Message::text("during")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("during")
    );

    socket.close(None).await.unwrap();
    drop(socket);
    let drained = tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("shutdown ends once the socket closed")
        .unwrap();
    assert!(drained, "everything closed within the grace");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_echoes_through_the_gateway_and_keeps_its_backend_awake() {
    let (backend, server) = websocket_echo_backend().await;
    let idle_runs = Arc::new(AtomicUsize::new(0));
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "chat" }} ] }},
             "services": {{ "chat": {{ "url": "http://{backend}/", "grace_period": "30s",
                 "on_idle": {{ "after": "300ms", "trigger": {{ "type": "count" }} }} }} }} }}"#
    );
    let gateway = start_gateway(&config, &counting_registry(idle_runs.clone())).await;

    let (mut socket, response) =
        tokio_tungstenite::connect_async(format!("ws://{}/chat", gateway.addr))
            .await
            .expect("the upgrade passes through the gateway");
    assert_eq!(response.status(), 101);
    socket.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("hello")
    );

    // Four idle times with the socket open and quiet: the backend is not stopped. (Something
    // that must not happen can only be watched for a while.)
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        idle_runs.load(Ordering::SeqCst),
        0,
        "stopped with a socket open"
    );
    socket.send(Message::text("still there")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("still there")
    );

    // Closed: now the idle time runs, and the backend is stopped.
    socket.close(None).await.unwrap();
    drop(socket);
    until(
        "on_idle after the socket closed",
        Duration::from_secs(5),
        || idle_runs.load(Ordering::SeqCst) == 1,
    )
    .await;
    server.abort();
}

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
    let gateway = start_gateway(&config, &TriggerRegistry::new()).await;
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
