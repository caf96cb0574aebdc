//! An upgraded connection (a WebSocket) whose backend resets it mid-relay ends at once: the
//! client's connection is closed, however the client goes on writing. (A backend connection's
//! socket drops what is written after the backend closed it while an answer may still come, so
//! that an early `413` is heard; once switched, a failed write ends the relay instead.) A raw
//! backend and a raw client on 127.0.0.1, the gateway in the test's process.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that switches to `websocket`, reads the first 256 KiB relayed to it, and resets the
/// connection (closes it with bytes unread, which the kernel answers with a reset).
async fn resetting_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut pending = Vec::new();
                if common::read_head(&mut stream, &mut pending).await.is_none() {
                    return;
                }
                let switch = b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\n\
                               upgrade: websocket\r\n\r\n";
                if stream.write_all(switch).await.is_err() {
                    return;
                }
                // A good part of what the client goes on writing: the relay is busy writing
                // to here, and more of it is on its way when this end closes.
                let mut buffer = vec![0u8; 256 << 10];
                let _ = stream.read_exact(&mut buffer).await;
                // Closed with the rest of the client's bytes unread: a reset.
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_backend_resets_ends_however_the_client_goes_on_writing() {
    let gateway =
        common::gateway_to_app(&format!("http://{}/", resetting_backend().await), "{}").await;
    let mut client = TcpStream::connect(gateway.addr).await.unwrap();
    client
        .write_all(
            b"GET /ws HTTP/1.1\r\nhost: app\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
              sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    let mut pending = Vec::new();
    let head = tokio::time::timeout(
        Duration::from_secs(10),
        common::read_head(&mut client, &mut pending),
    )
    .await
    .expect("the switch in time")
    .expect("the switch before the connection ends");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    // A client that writes on and never reads: only the gateway closing its connection (a
    // reset answering the next write) stops it.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        let chunk = vec![b'x'; 64 << 10];
        while client.write_all(&chunk).await.is_ok() {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the relay went on after its backend reset the connection"
    );
}
