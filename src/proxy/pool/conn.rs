//! A kept connection of the [`Pool`](super::Pool) and the requests sent on it: taken for a
//! request ([`Kept`]), awaited with its response timer ([`Exchange`]), lent to the response
//! body ([`Conn`] is the body's lease) and put back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode, Version};
use http_body::Body;
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1::SendRequest;
use tokio::time::{Instant, Sleep};

use super::replay::Replay;
use super::socket::{Switched, Watch};
use super::{Lease, Pool, Shared};
use crate::BoxError;
use crate::proxy::failure::Failure;
use crate::proxy::upstream::{UpstreamBody, UpstreamError};

/// The response to a request sent on a kept connection: its body holds the connection (the
/// lease), unless it switched protocols (then the connection belongs to the upgrade) or came
/// as HTTP/1.0.
///
/// An HTTP/1.0 answer, even one that keeps its connection alive, has hyper speak HTTP/1.0 on
/// that connection from then on, where a request body of no known length cannot be framed:
/// hyper sends such a request (a chunked upload) without its body, and the backend answers
/// the empty request. The connection is closed after the answer instead, as nginx closes it.
pub(super) fn lend<B>(
    connection: Box<Conn<B>>,
    response: Response<Incoming>,
) -> Response<UpstreamBody>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let switched = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switched {
        connection.switched.set();
    }
    let lease = (!switched && response.version() != Version::HTTP_10)
        .then_some(connection as Box<dyn Lease>);
    response.map(|body| UpstreamBody::new(body, lease))
}

/// An idle connection taken for a request ([`Pool::kept`]).
pub(crate) struct Kept<'a, B> {
    pub(super) pool: &'a Pool<B>,
    pub(super) connection: Box<Conn<B>>,
}

impl<B> Kept<'_, B>
where
    B: Body + Default + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Sends `request` at once (it is `now`); its answer is then awaited until `deadline`.
    pub(crate) fn send(
        self,
        mut request: Request<B>,
        now: Instant,
        deadline: Instant,
    ) -> Exchange<B> {
        let Kept {
            pool,
            mut connection,
        } = self;
        pool.prepare(&mut request);
        // Kept on the connection, which lives across requests: the exchange stays small.
        connection.replay = if connection.stale(now) {
            Replay::of(&request).map(Box::new)
        } else {
            None
        };
        connection.arm(deadline);
        connection.pool = Some(Arc::clone(&pool.shared));
        let sending = Box::pin(connection.send.try_send_request(request));
        Exchange {
            sending,
            connection: Some(connection),
        }
    }
}

/// A request sent on a kept connection ([`Kept::send`]), awaiting its response head.
pub(crate) struct Exchange<B> {
    sending: Pin<Box<Sending<B>>>,
    /// Taken when the answer comes: it goes with the response body.
    connection: Option<Box<Conn<B>>>,
}

type Sending<B> = dyn Future<Output = Result<Response<Incoming>, TrySendError<Request<B>>>> + Send;

/// How an [`Exchange`] ended.
pub(crate) enum Outcome<B> {
    /// The response head.
    Answered(Response<UpstreamBody>),
    /// The backend had closed the connection while it was idle: the request was not sent, or
    /// was sent and may go again ([`Replay`]), on another connection.
    Unsent(Request<B>),
    Failed(UpstreamError),
    /// Closed or reset under a request that may not go again: the backend may have closed
    /// the idle connection as the request went, or be gone ([`Pool::kept_closed`] tells).
    KeptClosed(UpstreamError),
    /// No response head by the deadline.
    TimedOut,
}

impl<B> Exchange<B>
where
    B: Body + Default + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// The response head, or why there is none; the deadline is checked after the answer, as
    /// `tokio::time::timeout` does.
    pub(crate) fn poll_outcome(&mut self, cx: &mut Context<'_>) -> Poll<Outcome<B>> {
        let Some(connection) = self.connection.as_mut() else {
            // Polled after its outcome: never answer twice.
            return Poll::Pending;
        };
        let outcome = match self.sending.as_mut().poll(cx) {
            Poll::Ready(Ok(response)) => match self.connection.take() {
                Some(connection) => Outcome::Answered(lend(connection, response)),
                None => return Poll::Pending,
            },
            Poll::Ready(Err(mut error)) => match error.take_message() {
                Some(unsent) => Outcome::Unsent(unsent),
                None => {
                    let error = UpstreamError::Request(error.into_error());
                    match connection.replay.take() {
                        _ if Failure::of(&error) != Failure::Gone => Outcome::Failed(error),
                        Some(replay) => {
                            let service = connection.pool.as_ref().map_or("-", |p| &p.service);
                            Outcome::Unsent(replay.again(service, &error))
                        }
                        // Whether the backend is gone, a new connection tells.
                        None => Outcome::KeptClosed(error),
                    }
                }
            },
            Poll::Pending => match connection.timer.as_mut() {
                Some(timer) => {
                    std::task::ready!(timer.as_mut().poll(cx));
                    Outcome::TimedOut
                }
                None => return Poll::Pending,
            },
        };
        // The connection goes with the response body; otherwise it is done (a connection
        // whose answer did not come in time is closed, as a dropped request's is).
        self.connection = None;
        Poll::Ready(outcome)
    }
}

