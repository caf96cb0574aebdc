//! WebSockets from HTTP/2 clients (RFC 8441: hyper's HTTP/2 client sends the extended CONNECT,
//! tungstenite speaks WebSocket over the stream) through the gateway, on 127.0.0.1: to an
//! HTTP/1.1 backend (translated to an upgrade, the backend's proof checked) and to an HTTP/2
//! one (passed on as it is). An open socket keeps its backend awake and holds the shutdown.

mod common;

use std::net::SocketAddr;

use axum::Router;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower_monitor::config::TriggerRegistry;

fn config(backend: SocketAddr) -> String {
    format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "chat" }} ],
                           "shutdown_grace": "10s" }},
             "services": {{ "chat": {{ "url": "http://{backend}/", "grace_period": "30s" }} }} }}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_over_http2_reaches_an_http1_backend_and_keeps_it_awake() {
    let (backend, server) = common::websocket_echo_backend().await;
    let idle_runs = common::counter();
    let gateway = common::gateway_counting_idle_stops(backend, &idle_runs).await;
    let mut client = common::http2_client(gateway.addr).await;

    let mut socket = common::open_http2_socket(&mut client, gateway.addr, "/chat").await;
    common::echoes(&mut socket, "hello").await;

    // A second socket on the same HTTP/2 connection, while the first stays open.
    let mut second = common::open_http2_socket(&mut client, gateway.addr, "/chat").await;
    common::echoes(&mut second, "two").await;
    second.close(None).await.unwrap();
    drop(second);

    common::keeps_its_backend_awake(socket, &idle_runs).await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subprotocol_crosses_and_the_handshake_headers_stay_on_their_side() {
    let (backend, server) = common::websocket_echo_backend().await;
    let gateway = common::start_gateway(&config(backend), &TriggerRegistry::new()).await;
    let mut client = common::http2_client(gateway.addr).await;
    let response =
        common::extended_connect(&mut client, gateway.addr, "/chat", Some("chat, superchat")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    assert!(response.headers().get("sec-websocket-accept").is_none());
    assert!(response.headers().get("content-length").is_none());
    let mut socket = common::socket_over(response).await;
    common::echoes(&mut socket, "hi").await;
    server.abort();
}

/// An HTTP/1.1 server that answers every request `101` with a wrong `Sec-WebSocket-Accept`.
async fn liar_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
                          connection: upgrade\r\nsec-websocket-accept: bm90IHRoZSBwcm9vZg==\r\n\r\n",
                    )
                    .await;
                let mut rest = [0u8; 64];
                while stream.read(&mut rest).await.unwrap_or(0) > 0 {}
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_does_not_switch_or_switches_without_the_proof_opens_nothing() {
    let backend = common::serve(Router::new().route(
        "/page",
        axum::routing::get(|| async { "a page, not a socket" }),
    ))
    .await;
    let gateway = common::start_gateway(&config(backend.addr), &TriggerRegistry::new()).await;
    let mut client = common::http2_client(gateway.addr).await;

    // A 200 that is not a switch must not open the client's tunnel.
    let response = common::extended_connect(&mut client, gateway.addr, "/page", None).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    // The backend's refusal is passed on as it is.
    let response = common::extended_connect(&mut client, gateway.addr, "/missing", None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // The connection still serves requests.
    let page = Request::get(format!("http://{}/page", gateway.addr))
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(
        client.send_request(page).await.unwrap().status(),
        StatusCode::OK
    );

    // A 101 whose proof is not for the proxy's key is not relayed.
    let liar = common::start_gateway(&config(liar_backend().await), &TriggerRegistry::new()).await;
    let mut client = common::http2_client(liar.addr).await;
    let response = common::extended_connect(&mut client, liar.addr, "/chat", None).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_over_http2_passes_to_an_http2_backend_as_it_is() {
    let (backend, server) = common::http2_websocket_echo_backend().await;
    let gateway = common::gateway_to_http2_backend(backend).await;
    let mut client = common::http2_client(gateway.addr).await;
    // Twice: the first on a fresh upstream connection, the second on the pooled one.
    for round in ["first", "second"] {
        let mut socket = common::open_http2_socket(&mut client, gateway.addr, "/chat").await;
        common::echoes(&mut socket, round).await;
        socket.close(None).await.unwrap();
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_an_open_http2_websocket_and_ends_when_it_closes() {
    let (backend, server) = common::websocket_echo_backend().await;
    let mut gateway = common::start_gateway(&config(backend), &TriggerRegistry::new()).await;
    let mut client = common::http2_client(gateway.addr).await;
    let socket = common::open_http2_socket(&mut client, gateway.addr, "/chat").await;
    common::shutdown_waits_for(&mut gateway, socket).await;
    server.abort();
}

/// An HTTP/2 connection with no request in flight is closed after `header_read_timeout`; one
/// that carries an open WebSocket has one in flight, however quiet the socket is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_http2_websocket_keeps_its_connection_past_the_idle_bound() {
    let (backend, server) = common::websocket_echo_backend().await;
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "chat" }} ],
                           "header_read_timeout": "300ms" }},
             "services": {{ "chat": {{ "url": "http://{backend}/", "grace_period": "30s" }} }} }}"#
    );
    let gateway = common::start_gateway(&config, &TriggerRegistry::new()).await;
    let mut client = common::http2_client(gateway.addr).await;
    let mut socket = common::open_http2_socket(&mut client, gateway.addr, "/chat").await;
    // Quiet for three times the bound: no event to wait for, the bound is the point.
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    common::echoes(&mut socket, "still here").await;
    server.abort();
}
