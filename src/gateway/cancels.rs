//! [`Cancels`]: the requests an HTTP/2 client resets before they are answered, so that a
//! connection used for a rapid reset (CVE-2023-44487) is ended.
//!
//! h2 ends a connection whose client resets streams that are still waiting to be accepted
//! (`max_pending_accept_reset_streams`, 20), but not one whose client waits until each
//! request has gone out to the backend: the stream then no longer counts among the
//! connection's concurrent streams, and the client can open the next one at once. Found in
//! the field: 400 requests opened and reset in under a second on one connection all reached
//! the backend, 400 at once, past the 128 streams a connection may have, which the backend
//! went on serving (an HTTP/1.1 backend sees its connection closed only when it answers).
//! Here each request reset before its answer's head, within [`PREMATURE`] of its arrival,
//! counts one, each answered one takes one back; past [`MAX_CANCELLED`] the connection is
//! closed, the requests still in flight on it with it. A client that cancels now and then (a
//! browser leaving a page, a gRPC deadline) stays well within it, and one that cancels what it
//! waited for (a long poll timing out, a page left while a cold start holds its requests) is
//! not counted at all: the balance is never taken back otherwise, and a connection lives for
//! hours.
//!
//! Only requests that reached the backend count ([`Watched`]): one the layer held for a cold
//! start, or that the router or the proxy answered itself, costs the backend nothing, and a
//! gRPC client multiplexing calls with short deadlines resets hundreds of held ones while a
//! backend starts; its connection, and its calls to other services, would be closed for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::in_flight::{Closing, InFlight};
use super::router::RouterFuture;
use super::serve::MAX_CONCURRENT_STREAMS;

/// How many more requests than it had answered a client may reset before their answer: twice
/// the streams a connection may have at once, as nginx bounds the new streams it takes in one
/// read (1.25.3, its fix for the rapid reset).
pub(super) const MAX_CANCELLED: usize = 2 * MAX_CONCURRENT_STREAMS as usize;

/// How soon after its arrival a reset request counts: Envoy's bound for a premature reset
/// (`premature_reset_min_stream_lifetime_seconds`). A rapid reset resets each request as soon
/// as it has gone out; one that waits this long for each has at most the connection's stream
/// limit reset a second, as a client that closes its connection and opens another.
pub(super) const PREMATURE: Duration = Duration::from_secs(1);

/// One HTTP/2 connection's balance of reset and answered requests; see the
/// [module documentation](self).
pub(super) struct Cancels {
    balance: AtomicUsize,
    /// The connection's requests, through which it is closed
    /// ([`Closing::Resets`]): its task already waits on them, so nothing more is polled
    /// at each of its wake-ups.
    connection: Arc<InFlight>,
}

impl Cancels {
    /// The balance of the connection whose requests are `connection`.
    pub(super) fn new(connection: Arc<InFlight>) -> Self {
        Self {
            balance: AtomicUsize::new(0),
            connection,
        }
    }

    /// A request begins: it counts as reset if dropped before [`Pending::answered`].
    pub(super) fn begin(self: &Arc<Self>) -> Pending {
        Pending(Some((Arc::clone(self), Instant::now())))
    }
}

/// A request not answered yet; see [`Cancels::begin`].
pub(super) struct Pending(Option<(Arc<Cancels>, Instant)>);

impl Pending {
    /// The request's answer head is ready: it was not reset before it.
    pub(super) fn answered(mut self) {
        if let Some((cancels, _)) = self.0.take() {
            // Most connections never reset a request: a load, not a write, for them.
            if cancels.balance.load(Ordering::Relaxed) > 0 {
                let _ =
                    cancels
                        .balance
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |balance| {
                            balance.checked_sub(1)
                        });
            }
        }
    }

    /// The request is dropped before it reached the backend: not counted.
    fn not_forwarded(mut self) {
        self.0 = None;
    }
}

pin_project! {
    /// A router's answer to come, and over HTTP/2 its request's [`Pending`]: answered with its
    /// head; dropped before it, counted as reset only if the request had reached the backend.
    pub(super) struct Watched {
        #[pin]
        answer: RouterFuture,
        pending: Option<Pending>,
    }
    impl PinnedDrop for Watched {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Asked only of a reset request: a check, not a store, for one answered, or over
            // HTTP/1.1.
            if this.pending.is_some() && !this.answer.as_ref().get_ref().at_backend() {
                if let Some(pending) = this.pending.take() {
                    pending.not_forwarded();
                }
            }
        }
    }
}

impl Watched {
    pub(super) fn new(answer: RouterFuture, pending: Option<Pending>) -> Self {
        Self { answer, pending }
    }
}

impl Future for Watched {
    type Output = <RouterFuture as Future>::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = ready!(this.answer.poll(cx));
        // A check, not a store, over HTTP/1.1.
        if this.pending.is_some() {
            if let Some(pending) = this.pending.take() {
                pending.answered();
            }
        }
        Poll::Ready(answer)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some((cancels, arrived)) = self.0.take() {
            if arrived.elapsed() >= PREMATURE {
                return;
            }
            let balance = cancels.balance.fetch_add(1, Ordering::Relaxed) + 1;
            if balance > MAX_CANCELLED {
                cancels.connection.close(Closing::Resets);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn resets_past_the_bound_beyond_those_answered_close_the_connection() {
        let connection = Arc::new(InFlight::default());
        let cancels = Arc::new(Cancels::new(Arc::clone(&connection)));
        // Answered requests leave no credit to spend on resets later.
        for _ in 0..10 {
            cancels.begin().answered();
        }
        for _ in 0..MAX_CANCELLED {
            drop(cancels.begin());
        }
        // Each answered request takes one reset back.
        cancels.begin().answered();
        drop(cancels.begin());
        one_more_reset_closes(&connection, &cancels);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_reset_after_a_wait_are_not_counted() {
        let connection = Arc::new(InFlight::default());
        let cancels = Arc::new(Cancels::new(Arc::clone(&connection)));
        let waited: Vec<Pending> = (0..2 * MAX_CANCELLED).map(|_| cancels.begin()).collect();
        tokio::time::advance(PREMATURE).await;
        drop(waited);
        assert!(connection.closed().now_or_never().is_none(), "counted");
        for _ in 0..MAX_CANCELLED {
            drop(cancels.begin());
        }
        one_more_reset_closes(&connection, &cancels);
    }

    /// The connection is still open, and one more reset closes it.
    fn one_more_reset_closes(connection: &InFlight, cancels: &Arc<Cancels>) {
        assert!(
            connection.closed().now_or_never().is_none(),
            "closed too soon"
        );
        drop(cancels.begin());
        assert_eq!(
            connection.closed().now_or_never(),
            Some(Closing::Resets),
            "not closed"
        );
    }
}
