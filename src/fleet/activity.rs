//! [`Activity`]: when this replica last had a request in flight for one service, and when to
//! tell the fleet, without a Redis call per request.
//!
//! A replica publishes its latest activity (now while busy, else the end of its last busy
//! period) at most once per period, a quarter of the idle time, from its heartbeat (at least
//! one per period). Why a stopper that finds every published activity an idle time old is
//! right that nobody has been active for the idle time:
//!
//! - An activity not yet published is at most a period and a heartbeat newer than the last
//!   one published (the next publication is due by then), and a period and a heartbeat is at
//!   most half the idle time: the published one is not an idle time old yet.
//! - The exception is a busy period that begins a period or more after the last publication: it
//!   is published at once (the heartbeat is kicked), so it is seen within a round trip.
//!
//! So the stop comes one idle time after the fleet's last activity, to within a heartbeat.
//! "The idle time" is each replica's own: replicas may differ, and the stop script measures
//! each one's activity against its own idle time as well as the asker's (see `ACQUIRE`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

pub(crate) struct Activity {
    /// The service's idle time.
    pub(crate) after: Duration,
    /// Busy periods open (in-flight went 0→1 and not yet back); never below 0.
    busy: AtomicUsize,
    /// When the last busy period ended (fleet nanoseconds; 0: never).
    last_end: AtomicU64,
    /// The latest activity published, and when it was published.
    sent_activity: AtomicU64,
    sent_at: AtomicU64,
    /// A busy period began a period or more after the last publication: publish at once.
    kicked: AtomicBool,
}

impl Activity {
    pub(crate) fn new(after: Duration) -> Self {
        Self {
            after,
            busy: AtomicUsize::new(0),
            last_end: AtomicU64::new(0),
            sent_activity: AtomicU64::new(0),
            sent_at: AtomicU64::new(0),
            kicked: AtomicBool::new(false),
        }
    }

    /// How often at most a replica publishes this service's activity.
    pub(crate) fn period(&self) -> Duration {
        self.after / 4
    }

    /// How long Redis keeps this replica's published activity: two idle times and a minute.
    pub(crate) fn keep(&self) -> Duration {
        self.after
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(60))
    }

    /// The in-flight count went 0→1 at `now`; true if the heartbeat should be kicked.
    pub(crate) fn began(&self, now: u64) -> bool {
        self.busy.fetch_add(1, Ordering::SeqCst);
        let sent = self.sent_at.load(Ordering::Relaxed);
        let ran_out = sent == 0 || nanos(self.period()) <= now.saturating_sub(sent);
        ran_out && !self.kicked.swap(true, Ordering::SeqCst)
    }

    /// The in-flight count went 1→0 at `now`.
    pub(crate) fn ended(&self, now: u64) {
        let _ = self
            .busy
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        self.last_end.store(now, Ordering::SeqCst);
    }

    pub(crate) fn is_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst) > 0
    }

    /// Whether this replica has been idle (here) for the idle time at `now`.
    pub(crate) fn idle_here(&self, now: u64) -> bool {
        !self.is_busy()
            && now.saturating_sub(self.last_end.load(Ordering::SeqCst)) >= nanos(self.after)
    }

    /// The activity to publish at `now`, if any is due: newer than the last published, and the
    /// period since the last publication has passed (or a kick asks, or `republish`: Redis lost
    /// everything).
    pub(crate) fn due(&self, now: u64, republish: bool) -> Option<u64> {
        let kicked = self.kicked.swap(false, Ordering::SeqCst);
        let busy = self.is_busy();
        let activity = if busy {
            now
        } else {
            self.last_end.load(Ordering::SeqCst)
        };
        if activity == 0 {
            return None;
        }
        if republish {
            return Some(activity);
        }
        let sent = self.sent_at.load(Ordering::SeqCst);
        let newer = busy || activity > self.sent_activity.load(Ordering::SeqCst);
        let spaced = sent == 0 || nanos(self.period()) <= now.saturating_sub(sent);
        (newer && (spaced || kicked)).then_some(activity)
    }

    /// Redis took `activity`, published at `now`.
    pub(crate) fn published(&self, now: u64, activity: u64) {
        self.sent_at.store(now, Ordering::SeqCst);
        self.sent_activity.fetch_max(activity, Ordering::SeqCst);
    }
}

pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_busy_period_after_a_quiet_spell_is_published_at_once_then_spaced() {
        let activity = Activity::new(Duration::from_millis(400));
        assert!(activity.began(10 * MS), "never published: kick");
        assert_eq!(activity.due(11 * MS, false), Some(11 * MS));
        activity.published(11 * MS, 11 * MS);
        activity.ended(20 * MS);
        assert!(!activity.began(30 * MS), "published lately: no kick");
        activity.ended(40 * MS);
        assert_eq!(activity.due(50 * MS, false), None, "within the period");
        assert_eq!(
            activity.due(111 * MS, false),
            Some(40 * MS),
            "the period passed"
        );
        activity.published(111 * MS, 40 * MS);
        assert_eq!(activity.due(300 * MS, false), None, "nothing newer");
        assert_eq!(activity.due(300 * MS, true), Some(40 * MS), "republish");
    }

    #[test]
    fn an_idle_time_that_means_forever_keeps_the_activity_forever() {
        // `on_idle(Duration::MAX, ..)` is allowed; the heartbeat publishing it must not panic.
        assert_eq!(Activity::new(Duration::MAX).keep(), Duration::MAX);
        assert_eq!(
            Activity::new(Duration::from_secs(10)).keep(),
            Duration::from_secs(80)
        );
    }

    #[test]
    fn ends_never_count_below_zero() {
        let activity = Activity::new(Duration::from_millis(400));
        activity.ended(5 * MS);
        assert!(!activity.is_busy());
        activity.began(6 * MS);
        assert!(activity.is_busy());
    }
}
