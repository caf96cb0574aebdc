//! [`InFlightLimit`]: at most so many requests in flight to the backend at once, as Knative's
//! `containerConcurrency` or nginx's `max_conns`. The others wait their turn, first come first
//! served, up to a bound; then they get a 503 with `Retry-After`.
//!
//! A backend that has just woken up gets every held request at once; a small one (a dev
//! environment, a VM with one worker) may fall over under that herd, or answer each request
//! slower than all of them one after the other. A request counts from when it is sent until
//! its answer's body has been read (or dropped), or, for an upgrade, until the upgraded
//! connection closes.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::pool::Lease;

/// How long a request waits for its turn unless the proxy is told otherwise.
pub const DEFAULT_LIMIT_WAIT: Duration = Duration::from_secs(30);

/// At most so many requests in flight to a backend at once; the others wait their turn, first
/// come first served, up to a bound. Given to [`ProxyBuilder::limit`](super::ProxyBuilder::limit);
/// the proxies built with clones of one limit share it (one backend behind several proxies,
/// such as one per worker thread).
///
/// ```
/// # use std::num::NonZeroUsize;
/// use tower_monitor::{Url, proxy::{InFlightLimit, Proxy, DEFAULT_LIMIT_WAIT}};
///
/// let limit = InFlightLimit::new(NonZeroUsize::new(4).unwrap(), DEFAULT_LIMIT_WAIT);
/// let url = Url::parse("http://127.0.0.1:8081/").unwrap();
/// let proxies: Vec<Proxy> = (0..2)
///     .map(|_| Proxy::builder(url.clone()).limit(limit.clone()).build().unwrap())
///     .collect();
/// # let _ = proxies;
/// ```
#[derive(Clone)]
pub struct InFlightLimit {
    turns: Arc<Semaphore>,
    max_wait: Duration,
}

impl std::fmt::Debug for InFlightLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlightLimit")
            .field("free", &self.turns.available_permits())
            .field("max_wait", &self.max_wait)
            .finish()
    }
}

impl InFlightLimit {
    /// At most `max` requests in flight; a request waits `max_wait` at most for its turn (zero:
    /// not at all), then gets a 503.
    ///
    /// ```
    /// # use std::{num::NonZeroUsize, time::Duration};
    /// let limit = tower_monitor::proxy::InFlightLimit::new(NonZeroUsize::MIN, Duration::ZERO);
    /// # let _ = limit;
    /// ```
    pub fn new(max: NonZeroUsize, max_wait: Duration) -> Self {
        Self {
            turns: Arc::new(Semaphore::new(max.get().min(Semaphore::MAX_PERMITS))),
            max_wait,
        }
    }

    /// This request's turn, once one is free: `None` if none was within the bound.
    pub(crate) async fn turn(&self) -> Option<Turn> {
        let turn = Arc::clone(&self.turns).acquire_owned();
        match tokio::time::timeout(self.max_wait, turn).await {
            Ok(Ok(permit)) => Some(Turn(permit)),
            // The semaphore is never closed; a timeout is the only way here.
            Ok(Err(_)) | Err(_) => None,
        }
    }
}

/// A request's turn, given back when dropped.
pub(crate) struct Turn(#[allow(dead_code)] OwnedSemaphorePermit);

impl Turn {
    /// `lease` (the answer's connection, if pooled) with this turn: both given back when the
    /// answer's body is done with.
    pub(crate) fn with(self, lease: Option<Box<dyn Lease>>) -> Box<dyn Lease> {
        Box::new(Held { lease, turn: self })
    }
}

struct Held {
    lease: Option<Box<dyn Lease>>,
    turn: Turn,
}

impl Lease for Held {
    fn release(self: Box<Self>, read: bool) {
        let Held { lease, turn } = *self;
        if let Some(lease) = lease {
            lease.release(read);
        }
        drop(turn);
    }

    fn timer(&mut self) -> Option<&mut Option<std::pin::Pin<Box<tokio::time::Sleep>>>> {
        self.lease.as_mut().and_then(|lease| lease.timer())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn turns_are_given_in_order_and_a_wait_is_bounded() {
        let limit = InFlightLimit::new(NonZeroUsize::new(1).unwrap(), Duration::from_secs(5));
        let first = limit.turn().await.expect("a free turn");
        let start = tokio::time::Instant::now();
        assert!(
            limit.turn().await.is_none(),
            "no turn while the first holds it"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        // A waiter gets the turn as soon as it is given back.
        let limit = Arc::new(limit);
        let waiting = tokio::spawn({
            let limit = Arc::clone(&limit);
            async move { limit.turn().await.is_some() }
        });
        tokio::task::yield_now().await;
        let given_back = first.with(None);
        given_back.release(true);
        assert!(waiting.await.unwrap());
    }
}
