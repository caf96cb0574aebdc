//! Hold mode: instead of answering 503 at once, keep a request until the backend is up.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::FallbackReason;
use crate::registered::Registered;

/// How many requests may be held at once unless set otherwise.
pub const DEFAULT_MAX_HELD: usize = 10_000;

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The layer's hold settings, and how many requests it holds right now.
#[derive(Clone, Debug)]
pub(crate) struct Hold {
    pub(crate) max_wait: Duration,
    pub(crate) max_held: usize,
    held: Arc<AtomicUsize>,
}

impl Hold {
    pub(crate) fn new(max_wait: Duration) -> Self {
        Self {
            max_wait,
            max_held: DEFAULT_MAX_HELD,
            held: Arc::default(),
        }
    }

    /// Waits for the backend to come up: `Ok(waited)` once it is, or the answer to give.
    ///
    /// Each held request re-probes with a growing backoff; probes are shared, so a crowd of
    /// held requests costs one probe at a time. A request whose client goes away is dropped
    /// here, and its place freed.
    pub(crate) async fn wait_until_up(
        &self,
        registered: &Registered,
    ) -> Result<Duration, FallbackReason> {
        let Some(_place) = self.take_place() else {
            tracing::debug!(service = %registered.name, max = self.max_held, "too many requests held; answering 503");
            return Err(FallbackReason::NotReady);
        };
        let started = Instant::now();
        let deadline = started + self.max_wait;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(FallbackReason::Timeout);
            }
            tokio::time::sleep(backoff.min(deadline - now)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            match registered.status().await {
                Ok(true) => return Ok(started.elapsed()),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(service = %registered.name, %error, "status unknown while holding; answering 500");
                    return Err(FallbackReason::Error);
                }
            }
        }
    }

    fn take_place(&self) -> Option<Place> {
        let taken = self.held.fetch_add(1, Ordering::SeqCst);
        let place = Place(Arc::clone(&self.held));
        (taken < self.max_held).then_some(place)
    }
}

/// One held request; frees its place when dropped.
struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
