//! WebSockets through the gateway, with real clients and servers on 127.0.0.1, over HTTP/1.1
//! (tokio-tungstenite) and over HTTP/2 (RFC 8441: hyper's HTTP/2 client sends the extended
//! CONNECT, tungstenite speaks WebSocket over the stream), to HTTP/1.1 and HTTP/2 backends. An
//! open socket keeps its backend awake and holds the shutdown within its grace.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode, Version};
use http_body_util::Empty;
use hyper::ext::Protocol;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;
use tower_monitor::config::TriggerRegistry;
use tower_monitor::gateway::Gateway;

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
    let idle_runs = common::counter();
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "chat" }} ] }},
             "services": {{ "chat": {{ "url": "http://{backend}/", "grace_period": "30s",
                 "on_idle": {{ "after": "300ms", "trigger": {{ "type": "count" }} }} }} }} }}"#
    );
    let gateway =
        common::start_gateway(&config, &common::counting_registry(idle_runs.clone())).await;

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
    assert_eq!(common::count(&idle_runs), 0, "stopped with a socket open");
    socket.send(Message::text("still there")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("still there")
    );

    // Closed: now the idle time runs, and the backend is stopped.
    socket.close(None).await.unwrap();
    drop(socket);
    common::until(
        Duration::from_secs(5),
        "on_idle after the socket closed",
        || common::count(&idle_runs),
        |&runs| runs == 1,
    )
    .await;
    server.abort();
}

/// An HTTP/2 (prior knowledge) connection to `addr`, after one request, so the server's
/// settings (extended CONNECT enabled or not) are known.
async fn http2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut client, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let first = Request::get(format!("http://{addr}/"))
        .body(Empty::new())
        .unwrap();
    client.send_request(first).await.unwrap();
    client
}

/// Opens a WebSocket on `path` over `client` with an extended CONNECT: the response, and the
/// socket when the answer was 200.
async fn connect_websocket_h2(
    client: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    path: &str,
) -> (StatusCode, Option<WebSocketStream<TokioIo<Upgraded>>>) {
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .version(Version::HTTP_2)
        .uri(format!("http://{addr}{path}"))
        .header("sec-websocket-version", "13")
        .body(Empty::new())
        .unwrap();
    request
        .extensions_mut()
        .insert(Protocol::from_static("websocket"));
    let response = tokio::time::timeout(Duration::from_secs(10), client.send_request(request))
        .await
        .expect("an answer in time")
        .expect("an answer");
    let status = response.status();
    if status != StatusCode::OK {
        return (status, None);
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .expect("the stream opens");
    let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
    (status, Some(socket))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_over_http2_reaches_an_http1_backend_and_keeps_it_awake() {
    let (backend, server) = websocket_echo_backend().await;
    let idle_runs = common::counter();
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "chat" }} ] }},
             "services": {{ "chat": {{ "url": "http://{backend}/", "grace_period": "30s",
                 "on_idle": {{ "after": "300ms", "trigger": {{ "type": "count" }} }} }} }} }}"#
    );
    let gateway =
        common::start_gateway(&config, &common::counting_registry(idle_runs.clone())).await;
    let mut client = http2_client(gateway.addr).await;

    let (status, socket) = connect_websocket_h2(&mut client, gateway.addr, "/chat").await;
    assert_eq!(status, StatusCode::OK, "the extended CONNECT is accepted");
    let mut socket = socket.unwrap();
    socket.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("hello")
    );

    // A second socket on the same HTTP/2 connection, while the first stays open.
    let (_, second) = connect_websocket_h2(&mut client, gateway.addr, "/chat").await;
    let mut second = second.expect("a second stream opens");
    second.send(Message::text("two")).await.unwrap();
    assert_eq!(second.next().await.unwrap().unwrap(), Message::text("two"));
    second.close(None).await.unwrap();
    drop(second);

    // Four idle times with a socket open and quiet: the backend is not stopped. (Something
    // that must not happen can only be watched for a while.)
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(common::count(&idle_runs), 0, "stopped with a socket open");
    socket.send(Message::text("still there")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("still there")
    );

    socket.close(None).await.unwrap();
    drop(socket);
    common::until(
        Duration::from_secs(5),
        "on_idle after the socket closed",
        || common::count(&idle_runs),
        |&runs| runs == 1,
    )
    .await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_over_http2_to_a_backend_that_does_not_switch_is_refused_not_opened() {
    let backend = common::serve(Router::new().route(
        "/page",
        axum::routing::get(|| async { "a page, not a socket" }),
    ))
    .await;
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "plain" }} ] }},
             "services": {{ "plain": {{ "url": "http://{}/", "grace_period": "30s" }} }} }}"#,
        backend.addr
    );
    let gateway = common::start_gateway(&config, &TriggerRegistry::new()).await;
    let mut client = http2_client(gateway.addr).await;

    // A 200 that is not a switch must not open the client's tunnel.
    let (status, _) = connect_websocket_h2(&mut client, gateway.addr, "/page").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    // The backend's refusal is passed on as it is.
    let (status, _) = connect_websocket_h2(&mut client, gateway.addr, "/missing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The connection still serves requests.
    let page = Request::get(format!("http://{}/page", gateway.addr))
        .body(Empty::new())
        .unwrap();
    assert_eq!(
        client.send_request(page).await.unwrap().status(),
        StatusCode::OK
    );
}

