//! A raw HTTP/2 client connection, its frames written by hand: for what no client library
//! does, such as opening a stream after the server's `GOAWAY` without answering its `PING`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

/// The frame types the tests look for.
pub const H2_HEADERS: u8 = 0x1;
pub const H2_GOAWAY: u8 = 0x7;

/// A frame of type `kind` on `stream`.
pub fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = vec![length[1], length[2], length[3], kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A `GET` of `path` from `app`, on stream `stream`, with no body.
pub fn h2_get(stream: u32, path: &str) -> Vec<u8> {
    // HPACK: `:method GET` and `:scheme http` from the static table, then `:path` and
    // `:authority` as literals with their names from it (neither indexed).
    let mut block = vec![0x82, 0x86, 0x04, u8::try_from(path.len()).unwrap()];
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, 3]);
    block.extend_from_slice(b"app");
    // END_STREAM and END_HEADERS.
    h2_frame(H2_HEADERS, 0x1 | 0x4, stream, &block)
}

/// A frame the server sent: its type, stream and payload.
pub struct H2Frame {
    pub kind: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl H2Frame {
    /// The status of a response's `HEADERS`, if HPACK gives it from the static table (200,
    /// 204, 206, 304, 400, 404, 500), as it comes first.
    pub fn static_status(&self) -> Option<u16> {
        let statuses = [200, 204, 206, 304, 400, 404, 500];
        let index = self.payload.first()?.checked_sub(0x88)?;
        statuses.get(usize::from(index)).copied()
    }
}

/// An HTTP/2 client connection, past its preface (its `SETTINGS` sent, the server's never
/// acknowledged, nor any `PING`); the server's frames come on `frames`.
pub struct H2Client {
    pub write: OwnedWriteHalf,
    /// The server's frames; ends when it closes the connection.
    pub frames: mpsc::UnboundedReceiver<H2Frame>,
}

impl H2Client {
    pub async fn connect(server: SocketAddr) -> Self {
        let (mut read, mut write) = TcpStream::connect(server).await.unwrap().into_split();
        let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        preface.extend(h2_frame(0x4, 0, 0, &[]));
        write.write_all(&preface).await.unwrap();
        let (sender, frames) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut pending = Vec::new();
            let mut buffer = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = read.read(&mut buffer).await {
                pending.extend_from_slice(&buffer[..n]);
                while pending.len() >= 9 {
                    let length = u32::from_be_bytes([0, pending[0], pending[1], pending[2]]);
                    let end = 9 + length as usize;
                    if pending.len() < end {
                        break;
                    }
                    let stream = u32::from_be_bytes(pending[5..9].try_into().unwrap());
                    let frame = H2Frame {
                        kind: pending[3],
                        stream: stream & 0x7fff_ffff,
                        payload: pending[9..end].to_vec(),
                    };
                    pending.drain(..end);
                    if sender.send(frame).is_err() {
                        return;
                    }
                }
            }
        });
        Self { write, frames }
    }

    pub async fn send(&mut self, frames: &[u8]) {
        self.write.write_all(frames).await.unwrap();
    }

    /// The next frame of type `kind` on `stream` the server sends (10 s at most), or `None`
    /// if it closes the connection first.
    pub async fn next(&mut self, kind: u8, stream: u32) -> Option<H2Frame> {
        self.next_where(|frame| frame.kind == kind && frame.stream == stream)
            .await
    }

    /// The next frame of type `kind` the server sends, on any stream (10 s at most), or `None`
    /// if it closes the connection first.
    pub async fn next_of(&mut self, kind: u8) -> Option<H2Frame> {
        self.next_where(|frame| frame.kind == kind).await
    }

    async fn next_where(&mut self, wanted: impl Fn(&H2Frame) -> bool) -> Option<H2Frame> {
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(frame) = self.frames.recv().await {
                if wanted(&frame) {
                    return Some(frame);
                }
            }
            None
        })
        .await
        .expect("the server sent nothing more")
    }

    /// Completes once the server has closed the connection, whatever it sent before.
    pub async fn closed(&mut self) {
        while self.frames.recv().await.is_some() {}
    }
}
