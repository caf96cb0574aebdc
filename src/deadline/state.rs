//! The lock-free state of a [`Deadline`](super::Deadline): when it passes, and whether a timer
//! is running for it.
//!
//! Kept apart from the timer itself (a Tokio task or a thread) so that loom can drive every
//! interleaving of arm, disarm, pass, stop and abandon directly (the models are below).
//!
//! The rule it keeps: whenever the deadline is armed, one timer is running for it, or the
//! caller that armed it was told to start one. A timer gets its role from `arm` (which tells
//! its caller to start one when none runs) and gives it up with `stop` or `abandon`.

use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub(crate) struct DeadlineState {
    /// When it passes, in nanoseconds after its owner's epoch; 0 means disarmed.
    at: AtomicU64,
    timer_running: AtomicBool,
}

impl DeadlineState {
    pub(crate) fn new() -> Self {
        Self {
            at: AtomicU64::new(0),
            timer_running: AtomicBool::new(false),
        }
    }

    #[inline]
    pub(crate) fn is_armed(&self) -> bool {
        // Relaxed is enough: nothing else is published through this value, and a reader that
        // sees a just-disarmed deadline a moment late is within the timer's granularity.
        self.at.load(Ordering::Relaxed) != 0
    }

    /// Whether it is armed and has not passed at `now` (nanoseconds after the epoch), whether
    /// or not its timer has run yet.
    #[inline]
    pub(crate) fn is_armed_beyond(&self, now: u64) -> bool {
        let at = self.at.load(Ordering::Relaxed);
        at != 0 && now < at
    }

    /// When it passes (nanoseconds after the epoch), if armed; for snapshots, so Relaxed.
    pub(crate) fn armed_at(&self) -> Option<u64> {
        let at = self.at.load(Ordering::Relaxed);
        (at != 0).then_some(at)
    }

    pub(crate) fn disarm(&self) {
        self.at.store(0, Ordering::SeqCst);
    }

    /// Arms (or moves) the deadline to `at` (nanoseconds; 0 is taken as 1). Returns whether
    /// the caller must start a timer: no timer was running.
    #[must_use = "when true, the caller must start a timer"]
    pub(crate) fn arm(&self, at: u64) -> bool {
        // Read-modify-writes on both atomics, here and in `stop` (see `read_latest`): this
        // pair must not be reordered against the timer's pair, or a fresh deadline could go
        // without a timer.
        self.at.swap(at.max(1), Ordering::SeqCst);
        !self.timer_running.swap(true, Ordering::SeqCst)
    }

