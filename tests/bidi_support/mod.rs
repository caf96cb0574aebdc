//! Bidi streams through the gateway: a backend that answers each request with a stream while
//! it reads the request's body (as a gRPC bidi call does, over HTTP/2 or chunked HTTP/1.1),
//! telling what it saw and when; and a raw HTTP/2 client that uploads at a steady pace and
//! takes its answer only as far as the window it grants.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What the backend saw of a streamed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Its answer was let go before its end: the stream reset, or the connection closed.
    AnswerDropped,
    /// The upload ended whole.
    UploadEnded,
    /// The upload broke off: the stream reset, or the connection closed.
    UploadFailed,
}

/// The size of each frame of the backend's answers.
pub const CHUNK: usize = 16 * 1024;

/// A backend on 127.0.0.1, stopped when dropped. `/ok` answers "ok"; `/chunks/N` answers N
/// chunks of [`CHUNK`] bytes and `/endless` answers for ever, both while they read the upload.
pub struct BidiBackend {
    pub addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
    task: JoinHandle<()>,
}

impl Drop for BidiBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BidiBackend {
    /// Speaking HTTP/2 (prior knowledge) if `http2`, HTTP/1.1 otherwise.
    pub async fn start(http2: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tell, seen) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            // Dropped with this task when it is aborted: the connections' tasks go with it.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let tell = tell.clone();
                let service = hyper::service::service_fn(move |request| {
                    std::future::ready(Ok::<_, Infallible>(answer(request, tell.clone())))
                });
                let io = TokioIo::new(stream);
                connections.spawn(async move {
                    let _ = if http2 {
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service)
                            .await
                    } else {
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await
                    };
                });
            }
        });
        Self { addr, seen, task }
    }

    /// What the backend sees next, within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Seen> {
        tokio::time::timeout(within, self.seen.recv())
            .await
            .ok()
            .flatten()
    }
}

fn answer(
    request: http::Request<Incoming>,
    tell: mpsc::UnboundedSender<Seen>,
) -> http::Response<http_body_util::combinators::BoxBody<Bytes, Infallible>> {
    let path = request.uri().path().to_owned();
    if path == "/ok" {
        return http::Response::new(http_body_util::Full::from("ok").boxed());
    }
    let left = path.strip_prefix("/chunks/").and_then(|n| n.parse().ok());
    let mut upload = request.into_body();
    let told = tell.clone();
    // Read beside the answer, as a bidi call's server does.
    tokio::spawn(async move {
        let end = loop {
            match upload.frame().await {
                Some(Ok(_)) => continue,
                Some(Err(_)) => break Seen::UploadFailed,
                None => break Seen::UploadEnded,
            }
        };
        let _ = told.send(end);
    });
    http::Response::new(Chunks { left, tell }.boxed())
}

/// An answer of `left` chunks (none: endless), telling if it is dropped before its end.
struct Chunks {
    left: Option<usize>,
    tell: mpsc::UnboundedSender<Seen>,
}

static BYTES: [u8; CHUNK] = [b'x'; CHUNK];

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.left {
            Some(0) => return Poll::Ready(None),
            Some(left) => *left -= 1,
            None => {}
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&BYTES)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == Some(0)
    }
}

impl Drop for Chunks {
    fn drop(&mut self) {
        if self.left != Some(0) {
            let _ = self.tell.send(Seen::AnswerDropped);
        }
    }
}

/// An HTTP/2 connection to `gateway` whose streams start with `window` bytes of window (none:
/// the client takes no byte of any answer), given back only as the test does; its task is
/// aborted when the returned guard is dropped.
pub async fn h2_client(
    gateway: SocketAddr,
    window: u32,
) -> (h2::client::SendRequest<Bytes>, AbortOnDrop) {
    let stream = TcpStream::connect(gateway).await.unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(window)
        .handshake::<_, Bytes>(stream)
        .await
        .unwrap();
    let connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    (client.ready().await.unwrap(), connection)
}

/// A task aborted when dropped.
pub struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How an upload ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Uploaded {
    /// The gateway reset the stream, with this reason, at this time.
    Reset(h2::Reason, Instant),
    /// Sent whole.
    Whole,
}

/// Sends a few bytes on `upload` every 100 ms until `stop` completes, then ends it; or until
/// the stream is reset.
pub async fn upload(
    mut upload: h2::SendStream<Bytes>,
    stop: impl Future<Output = ()>,
) -> Result<Uploaded, h2::Error> {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut stop = std::pin::pin!(stop);
    let mut stopped = false;
    loop {
        tokio::select! {
            reset = std::future::poll_fn(|cx| upload.poll_reset(cx)) => {
                return reset.map(|reason| Uploaded::Reset(reason, Instant::now()));
            }
            () = &mut stop, if !stopped => stopped = true,
            _ = tick.tick() => {
                // An error (the stream gone) shows at the next poll for a reset.
                if upload.send_data(Bytes::from_static(b"tick"), stopped).is_ok() && stopped {
                    return Ok(Uploaded::Whole);
                }
            }
        }
    }
}
