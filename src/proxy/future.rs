//! [`ResponseFuture`]: a [`Proxy`](super::Proxy)'s answer to come.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Response, Version, header};
use http_body::Body;

use super::pool::{Exchange, Outcome};
use super::upload::{Handed, Upload};
use super::{ProxyBody, Shared};
use tokio::time::Instant;

use crate::BoxError;

/// The response future of [`Proxy`](super::Proxy); it never fails (a backend that does not
/// answer is answered for, with a 502 or 504).
///
/// On the busy path (an HTTP/1.1 backend and a kept connection to it) the request is sent when
/// the proxy is called, and this future only awaits the answer against the response timeout;
/// every other request (a new connection, HTTP/2, an upgrade) goes through a boxed future.
pub struct ResponseFuture<B> {
    state: State<B>,
}

enum State<B> {
    /// Sent on a kept connection.
    Waiting {
        shared: Arc<Shared<B>>,
        exchange: Exchange<Upload<B>>,
        sent: Sent,
    },
    Boxed(BoxFuture<'static, Response<ProxyBody>>),
    /// Answered by the proxy itself; empty once taken.
    Ready(Option<Response<ProxyBody>>),
}

impl<B> ResponseFuture<B> {
    pub(super) fn waiting(
        shared: Arc<Shared<B>>,
        exchange: Exchange<Upload<B>>,
        sent: Sent,
    ) -> Self {
        Self {
            state: State::Waiting {
                shared,
                exchange,
                sent,
            },
        }
    }

    pub(super) fn boxed(future: BoxFuture<'static, Response<ProxyBody>>) -> Self {
        Self {
            state: State::Boxed(future),
        }
    }

    pub(super) fn ready(response: Response<ProxyBody>) -> Self {
        Self {
            state: State::Ready(Some(response)),
        }
    }
}

/// Sent on a connection, or on its way to one; not when the proxy answered itself. A request
/// that waits inside the boxed state before it goes (its turn under a limit, or the backend's
/// return after a refused connection) counts as sent too: telling those apart would take a
/// flag shared with the boxed future, an allocation per request.
#[cfg(feature = "gateway")]
impl<B> crate::layer::AtBackend for ResponseFuture<B> {
    fn at_backend(&self) -> bool {
        match self.state {
            State::Waiting { .. } | State::Boxed(_) => true,
            State::Ready(_) => false,
        }
    }
}

impl<B> fmt::Debug for ResponseFuture<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Waiting { .. } => "waiting",
            State::Boxed(_) => "boxed",
            State::Ready(_) => "ready",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<B> Future for ResponseFuture<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Every state is `Unpin`: the exchange and the boxed future are boxed.
        let state = &mut self.get_mut().state;
        let retry = match state {
            State::Waiting {
                shared,
                exchange,
                sent,
            } => match std::task::ready!(exchange.poll_outcome(cx)) {
                Outcome::Answered(response) => {
                    return Poll::Ready(Ok(shared.answer(response, None, sent, None)));
                }
                Outcome::Failed(error) => {
                    return Poll::Ready(Ok(shared.failed(sent, Some(&error))));
                }
                Outcome::TimedOut => return Poll::Ready(Ok(shared.failed(sent, None))),
                // The backend had closed the kept connection: another one, within the same
                // deadline.
                Outcome::Unsent(request) => {
                    let sent = sent.take();
                    Arc::clone(shared).finish(request, None, sent, true)
                }
                Outcome::KeptClosed(error) => Arc::clone(shared).kept_closed(error, sent.take()),
            },
            State::Boxed(future) => return future.as_mut().poll(cx).map(Ok),
            State::Ready(response) => {
                return match response.take() {
                    Some(response) => Poll::Ready(Ok(response)),
                    // Polled after it answered: never answer twice.
                    None => Poll::Pending,
                };
            }
        };
        *state = State::Boxed(retry);
        match state {
            State::Boxed(future) => future.as_mut().poll(cx).map(Ok),
            _ => Poll::Pending,
        }
    }
}

/// What a failure's answer and log line need of a request that was sent: the request itself
/// is gone to the backend.
pub(crate) struct Sent {
    pub(super) method: Method,
    pub(super) path: PathAndQuery,
    /// `Accept` and `Content-Type`: what the layer's fallback needs to answer in the
    /// request's format, should the backend turn out to be gone.
    pub(super) format: [Option<HeaderValue>; 2],
    /// The client's HTTP version, that of the answer.
    pub(super) version: Version,
    /// When the response head is due: the response timeout after the request went on to the
    /// backend (its turn, with a limit).
    pub(super) deadline: Instant,
    /// Whether its body has all been handed on, when it has one.
    pub(super) handed: Option<Handed>,
}

pub(super) const FORMAT: [header::HeaderName; 2] = [header::ACCEPT, header::CONTENT_TYPE];

impl Sent {
    /// When the request went on to the backend (its deadline less the response timeout): its
    /// connection was tried no earlier.
    pub(super) fn sent_at(&self, timeout: std::time::Duration) -> Instant {
        self.deadline.checked_sub(timeout).unwrap_or(self.deadline)
    }

    /// For the same request sent again: its answer is due `timeout` from now.
    pub(super) fn again(self, timeout: std::time::Duration) -> Self {
        Self {
            deadline: Instant::now() + timeout,
            ..self
        }
    }

    /// Moved out; left with what a finished request needs (nothing: it is not polled again).
    fn take(&mut self) -> Self {
        Self {
            method: std::mem::take(&mut self.method),
            path: std::mem::replace(&mut self.path, PathAndQuery::from_static("/")),
            format: std::mem::take(&mut self.format),
            version: self.version,
            deadline: self.deadline,
            handed: self.handed.take(),
        }
    }
}
