//! Idle shutdown: run a trigger once no request has been in flight for a while.
//!
//! A request is in flight from the layer's `call` until its response body has been sent to the
//! end or dropped, so a long download or stream keeps the backend awake, which a `Delay` on
//! `always` (re-armed only when requests start) cannot do.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::deadline::{Deadline, Expiring};
use crate::trigger::{Trigger, run_detached};

pub(crate) struct IdleWatch {
    in_flight: AtomicUsize,
    /// Armed while nothing is in flight: when it passes, the service has been idle long enough.
    idle_until: Deadline,
    after: Duration,
    trigger: Arc<dyn Trigger>,
}

impl IdleWatch {
    pub(crate) fn new(after: Duration, trigger: Arc<dyn Trigger>) -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            idle_until: Deadline::new(),
            after,
            trigger,
        })
    }

    /// A request starts; it stays counted until the returned guard drops.
    pub(crate) fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.idle_until.disarm();
        InFlight(Arc::clone(self))
    }
}

impl Expiring for IdleWatch {
    fn deadline(&self) -> &Deadline {
        &self.idle_until
    }

    fn expired(&self) {
        // A request may have started just as the time ran out: it keeps the backend.
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            tracing::info!(after = ?self.after, "no request in flight for the idle time; running on_idle");
            run_detached(Arc::clone(&self.trigger), "on_idle trigger");
        }
    }
}

/// Counts one request as in flight while it lives.
pub(crate) struct InFlight(Arc<IdleWatch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let watch = &self.0;
        if watch.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            Deadline::arm(watch, Instant::now() + watch.after);
        }
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InFlight")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BoxError;
    use std::sync::atomic::AtomicUsize;

    fn counting_watch(after: Duration) -> (Arc<IdleWatch>, Arc<AtomicUsize>) {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let trigger = crate::trigger::from_fn(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok::<(), BoxError>(()) }
        });
        (IdleWatch::new(after, Arc::new(trigger)), runs)
    }

    #[tokio::test(start_paused = true)]
    async fn runs_once_after_the_last_request_leaves() {
        let (watch, runs) = counting_watch(Duration::from_secs(10));
        let first = watch.enter();
        let second = watch.enter();
        drop(first);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            0,
            "one request is still in flight"
        );
        drop(second);
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "once per idle period");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_request_restarts_the_idle_time() {
        let (watch, runs) = counting_watch(Duration::from_secs(10));
        drop(watch.enter());
        tokio::time::sleep(Duration::from_secs(8)).await;
        drop(watch.enter());
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
