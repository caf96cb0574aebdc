//! [`Stalled`]: the answers on one HTTP/2 client connection that the client has stopped taking.
//!
//! Over HTTP/1.1 a client that stops reading fills the socket, and [`SendTimeout`] closes the
//! connection. Over HTTP/2 the client can instead grant a stream no flow-control window: the
//! socket stays open and busy, hyper just stops asking the answer's body for more, and the
//! backend connection (and wakefulness) behind that body is held for ever; up to the stream
//! limit of them per client connection. As nginx does with its `send_timeout` over HTTP/2, the
//! answer alone is ended: once its stream has taken nothing for the bound, its body is dropped
//! (which lets go of the backend, and ends the request's upload to an HTTP/2 backend, which
//! hyper would otherwise send on for as long as the client sends it: a gRPC bidi stream), and
//! its stream is reset (`CANCEL`) at once, through the stream's task ([`streams`]), without
//! waiting for the client to grant window again. The client's other streams go on.
//!
//! [`SendTimeout`]: super::send_timeout::SendTimeout
//! [`streams`]: super::streams

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::Notify;

use super::streams;
use crate::BoxError;
use crate::sync::lock;

/// The most of a frame handed to hyper at once: HTTP/2's default frame size, which h2 cuts
/// frames to anyway.
const PIECE: usize = 16 * 1024;

/// One connection's watched answers; see the [module documentation](self).
///
/// Nothing is timed per answer: a watch looks every half bound, and an answer is ended at the
/// third look after the client last took a frame of it (or after its head went out), so between
/// the bound and one and a half times it. hyper asks for the next frame only once the one before
/// has all but gone out, so frames are handed at most [`PIECE`] at a time: a backend's chunk of
/// hundreds of kilobytes would otherwise make a client that takes it slowly but steadily look
/// stalled.
#[derive(Default)]
pub(super) struct Stalled {
    /// How many looks the watch has made; an answer records it when it starts waiting.
    looks: AtomicU32,
    answers: Mutex<Vec<Weak<dyn Release>>>,
    /// Told when an answer is watched while none were, so that a connection without any costs
    /// no timer.
    first: Notify,
}

impl Stalled {
    /// `body`, ended if its client stops taking it: an HTTP/2 answer whose head is sent.
    pub(super) fn watch<B>(self: &Arc<Self>, body: B) -> Watched<B>
    where
        B: Body + Send + 'static,
    {
        let slot = Arc::new(Mutex::new(State {
            body: Some(Box::pin(body)),
            rest: Bytes::new(),
            waiting_since: self.waiting_since(),
            stream: streams::current(),
        }));
        let weak = Arc::downgrade(&slot) as Weak<dyn Release>;
        let mut answers = lock(&self.answers);
        if answers.is_empty() {
            self.first.notify_one();
        } else if answers.len() == answers.capacity() {
            // An answer that ended leaves its entry until the next look; pruning before the
            // list grows keeps it within twice the answers alive on a busy connection.
            answers.retain(|answer| answer.strong_count() > 0);
        }
        answers.push(weak);
        Watched {
            slot,
            stalled: Arc::clone(self),
        }
    }

    /// Looks every half `bound` while answers are watched, ending those whose client has taken
    /// nothing of them for `bound`. Runs until dropped.
    pub(super) async fn watch_every(&self, bound: Duration) {
        loop {
            if lock(&self.answers).is_empty() {
                self.first.notified().await;
            }
            tokio::time::sleep(bound / 2).await;
            self.look();
        }
    }

    fn look(&self) {
        let now = self.looks.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
        lock(&self.answers).retain(|answer| match answer.upgrade() {
            Some(answer) => !answer.release_if_waiting_before(now),
            None => false,
        });
    }

    /// The mark of an answer that starts waiting for its client now: one past the looks made,
    /// so that zero can mean "not waiting".
    fn waiting_since(&self) -> u32 {
        self.looks.load(Ordering::Acquire).wrapping_add(1)
    }
}

/// A watched answer, as the watch sees it.
trait Release: Send + Sync {
    /// Drops the answer's body if its client has taken nothing of it for two whole periods
    /// before the look `now`; answers whether the answer is done with (released now or
    /// before).
    fn release_if_waiting_before(&self, now: u32) -> bool;
}

