//! A re-armable one-shot timer whose "is it armed?" check is a single atomic load.
//!
//! Its owner (the status cache, a `Delay` trigger, an idle watch) embeds a [`Deadline`] and says
//! what happens when it passes. Arming stores the time; a timer task, started only when none is
//! running, sleeps until the stored time, disarms the deadline and tells the owner. Re-arming
//! while the task sleeps just moves the time: the task notices when it wakes.
//!
//! The task holds its owner weakly and is woken when the owner drops, so dropping the owner ends
//! it at once (not at the next deadline, which may be long). If the task is dropped while
//! armed (its runtime shut down), it disarms the deadline, so nothing stays armed forever.
//! Without a Tokio runtime a plain thread keeps the time instead.
//!
//! Granularity: Tokio's timer wheel has millisecond resolution, so a deadline passes up to a
//! millisecond late, plus however late a busy runtime is to run the task.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Something that owns a [`Deadline`] and acts when it passes.
pub(crate) trait Expiring: Send + Sync + 'static {
    fn deadline(&self) -> &Deadline;
    /// Called once each time an armed deadline passes (it is already disarmed by then).
    fn expired(&self);
}

pub(crate) struct Deadline {
    /// Nanoseconds after `epoch` when it passes; 0 means disarmed.
    at: AtomicU64,
    timer_running: AtomicBool,
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
            at: AtomicU64::new(0),
            timer_running: AtomicBool::new(false),
            epoch: Instant::now(),
            dropped: Arc::new(Notify::new()),
        }
    }

    #[inline]
    pub(crate) fn is_armed(&self) -> bool {
        // Relaxed is enough: nothing else is published through this value, and a reader that
        // sees a just-disarmed deadline a moment late is within the timer's granularity.
        self.at.load(Ordering::Relaxed) != 0
    }

    /// When the deadline passes, if armed (for snapshots).
    pub(crate) fn armed_at(&self) -> Option<Instant> {
        let at = self.at.load(Ordering::Relaxed);
        (at != 0).then(|| self.epoch + Duration::from_nanos(at))
    }

    pub(crate) fn disarm(&self) {
        self.at.store(0, Ordering::SeqCst);
    }

    /// Arms (or moves) `owner`'s deadline to `at`.
    pub(crate) fn arm<E: Expiring>(owner: &Arc<E>, at: Instant) {
        let deadline = owner.deadline();
        let nanos = at.saturating_duration_since(deadline.epoch).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX).max(1);
        // SeqCst on both atomics, here and in `stop`: this store/swap pair must not be reordered
        // against the timer's store/load pair, or a fresh deadline could go without a timer.
        deadline.at.store(nanos, Ordering::SeqCst);
        if !deadline.timer_running.swap(true, Ordering::SeqCst) {
            Timer::start(Arc::downgrade(owner), Arc::clone(&deadline.dropped));
        }
    }

    /// Disarms the deadline if it has passed (returns `Ok(true)`), or says when to look again.
    fn pass(&self, now: Instant) -> Result<bool, Instant> {
        loop {
            let at = self.at.load(Ordering::SeqCst);
            if at == 0 {
                return Ok(false);
            }
            let when = self.epoch + Duration::from_nanos(at);
            if now < when {
                return Err(when);
            }
            if self
                .at
                .compare_exchange(at, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return Ok(true);
            }
        }
    }

    /// Stops the timer, unless the deadline was armed meanwhile by a caller that saw the timer
    /// still running and so started none: then it must carry on (returns `false`).
    fn stop(&self) -> bool {
        self.timer_running.store(false, Ordering::SeqCst);
        let armed_meanwhile = self.at.load(Ordering::SeqCst) != 0;
        // Stop unless armed meanwhile and no new timer has taken over (then this one carries on).
        !armed_meanwhile || self.timer_running.swap(true, Ordering::SeqCst)
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
                    if owner.deadline().stop() {
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
        // Dropped while armed (its runtime shut down): nobody would disarm it any more.
        if let Some(owner) = self.owner.upgrade() {
            owner.deadline().disarm();
            owner
                .deadline()
                .timer_running
                .store(false, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

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
        assert!(!owner.deadline.timer_running.load(Ordering::SeqCst));
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
