//! `hold_when_gone` at its edges, behind a real server on 127.0.0.1 (hyper, HTTP/1.1 and
//! HTTP/2 with upgrades): an upload still being sent while its request is held, WebSockets
//! over both versions, and a limit whose turns are not kept while held. The backend is started
//! by `on_down`, once the test lets it.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::Layer;
use tower_monitor::layer::BackendGone;
use tower_monitor::proxy::{Proxy, ProxyBuilder};
use tower_monitor::{BoxError, MinMonitor, ServiceState};

/// What `on_down` serves on the address that refused.
#[derive(Clone, Copy)]
enum Kind {
    /// `POST /echo` echoes its body.
    Http,
    /// A WebSocket echo over HTTP/1.1 (tungstenite).
    WebSocket,
    /// A WebSocket echo over HTTP/2 (RFC 8441's extended CONNECT).
    Http2WebSocket,
}

/// A monitor whose "app" on `addr` is cached up while nothing listens there; `on_down`
/// (counted in `starts`) serves `kind` on `addr` once `gate` gives it a permit.
fn gone_backend(
    addr: SocketAddr,
    kind: Kind,
    starts: &Arc<AtomicUsize>,
    gate: &Arc<Semaphore>,
) -> Arc<MinMonitor> {
    common::cached_up_but_gone(addr, starts, gate, move |listener| async move {
        match kind {
            Kind::Http => common::serve_echo(listener).await,
            Kind::WebSocket => serve_websocket(listener).await,
            Kind::Http2WebSocket => serve_http2_websocket(listener).await,
        }
    })
}

async fn serve_websocket(listener: TcpListener) {
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
}

