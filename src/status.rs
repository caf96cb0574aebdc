//! The lock-free "up until" cache of one service.
//!
//! The cached-up check is a single relaxed atomic load: no lock, no allocation, no shared write,
//! and no clock read. That works because the cache never compares a timestamp with "now" when it
//! is read: a [`Deadline`] timer clears the cached up when the grace period ends.
//!
//! Granularity: the timer runs on Tokio's timer wheel, so a cached up lasts the grace period
//! rounded up to the next millisecond, plus however late the runtime is to run the timer task.
//! On a starved runtime the cached up can therefore outlive its grace period by that delay (the
//! requests it answers are served by the same starved runtime, so they are late too). If the
//! timer task is dropped (its runtime shut down), the cached up is cleared at once: losing it
//! costs a probe, keeping it could cost correctness.
//!
//! That lag is the layer's alone: `MinMonitor::status`, the probe path and the layer's slow
//! path ask [`StatusCache::is_up_now`], which also compares the deadline with the clock, so a
//! status asked after the grace period probes even when the timer has not run yet.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::deadline::{Deadline, Expiring};

/// Whether a service counts as up, and until when.
pub(crate) struct StatusCache {
    up_until: Deadline,
    grace_period: Duration,
}

impl StatusCache {
    pub(crate) fn new(grace_period: Duration) -> Arc<Self> {
        Arc::new(Self {
            up_until: Deadline::new(),
            grace_period,
        })
    }

    /// The hot path: is an up status cached right now?
    #[inline]
    pub(crate) fn is_up(&self) -> bool {
        self.up_until.is_armed()
    }

    /// Is an up status cached, and its grace period not over? Exact where [`is_up`](Self::is_up)
    /// may lag by the timer task's delay: for the callers that may probe (a clock read costs
    /// nothing beside a probe), so that a grace period never outlives itself there.
    pub(crate) fn is_up_now(&self) -> bool {
        self.up_until.is_armed() && self.up_until.is_armed_at(Instant::now())
    }

    /// Caches "up" for the grace period, starting now.
    pub(crate) fn mark_up(self: &Arc<Self>) {
        if !self.grace_period.is_zero() {
            Deadline::arm(
                self,
                crate::deadline::saturating_after(Instant::now(), self.grace_period),
            );
        }
    }

    /// Forgets any cached up (a probe just failed).
    pub(crate) fn mark_down(&self) {
        self.up_until.disarm();
    }
}

impl Expiring for StatusCache {
    fn deadline(&self) -> &Deadline {
        &self.up_until
    }

    fn expired(&self) {
        tracing::trace!("cached up status expired");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn up_is_cached_for_the_grace_period_then_cleared() {
        let cache = StatusCache::new(Duration::from_secs(10));
        cache.mark_up();
        assert!(cache.is_up());
        tokio::time::sleep(Duration::from_millis(9_990)).await;
        assert!(cache.is_up());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!cache.is_up());
    }

    #[tokio::test(start_paused = true)]
    async fn marking_up_again_extends_the_grace_period() {
        let cache = StatusCache::new(Duration::from_secs(10));
        cache.mark_up();
        tokio::time::sleep(Duration::from_secs(6)).await;
        cache.mark_up();
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(cache.is_up(), "the second mark counts from its own time");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!cache.is_up());
    }

    #[tokio::test]
    async fn zero_grace_period_never_caches() {
        let cache = StatusCache::new(Duration::ZERO);
        cache.mark_up();
        assert!(!cache.is_up());
    }

    #[tokio::test(start_paused = true)]
    async fn the_longest_grace_period_is_forever_not_a_panic() {
        let cache = StatusCache::new(Duration::MAX);
        cache.mark_up();
        tokio::time::sleep(Duration::from_secs(10 * 365 * 24 * 3600)).await;
        assert!(cache.is_up());
    }

    #[tokio::test(start_paused = true)]
    async fn down_clears_a_cached_up() {
        let cache = StatusCache::new(Duration::from_secs(10));
        cache.mark_up();
        cache.mark_down();
        assert!(!cache.is_up());
    }
}
