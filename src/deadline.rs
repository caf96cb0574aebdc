//! A re-armable one-shot timer whose "is it armed?" check is a single atomic load.
//!
//! Its owner (the status cache, a `Delay` trigger, an idle watch) embeds a [`Deadline`] and says
//! what happens when it passes. Arming stores the time; a timer task, started only when none is
//! running, sleeps until the stored time, disarms the deadline and tells the owner. Re-arming
//! while the task sleeps just moves the time: the task notices when it wakes.
//!
//! The task holds its owner weakly and is woken when the owner drops, so dropping the owner ends
//! it at once (not at the next deadline, which may be long). If the task is dropped while
//! armed (its runtime shut down), it disarms the deadline, so nothing stays armed forever; an
//! arm racing that drop from another runtime starts a timer there (or is cancelled), never
//! stays armed without one. Without a Tokio runtime a plain thread keeps the time instead.
//!
//! The atomic protocol itself (arm, pass, stop, abandon) is [`state::DeadlineState`], which the
//! loom models check.
//!
//! Granularity: Tokio's timer wheel has millisecond resolution, so a deadline passes up to a
//! millisecond late, plus however late a busy runtime is to run the task.

mod state;

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::Instant;

pub(crate) use state::DeadlineState;

/// How far ahead "practically forever" is: a delay longer than this (up to `Duration::MAX`) is
/// taken as this one, a century (of 365.25 days), so adding it to a clock reading cannot
/// overflow.
pub(crate) const PRACTICALLY_FOREVER: Duration = Duration::from_secs(3_155_760_000);

/// `now + delay`, saturating: a delay too long to add means "practically forever".
///
/// Use it wherever a user-given duration is added to an instant; `Instant + Duration` panics
/// on overflow.
pub(crate) fn saturating_after(now: Instant, delay: Duration) -> Instant {
    let mut delay = delay.min(PRACTICALLY_FOREVER);
    // A clock within a century of its end does not happen on a real machine; if it did, the
    // furthest instant that can be represented still means "later than anything else".
    loop {
        if let Some(at) = now.checked_add(delay) {
            return at;
        }
        delay /= 2;
    }
}

/// Something that owns a [`Deadline`] and acts when it passes.
pub(crate) trait Expiring: Send + Sync + 'static {
    fn deadline(&self) -> &Deadline;
    /// Called once each time an armed deadline passes (it is already disarmed by then).
    fn expired(&self);
}

pub(crate) struct Deadline {
    /// When it passes, in nanoseconds after `epoch`, and whether a timer runs for it.
    state: DeadlineState,
    epoch: Instant,
    /// Wakes the timer when this deadline is dropped.
    dropped: Arc<Notify>,
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.dropped.notify_one();
    }
}

impl Deadline {
    pub(crate) fn new() -> Self {
        Self {
            state: DeadlineState::new(),
            epoch: Instant::now(),
            dropped: Arc::new(Notify::new()),
        }
    }

    #[inline]
    pub(crate) fn is_armed(&self) -> bool {
        self.state.is_armed()
    }

    /// Whether the deadline is armed and still ahead of `now`: exact, where
    /// [`is_armed`](Self::is_armed) stays true until the timer task has run.
    pub(crate) fn is_armed_at(&self, now: Instant) -> bool {
        self.state.is_armed_beyond(self.nanos(now))
    }

    /// When the deadline passes, if armed (for snapshots).
    pub(crate) fn armed_at(&self) -> Option<Instant> {
        let at = self.state.armed_at()?;
        Some(saturating_after(self.epoch, Duration::from_nanos(at)))
    }

    pub(crate) fn disarm(&self) {
        self.state.disarm();
    }

    /// Arms (or moves) `owner`'s deadline to `at`.
    pub(crate) fn arm<E: Expiring>(owner: &Arc<E>, at: Instant) {
        let deadline = owner.deadline();
        if deadline.state.arm(deadline.nanos(at)) {
            Timer::start(Arc::downgrade(owner), Arc::clone(&deadline.dropped));
        }
    }

    /// `at` in nanoseconds after the epoch, saturating (584 years).
    fn nanos(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }

    /// Disarms the deadline if it has passed (returns `Ok(true)`), or says when to look again.
    fn pass(&self, now: Instant) -> Result<bool, Instant> {
        self.state
            .pass(self.nanos(now))
            .map_err(|at| saturating_after(self.epoch, Duration::from_nanos(at)))
    }
}

struct Timer<E: Expiring> {
    owner: Weak<E>,
    finished: bool,
}

