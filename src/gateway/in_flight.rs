//! [`InFlight`]: the requests in flight on one client connection, so that a connection with
//! none is closed after a bound: a client that connected and sent nothing, one request and
//! then nothing, or half a request head (an HTTP/1.1 head is a request only once whole) would
//! otherwise keep its connection and task for ever. It is the gateway's only such bound:
//! hyper's own header read timeout, which would bound the HTTP/1.1 cases alone, arms and drops
//! a timer for every request head (about 4% of the gateway's instructions per request).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::task::AtomicWaker;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// One connection's count of requests in flight; see the [module documentation](self).
///
/// Nothing is told when the count falls to zero: the idle watch looks once per bound instead,
/// so a request costs two uncontended increments and two plain stores, not a lock.
#[derive(Default)]
pub(super) struct InFlight {
    count: AtomicUsize,
    /// Whether a request began or ended since the idle watch's last look ([`ACTIVE`]), or
    /// not ([`QUIET`]), or none ever began ([`NEVER`]).
    active: AtomicU8,
    /// Set (to a [`Closing`]) when the connection is to be closed; the connection's task is
    /// woken through `close_waker`.
    closing: AtomicU8,
    close_waker: AtomicWaker,
}

/// No request has begun on the connection yet.
const NEVER: u8 = 0;
/// No request began or ended since the idle watch's last look.
const QUIET: u8 = 1;
/// A request began or ended since the idle watch's last look.
const ACTIVE: u8 = 2;

/// Why a connection is closed by [`InFlight::close`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Closing {
    /// No request in flight for the header read timeout.
    Idle = 1,
    /// Its client reset too many requests before their answer (a rapid reset).
    Resets = 2,
}

impl InFlight {
    /// A request began: it is in flight until the returned guard is dropped (with its
    /// answer's body, or an upgraded connection).
    pub(super) fn begin(self: &Arc<Self>) -> Guard {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.active.store(ACTIVE, Ordering::Release);
        Guard(Arc::clone(self))
    }

    /// Whether a request has begun on the connection (only then has hyper read what tells
    /// HTTP/1.1 from HTTP/2, and a graceful close lets it answer what it read).
    pub(super) fn began(&self) -> bool {
        self.active.load(Ordering::Acquire) != NEVER
    }

    /// Completes once the connection has had no request in flight, and none begin or end, for
    /// a whole look of `bound`: between `bound` and twice `bound` after its last request ended.
    /// Then [`closed`](Self::closed) completes too.
    ///
    /// Run it as a task of its own: polled beside the connection, its timer would be polled at
    /// every wake-up of the connection, several times per request.
    pub(super) async fn idle_for(&self, bound: Duration) {
        loop {
            // Quiet since now, unless none ever began: that stays known.
            let _ =
                self.active
                    .compare_exchange(ACTIVE, QUIET, Ordering::AcqRel, Ordering::Acquire);
            tokio::time::sleep(bound).await;
            if self.active.load(Ordering::Acquire) != ACTIVE
                && self.count.load(Ordering::Acquire) == 0
            {
                self.close(Closing::Idle);
                return;
            }
        }
    }

    /// Has the connection closed at once, for `why` (the first reason given stays).
    pub(super) fn close(&self, why: Closing) {
        let _ = self
            .closing
            .compare_exchange(0, why as u8, Ordering::AcqRel, Ordering::Acquire);
        self.close_waker.wake();
    }

    /// Completes once the connection is to be closed ([`idle_for`](Self::idle_for) found it
    /// idle, or [`close`](Self::close)), with why: a load and a waker registration per poll,
    /// cheap beside the connection in its `select!`. Every reason to close a connection early
    /// comes through here, so that the connection's task polls one such future, not one per
    /// reason, at each of its wake-ups.
    pub(super) fn closed(&self) -> impl Future<Output = Closing> + '_ {
        std::future::poll_fn(move |cx| {
            if let Some(why) = self.closing() {
                return Poll::Ready(why);
            }
            self.close_waker.register(cx.waker());
            self.closing().map_or(Poll::Pending, Poll::Ready)
        })
    }

    fn closing(&self) -> Option<Closing> {
        match self.closing.load(Ordering::Acquire) {
            0 => None,
            1 => Some(Closing::Idle),
            _ => Some(Closing::Resets),
        }
    }
}

/// A request in flight on its connection, until dropped.
pub(super) struct Guard(Arc<InFlight>);

impl Drop for Guard {
    fn drop(&mut self) {
        // Marked before the count falls: a look that sees zero also sees the activity.
        self.0.active.store(ACTIVE, Ordering::Release);
        self.0.count.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project! {
    /// An answer's body, its request counted in flight until the body is dropped.
    pub(super) struct Counted<B> {
        #[pin]
        inner: B,
        guard: Guard,
    }
}

impl<B> Counted<B> {
    pub(super) fn new(inner: B, guard: Guard) -> Self {
        Self { inner, guard }
    }
}

impl<B: Body<Data = Bytes>> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn idle_is_counted_from_the_end_of_the_last_request() {
        let in_flight = Arc::new(InFlight::default());
        let start = Instant::now();
        // A long request that ends between two looks (at 90 s and 100 s): the look at 100 s
        // finds none in flight, but one ended since the last look.
        let request = in_flight.begin();
        let ended = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(95)).await;
            drop(request);
        });
        in_flight.idle_for(Duration::from_secs(10)).await;
        ended.await.unwrap();
        let idle = start.elapsed() - Duration::from_secs(95);
        assert!(
            (Duration::from_secs(10)..=Duration::from_secs(20)).contains(&idle),
            "closed {idle:?} after the last request ended"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_begun_and_ended_between_two_looks_starts_the_idle_time_again() {
        let in_flight = Arc::new(InFlight::default());
        let start = Instant::now();
        let short = {
            let in_flight = Arc::clone(&in_flight);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                drop(in_flight.begin());
            })
        };
        in_flight.idle_for(Duration::from_secs(10)).await;
        short.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(20));
    }

    /// A connection that never had a request is closed at the first look, as one idle after
    /// its requests is; what tells a reload that no request has begun survives the looks.
    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_is_closed_at_the_first_look() {
        let in_flight = Arc::new(InFlight::default());
        let start = Instant::now();
        in_flight.idle_for(Duration::from_secs(10)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert_eq!(in_flight.closing(), Some(Closing::Idle));
        assert!(!in_flight.began());

        let in_flight = Arc::new(InFlight::default());
        let looks = {
            let in_flight = Arc::clone(&in_flight);
            tokio::spawn(async move { in_flight.idle_for(Duration::from_secs(10)).await })
        };
        drop(in_flight.begin());
        looks.await.unwrap();
        // Ended before the watch began: marked quiet then, closed at its first look, and
        // begun all the same.
        assert_eq!(start.elapsed(), Duration::from_secs(20));
        assert!(in_flight.began());
    }
}
