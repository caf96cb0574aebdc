//! What one HTTP/2 client connection can make a backend do: at most 128 requests at once (more
//! streams are refused), and a rapid reset (CVE-2023-44487) done slowly enough to slip past
//! h2's own guard ends its connection. A raw HTTP/2 client (frames written by hand, as no
//! client library opens more streams than the server allows), a backend on 127.0.0.1 that
//! holds what it is sent, and a gateway served in the test's process.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{H2Client, h2_frame, h2_get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;
const END_STREAM_AND_HEADERS: u8 = 0x1 | 0x4;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;

/// Each frame's wait, and each backend request's: long, for a loaded machine.
const WAIT: Duration = Duration::from_secs(10);

fn reset(stream: u32) -> Vec<u8> {
    h2_frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes())
}

/// A backend that tells each request's path on the channel, answers `/ok` at once and holds
/// any other request until the gateway lets its connection go.
async fn backend() -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let (addr, paths, _) = backend_telling_closes().await;
    (addr, paths)
}

/// [`backend`], also telling on the second channel each held request whose connection the
/// gateway let go.
async fn backend_telling_closes() -> (
    SocketAddr,
    mpsc::UnboundedReceiver<String>,
    mpsc::UnboundedReceiver<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, paths) = mpsc::unbounded_channel();
    let (let_go, closes) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            let let_go = let_go.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                while let Some(head) = common::read_head(&mut stream, &mut pending).await {
                    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                    let _ = seen.send(path.clone());
                    if path != "/ok" {
                        let _ = stream.read(&mut [0; 1]).await;
                        let _ = let_go.send(());
                        return;
                    }
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, paths, closes)
}

async fn gateway(backend: SocketAddr) -> common::InProcessGateway {
    common::gateway_to_app(&format!("http://{backend}/"), "{}").await
}

/// A client that opens 200 streams at once has 128 of them reach the backend and the rest
/// refused, which tells it to retry them: as nginx by default. hyper's default let 200 at once
/// reach the backend from one client connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connection_has_at_most_128_requests_at_once_at_the_backend() {
    let (backend, mut paths) = backend().await;
    let gateway = gateway(backend).await;
    let mut client = H2Client::connect(gateway.addr).await;
    let streams: Vec<u8> = (0..200).flat_map(|n| h2_get(1 + 2 * n, "/held")).collect();
    client.write.write_all(&streams).await.unwrap();
    for refused in 128..200 {
        let reset = client.next_of(RST_STREAM).await.expect("a refused stream");
        assert_eq!(reset.stream, 1 + 2 * refused, "refused in order");
        assert_eq!(reset.payload, REFUSED_STREAM.to_be_bytes());
    }
    for _ in 0..128 {
        let path = tokio::time::timeout(WAIT, paths.recv()).await;
        assert_eq!(
            path.expect("128 requests reach the backend").unwrap(),
            "/held"
        );
    }
}

/// A client that resets each request once it has gone out to the backend is past h2's guard
/// (which counts streams reset before they are taken) and past the stream limit (a reset
/// stream no longer counts): without a bound of the gateway's own, its connection went on,
/// and 400 such requests in under a second were 400 at once at the backend. Past 256 resets
/// its connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_resets_each_request_once_forwarded_has_its_connection_closed() {
    let (backend, mut paths) = backend().await;
    let gateway = gateway(backend).await;
    let mut client = H2Client::connect(gateway.addr).await;
    let mut forwarded = 0;
    let mut closed = false;
    for n in 0..1000 {
        let stream = 1 + 2 * n;
        if client
            .write
            .write_all(&h2_get(stream, "/held"))
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        let next = tokio::time::timeout(WAIT, async {
            tokio::select! {
                path = paths.recv() => path.is_some(),
                () = client.closed() => false,
            }
        });
        if !next.await.expect("neither forwarded nor closed") {
            closed = true;
            break;
        }
        forwarded += 1;
        if client.write.write_all(&reset(stream)).await.is_err() {
            closed = true;
            break;
        }
    }
    assert!(closed, "the connection went on for {forwarded} resets");
    assert!(forwarded <= 260, "{forwarded} requests forwarded");
}

/// A client that cancels as many requests as it lets finish keeps its connection, however
/// many: only a client that mostly resets what it asks for is taken for an attack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_cancels_some_requests_keeps_its_connection() {
    let (backend, mut paths) = backend().await;
    let gateway = gateway(backend).await;
    let mut client = H2Client::connect(gateway.addr).await;
    for n in 0..300 {
        let (answered, cancelled) = (1 + 4 * n, 3 + 4 * n);
        client
            .write
            .write_all(&h2_get(answered, "/ok"))
            .await
            .unwrap();
        let head = client.next_of(HEADERS).await.expect("an answer");
        assert_eq!(head.stream, answered);
        client
            .write
            .write_all(&h2_get(cancelled, "/held"))
            .await
            .unwrap();
        let path = tokio::time::timeout(WAIT, async {
            // The answered request's path may come first.
            loop {
                match paths.recv().await.unwrap() {
                    path if path == "/held" => return path,
                    _ => continue,
                }
            }
        });
        path.await.expect("forwarded");
        client.write.write_all(&reset(cancelled)).await.unwrap();
    }
    // A PING's answer comes after anything the gateway sent before it: no GOAWAY came.
    client
        .write
        .write_all(&h2_frame(0x6, 0, 0, &[7; 8]))
        .await
        .unwrap();
    while let Some(frame) = client.frames.recv().await {
        assert_ne!(frame.kind, GOAWAY, "the connection was closed");
        if frame.kind == 0x6 {
            return;
        }
    }
    panic!("the connection was closed");
}

