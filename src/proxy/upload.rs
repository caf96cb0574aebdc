//! [`Upload`]: a client's request body as the proxy sends it on, failing once the client has
//! sent none of it for a while (nginx's `client_body_timeout`). Without it, a client that
//! announces a large upload and sends a byte now and then, or nothing, holds a connection to
//! an HTTP/1.1 backend (and the backend awake) for ever; a few thousand such clients hold as
//! many.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::BoxError;

pin_project! {
    /// `B`, whose next frame fails with [`BodyReadTimedOut`] once it has been waited for
    /// `timeout` (none: waited for as long as it takes). Only the client's slowness counts: the
    /// wait starts when the backend asks for more and the client has none ready. A frame that
    /// is ready at once costs one branch more.
    pub(crate) struct Upload<B> {
        // None: no body (a request sent again without the one it had, which was empty).
        #[pin]
        body: Option<B>,
        timeout: Option<Duration>,
        // Armed when a frame is first waited for; dropped when one comes.
        stalled: Option<Pin<Box<Sleep>>>,
        // Set once the whole body has been handed on; none for a body empty from the start.
        whole: Option<Arc<AtomicBool>>,
        // Bytes still to hand on, for a body of known length: hyper sends that many and asks
        // no more (no end of stream, no `None`), so their count is what tells the end.
        left: Option<u64>,
        // Whether the forwarded headers are removed from the trailers, as from the headers.
        untrusted: bool,
    }
}

impl<B: Body> Upload<B> {
    pub(crate) fn new(body: B, timeout: Option<Duration>) -> Self {
        let whole = (!body.is_end_stream()).then(Arc::default);
        let left = body.size_hint().exact();
        Self {
            body: Some(body),
            timeout,
            stalled: None,
            whole,
            left,
            untrusted: false,
        }
    }

    /// Removes the forwarded headers from the body's trailer fields, as the proxy removes a
    /// client's from its header fields (an untrusted client's, when it adds its own).
    pub(crate) fn untrusted(mut self, untrusted: bool) -> Self {
        self.untrusted = untrusted;
        self
    }

    /// The body's length, as its `Content-Length` header says (which hyper sends by, rather
    /// than by the body's size hint).
    pub(crate) fn with_length(mut self, length: Option<u64>) -> Self {
        if length.is_some() {
            self.left = length;
        }
        self
    }

    /// Whether the whole body has been handed on, for a request that has one.
    pub(crate) fn handed(&self) -> Option<Handed> {
        self.whole.clone().map(Handed)
    }
}

/// Tells whether the whole of a request's body was handed to the backend's connection. A
/// backend that answers before it has read the body, and keeps the connection, reads what is
/// left of the body as the next request (a request smuggled in an upload would run), and its
/// answer would go to the next request on that connection, another client's: such a
/// connection is closed after the answer instead (as nginx does).
#[derive(Clone, Debug)]
pub(crate) struct Handed(Arc<AtomicBool>);

impl Handed {
    pub(crate) fn whole(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// `frame`, trailers, without the forwarded headers (see [`Upload::untrusted`]).
fn without_claims<D>(frame: Frame<D>) -> Frame<D> {
    match frame.into_trailers() {
        Ok(mut trailers) => {
            super::forwarded::remove_claims(&mut trailers);
            Frame::trailers(trailers)
        }
        Err(frame) => frame,
    }
}

/// No body at all.
impl<B> Default for Upload<B> {
    fn default() -> Self {
        Self {
            body: None,
            timeout: None,
            stalled: None,
            whole: None,
            left: None,
            untrusted: false,
        }
    }
}

impl<B> Body for Upload<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.project();
        let Some(body) = this.body.as_pin_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = body.poll_frame(cx) {
            *this.stalled = None;
            match &frame {
                None => mark_whole(this.whole),
                // The last frame there is: hyper asks no more after trailers.
                Some(Ok(frame)) if frame.is_trailers() => mark_whole(this.whole),
                Some(Ok(frame)) => {
                    if let (Some(left), Some(data)) = (this.left.as_mut(), frame.data_ref()) {
                        *left = left.saturating_sub(data.remaining() as u64);
                        if *left == 0 {
                            mark_whole(this.whole);
                        }
                    }
                }
                Some(Err(_)) => {}
            }
            let frame = match frame {
                Some(Ok(frame)) if *this.untrusted && frame.is_trailers() => {
                    Some(Ok(without_claims(frame)))
                }
                frame => frame,
            };
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let Some(timeout) = *this.timeout else {
            return Poll::Pending;
        };
        let stalled = this
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(stalled.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyReadTimedOut(timeout)))))
    }

    fn is_end_stream(&self) -> bool {
        // hyper asks after each frame, and stops at a yes without polling again.
        let end = self.body.as_ref().is_none_or(B::is_end_stream);
        if end {
            mark_whole(&self.whole);
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), B::size_hint)
    }
}

fn mark_whole(whole: &Option<Arc<AtomicBool>>) {
    if let Some(whole) = whole {
        whole.store(true, Ordering::Release);
    }
}

/// The client sent nothing of its request body for the body read timeout.
#[derive(Debug)]
pub(crate) struct BodyReadTimedOut(Duration);

impl fmt::Display for BodyReadTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the client sent nothing of its body for {:?}", self.0)
    }
}

impl Error for BodyReadTimedOut {}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use http_body_util::StreamBody;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_fails_at_the_timeout_and_one_that_flows_does_not() {
        // A frame every 9 s, under a 10 s timeout: each wait is under it.
        let frames = futures::stream::unfold(0, |i| async move {
            if i == 3 {
                return None;
            }
            tokio::time::sleep(Duration::from_secs(9)).await;
            Some((
                Ok::<_, std::io::Error>(Frame::data(Bytes::from("x"))),
                i + 1,
            ))
        });
        let flowing = Upload::new(StreamBody::new(frames), Some(Duration::from_secs(10)));
        assert_eq!(flowing.collect().await.unwrap().to_bytes(), "xxx");

        let start = tokio::time::Instant::now();
        let stalled = Upload::new(
            StreamBody::new(futures::stream::pending::<
                Result<Frame<Bytes>, std::io::Error>,
            >()),
            Some(Duration::from_secs(10)),
        );
        let error = stalled.collect().await.unwrap_err();
        assert!(
            error.downcast_ref::<BodyReadTimedOut>().is_some(),
            "{error}"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }
}
