//! How large a request head the gateway takes, over either HTTP version: up to 64 KiB it is
//! forwarded, past it the answer is 431, and over HTTP/2 the connection goes on. Found in the
//! field: over HTTP/2 a header list past hyper's default bound (16 KiB) in two fields made the
//! whole connection fail (h2's `COMPRESSION_ERROR`), as did any past 64 KiB, where HTTP/1.1
//! took heads up to 408 KiB. A raw h2 client (through a relay on 127.0.0.1 that records the
//! frames it sends, so that each test knows whether its header block came in one `HEADERS`
//! frame or with `CONTINUATION`s) and raw HTTP/1.1, to a gateway served in the test's process.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the relay saw of each frame a client sent: type, flags, stream.
type Frames = Arc<Mutex<Vec<(u8, u8, u32)>>>;

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

/// A backend (requests without a body) that records each head and answers `ok`.
async fn backend() -> (SocketAddr, common::Heads) {
    common::recording_backend(|_| b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"[..].into())
        .await
}

/// A relay to `to` that records the frames each HTTP/2 client sends (after its preface) before
/// passing them on.
async fn relay(to: SocketAddr) -> (SocketAddr, Frames) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let frames = Frames::default();
    let seen = frames.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(to).await.unwrap();
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
            });
            let seen = seen.clone();
            tokio::spawn(async move {
                let (mut pending, mut preface) = (Vec::new(), 24);
                let mut buffer = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = from_client.read(&mut buffer).await {
                    pending.extend_from_slice(&buffer[..n]);
                    let skip = preface.min(pending.len());
                    pending.drain(..skip);
                    preface -= skip;
                    while pending.len() >= 9 {
                        let length = u32::from_be_bytes([0, pending[0], pending[1], pending[2]]);
                        let length = length as usize;
                        if pending.len() < 9 + length {
                            break;
                        }
                        let stream = u32::from_be_bytes(pending[5..9].try_into().unwrap());
                        seen.lock()
                            .unwrap()
                            .push((pending[3], pending[4], stream & 0x7fff_ffff));
                        pending.drain(..9 + length);
                    }
                    if to_server.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, frames)
}

async fn gateway(backend: SocketAddr) -> common::InProcessGateway {
    common::gateway_to_app(&format!("http://{backend}/"), "{}").await
}

/// An HTTP/2 connection (prior knowledge) to `addr` with the h2 crate, which sends a header
/// block as its size makes it: one `HEADERS` frame up to 16 KiB, `CONTINUATION`s past it.
async fn h2_client(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    client
}

/// `GET path` with `fields` on `client`'s connection: its stream, and its status or the error
/// that ended it.
async fn h2_get(
    client: &h2::client::SendRequest<Bytes>,
    path: &str,
    fields: &[(String, String)],
) -> (u32, Result<u16, h2::Error>) {
    let mut client = client
        .clone()
        .ready()
        .await
        .expect("the connection is open");
    let mut request = http::Request::get(format!("http://app{path}"));
    for (name, value) in fields {
        request = request.header(name, value);
    }
    let (response, _) = client
        .send_request(request.body(()).unwrap(), true)
        .expect("sent");
    let stream = response.stream_id().as_u32();
    let answer = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("an answer in time");
    (stream, answer.map(|response| response.status().as_u16()))
}

/// The header block frames the client sent on `stream`: (`CONTINUATION`, `END_HEADERS`) each.
fn header_frames(frames: &Frames, stream: u32) -> Vec<(bool, bool)> {
    let frames = frames.lock().unwrap();
    frames
        .iter()
        .filter(|(kind, _, id)| *id == stream && matches!(*kind, HEADERS | CONTINUATION))
        .map(|(kind, flags, _)| (*kind == CONTINUATION, flags & END_HEADERS != 0))
        .collect()
}

fn field(name: &str, value: char, length: usize) -> (String, String) {
    (name.to_string(), value.to_string().repeat(length))
}

/// A header list past the bound is answered 431 on its own stream, never forwarded, and the
/// connection goes on, whether the block came in one `HEADERS` frame (2000 small fields, 72
/// KiB as RFC 9113 counts them, 8 KiB on the wire) or with `CONTINUATION`s (100 kB in one field;
/// 80 kB in two, which h2 answered with `COMPRESSION_ERROR` for the whole connection once past
/// its bound); and one within it (40 kB in two fields, five frames: a connection error too at
/// hyper's 16 KiB) is forwarded. Before, the first ended the connection (`ENHANCE_YOUR_CALM`:
/// over four times the bound).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_header_list_over_the_bound_gets_a_431_and_the_connection_goes_on() {
    let (backend, heads) = backend().await;
    let gateway = gateway(backend).await;
    let (relay, frames) = relay(gateway.addr).await;
    let client = h2_client(relay).await;

    let small = vec![("x-n".to_string(), "v".to_string()); 2000];
    let (stream, status) = h2_get(&client, "/over", &small).await;
    assert_eq!(status.unwrap(), 431);
    assert_eq!(
        header_frames(&frames, stream),
        [(false, true)],
        "one HEADERS"
    );

    let one_field = [field("x-big", 'a', 100_000)];
    let (stream, status) = h2_get(&client, "/over", &one_field).await;
    assert_eq!(status.unwrap(), 431);
    let sent = header_frames(&frames, stream);
    assert!(sent.len() > 1 && sent[1..].iter().all(|f| f.0), "{sent:?}");

    let two_fields = [field("x-a", 'a', 40_000), field("x-b", 'a', 40_000)];
    let (stream, status) = h2_get(&client, "/over", &two_fields).await;
    assert_eq!(status.unwrap(), 431);
    assert!(header_frames(&frames, stream).len() > 1);
    assert!(heads.lock().unwrap().is_empty(), "{:?}", heads.lock());

    // '{' has a 15-bit Huffman code: 40 kB take five frames.
    let within = [field("x-a", '{', 20_000), field("x-b", '{', 20_000)];
    let (stream, status) = h2_get(&client, "/within", &within).await;
    assert_eq!(status.unwrap(), 200);
    assert_eq!(header_frames(&frames, stream).len(), 5);
    let (_, status) = h2_get(&client, "/plain", &[]).await;
    assert_eq!(status.unwrap(), 200);
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(heads[0].starts_with("GET /within "));
}

/// Both versions refuse at the same size: a 60 kB header is forwarded and a 70 kB one answered
/// 431 over either. Before, HTTP/1.1 forwarded heads up to 408 KiB and HTTP/2 refused past 16.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_http_versions_refuse_a_request_head_at_the_same_size() {
    let (backend, heads) = backend().await;
    let gateway = gateway(backend).await;
    let client = h2_client(gateway.addr).await;

    for (length, expected) in [(60_000, 200), (70_000, 431)] {
        let value = "a".repeat(length);
        let reply = common::exchange(
            gateway.addr,
            &format!(
                "GET /h1 HTTP/1.1\r\nhost: app\r\nx-big: {value}\r\nconnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {expected} ")),
            "{length}: {}",
            reply.lines().next().unwrap_or_default()
        );
        let (_, status) = h2_get(&client, "/h2", &[field("x-big", 'a', length)]).await;
        assert_eq!(status.unwrap(), expected, "{length}");
    }
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 2, "the 60 kB requests only");
}