    /// For the timer: disarms the deadline if it has passed at `now` (returns `Ok(true)`),
    /// says it is not armed (`Ok(false)`), or when to look again (`Err(at)`).
    pub(crate) fn pass(&self, now: u64) -> Result<bool, u64> {
        loop {
            let at = self.at.load(Ordering::SeqCst);
            if at == 0 {
                return Ok(false);
            }
            if now < at {
                return Err(at);
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

    /// For the timer, once `pass` found the deadline disarmed: stops it (returns `true`),
    /// unless the deadline was armed meanwhile by a caller that saw the timer still running and
    /// so started none: then it must carry on (returns `false`).
    pub(crate) fn stop(&self) -> bool {
        self.timer_running.swap(false, Ordering::SeqCst);
        let armed_meanwhile = read_latest(&self.at) != 0;
        // Stop unless armed meanwhile and no new timer has taken over (then this one carries on).
        !armed_meanwhile || self.timer_running.swap(true, Ordering::SeqCst)
    }

    /// For a timer that ends while it may still be armed (its runtime shut down): it will
    /// never pass, so it is disarmed, and the timer's role is given up.
    ///
    /// The role goes first: an `arm` racing with this then either sees no timer and starts
    /// one (whose deadline the disarm below may cancel: an arm lost, never one stuck), or comes
    /// after the disarm. In the other order an `arm` between the two saw the dying timer as
    /// running, started none, and the deadline stayed armed forever (a cached up that never
    /// expired); `loom_an_arm_racing_a_dropped_timer_is_never_stuck` finds that order.
    pub(crate) fn abandon(&self) {
        self.timer_running.swap(false, Ordering::SeqCst);
        self.at.swap(0, Ordering::SeqCst);
    }

    #[cfg(test)]
    pub(crate) fn timer_running(&self) -> bool {
        self.timer_running.load(Ordering::SeqCst)
    }
}

/// Reads `value` with a read-modify-write, which always sees the latest write.
///
/// Each side of the arm/stop handshake writes one atomic and then reads the other (a Dekker
/// pattern). With plain SeqCst stores and loads that is correct, but loom models SeqCst as
/// acquire/release, under which both sides may read stale values; with read-modify-writes the
/// protocol is correct under either model, so loom can check it. They happen once per arm and
/// once per timer stop, not on the `is_armed` path.
fn read_latest(value: &AtomicU64) -> u64 {
    value.fetch_add(0, Ordering::SeqCst)
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::sync::Arc;
    use crate::sync::atomic::AtomicUsize;
    use loom::thread;

    /// Everything is due: the timer fires whatever is armed when it looks.
    const NOW: u64 = u64::MAX;

    /// A timer's whole life once it has the role: fire what is due until it may stop.
    fn run_timer(state: &DeadlineState, fired: &AtomicUsize) {
        loop {
            match state.pass(NOW) {
                Ok(true) => {
                    fired.fetch_add(1, Ordering::SeqCst);
                }
                Ok(false) => {
                    if state.stop() {
                        return;
                    }
                }
                Err(_) => unreachable!("everything is due at NOW"),
            }
        }
    }

    /// Invariant: an `arm` or `disarm` racing the timer's last look and its `stop` never leaves
    /// the deadline armed without a timer: once every timer has ended, the deadline is
    /// disarmed and the role free. And nothing fires more often than it was armed.
    #[test]
    fn loom_arm_and_disarm_racing_the_timers_stop_leave_no_deadline_without_a_timer() {
        loom::model(|| {
            let state = Arc::new(DeadlineState::new());
            let fired = Arc::new(AtomicUsize::new(0));
            assert!(state.arm(5), "the first arm starts the timer");

            let timer = {
                let (state, fired) = (state.clone(), fired.clone());
                thread::spawn(move || run_timer(&state, &fired))
            };
            let arming = {
                let (state, fired) = (state.clone(), fired.clone());
                thread::spawn(move || {
                    if state.arm(7) {
                        // This caller's runtime starts a new timer.
                        run_timer(&state, &fired);
                    }
                })
            };
            let disarming = {
                let state = state.clone();
                thread::spawn(move || state.disarm())
            };
            timer.join().unwrap();
            arming.join().unwrap();
            disarming.join().unwrap();

            assert!(!state.is_armed(), "armed with no timer left");
            assert!(!state.timer_running(), "the role is held by no timer");
            assert!(fired.load(Ordering::SeqCst) <= 2, "fired more than armed");
        });
    }

    /// Invariant: a timer dropped while armed (its runtime shut down) racing an `arm` from
    /// another runtime never leaves the deadline armed without a timer: the arm is kept with a
    /// timer its caller starts, or cancelled; once every timer has ended it is disarmed.
    /// This is the stale cached up of issue 10 (`Timer::drop` disarmed, then gave up the role).
    #[test]
    fn loom_an_arm_racing_a_dropped_timer_is_never_stuck() {
        loom::model(|| {
            let state = Arc::new(DeadlineState::new());
            let fired = Arc::new(AtomicUsize::new(0));
            assert!(state.arm(5), "the first arm starts the timer");

            let dropped = {
                let state = state.clone();
                thread::spawn(move || state.abandon())
            };
            let arming = {
                let (state, fired) = (state.clone(), fired.clone());
                thread::spawn(move || {
                    if state.arm(7) {
                        run_timer(&state, &fired);
                    }
                })
            };
            dropped.join().unwrap();
            arming.join().unwrap();

            assert!(
                !state.is_armed(),
                "armed with no timer left: a stale up forever"
            );
            assert!(!state.timer_running(), "the role is held by no timer");
            assert!(fired.load(Ordering::SeqCst) <= 1, "fired more than armed");
        });
    }
}
