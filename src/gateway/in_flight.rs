//! [`InFlight`]: the requests in flight on one client connection, so that a connection with
//! none is closed after a bound. hyper bounds an HTTP/1.1 client's wait for its next request
//! (the header read timeout), but not the bytes that tell HTTP/1.1 from HTTP/2, nor anything on
//! an HTTP/2 connection: a client that connected and sent nothing, or one request and then
//! nothing, would keep its connection and task for ever.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::Notify;

/// One connection's count of requests in flight; see the [module documentation](self).
#[derive(Default)]
pub(super) struct InFlight {
    count: AtomicUsize,
    /// Whether a request began since the idle clock last started.
    began: AtomicBool,
    /// Told when the count falls to zero.
    none: Notify,
}

impl InFlight {
    /// A request began: it is in flight until the returned guard is dropped (with its
    /// answer's body, or an upgraded connection).
    pub(super) fn begin(self: &Arc<Self>) -> Guard {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.began.store(true, Ordering::Release);
        Guard(Arc::clone(self))
    }

    /// Completes once the connection has had no request in flight, and begun none, for
    /// `bound`.
    pub(super) async fn idle_for(&self, bound: Duration) {
        loop {
            loop {
                // Made before the count is read: a fall to zero in between is not missed.
                let none = self.none.notified();
                if self.count.load(Ordering::Acquire) == 0 {
                    break;
                }
                none.await;
            }
            self.began.store(false, Ordering::Release);
            tokio::time::sleep(bound).await;
            if self.count.load(Ordering::Acquire) == 0 && !self.began.load(Ordering::Acquire) {
                return;
            }
        }
    }
}

/// A request in flight on its connection, until dropped.
pub(super) struct Guard(Arc<InFlight>);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none.notify_waiters();
        }
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
        let request = in_flight.begin();
        let ended = {
            let in_flight = Arc::clone(&in_flight);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(100)).await;
                drop(request);
                // Another, begun and ended within the bound, starts it again.
                tokio::time::sleep(Duration::from_secs(5)).await;
                drop(in_flight.begin());
            })
        };
        in_flight.idle_for(Duration::from_secs(10)).await;
        ended.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(120));
    }
}
