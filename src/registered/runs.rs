//! Runs of a trigger (`on_down`'s, `on_idle`'s) counted while they last, and a bounded wait
//! for none to be left: an operator's stop waits so for a start's `on_down` to end.

use std::sync::Arc;
use std::time::Duration;

use crate::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// The runs of one trigger in progress (and those about to begin).
#[derive(Default)]
pub(super) struct Runs {
    count: AtomicUsize,
    /// Woken each time the count falls to zero.
    none_left: Notify,
}

impl Runs {
    /// Whether any run is counted now.
    pub(super) fn running(&self) -> bool {
        self.count.load(Ordering::SeqCst) > 0
    }

    /// Waits until no run is counted, at most `bound`; answers whether none is.
    pub(super) async fn none_within(&self, bound: Duration) -> bool {
        // A trigger timeout may be `Duration::MAX` (no bound, as `tokio::time::timeout` takes
        // it); an `Instant` that far ahead overflows.
        let deadline =
            tokio::time::Instant::now() + bound.min(crate::deadline::PRACTICALLY_FOREVER);
        loop {
            // Enabled before the look, so a run ending between the two is not missed.
            let ended = self.none_left.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if !self.running() {
                return true;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return !self.running();
            }
        }
    }
}

/// Counts a run while it lives, however it ends (a dropped future included).
pub(super) struct TriggerRun(Arc<Runs>);

impl TriggerRun {
    pub(super) fn new(runs: &Arc<Runs>) -> Self {
        Self::counted(runs).0
    }

    /// [`new`](Self::new), and whether other runs were counted already.
    pub(super) fn counted(runs: &Arc<Runs>) -> (Self, bool) {
        let others = runs.count.fetch_add(1, Ordering::SeqCst) > 0;
        (Self(Arc::clone(runs)), others)
    }
}

impl Drop for TriggerRun {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.none_left.notify_waiters();
        }
    }
}
