//! [`OnceAMinute`]: a log line that can come thousands of times a second (a failed accept or
//! forward while the process is out of file descriptors), said at its own level at most once
//! a minute, the others at debug and counted.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How often a line is said at its own level, at most.
pub(crate) const EVERY: Duration = Duration::from_secs(60);

/// One kind of line's window: the first of them at its level, and then the first after each
/// [`EVERY`], with how many were said at debug since the last; the others at debug. Those said
/// at debug are counted out at its level when their minute ends, so a flood that stops is
/// reported within a minute, not only with the next line. The admin service's refusals are
/// logged so too.
#[derive(Debug, Default)]
pub(crate) struct OnceAMinute(Mutex<Window>);

#[derive(Debug, Default)]
struct Window {
    /// When the last line at its level was.
    loud: Option<Instant>,
    /// The lines said at debug since.
    quiet: u64,
}

/// How a line is said.
#[derive(Debug, PartialEq)]
enum Said {
    /// At its level, with how many were said at debug since the last line at its level.
    Loud(u64),
    /// At debug; the first such in its minute asks for the count at the end of the minute
    /// that began with the line at its level given.
    Quiet { first_since: Option<Instant> },
}

impl OnceAMinute {
    /// Says a line now: `loud(quietly)` at its level, `quietly` being how many were said at
    /// debug since the last; or else `quiet()`, at debug, and `counted(quietly)` at the end of
    /// the minute for those (in a Tokio runtime; outside one, the count waits for the next
    /// line at its level).
    pub(crate) fn say(
        self: &Arc<Self>,
        loud: impl FnOnce(u64),
        quiet: impl FnOnce(),
        counted: impl FnOnce(u64) + Send + 'static,
    ) {
        match self.said(Instant::now()) {
            Said::Loud(quietly) => loud(quietly),
            Said::Quiet { first_since } => {
                quiet();
                let runtime = tokio::runtime::Handle::try_current();
                if let (Some(since), Ok(runtime)) = (first_since, runtime) {
                    let window = Arc::downgrade(self);
                    runtime.spawn(async move {
                        tokio::time::sleep_until(since + EVERY).await;
                        let Some(window) = window.upgrade() else {
                            return;
                        };
                        if let Some(quietly) = window.count_out(since, Instant::now()) {
                            counted(quietly);
                        }
                    });
                }
            }
        }
    }

    /// How a line at `now` is said.
    fn said(&self, now: Instant) -> Said {
        let mut window = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match window.loud {
            Some(loud) if now.saturating_duration_since(loud) < EVERY => {
                window.quiet += 1;
                Said::Quiet {
                    first_since: (window.quiet == 1).then_some(loud),
                }
            }
            _ => {
                window.loud = Some(now);
                Said::Loud(std::mem::take(&mut window.quiet))
            }
        }
    }

    /// The lines said at debug in the minute that began at `since`, at its end: their count,
    /// which begins a new minute (the line about them is at the line's level), or `None` if
    /// none was or a line at its level has reported them already.
    fn count_out(&self, since: Instant, now: Instant) -> Option<u64> {
        let mut window = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if window.quiet == 0 || window.loud != Some(since) {
            return None;
        }
        window.loud = Some(now);
        Some(std::mem::take(&mut window.quiet))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn one_line_a_minute_is_loud_with_the_count_of_those_since() {
        let window = OnceAMinute::default();
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let quiet = |first| Said::Quiet { first_since: first };
        assert_eq!(window.said(at(0)), Said::Loud(0));
        assert_eq!(
            window.said(at(0)),
            quiet(Some(at(0))),
            "the first quiet one"
        );
        for secs in [1, 59] {
            assert_eq!(window.said(at(secs)), quiet(None), "at {secs} s");
        }
        assert_eq!(window.said(at(60)), Said::Loud(3));
        assert_eq!(window.said(at(61)), quiet(Some(at(60))));
        // Long after: loud at once, with the one said quietly meanwhile.
        assert_eq!(window.said(at(3600)), Said::Loud(1));
        assert_eq!(window.said(at(3660)), Said::Loud(0));
    }

    #[test]
    fn the_count_at_a_minutes_end_is_of_that_minute_only() {
        let window = OnceAMinute::default();
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        window.said(at(0));
        window.said(at(1));
        window.said(at(2));
        assert_eq!(window.count_out(at(0), at(60)), Some(2));
        assert_eq!(window.count_out(at(0), at(60)), None, "counted once");
        // The count began a minute: the next line within it is quiet.
        assert_eq!(
            window.said(at(61)),
            Said::Quiet {
                first_since: Some(at(60))
            }
        );
        // A loud line reported it first: a count of the older minute says nothing.
        assert_eq!(window.said(at(120)), Said::Loud(1));
        window.said(at(121));
        assert_eq!(window.count_out(at(60), at(121)), None);
        assert_eq!(window.count_out(at(120), at(180)), Some(1));
    }

    /// A flood that stops is counted out when its minute ends, without a next line.
    #[tokio::test(start_paused = true)]
    async fn the_lines_of_a_flood_that_stopped_are_counted_out_at_the_minutes_end() {
        let window = Arc::new(OnceAMinute::default());
        let (loud, counted) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        for _ in 0..3 {
            let counted = Arc::clone(&counted);
            window.say(
                |_| {
                    loud.fetch_add(1, Ordering::SeqCst);
                },
                || {},
                move |quietly| counted.store(quietly, Ordering::SeqCst),
            );
        }
        assert_eq!(loud.load(Ordering::SeqCst), 1);
        tokio::time::sleep(EVERY - Duration::from_secs(1)).await;
        assert_eq!(
            counted.load(Ordering::SeqCst),
            0,
            "not before the minute ends"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(counted.load(Ordering::SeqCst), 2, "counted out");
    }
}
