//! [`Upstream`]: how a proxy reaches its backend, over HTTP/1.1 (its own [`Pool`]) or HTTP/2
//! (its one [`Multiplexed`] connection), and the [`UpstreamBody`] of the backend's answers.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::limit::Turn;
use super::multiplexed::Multiplexed;
use super::pool::{Kept, Lease, Pool};
use super::tied::Tied;
use crate::BoxError;

/// The way to the backend. HTTP/1.1, the default and the busy path, goes through a pool of
/// connections of the proxy's own; HTTP/2 (gRPC) through one multiplexed connection, which
/// needs no pool.
pub(crate) enum Upstream<B> {
    Http1(Pool<B>),
    Http2(Multiplexed<Tied<B>>),
}

impl<B> Upstream<B>
where
    B: Body + Default + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Sends `request` (its URI absolute: the backend's or the client's authority) and waits
    /// for the response head.
    pub(crate) async fn request(
        &self,
        request: Request<B>,
    ) -> Result<Response<UpstreamBody>, Failed<B>> {
        match self {
            Self::Http1(pool) => pool.request(request).await,
            Self::Http2(connection) => {
                let (parts, body) = request.into_parts();
                let (body, cut) = Tied::new(body);
                match connection.request(Request::from_parts(parts, body)).await {
                    Ok(response) => Ok(response.map(|body| UpstreamBody::new(body, cut))),
                    Err(Failed { error, unsent }) => Err(Failed {
                        error,
                        unsent: unsent.map(|request| {
                            request.map(|body| body.into_inner().unwrap_or_default())
                        }),
                    }),
                }
            }
        }
    }

    /// The busy path, HTTP/1.1: an idle connection to send a request on at once, if there is
    /// one (it is `now`); otherwise [`request`](Self::request) it is.
    pub(crate) fn kept(&self, now: Instant) -> Option<Kept<'_, B>> {
        match self {
            Self::Http1(pool) => pool.kept(now),
            Self::Http2(_) => None,
        }
    }
}

/// A request the backend gave no response head to: why, and the request itself if none of
/// it left (no connection could be made), so that it can be sent again.
#[derive(Debug)]
pub(crate) struct Failed<B> {
    pub(crate) error: UpstreamError,
    pub(crate) unsent: Option<Request<B>>,
}

impl<B> From<UpstreamError> for Failed<B> {
    fn from(error: UpstreamError) -> Self {
        Self {
            error,
            unsent: None,
        }
    }
}

/// Why the backend gave no response head.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    /// No connection: refused, unreachable, timed out, or the handshake failed.
    Connect(BoxError),
    /// The connection failed while the request was sent or its answer awaited.
    Request(hyper::Error),
    /// A kept connection failed under the request as a backend's close of an idle connection
    /// fails it (closed or reset before any answer), while a new connection to the backend
    /// could be made: the backend is there, and is not taken for gone.
    KeptClosed(hyper::Error),
}

impl UpstreamError {
    /// Whether no connection to the backend could be made.
    pub(crate) fn is_connect(&self) -> bool {
        match self {
            Self::Connect(_) => true,
            Self::Request(_) | Self::KeptClosed(_) => false,
        }
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(_) => f.write_str("cannot connect to the backend"),
            Self::Request(_) => f.write_str("the backend connection failed"),
            Self::KeptClosed(_) => {
                f.write_str("the backend closed a kept connection under the request")
            }
        }
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect(error) => Some(error.as_ref()),
            Self::Request(error) | Self::KeptClosed(error) => Some(error),
        }
    }
}