/// A client that cancels requests only after waiting a while for them (a long poll timing
/// out, a gRPC deadline of seconds, a page left while its requests are held for a cold start)
/// keeps its connection, however many it cancels: a rapid reset resets each request as soon
/// as it has gone out, and one waited for is as costly to the client as to the backend. Three
/// rounds of 128 requests reset after a second: 384 resets, none answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_cancels_requests_it_waited_for_keeps_its_connection() {
    let (backend, mut paths, mut closes) = backend_telling_closes().await;
    let gateway = gateway(backend).await;
    let mut client = H2Client::connect(gateway.addr).await;
    for round in 0..3 {
        let streams: Vec<u32> = (0..128).map(|n| 1 + 2 * (128 * round + n)).collect();
        let requests: Vec<u8> = streams.iter().flat_map(|&s| h2_get(s, "/held")).collect();
        client.write.write_all(&requests).await.unwrap();
        for _ in 0..128 {
            let path = tokio::time::timeout(WAIT, paths.recv()).await;
            assert_eq!(path.expect("forwarded").unwrap(), "/held");
        }
        // The wait is what is tested: the requests are a second old when reset.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let resets: Vec<u8> = streams.iter().flat_map(|&s| reset(s)).collect();
        client.write.write_all(&resets).await.unwrap();
        // Each reset seen through: its request dropped, its backend connection let go.
        for _ in 0..128 {
            let closed = tokio::time::timeout(WAIT, closes.recv()).await;
            closed.expect("the backend let go").unwrap();
        }
    }
    // A request after them all is answered: the connection is still open.
    let stream = 1 + 2 * 3 * 128;
    let _ = client.write.write_all(&h2_get(stream, "/ok")).await;
    let head = client.next_of(HEADERS).await;
    assert_eq!(head.expect("the connection was closed").stream, stream);
}

/// A gRPC call (`POST`, `content-type: application/grpc`) on stream `stream`, with no body.
fn grpc_call(stream: u32) -> Vec<u8> {
    let path = b"/pkg.Service/Call";
    // `:method POST`, `:scheme http`, then `:path`, `:authority` and `content-type` as
    // literals with their names from the static table (index 31, past a 4-bit prefix).
    let mut block = vec![0x83, 0x86, 0x04, path.len() as u8];
    block.extend_from_slice(path);
    block.extend_from_slice(&[0x01, 3]);
    block.extend_from_slice(b"app");
    block.extend_from_slice(&[0x0f, 31 - 15, 16]);
    block.extend_from_slice(b"application/grpc");
    h2_frame(HEADERS, END_STREAM_AND_HEADERS, stream, &block)
}

/// A gRPC client that multiplexes calls with short deadlines on one connection resets every
/// call held for a cold start, each well within a second: none reached a backend, and its
/// connection is kept (closing it would end its calls to other services too). 300 resets, past
/// the 256 that close a connection whose resets reached the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_resets_requests_held_for_a_cold_start_keeps_its_connection() {
    // A backend that never comes up: `on_down` succeeds, its address refuses connections.
    let backend = common::refused_addr().await;
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                           "services": {{ "app": {{ "hold": {{ "max_wait": "60s" }} }} }} }},
             "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s",
                                      "start_timeout": "120s", "on_down": {{ "type": "count" }} }} }} }}"#
    );
    let registry = common::counting_registry(common::counter());
    let gateway = common::start_gateway(&config, &registry).await;
    let held = || {
        let services = gateway.monitor.snapshot();
        services.iter().map(|s| s.requests_held).sum::<usize>()
    };
    let mut client = H2Client::connect(gateway.addr).await;
    for round in 0..3 {
        let streams: Vec<u32> = (0..100).map(|n| 1 + 2 * (100 * round + n)).collect();
        let sent = tokio::time::Instant::now();
        let calls: Vec<u8> = streams.iter().flat_map(|&s| grpc_call(s)).collect();
        client.write.write_all(&calls).await.unwrap();
        common::until(WAIT, "held", held, |&n| n == 100).await;
        let resets: Vec<u8> = streams.iter().flat_map(|&s| reset(s)).collect();
        client.write.write_all(&resets).await.unwrap();
        // Each reset seen through: its request dropped, its place freed.
        common::until(WAIT, "let go", held, |&n| n == 0).await;
        assert!(
            sent.elapsed() < Duration::from_millis(900),
            "round {round} took {:?}: its resets were not premature",
            sent.elapsed()
        );
    }
    // A PING's answer comes after anything the gateway sent before it: no GOAWAY came.
    client
        .write
        .write_all(&h2_frame(0x6, 0, 0, &[7; 8]))
        .await
        .unwrap();
    let ping = tokio::time::timeout(WAIT, async {
        while let Some(frame) = client.frames.recv().await {
            assert_ne!(frame.kind, GOAWAY, "the connection was closed");
            if frame.kind == 0x6 {
                return true;
            }
        }
        false
    });
    assert!(ping.await.expect("no answer"), "the connection was closed");
}
