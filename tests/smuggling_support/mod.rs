//! What the request-smuggling tests share: a raw backend that records every request as the
//! bytes it read (head and body, framed as a strict HTTP/1.1 server frames them) with the
//! connection it came on, and a client that writes raw bytes and reads the whole reply.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common;

/// The requests a [`raw_backend`] read, in order: the number of the connection each came on
/// (1 for the first that carried a request: the monitor's probe connects and sends none) and
/// its bytes as they came.
pub type Received = Arc<Mutex<Vec<(usize, String)>>>;

/// What a [`raw_backend`] writes for a request: `now`, and `late` just before its answer to
/// the next request on the same connection (bytes of an answer that arrive after the proxy
/// has read it to its end).
pub struct Reply {
    pub now: Vec<u8>,
    pub late: Vec<u8>,
}

impl From<&[u8]> for Reply {
    fn from(bytes: &[u8]) -> Self {
        Reply {
            now: bytes.to_vec(),
            late: Vec::new(),
        }
    }
}

/// `200` with the body `mine`: the answer a request must get when no other's bytes reach it.
pub const MINE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nmine";

/// A backend that records each request and writes `reply(head)` for it.
pub async fn raw_backend(
    reply: impl Fn(&str) -> Reply + Send + Sync + 'static,
) -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let recorded = received.clone();
    let reply = Arc::new(reply);
    let connections = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (recorded, reply, connections) =
                (recorded.clone(), reply.clone(), connections.clone());
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut number = None;
                let mut late = Vec::new();
                while let Some(request) = read_request(&mut stream, &mut pending).await {
                    let number = *number
                        .get_or_insert_with(|| connections.fetch_add(1, Ordering::SeqCst) + 1);
                    let head = request
                        .split("\r\n\r\n")
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    recorded.lock().unwrap().push((number, request));
                    let answer = reply(&head);
                    let bytes = [std::mem::take(&mut late), answer.now].concat();
                    late = answer.late;
                    if stream.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, received)
}

/// Reads one request (head and body) as its bytes; `None` once the stream ends or the
/// request is incomplete.
async fn read_request(
    stream: &mut (impl AsyncRead + Unpin),
    pending: &mut Vec<u8>,
) -> Option<String> {
    let head = common::read_head(stream, pending).await?;
    let lower = head.to_ascii_lowercase();
    let mut raw = head.into_bytes();
    if lower.contains("\r\ntransfer-encoding: chunked\r\n") {
        loop {
            let line = read_line(stream, pending).await?;
            raw.extend_from_slice(&line);
            let size = std::str::from_utf8(&line).ok()?.trim_end();
            let size = usize::from_str_radix(size.split(';').next()?, 16).ok()?;
            if size == 0 {
                break;
            }
            fill(stream, pending, size + 2).await?;
            raw.extend(pending.drain(..size + 2));
        }
        // Trailer lines, up to the empty one.
        loop {
            let line = read_line(stream, pending).await?;
            raw.extend_from_slice(&line);
            if line == b"\r\n" {
                break;
            }
        }
    } else if let Some(length) = lower
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
    {
        let length: usize = length.trim().parse().ok()?;
        fill(stream, pending, length).await?;
        raw.extend(pending.drain(..length));
    }
    Some(String::from_utf8_lossy(&raw).into_owned())
}

async fn read_line(
    stream: &mut (impl AsyncRead + Unpin),
    pending: &mut Vec<u8>,
) -> Option<Vec<u8>> {
    loop {
        if let Some(end) = pending.iter().position(|&b| b == b'\n') {
            return Some(pending.drain(..=end).collect());
        }
        let len = pending.len() + 1;
        fill(stream, pending, len).await?;
    }
}

/// Reads until `pending` holds `len` bytes; `None` if the stream ends first.
async fn fill(
    stream: &mut (impl AsyncRead + Unpin),
    pending: &mut Vec<u8>,
    len: usize,
) -> Option<()> {
    while pending.len() < len {
        let mut buffer = [0u8; 4096];
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => pending.extend_from_slice(&buffer[..n]),
        }
    }
    Some(())
}

/// A request line and a `host: app` for the end of a client's bytes: its answer ends the
/// connection, so that the client reads the whole reply to its end.
pub const LAST: &[u8] = b"GET /last HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n";

/// Writes `bytes` to `addr` on a new connection and reads the reply until the gateway closes
/// the connection (at most 10 s).
pub async fn send(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(bytes).await.unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut reply));
    // A reset after the gateway's last answer still leaves that answer read.
    let _ = read
        .await
        .expect("the gateway closes the connection in time");
    String::from_utf8_lossy(&reply).into_owned()
}

/// The status lines in `reply`, in order (`HTTP/1.1 200 OK`, ...): where the answers follow
/// one another with no line end between (a body, then the next head), and no body holds one.
pub fn statuses(reply: &str) -> Vec<&str> {
    reply
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| reply[at..].split("\r\n").next().unwrap_or_default())
        .collect()
}

/// The request lines the backend received, in order.
pub fn request_lines(received: &Received) -> Vec<String> {
    let received = received.lock().unwrap();
    received
        .iter()
        .map(|(_, request)| request.split("\r\n").next().unwrap_or_default().to_owned())
        .collect()
}
