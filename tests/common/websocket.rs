//! WebSocket helpers on 127.0.0.1: echo backends over HTTP/1.1 and HTTP/2 (RFC 8441), and an
//! HTTP/2 client that opens WebSockets with an extended CONNECT.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode, Version};
use http_body_util::Empty;
use hyper::ext::Protocol;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{
    Request as WsRequest, Response as WsResponse,
};
use tokio_tungstenite::tungstenite::protocol::Role;

/// A WebSocket over an HTTP/2 stream.
pub type Http2Socket = WebSocketStream<TokioIo<Upgraded>>;

/// An HTTP/2 client connection.
pub type Http2Client = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

/// Echoes the text messages of `socket` until it closes.
async fn echo<S>(mut socket: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(message)) = socket.next().await {
        if message.is_text() && socket.send(message).await.is_err() {
            break;
        }
    }
}

/// An HTTP/1.1 WebSocket echo server (text messages) that picks the first subprotocol offered,
/// until its task is aborted.
pub async fn websocket_echo_backend() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
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
                if let Ok(socket) = tokio_tungstenite::accept_hdr_async(stream, pick).await {
                    echo(socket).await;
                }
            });
        }
    });
    (backend, server)
}

/// An HTTP/2 cleartext server that accepts WebSockets over HTTP/2 (RFC 8441) on any path and
/// echoes their text messages; other requests get 404. Until its task is aborted.
pub async fn http2_websocket_echo_backend() -> (SocketAddr, JoinHandle<()>) {
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
                            if let Ok(upgraded) = upgrade.await {
                                let io = TokioIo::new(upgraded);
                                echo(
                                    WebSocketStream::from_raw_socket(io, Role::Server, None).await,
                                )
                                .await;
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

/// An HTTP/2 (prior knowledge) connection to `addr`, after one request, so that the server's
/// settings (extended CONNECT enabled or not) are known.
pub async fn http2_client(addr: SocketAddr) -> Http2Client {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut client, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let first = Request::get(format!("http://{addr}/"))
        .body(Empty::new())
        .unwrap();
    let _ = client.send_request(first).await;
    client
}

/// Asks for a WebSocket on `path` over `client` with an extended CONNECT, offering
/// `subprotocols` if given; the answer (bounded wait).
pub async fn extended_connect(
    client: &mut Http2Client,
    addr: SocketAddr,
    path: &str,
    subprotocols: Option<&str>,
) -> http::Response<hyper::body::Incoming> {
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .version(Version::HTTP_2)
        .uri(format!("http://{addr}{path}"))
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

/// The WebSocket a `200` answer to an extended CONNECT opened.
pub async fn socket_over(response: http::Response<hyper::body::Incoming>) -> Http2Socket {
    assert_eq!(response.status(), StatusCode::OK, "the WebSocket opens");
    let upgraded = hyper::upgrade::on(response)
        .await
        .expect("the stream opens");
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await
}

/// Opens a WebSocket on `path` over `client`, expecting it to open.
pub async fn open_http2_socket(
    client: &mut Http2Client,
    addr: SocketAddr,
    path: &str,
) -> Http2Socket {
    socket_over(extended_connect(client, addr, path, None).await).await
}

/// Sends `text` on `socket` and checks that it comes back.
pub async fn echoes<S>(socket: &mut WebSocketStream<S>, text: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio_tungstenite::tungstenite::Message;
    socket.send(Message::text(text)).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("an echo in time");
    assert_eq!(echo.unwrap().unwrap(), Message::text(text));
}

/// Shuts `gateway` down while `socket` (open through it) is: the socket still works and the
/// shutdown waits for it, then ends, everything closed, once the socket closes.
pub async fn shutdown_waits_for<S>(
    gateway: &mut super::InProcessGateway,
    mut socket: WebSocketStream<S>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    echoes(&mut socket, "before").await;
    gateway.shut_down();
    // Shut down, but the socket is open: still serving it. (Watched for a while: what must not
    // happen has no event to await.)
    assert_eq!(
        gateway.ended_within(Duration::from_millis(500)).await,
        None,
        "shutdown did not wait for the open WebSocket"
    );
    echoes(&mut socket, "during").await;
    socket.close(None).await.unwrap();
    drop(socket);
    assert_eq!(
        gateway.ended_within(Duration::from_secs(5)).await,
        Some(true),
        "shutdown ends once the socket closed, everything within the grace"
    );
}

/// With `socket` open and quiet for four idle times (of 300 ms), `on_idle` (counted in
/// `idle_runs`) does not run and the socket still echoes; once it closes, `on_idle` runs once.
pub async fn keeps_its_backend_awake<S>(
    mut socket: WebSocketStream<S>,
    idle_runs: &std::sync::atomic::AtomicUsize,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // Something that must not happen can only be watched for a while.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(super::count(idle_runs), 0, "stopped with a socket open");
    echoes(&mut socket, "still there").await;
    // Closed: now the idle time runs, and the backend is stopped.
    socket.close(None).await.unwrap();
    drop(socket);
    super::until(
        Duration::from_secs(5),
        "on_idle after the socket closed",
        || super::count(idle_runs),
        |&runs| runs == 1,
    )
    .await;
}
