//! Review: WebSockets over HTTP/2 (RFC 8441) through the gateway to HTTP/1.1 backends: the
//! subprotocol crosses, a `101` without the proof is refused, and a shutdown waits for an open
//! HTTP/2 socket and ends once it closes.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode, Version};
use http_body_util::Empty;
use hyper::ext::Protocol;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{
    Request as WsRequest, Response as WsResponse,
};
use tokio_tungstenite::tungstenite::protocol::Role;
use tower_monitor::config::TriggerRegistry;
use tower_monitor::gateway::Gateway;

/// An HTTP/1.1 WebSocket echo server that picks the first subprotocol offered.
async fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                // tungstenite's callback type, not ours: its error is a whole response.
                #[allow(clippy::result_large_err)]
                let pick = |request: &WsRequest, mut response: WsResponse| {
                    if let Some(offered) = request.headers().get("sec-websocket-protocol") {
                        let first = offered.to_str().unwrap().split(',').next().unwrap().trim();
                        response
                            .headers_mut()
                            .insert("sec-websocket-protocol", first.parse().unwrap());
                    }
                    Ok(response)
                };
                let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, pick).await else {
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
    addr
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

async fn http2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut client, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    // One request first, so that the server's settings (extended CONNECT) are known.
    let first = Request::get(format!("http://{addr}/"))
        .body(Empty::new())
        .unwrap();
    let _ = client.send_request(first).await;
    client
}

async fn connect(
    client: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    subprotocols: Option<&str>,
) -> http::Response<hyper::body::Incoming> {
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .version(Version::HTTP_2)
        .uri(format!("http://{addr}/chat"))
        .header("sec-websocket-version", "13");
    if let Some(offered) = subprotocols {
        request = request.header("sec-websocket-protocol", offered);
    }
    let mut request = request.body(Empty::new()).unwrap();
    request
        .extensions_mut()
        .insert(Protocol::from_static("websocket"));
    tokio::time::timeout(Duration::from_secs(10), client.send_request(request))
        .await
        .expect("an answer in time")
        .expect("an answer")
}

fn config(backend: SocketAddr) -> String {
    format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "chat" }} ],
                           "shutdown_grace": "10s" }},
             "services": {{ "chat": {{ "url": "http://{backend}/", "grace_period": "30s" }} }} }}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subprotocol_crosses_and_a_101_without_the_proof_is_refused() {
    let gateway =
        common::start_gateway(&config(echo_backend().await), &TriggerRegistry::new()).await;
    let mut client = http2_client(gateway.addr).await;
    let response = connect(&mut client, gateway.addr, Some("chat, superchat")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    assert!(response.headers().get("sec-websocket-accept").is_none());
    assert!(response.headers().get("content-length").is_none());

    let liar = common::start_gateway(&config(liar_backend().await), &TriggerRegistry::new()).await;
    let mut client = http2_client(liar.addr).await;
    let response = connect(&mut client, liar.addr, None).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_an_open_http2_websocket_and_ends_when_it_closes() {
    let gateway =
        Gateway::from_config(&config(echo_backend().await), &TriggerRegistry::new()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let mut serving = tokio::spawn(gateway.serve(listener, async move {
        let _ = stopped.await;
    }));
    let mut client = http2_client(addr).await;
    let response = connect(&mut client, addr, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let upgraded = hyper::upgrade::on(response).await.unwrap();
    let mut socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
    socket.send(Message::text("before")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("before")
    );

    stop.send(()).unwrap();
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
}
