//! A backend that answers as HTTP/1.0 with `Connection: keep-alive`, as old servers and some
//! embedded ones do. hyper's client, once it has read an HTTP/1.0 answer on a connection,
//! speaks HTTP/1.0 on it from then on, and HTTP/1.0 has no chunks: a later upload of no
//! known length went on that connection without its body, and the client got the backend's
//! `200` to the empty request. The connection is closed after such an answer instead (as
//! nginx closes it). Raw bytes both ways, a gateway served in the test's process.

mod common;
mod smuggling_support;

use std::time::Duration;

use smuggling_support::raw_backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one answer (its head and the `ok` of its body) from `client` (bounded).
async fn read_answer(client: &mut TcpStream, pending: &mut Vec<u8>) -> String {
    let read = async {
        let head = common::read_head(client, pending)
            .await
            .expect("an answer before the connection ends");
        while pending.len() < 2 {
            let mut buffer = [0u8; 1024];
            let n = client.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the body cut short: {head}");
            pending.extend_from_slice(&buffer[..n]);
        }
        let body: Vec<u8> = pending.drain(..2).collect();
        head + &String::from_utf8_lossy(&body)
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the answer in time")
}

/// Each chunked upload that follows an HTTP/1.0 answer reaches the backend as HTTP/1.1 with
/// its body, on a connection of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_after_an_http10_answer_reaches_the_backend_with_its_body() {
    let (backend, received) = raw_backend(|_| {
        b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok"[..].into()
    })
    .await;
    let gateway = common::gateway_to_app(&format!("http://{backend}/"), "{}").await;
    let mut client = TcpStream::connect(gateway.addr).await.unwrap();
    let mut pending = Vec::new();
    const ROUNDS: usize = 5;
    for _ in 0..ROUNDS {
        for request in [
            "GET /first HTTP/1.1\r\nhost: app\r\n\r\n",
            "POST /upload HTTP/1.1\r\nhost: app\r\ntransfer-encoding: chunked\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n",
        ] {
            client.write_all(request.as_bytes()).await.unwrap();
            let answer = read_answer(&mut client, &mut pending).await;
            assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        }
    }
    let received = received.lock().unwrap();
    let uploads: Vec<&str> = received
        .iter()
        .map(|(_, request)| request.as_str())
        .filter(|request| request.starts_with("POST "))
        .collect();
    assert_eq!(uploads.len(), ROUNDS, "{received:?}");
    for upload in uploads {
        assert!(upload.starts_with("POST /upload HTTP/1.1\r\n"), "{upload}");
        assert!(
            upload.ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            "{upload}"
        );
    }
    let connections: Vec<usize> = received.iter().map(|(number, _)| *number).collect();
    let each_its_own: Vec<usize> = (1..=2 * ROUNDS).collect();
    assert_eq!(connections, each_its_own, "{received:?}");
}