impl<E: Expiring> Timer<E> {
    fn start(owner: Weak<E>, dropped: Arc<Notify>) {
        let timer = Self {
            owner,
            finished: false,
        };
        match Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(timer.run(dropped));
            }
            Err(_) => {
                std::thread::spawn(move || timer.run_blocking());
            }
        }
    }

    /// What to do next: `Some(when)` to sleep until then, `None` to stop.
    fn step(&mut self) -> Option<Instant> {
        let owner = self.owner.upgrade()?;
        loop {
            match owner.deadline().pass(Instant::now()) {
                Err(when) => return Some(when),
                Ok(true) => owner.expired(),
                Ok(false) => {
                    if owner.deadline().state.stop() {
                        self.finished = true;
                        return None;
                    }
                }
            }
        }
    }

    async fn run(mut self, dropped: Arc<Notify>) {
        while let Some(when) = self.step() {
            let sleep = std::pin::pin!(tokio::time::sleep_until(when));
            let owner_gone = std::pin::pin!(dropped.notified());
            futures::future::select(sleep, owner_gone).await;
        }
    }

    fn run_blocking(mut self) {
        while let Some(when) = self.step() {
            std::thread::sleep(when.saturating_duration_since(Instant::now()));
        }
    }
}

impl<E: Expiring> Drop for Timer<E> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Dropped while it may be armed (its runtime shut down): nobody would disarm it.
        if let Some(owner) = self.owner.upgrade() {
            owner.deadline().state.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        deadline: Deadline,
        fired: AtomicUsize,
    }

    impl Expiring for Counting {
        fn deadline(&self) -> &Deadline {
            &self.deadline
        }
        fn expired(&self) {
            self.fired.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> Arc<Counting> {
        Arc::new(Counting {
            deadline: Deadline::new(),
            fired: AtomicUsize::new(0),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn fires_once_when_the_time_passes() {
        let owner = counting();
        Deadline::arm(&owner, Instant::now() + Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(4_990)).await;
        assert!(owner.deadline.is_armed());
        assert_eq!(owner.fired.load(Ordering::SeqCst), 0);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!owner.deadline.is_armed());
        assert_eq!(owner.fired.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(owner.fired.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_exact_check_sees_the_time_pass_before_the_timer_runs() {
        let owner = counting();
        let start = Instant::now();
        Deadline::arm(&owner, start + Duration::from_secs(5));
        // No await since: the timer task has not run, so the flag alone still says armed.
        assert!(
            owner
                .deadline
                .is_armed_at(start + Duration::from_millis(4_999))
        );
        assert!(!owner.deadline.is_armed_at(start + Duration::from_secs(5)));
        assert!(!owner.deadline.is_armed_at(start + Duration::from_secs(6)));
        assert!(owner.deadline.is_armed());
        owner.deadline.disarm();
        assert!(!owner.deadline.is_armed_at(start));
    }

    #[tokio::test(start_paused = true)]
    async fn rearming_moves_the_time_and_disarming_cancels() {
        let owner = counting();
        Deadline::arm(&owner, Instant::now() + Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(4)).await;
        Deadline::arm(&owner, Instant::now() + Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(owner.fired.load(Ordering::SeqCst), 0, "moved, not fired");
        owner.deadline.disarm();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(owner.fired.load(Ordering::SeqCst), 0, "cancelled");
        Deadline::arm(&owner, Instant::now() + Duration::from_secs(1));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            owner.fired.load(Ordering::SeqCst),
            1,
            "a new timer after the old stopped"
        );
    }

    #[test]
    fn a_timer_dropped_with_its_runtime_disarms() {
        let owner = counting();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime
            .block_on(async { Deadline::arm(&owner, Instant::now() + Duration::from_secs(3600)) });
        assert!(owner.deadline.is_armed());
        drop(runtime);
        assert!(!owner.deadline.is_armed());
        assert!(!owner.deadline.state.timer_running());
    }

    #[test]
    fn without_a_runtime_a_thread_keeps_the_time() {
        let owner = counting();
        Deadline::arm(&owner, Instant::now() + Duration::from_millis(50));
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        while owner.deadline.is_armed() && std::time::Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(owner.fired.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn dropping_the_owner_ends_the_timer_at_once() {
        let owner = counting();
        Deadline::arm(&owner, Instant::now() + Duration::from_secs(3600));
        tokio::task::yield_now().await;
        let metrics = Handle::current().metrics();
        assert_eq!(metrics.num_alive_tasks(), 1, "the timer task");
        drop(owner);
        for _ in 0..100 {
            if metrics.num_alive_tasks() == 0 {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the timer task outlived its owner");
    }
}