/// The body of a backend's answer. Over HTTP/1.1 it holds the connection it arrived on, and
/// gives it back to the pool when dropped: the connection takes the next request once hyper
/// has read this answer to its end (a body dropped early leaves a connection hyper closes,
/// unless its last bytes had arrived). Over HTTP/2 it holds the request's upload, if it has
/// one ([`Tied`]): dropped before its end, it ends the upload, and the backend's stream.
///
/// With a [`stall bound`](Self::bound_stalls), a read that waits longer than it for the
/// backend's next bytes fails with [`ResponseBodyTimedOut`]: hyper's server then ends the
/// client's answer short (HTTP/1.1: the connection closed before the last chunk or the full
/// length; HTTP/2: the stream reset), and the backend connection is closed, not pooled.
pub(crate) struct UpstreamBody {
    body: Incoming,
    lease: Option<Box<dyn Lease>>,
    ended: bool,
    /// How long a read may wait for the backend's next bytes (none: for ever).
    timeout: Option<Duration>,
    /// Set while a read waits: the timer runs from the first wait after a frame.
    waiting: bool,
    /// The timer when the lease has none to lend (HTTP/2, or the connection let go).
    timer: Option<Pin<Box<Sleep>>>,
    service: Option<Arc<str>>,
}

impl UpstreamBody {
    pub(crate) fn new(body: Incoming, lease: Option<Box<dyn Lease>>) -> Self {
        Self {
            body,
            lease,
            ended: false,
            timeout: None,
            waiting: false,
            timer: None,
            service: None,
        }
    }
}

impl UpstreamBody {
    /// Lets the connection go once this answer is read, rather than giving it back to the
    /// pool: hyper closes a connection no one can send on.
    pub(crate) fn close_connection(&mut self) {
        self.lease = None;
    }

    /// Gives `turn` back with the connection, when this body is done with.
    pub(crate) fn hold(&mut self, turn: Turn) {
        self.lease = Some(turn.with(self.lease.take()));
    }

    /// Fails a read that waits `timeout` for the backend's next bytes, logging the warning
    /// with `service`. Not for an upgrade, whose bytes do not go through a body.
    pub(crate) fn bound_stalls(&mut self, timeout: Option<Duration>, service: &Option<Arc<str>>) {
        if timeout.is_some() {
            self.timeout = timeout;
            self.service.clone_from(service);
        }
    }

    /// A read that found no frame ready: pending until the timeout, then the failure.
    fn poll_stalled(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(timeout) = self.timeout else {
            return Poll::Pending;
        };
        let Self {
            lease,
            waiting,
            timer: own,
            ..
        } = self;
        // The pooled connection's response-head timer, idle once the head came: reset, it
        // costs no timer-wheel insert per answer.
        let timer = match lease.as_mut().and_then(|lease| lease.timer()) {
            Some(timer) => timer,
            None => own,
        };
        if !*waiting {
            let deadline = Instant::now() + timeout;
            match timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => *timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            *waiting = true;
        }
        if let Some(timer) = timer {
            ready!(timer.as_mut().poll(cx));
        }
        self.timeout = None;
        // Mid-answer, the connection cannot take another request: closed, not pooled.
        self.lease = None;
        let service = self.service.as_deref().unwrap_or("-");
        tracing::warn!(
            service = %service,
            ?timeout,
            "backend sent nothing more of its answer's body within `response_body_timeout`; \
             the answer is cut short and its connection closed"
        );
        crate::metrics::proxy_failure(service, "body_timeout");
        Poll::Ready(Some(Err(Box::new(ResponseBodyTimedOut(timeout)))))
    }
}

impl fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("body", &self.body)
            .field("pooled", &self.lease.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                if frame.is_none() {
                    this.ended = true;
                }
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => this.poll_stalled(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            let read = self.ended || self.body.is_end_stream();
            lease.release(read);
        }
    }
}

/// The backend sent nothing more of its answer's body for the response body timeout.
#[derive(Debug)]
pub(crate) struct ResponseBodyTimedOut(Duration);

impl fmt::Display for ResponseBodyTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the backend sent nothing more of its answer's body for {:?}",
            self.0
        )
    }
}

impl std::error::Error for ResponseBodyTimedOut {}