struct State<B> {
    /// `None` once released.
    body: Option<Pin<Box<B>>>,
    /// What is left of the body's last frame after the [`PIECE`]s handed so far.
    rest: Bytes,
    /// [`Stalled::waiting_since`] when the client was last handed a frame (or the head) and
    /// has not asked for the next one since; zero while the body itself is awaited.
    waiting_since: u32,
    /// Ends the stream's task, which resets the stream: hyper, waiting for window the client
    /// does not grant, would not ask the released body for a frame until it did.
    stream: Option<Arc<Notify>>,
}

impl<B: Send> Release for Mutex<State<B>> {
    fn release_if_waiting_before(&self, now: u32) -> bool {
        let mut state = lock(self);
        if state.body.is_none() {
            return true;
        }
        // Marked after look `since - 1` and before look `since`: two whole periods have
        // passed at look `since + 2`. Signed, because an answer may mark itself after a look
        // has counted itself and before it gets here.
        let since = state.waiting_since;
        if since != 0 && now.wrapping_sub(since) as i32 >= 2 {
            tracing::debug!("an HTTP/2 client took nothing of an answer for the send timeout");
            state.body = None;
            state.rest = Bytes::new();
            if let Some(stream) = state.stream.take() {
                stream.notify_one();
            }
            return true;
        }
        false
    }
}

/// The body of a watched HTTP/2 answer: fails once released, so that hyper resets its stream.
pub(super) struct Watched<B> {
    slot: Arc<Mutex<State<B>>>,
    stalled: Arc<Stalled>,
}

impl<B> Body for Watched<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut state = lock(&self.slot);
        let state = &mut *state;
        let Some(body) = state.body.as_mut() else {
            return Poll::Ready(Some(Err(Box::new(Ended))));
        };
        let frame = if state.rest.is_empty() {
            body.as_mut().poll_frame(cx).map(|frame| {
                frame.map(|frame| {
                    frame
                        .map_err(Into::into)
                        .map(|frame| match frame.into_data() {
                            Ok(mut data) => {
                                let piece = piece(&mut data);
                                state.rest = data;
                                Frame::data(piece)
                            }
                            Err(frame) => frame,
                        })
                })
            })
        } else {
            Poll::Ready(Some(Ok(Frame::data(piece(&mut state.rest)))))
        };
        state.waiting_since = match &frame {
            Poll::Ready(Some(Ok(_))) => self.stalled.waiting_since(),
            _ => 0,
        };
        frame
    }

    fn is_end_stream(&self) -> bool {
        let state = lock(&self.slot);
        state.rest.is_empty() && state.body.as_ref().is_some_and(|body| body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let state = lock(&self.slot);
        let Some(body) = state.body.as_ref() else {
            return SizeHint::default();
        };
        let (hint, rest) = (body.size_hint(), state.rest.len() as u64);
        let mut whole = SizeHint::new();
        whole.set_lower(hint.lower().saturating_add(rest));
        if let Some(upper) = hint.upper() {
            whole.set_upper(upper.saturating_add(rest));
        }
        whole
    }
}

/// The first [`PIECE`] of `data`, leaving the rest in it.
fn piece(data: &mut Bytes) -> Bytes {
    if data.len() > PIECE {
        data.split_to(PIECE)
    } else {
        std::mem::take(data)
    }
}

/// Why a released answer's stream is reset.
#[derive(Debug)]
struct Ended;

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client took nothing of the answer for the send timeout")
    }
}

impl std::error::Error for Ended {}

pin_project! {
    /// An answer's body: watched over HTTP/2, as it is over HTTP/1.1 (whose stalls the socket's
    /// [`SendTimeout`](super::send_timeout::SendTimeout) ends).
    #[project = AnswerProjection]
    pub(super) enum Answer<B> {
        Plain { #[pin] body: B },
        Watched { body: Watched<B> },
    }
}

impl<B> Body for Answer<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            AnswerProjection::Plain { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map_err(Into::into))),
            AnswerProjection::Watched { body } => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Plain { body } => body.is_end_stream(),
            Self::Watched { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Plain { body } => body.size_hint(),
            Self::Watched { body } => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests;