/// An HTTP/2 cleartext server on 127.0.0.1 that accepts WebSockets over HTTP/2 (RFC 8441) on
/// any path and echoes their text messages; other requests get 404.
async fn http2_websocket_echo_backend() -> (SocketAddr, JoinHandle<()>) {
    use hyper::server::conn::http2;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service =
                hyper::service::service_fn(|mut request: Request<hyper::body::Incoming>| {
                    let websocket = request.method() == Method::CONNECT
                        && request.extensions().get::<Protocol>().map(Protocol::as_str)
                            == Some("websocket");
                    let status = if websocket {
                        let upgrade = hyper::upgrade::on(&mut request);
                        tokio::spawn(async move {
                            let Ok(upgraded) = upgrade.await else { return };
                            let io = TokioIo::new(upgraded);
                            let mut socket =
                                WebSocketStream::from_raw_socket(io, Role::Server, None).await;
                            while let Some(Ok(message)) = socket.next().await {
                                if message.is_text() && socket.send(message).await.is_err() {
                                    break;
                                }
                            }
                        });
                        StatusCode::OK
                    } else {
                        StatusCode::NOT_FOUND
                    };
                    let mut response = http::Response::new(Empty::<Bytes>::new());
                    *response.status_mut() = status;
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
            tokio::spawn(async move {
                let _ = http2::Builder::new(TokioExecutor::new())
                    .enable_connect_protocol()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (backend, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_over_http2_and_http1_reach_an_http2_backend() {
    let (backend, server) = http2_websocket_echo_backend().await;
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "h2app" }} ],
                           "services": {{ "h2app": {{ "protocol": "http2" }} }} }},
             "services": {{ "h2app": {{ "url": "http://{backend}/", "grace_period": "30s" }} }} }}"#
    );
    let gateway = common::start_gateway(&config, &TriggerRegistry::new()).await;
    let mut client = http2_client(gateway.addr).await;
    // Twice: the first on a fresh upstream connection, the second on the pooled one.
    for round in ["first", "second"] {
        let (status, socket) = connect_websocket_h2(&mut client, gateway.addr, "/chat").await;
        assert_eq!(status, StatusCode::OK, "{round}");
        let mut socket = socket.unwrap();
        socket.send(Message::text(round)).await.unwrap();
        assert_eq!(socket.next().await.unwrap().unwrap(), Message::text(round));
        socket.close(None).await.unwrap();
    }
    // An HTTP/1.1 client's WebSocket becomes an extended CONNECT, and the backend's 200 a 101
    // with the proof of the client's key (tungstenite checks it).
    let (mut socket, response) =
        tokio_tungstenite::connect_async(format!("ws://{}/chat", gateway.addr))
            .await
            .expect("the HTTP/1.1 handshake completes");
    assert_eq!(response.status(), 101);
    socket.send(Message::text("from http/1.1")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("from http/1.1")
    );
    server.abort();
}