/// A kept-alive connection, boxed once for its life: lent to a response body (as its lease)
/// and put back on the stack without a new allocation per request.
pub(super) struct Conn<B> {
    pub(super) send: SendRequest<B>,
    /// The response-head timer of its requests, one at a time, then their body's (see
    /// `UpstreamBody`). Reset for each: moving a
    /// registered timer's deadline later is one atomic operation, where a new timer per
    /// request is a timer-wheel insert and removal. Left armed after the answer; should it
    /// fire while the connection is idle, it wakes the last request's task once, which finds
    /// nothing to do. Always set: made with the connection (see [`Conn::new`]).
    timer: Option<Pin<Box<Sleep>>>,
    /// When it was put back on the stack.
    pub(super) idle_since: Instant,
    /// The request on it, should the backend turn out to have closed it before answering
    /// (set for each request; only a request on a connection that was stale has one).
    pub(super) replay: Option<Box<Replay>>,
    /// Set while taken by a request and lent to its response body (not while on the stack,
    /// which the pool holds).
    pub(super) pool: Option<Arc<Shared<B>>>,
    /// Tells its socket when it switched protocols.
    switched: Switched,
    /// Whether the backend has closed it (none: not known).
    pub(super) watch: Option<Watch>,
}

impl<B> Conn<B> {
    /// A connection whose task runs on the current runtime.
    pub(super) fn new(send: SendRequest<B>, switched: Switched, watch: Option<Watch>) -> Box<Self> {
        Box::new(Self {
            send,
            switched,
            watch,
            // A timer belongs to the runtime it is made on, and polling it once that runtime
            // has shut down panics. Made here, on the connection's own runtime, it cannot
            // outlive the connection's task; made by a request, on a runtime of its own (a
            // proxy shared by several), it would, and panic the next request after that
            // runtime ended. It is reset before each use: its first deadline is none.
            timer: Some(Box::pin(tokio::time::sleep_until(Instant::now()))),
            idle_since: Instant::now(),
            replay: None,
            pool: None,
        })
    }

    /// Whether it has been idle long enough, at `now`, for its backend to have closed it
    /// ([`Replay`]).
    pub(super) fn stale(&self, now: Instant) -> bool {
        now >= self.idle_since + Replay::AFTER_IDLE
    }

    /// How long a connection must have been idle before its socket is looked at when it is
    /// taken ([`closed`](Self::closed)). A backend's idle close comes after seconds; a busy
    /// connection is taken again within microseconds of its last answer, and so does not pay
    /// for the look (a system call, with a lock: about 200 instructions of the gateway's own
    /// per request). A close within it that crosses a request fails the request as one after
    /// the look does.
    pub(super) const LOOK_AFTER_IDLE: Duration = Duration::from_millis(1);

    /// Whether the backend has closed it (or sent on it what no request asked for), though its
    /// task may not have read that yet (looked at only if, at `now`, it has been idle
    /// [`LOOK_AFTER_IDLE`](Self::LOOK_AFTER_IDLE)).
    pub(super) fn closed(&self, now: Instant) -> bool {
        now >= self.idle_since + Self::LOOK_AFTER_IDLE
            && self.watch.as_ref().is_some_and(Watch::closed)
    }

    /// Sets the timer for a request's answer, due at `deadline`.
    fn arm(&mut self, deadline: Instant) {
        match self.timer.as_mut() {
            Some(timer) => timer.as_mut().reset(deadline),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }
}

impl<B> Lease for Conn<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn release(mut self: Box<Self>, read: bool) {
        let Some(pool) = self.pool.take() else { return };
        // A body dropped unread: its connection is reusable only if hyper has already read
        // the whole answer (a short one the client did not wait for); otherwise hyper
        // closes it.
        if read || self.send.is_ready() {
            pool.put(self);
        }
    }

    fn timer(&mut self) -> Option<&mut Option<Pin<Box<Sleep>>>> {
        Some(&mut self.timer)
    }
}
