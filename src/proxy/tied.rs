//! [`Tied`]: a request's body on its way to an HTTP/2 backend, tied to the answer: an answer
//! let go before its end ends the upload with it.
//!
//! hyper's HTTP/2 client sends a request's body from a task of its own, which it stops if the
//! response future is dropped, but not once the response head has come: after that the body
//! goes on being sent for as long as the client sends it, and the backend's stream stays open,
//! as does the client's (h2 resets a stream once nothing holds it, and the body is the
//! client's stream). A gRPC bidi stream whose client took none of its answer, ended by the
//! gateway's stall watch, was reset, on both sides, only once the client ended its upload,
//! which it need never do. Tied, the answer's body ends the upload when it is dropped before
//! its end ([`Cut`], the answer's lease): the request's body is dropped at once, which lets go
//! of the client's stream, and hyper's task, woken, resets the backend's (`CANCEL`). An answer
//! read to its end leaves the upload to go on.
//!
//! Not when the backend has stopped reading the upload, its window for it used up: hyper's
//! task then holds a frame it took from the body and waits for window before it looks at the
//! body again, and nothing outside it can reset the stream (h2 resets one only once nothing
//! holds it, and the task holds its sending half). The backend's stream stays until the
//! backend reads on or the connection ends; the client's is reset all the same.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use http_body::{Body, Frame, SizeHint};

use super::pool::Lease;
use crate::BoxError;
use crate::sync::lock;

/// A request's body as it goes to an HTTP/2 backend; see the [module documentation](self).
pub(crate) enum Tied<B> {
    /// Nothing to send: nothing to tie, and nothing allocated.
    Bare(B),
    Tied(Shared<B>),
}

/// The body, shared with the [`Cut`] that ends it.
pub(crate) struct Shared<B>(Arc<Mutex<Slot<B>>>);

struct Slot<B> {
    /// `None` once cut (or given back, or dropped).
    body: Option<B>,
    /// The task sending the body, while it waits for the next frame: woken at the cut.
    waker: Option<Waker>,
}

impl<B> Tied<B>
where
    B: Body + Send + 'static,
{
    /// `body`, and the lease that ends it (unless its answer is read to its end), if it has
    /// anything to send.
    pub(crate) fn new(body: B) -> (Self, Option<Box<dyn Lease>>) {
        if body.is_end_stream() {
            return (Self::Bare(body), None);
        }
        let slot = Arc::new(Mutex::new(Slot {
            body: Some(body),
            waker: None,
        }));
        let cut = Box::new(Cut(Arc::clone(&slot)));
        (Self::Tied(Shared(slot)), Some(cut))
    }
}

impl<B> Tied<B> {
    /// The body, as it was before it was tied: for a request sent again.
    pub(crate) fn into_inner(self) -> Option<B> {
        match self {
            Self::Bare(body) => Some(body),
            Self::Tied(shared) => lock(&shared.0).body.take(),
        }
    }
}

impl<B> Drop for Shared<B> {
    // Dropped by hyper (sent, or never to be), the body goes then, not with the answer.
    fn drop(&mut self) {
        drop(lock(&self.0).body.take());
    }
}

impl<B> Body for Tied<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let shared = match self.get_mut() {
            Self::Bare(body) => {
                return Pin::new(body).poll_frame(cx).map_err(Into::into);
            }
            Self::Tied(shared) => shared,
        };
        let mut slot = lock(&shared.0);
        let slot = &mut *slot;
        let Some(body) = slot.body.as_mut() else {
            // As a stream reset: hyper resets the backend's with the reason it finds here.
            return Poll::Ready(Some(Err(Box::new(h2::Error::from(h2::Reason::CANCEL)))));
        };
        match Pin::new(body).poll_frame(cx) {
            Poll::Pending => {
                match &mut slot.waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    waker => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            ready => ready.map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Bare(body) => body.is_end_stream(),
            // Cut, it has an error yet to give.
            Self::Tied(shared) => lock(&shared.0).body.as_ref().is_some_and(B::is_end_stream),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Bare(body) => body.size_hint(),
            Self::Tied(shared) => lock(&shared.0)
                .body
                .as_ref()
                .map_or_else(SizeHint::default, B::size_hint),
        }
    }
}

/// Ends a [`Tied`] body, as the lease of its answer: when the answer is let go before its end
/// (its client stalled or gone).
struct Cut<B>(Arc<Mutex<Slot<B>>>);

impl<B: Send> Lease for Cut<B> {
    fn release(self: Box<Self>, read: bool) {
        if read {
            return;
        }
        let (body, waker) = {
            let mut slot = lock(&self.0);
            (slot.body.take(), slot.waker.take())
        };
        // Outside the lock: dropping the client's stream and waking hyper's task take locks
        // of their own.
        drop(body);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// An upload whose next frame never comes, told dropped through its `Arc`.
    struct Waiting(#[allow(dead_code)] Arc<()>);

    impl Body for Waiting {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    /// Told when woken.
    struct Woken(std::sync::atomic::AtomicBool);

    impl futures::task::ArcWake for Woken {
        fn wake_by_ref(woken: &Arc<Self>) {
            woken.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn an_answer_let_go_before_its_end_drops_the_upload_and_wakes_its_sender() {
        let alive = Arc::new(());
        let (mut tied, cut) = Tied::new(Waiting(Arc::clone(&alive)));
        let woken = Arc::new(Woken(std::sync::atomic::AtomicBool::new(false)));
        let waker = futures::task::waker(Arc::clone(&woken));
        let mut cx = Context::from_waker(&waker);
        // The sender waits for the next frame; then the answer is let go.
        assert!(Pin::new(&mut tied).poll_frame(&mut cx).is_pending());
        cut.expect("an upload to tie").release(false);
        assert_eq!(
            Arc::strong_count(&alive),
            1,
            "the upload is dropped at once"
        );
        assert!(woken.0.load(std::sync::atomic::Ordering::SeqCst));
        let Poll::Ready(Some(Err(error))) = Pin::new(&mut tied).poll_frame(&mut cx) else {
            panic!("the sender, woken, finds no error");
        };
        let reason = error
            .downcast_ref::<h2::Error>()
            .and_then(h2::Error::reason);
        assert_eq!(reason, Some(h2::Reason::CANCEL));
        assert!(!tied.is_end_stream(), "not ended as if whole");
    }

    #[test]
    fn an_answer_read_to_its_end_leaves_the_upload_alone() {
        let alive = Arc::new(());
        let (tied, cut) = Tied::new(Waiting(Arc::clone(&alive)));
        cut.expect("an upload to tie").release(true);
        assert_eq!(Arc::strong_count(&alive), 2);
        let body = tied.into_inner();
        assert!(body.is_some(), "given back whole");
        assert_eq!(Arc::strong_count(&alive), 2);
    }

    #[test]
    fn nothing_to_send_is_not_tied() {
        let (tied, cut) = Tied::new(http_body_util::Empty::<Bytes>::new());
        assert!(cut.is_none());
        assert!(matches!(tied, Tied::Bare(_)));
        assert!(tied.is_end_stream());
    }
}
