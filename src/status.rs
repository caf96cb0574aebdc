//! The lock-free "up until" cache of one service.
//!
//! The cached-up check is a single relaxed atomic load: no lock, no allocation, no shared write,
//! and no clock read. That works because the cache does not compare a timestamp with "now" when
//! it is read; instead an expiry timer clears the cached up when the grace period ends.
//!
//! Granularity: the timer runs on Tokio's timer wheel, which has millisecond resolution, so a
//! cached up lasts the grace period rounded up to the next millisecond, plus however late the
//! runtime gets to run the timer task. On a starved runtime the cached up can therefore outlive
//! its grace period by that delay (the requests it answers are served by the same starved
//! runtime, so they are late too). If the timer task is dropped (its runtime shut down), the
//! cached up is cleared at once: losing it costs a probe, keeping it could cost correctness.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::Instant;

/// Whether a service counts as up, and until when.
pub(crate) struct StatusCache {
    /// Nanoseconds after `epoch` until which the service counts as up; 0 means "not cached up".
    up_until: AtomicU64,
    /// Whether an expiry timer is running for this cache.
    expiry_armed: AtomicBool,
    epoch: Instant,
    grace_period: Duration,
}

impl StatusCache {
    pub(crate) fn new(grace_period: Duration) -> Arc<Self> {
        Arc::new(Self {
            up_until: AtomicU64::new(0),
            expiry_armed: AtomicBool::new(false),
            epoch: Instant::now(),
            grace_period,
        })
    }

    /// The hot path: is an up status cached right now?
    #[inline]
    pub(crate) fn is_up(&self) -> bool {
        // Relaxed is enough: nothing else is published through this value, and a reader that
        // sees a just-cleared up a moment late is within the timer's documented granularity.
        self.up_until.load(Ordering::Relaxed) != 0
    }

    /// Caches "up" for the grace period, starting now.
    pub(crate) fn mark_up(self: &Arc<Self>) {
        if self.grace_period.is_zero() {
            return;
        }
        let until = (Instant::now() + self.grace_period).saturating_duration_since(self.epoch);
        let until = u64::try_from(until.as_nanos()).unwrap_or(u64::MAX).max(1);
        // SeqCst on both atomics, here and in `disarm`: the store/swap pair must not be
        // reordered against the timer's store/load pair, or a fresh up could go without a timer.
        self.up_until.store(until, Ordering::SeqCst);
        if !self.expiry_armed.swap(true, Ordering::SeqCst) {
            self.start_expiry_timer();
        }
    }

    /// Forgets any cached up (a probe just failed).
    pub(crate) fn mark_down(&self) {
        self.up_until.store(0, Ordering::SeqCst);
    }

    fn start_expiry_timer(self: &Arc<Self>) {
        let timer = ExpiryTimer {
            cache: Arc::downgrade(self),
            finished: false,
        };
        match Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(timer.run());
            }
            // Without a runtime (set_status_up from a plain thread) a thread keeps the time.
            Err(_) => {
                std::thread::spawn(move || timer.run_blocking());
            }
        }
    }

    /// Clears the cached up if its time is over. Returns when to look again, or `None` when
    /// nothing is cached any more.
    fn expire(&self, now: Instant) -> Option<Instant> {
        loop {
            let until = self.up_until.load(Ordering::SeqCst);
            if until == 0 {
                return None;
            }
            let deadline = self.epoch + Duration::from_nanos(until);
            if now < deadline {
                return Some(deadline);
            }
            if self
                .up_until
                .compare_exchange(until, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                tracing::trace!("cached up status expired");
                return None;
            }
        }
    }

    /// Stops the timer, unless an up was cached meanwhile by a caller that saw the timer still
    /// armed and so started none: then the timer must carry on (returns `true`).
    fn disarm(&self) -> bool {
        self.expiry_armed.store(false, Ordering::SeqCst);
        self.up_until.load(Ordering::SeqCst) != 0 && !self.expiry_armed.swap(true, Ordering::SeqCst)
    }
}

/// Clears a cache's up when its grace period ends. Holds the cache weakly, so dropping the
/// monitor ends the timer.
struct ExpiryTimer {
    cache: Weak<StatusCache>,
    finished: bool,
}

impl ExpiryTimer {
    /// What to do next: `Some(deadline)` to sleep, `None` to stop.
    fn step(&mut self) -> Option<Instant> {
        let cache = self.cache.upgrade()?;
        loop {
            if let Some(deadline) = cache.expire(Instant::now()) {
                return Some(deadline);
            }
            if !cache.disarm() {
                self.finished = true;
                return None;
            }
        }
    }

    async fn run(mut self) {
        while let Some(deadline) = self.step() {
            tokio::time::sleep_until(deadline).await;
        }
    }

    fn run_blocking(mut self) {
        while let Some(deadline) = self.step() {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        }
    }
}

impl Drop for ExpiryTimer {
    fn drop(&mut self) {
        // Dropped while armed (the runtime shut down): nobody would clear the up any more.
        if !self.finished {
            if let Some(cache) = self.cache.upgrade() {
                cache.mark_down();
                cache.expiry_armed.store(false, Ordering::SeqCst);
            }
        }
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

    #[tokio::test(start_paused = true)]
    async fn up_after_expiry_arms_a_new_timer() {
        let cache = StatusCache::new(Duration::from_secs(1));
        cache.mark_up();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!cache.is_up());
        cache.mark_up();
        assert!(cache.is_up());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!cache.is_up());
    }

    #[tokio::test]
    async fn zero_grace_period_never_caches() {
        let cache = StatusCache::new(Duration::ZERO);
        cache.mark_up();
        assert!(!cache.is_up());
    }

    #[tokio::test(start_paused = true)]
    async fn down_clears_a_cached_up() {
        let cache = StatusCache::new(Duration::from_secs(10));
        cache.mark_up();
        cache.mark_down();
        assert!(!cache.is_up());
    }

    #[test]
    fn a_timer_dropped_with_its_runtime_clears_the_up() {
        let cache = StatusCache::new(Duration::from_secs(3600));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async { cache.mark_up() });
        assert!(cache.is_up());
        drop(runtime);
        assert!(!cache.is_up());
        assert!(!cache.expiry_armed.load(Ordering::SeqCst));
    }

    #[test]
    fn without_a_runtime_a_thread_keeps_the_time() {
        let cache = StatusCache::new(Duration::from_millis(50));
        cache.mark_up();
        assert!(cache.is_up());
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        while cache.is_up() && std::time::Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!cache.is_up());
    }
}
