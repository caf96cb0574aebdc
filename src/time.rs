//! Deadlines from durations a user gave, which may be as long as `Duration::MAX`.

use std::time::Duration;

use tokio::time::Instant;

/// About thirty years: far enough to mean "never" for a running process, near enough that no
/// clock arithmetic overflows.
const FOREVER: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

/// `now + duration`, saturating at "practically forever" instead of overflowing.
pub(crate) fn after(now: Instant, duration: Duration) -> Instant {
    now.checked_add(duration.min(FOREVER))
        .unwrap_or_else(|| now + Duration::from_secs(24 * 60 * 60))
}

/// `duration`, capped at "practically forever", for timers that add it to the clock.
pub(crate) fn bounded(duration: Duration) -> Duration {
    duration.min(FOREVER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_durations_do_not_overflow() {
        let now = Instant::now();
        assert!(after(now, Duration::MAX) > now + Duration::from_secs(365 * 24 * 3600));
        assert_eq!(bounded(Duration::MAX), FOREVER);
        assert_eq!(
            after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
    }
}