async fn serve_http2_websocket(listener: TcpListener) {
    use tokio_tungstenite::tungstenite::protocol::Role;
    while let Ok((stream, _)) = listener.accept().await {
        let service = hyper::service::service_fn(|mut request: Request<Incoming>| {
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                let Ok(upgraded) = upgrade.await else { return };
                let io = TokioIo::new(upgraded);
                let mut socket =
                    tokio_tungstenite::WebSocketStream::from_raw_socket(io, Role::Server, None)
                        .await;
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_text() && socket.send(message).await.is_err() {
                        break;
                    }
                }
            });
            let ok = http::Response::new(http_body_util::Empty::<Bytes>::new());
            async move { Ok::<_, Infallible>(ok) }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .enable_connect_protocol()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `proxy` behind the monitor's layer (hold mode, gone answers checked), served on
/// 127.0.0.1:0 (see [`serve`]).
async fn front(monitor: &Arc<MinMonitor>, proxy: ProxyBuilder) -> SocketAddr {
    let service = monitor
        .layer("app")
        .unwrap()
        .hold(Duration::from_secs(10))
        .backend_gone_when(BackendGone::in_response)
        .layer(proxy.build::<Incoming>().unwrap());
    serve(service).await
}

/// `service` served on 127.0.0.1:0 over HTTP/1.1 and HTTP/2 (upgrades and extended CONNECT
/// on).
async fn serve<S, B>(service: S) -> SocketAddr
where
    S: tower::Service<Request<Incoming>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let mut server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                server.http2().enable_connect_protocol();
                let _ = server
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Waits until the proxy has found the backend gone and asked for a start (which the gate
/// holds back): the request is held now.
async fn until_held(monitor: &MinMonitor) {
    common::wait_for_state(
        monitor,
        "app",
        ServiceState::Starting,
        Duration::from_secs(10),
    )
    .await;
}

type Chunks = futures::channel::mpsc::UnboundedSender<Result<Frame<Bytes>, Infallible>>;

/// A POST of a body streamed by the test over HTTP/1.1 to `front`: the sender of its chunks,
/// and its answer (status, `x-cold-start` present, body) to come.
async fn streamed_post(
    front: SocketAddr,
) -> (Chunks, tokio::task::JoinHandle<(StatusCode, bool, Bytes)>) {
    let (chunks, body) = futures::channel::mpsc::unbounded();
    let stream = TcpStream::connect(front).await.unwrap();
    let (mut client, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::post("/echo")
        .header("host", "app.localhost")
        .header("content-type", "text/plain")
        .body(StreamBody::new(body))
        .unwrap();
    let answer = tokio::spawn(async move {
        let answer = client.send_request(request).await.unwrap();
        let held = answer.headers().contains_key("x-cold-start");
        let status = answer.status();
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        (status, held, body)
    });
    (chunks, answer)
}

fn chunk(text: &'static str) -> Result<Frame<Bytes>, Infallible> {
    Ok(Frame::data(Bytes::from_static(text.as_bytes())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_still_being_sent_is_held_whole_and_its_read_timeout_does_not_run_while_held() {
    for http2 in [false, true] {
        let addr = common::refused_addr().await;
        let (starts, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Semaphore::new(0)));
        let monitor = gone_backend(addr, Kind::Http, &starts, &gate);
        // A body read timeout shorter than the hold: it counts the client's slowness only
        // once the backend asks for the body, not while the request waits for the backend.
        let proxy = Proxy::builder(common::url_for(addr))
            .http2(http2)
            .body_read_timeout(Duration::from_millis(200))
            .hold_when_gone(Arc::clone(&monitor), "app", Duration::from_secs(10));
        let front = front(&monitor, proxy).await;
        let (chunks, answer) = streamed_post(front).await;
        chunks.unbounded_send(chunk("sent before, ")).unwrap();
        until_held(&monitor).await;
        chunks.unbounded_send(chunk("sent while held, ")).unwrap();
        // Held for longer than the body read timeout (the time itself is what is tested).
        tokio::time::sleep(Duration::from_millis(500)).await;
        gate.add_permits(1);
        chunks.unbounded_send(chunk("sent after")).unwrap();
        drop(chunks);
        let (status, held, body) = tokio::time::timeout(Duration::from_secs(15), answer)
            .await
            .expect("the hold is bounded")
            .unwrap();
        assert_eq!(status, 200, "http2: {http2}");
        assert!(held, "http2: {http2}");
        assert_eq!(&body[..], b"sent before, sent while held, sent after");
        assert_eq!(starts.load(Ordering::SeqCst), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_that_finds_the_backend_gone_is_held_and_opened_once_it_is_up() {
    // Each way the proxy passes a WebSocket on: an HTTP/1.1 upgrade as it is, an HTTP/2
    // client's as an HTTP/1.1 upgrade with the proxy's key, an HTTP/1.1 client's as an
    // extended CONNECT, and an HTTP/2 client's extended CONNECT as it is.
    for (http2_client, http2_backend) in
        [(false, false), (true, false), (false, true), (true, true)]
    {
        let addr = common::refused_addr().await;
        let (starts, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Semaphore::new(0)));
        let kind = if http2_backend {
            Kind::Http2WebSocket
        } else {
            Kind::WebSocket
        };
        let monitor = gone_backend(addr, kind, &starts, &gate);
        let proxy = Proxy::builder(common::url_for(addr))
            .http2(http2_backend)
            .hold_when_gone(Arc::clone(&monitor), "app", Duration::from_secs(10));
        let front = front(&monitor, proxy).await;
        if http2_client {
            let mut client = h2_client(front).await;
            let opening = tokio::spawn(async move {
                let response = common::extended_connect(&mut client, front, "/chat", None).await;
                (client, response)
            });
            until_held(&monitor).await;
            gate.add_permits(1);
            let (_client, response) = tokio::time::timeout(Duration::from_secs(15), opening)
                .await
                .expect("the hold is bounded")
                .unwrap();
            assert!(response.headers().contains_key("x-cold-start"));
            let mut socket = common::socket_over(response).await;
            common::echoes(&mut socket, "over http/2").await;
        } else {
            // The 101 says the upgrade was held.
            let opening = tokio::spawn(tokio_tungstenite::connect_async(format!(
                "ws://{front}/chat"
            )));
            until_held(&monitor).await;
            gate.add_permits(1);
            let (mut socket, response) = tokio::time::timeout(Duration::from_secs(15), opening)
                .await
                .expect("the hold is bounded")
                .unwrap()
                .expect("the upgrade passes once the backend is up");
            assert_eq!(response.status(), 101);
            assert!(response.headers().contains_key("x-cold-start"));
            common::echoes(&mut socket, "held, then opened").await;
        }
        assert_eq!(starts.load(Ordering::SeqCst), 1);
    }
}

/// An HTTP/2 connection to `front` that has seen its settings (extended CONNECT on): its first
/// request is one the proxy answers itself (a dot-segment path), so it wakes nothing.
async fn h2_client(front: SocketAddr) -> common::Http2Client {
    let stream = TcpStream::connect(front).await.unwrap();
    let (mut client, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let first = Request::get(format!("http://{front}/a/../b"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let answer = client.send_request(first).await.unwrap();
    assert_eq!(answer.status(), 400);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_keeps_no_turn_of_the_limit() {
    let addr = common::refused_addr().await;
    let (starts, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Semaphore::new(0)));
    let monitor = gone_backend(addr, Kind::Http, &starts, &gate);
    // One turn, waited for 300 ms at most; the requests are held for longer than that.
    let proxy = Proxy::builder(common::url_for(addr))
        .max_in_flight(NonZeroUsize::MIN, Duration::from_millis(300))
        .hold_when_gone(Arc::clone(&monitor), "app", Duration::from_secs(10));
    // The proxy alone: every request reaches it (a layer in front would hold those after the
    // first refusal itself), and each takes the one turn in its turn.
    let front = serve(proxy.build::<Incoming>().unwrap()).await;
    let mut posts = Vec::new();
    for _ in 0..3 {
        let (chunks, answer) = streamed_post(front).await;
        chunks.unbounded_send(chunk("held")).unwrap();
        drop(chunks);
        posts.push(answer);
    }
    until_held(&monitor).await;
    // Each found the backend gone in its turn and gave the turn back.
    tokio::time::sleep(Duration::from_millis(600)).await;
    gate.add_permits(1);
    for answer in posts {
        let (status, held, body) = tokio::time::timeout(Duration::from_secs(15), answer)
            .await
            .expect("the hold is bounded")
            .unwrap();
        assert_eq!(status, 200);
        assert!(held);
        assert_eq!(&body[..], b"held");
    }
    assert_eq!(starts.load(Ordering::SeqCst), 1);
}

/// A service name the monitor does not have fails the build, naming it, rather than warning
/// at each refused request (or each WebSocket) that nothing can be held (or counted).
#[test]
fn a_service_name_the_monitor_does_not_have_fails_the_build() {
    let monitor = Arc::new(MinMonitor::new());
    let url = tower_monitor::Url::parse("http://127.0.0.1:8081/").unwrap();
    monitor
        .add(
            "app",
            tower_monitor::MonitoredService::new(url.clone(), Duration::from_secs(30)),
        )
        .unwrap();
    let misspelled = [
        (
            "hold_when_gone",
            Proxy::builder(url.clone()).hold_when_gone(
                Arc::clone(&monitor),
                "ap",
                Duration::from_secs(30),
            ),
        ),
        (
            "keep_awake",
            Proxy::builder(url.clone()).keep_awake(Arc::clone(&monitor), "ap"),
        ),
    ];
    for (option, builder) in misspelled {
        let error = builder.build::<Incoming>().unwrap_err().to_string();
        assert!(
            error.contains(option) && error.contains("\"ap\""),
            "{error}"
        );
    }
    Proxy::builder(url)
        .keep_awake(Arc::clone(&monitor), "app")
        .hold_when_gone(monitor, "app", Duration::from_secs(30))
        .build::<Incoming>()
        .expect("both name a service of the monitor");
}

/// A server shutting down (`MinMonitor::release_held`) answers a request the proxy holds for
/// its gone backend at once: the proxy gives up its hold, and the layer in front answers its
/// 502 with the fallback (503 with `Retry-After`), in the format the request asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_held_for_a_gone_backend_is_answered_503_when_released() {
    let addr = common::refused_addr().await;
    let (starts, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Semaphore::new(0)));
    let monitor = gone_backend(addr, Kind::Http, &starts, &gate);
    let proxy = Proxy::builder(common::url_for(addr)).hold_when_gone(
        Arc::clone(&monitor),
        "app",
        Duration::from_secs(60),
    );
    let front = front(&monitor, proxy).await;
    let stream = TcpStream::connect(front).await.unwrap();
    let (mut client, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::get("/page")
        .header("host", "app.localhost")
        .header("accept", "application/json")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let answer = tokio::spawn(client.send_request(request));
    until_held(&monitor).await;
    common::until(
        Duration::from_secs(5),
        "the request held",
        || monitor.snapshot()[0].requests_held,
        |held| *held == 1,
    )
    .await;

    monitor.release_held();
    let answer = tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .expect("answered at once, not at the hold's 60 s")
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.headers().contains_key("retry-after"));
    assert_eq!(answer.headers()["content-type"], "application/json");
    assert_eq!(monitor.snapshot()[0].requests_held, 0);
    assert_eq!(
        starts.load(Ordering::SeqCst),
        1,
        "started once, by the hold"
    );
}
