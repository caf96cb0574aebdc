//! A pause before starting again a backend whose starts keep failing.
//!
//! A program that crashes at boot (a syntax error, a port taken) fails every start: without a
//! pause, each request (or held request) would start it again as soon as it ended, as fast
//! as it can crash, for as long as requests come. As systemd's start limit and Kubernetes'
//! `CrashLoopBackOff` do, the first few failures in a row are retried at once, then the pause
//! doubles up to a bound. A backend down again within [`STABLE`] of coming up (one that
//! crashes at its first request) counts as a failed start too; one up for longer, or stopped
//! for being idle, ends the series.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Failed starts in a row that are retried without a pause.
const FREE_FAILURES: u32 = 2;
/// The pause after the first failure past the free ones; it doubles with each further one.
const FIRST_PAUSE: Duration = Duration::from_secs(2);
/// The longest pause.
pub(crate) const MAX_PAUSE: Duration = Duration::from_secs(30);
/// How long a backend must stay up for its start to count as a success, as systemd's
/// default start limit interval.
pub(super) const STABLE: Duration = Duration::from_secs(10);

/// The series of failed starts since the backend was last up.
#[derive(Debug, Default)]
pub(super) struct StartBackoff {
    series: Mutex<Series>,
}

#[derive(Debug, Default)]
struct Series {
    failed: u32,
    not_before: Option<Instant>,
    /// Whether a start refused during this pause has been logged (once per pause, not once
    /// per request).
    told: bool,
}

impl StartBackoff {
    /// Counts a failed start: how many in a row now, and the pause before the next start.
    pub(super) fn failed(&self) -> (u32, Duration) {
        let mut series = crate::sync::lock(&self.series);
        series.failed = series.failed.saturating_add(1);
        let pause = pause_after(series.failed);
        series.not_before = (!pause.is_zero()).then(|| Instant::now() + pause);
        series.told = false;
        (series.failed, pause)
    }

    /// The series ends: the backend's starts work (it stayed up, or was stopped for being
    /// idle), or an operator asks for a start now (a failure of which begins a new series,
    /// its free retries included).
    pub(super) fn end_series(&self) {
        *crate::sync::lock(&self.series) = Series::default();
    }

    /// What is left of the pause, while it lasts.
    pub(super) fn left(&self) -> Option<Duration> {
        let series = crate::sync::lock(&self.series);
        let left = series.not_before?.checked_duration_since(Instant::now())?;
        (!left.is_zero()).then_some(left)
    }

    /// While the pause lasts: the failed starts in a row, what is left of the pause, and
    /// whether this is the first start refused in it.
    pub(super) fn pausing(&self) -> Option<(StartPaused, bool)> {
        let mut series = crate::sync::lock(&self.series);
        let left = series.not_before?.checked_duration_since(Instant::now())?;
        if left.is_zero() {
            return None;
        }
        let first = !std::mem::replace(&mut series.told, true);
        let paused = StartPaused {
            failed: series.failed,
            left,
        };
        Some((paused, first))
    }
}

impl super::Registered {
    /// What is left of the pause before the backend may be started again, while it lasts.
    pub(crate) fn start_pause_left(&self) -> Option<Duration> {
        self.backoff.left()
    }

    /// A start asked for by an operator: as [`wake`](Self::wake), without waiting for the end
    /// of a pause after failed starts (the operator has likely just fixed their cause), nor
    /// refused once held requests are released (see `release`).
    pub(crate) fn wake_requested(
        &self,
    ) -> impl std::future::Future<Output = Result<(), crate::error::SharedError>> + Send + 'static
    {
        // Only where the pause is in the way: an operator's start of a backend that is up (or
        // starting) must not give a crash loop its free retries again.
        if self.state() == crate::lifecycle::ServiceState::Down {
            self.backoff.end_series();
        }
        let joined = self.start_for(super::Asker::Operator);
        let me = self.me.clone();
        async move {
            match joined.await {
                // A request's refusal (the pause, or the shutdown) was still in flight and
                // joined: it does not apply to an operator, so the next try starts the backend.
                Err(error) if refused_to_a_request(&error) => match me.upgrade() {
                    Some(me) => me.start_for(super::Asker::Operator).await,
                    None => Err(error),
                },
                result => result,
            }
        }
    }
}

/// Whether `error` is a start refused to a request, which an operator's start is not.
fn refused_to_a_request(error: &crate::error::SharedError) -> bool {
    error.downcast_ref::<StartPaused>().is_some()
        || error.downcast_ref::<super::ShuttingDown>().is_some()
}

/// The pause after `failed` failed starts in a row.
fn pause_after(failed: u32) -> Duration {
    let doublings = failed.saturating_sub(FREE_FAILURES + 1).min(16);
    if failed <= FREE_FAILURES {
        return Duration::ZERO;
    }
    FIRST_PAUSE.saturating_mul(1 << doublings).min(MAX_PAUSE)
}

/// Why a start was not made: the backend's last starts failed, and the pause after them lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StartPaused {
    /// Failed starts in a row.
    pub(crate) failed: u32,
    /// What is left of the pause.
    pub(crate) left: Duration,
}

impl std::fmt::Display for StartPaused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "not started again yet: its last {} starts failed; the next may begin in {:.1} s",
            self.failed,
            self.left.as_secs_f64()
        )
    }
}

impl std::error::Error for StartPaused {}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_pause_is_none_at_first_then_doubles_up_to_its_bound() {
        let pauses: Vec<u64> = (1..=8).map(|n| pause_after(n).as_secs()).collect();
        assert_eq!(pauses, [0, 0, 2, 4, 8, 16, 30, 30]);
        assert_eq!(pause_after(u32::MAX), MAX_PAUSE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_series_pauses_starts_until_its_pause_has_passed_or_it_came_up() {
        let backoff = StartBackoff::default();
        assert_eq!(backoff.failed(), (1, Duration::ZERO));
        assert_eq!(backoff.failed(), (2, Duration::ZERO));
        assert_eq!(backoff.pausing(), None);
        assert_eq!(backoff.failed(), (3, FIRST_PAUSE));
        assert_eq!(
            backoff.pausing().map(|(p, first)| (p.failed, first)),
            Some((3, true))
        );
        assert_eq!(
            backoff.pausing().map(|(_, first)| first),
            Some(false),
            "told once"
        );
        tokio::time::advance(FIRST_PAUSE).await;
        assert_eq!(backoff.pausing(), None, "the pause has passed");
        assert_eq!(backoff.failed().1, FIRST_PAUSE * 2);
        backoff.end_series();
        assert_eq!(backoff.pausing(), None);
        assert_eq!(backoff.failed(), (1, Duration::ZERO), "a new series");
    }

    // One thread: the refusal a request's `wake` has just begun is still in flight (its task
    // not run yet) when the operator's start comes, which joins it unless it starts anew.
    #[tokio::test(flavor = "current_thread")]
    async fn an_operators_start_is_not_refused_by_a_requests_refusal_in_flight() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        use crate::lifecycle::ServiceState;
        use crate::{BoxError, MonitoredService, Url, probe, trigger};

        let starts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&starts);
        let url = Url::parse("http://127.0.0.1:9/").unwrap();
        let service = MonitoredService::new(url, Duration::from_secs(60))
            .probe(probe::from_fn(|_| async { Ok::<bool, BoxError>(false) }))
            .on_down(trigger::from_fn(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), BoxError>("cannot start".into()) }
            }));
        let registered = super::super::Registered::new("app".into(), service);
        for _ in 0..=FREE_FAILURES {
            assert!(registered.wake().await.is_err());
        }
        assert_eq!(registered.state(), ServiceState::Down);
        assert_eq!(starts.load(Ordering::SeqCst), FREE_FAILURES as usize + 1);
        assert!(registered.start_pause_left().is_some(), "paused");

        let request = registered.wake();
        let operator = registered.wake_requested().await;
        assert_eq!(
            starts.load(Ordering::SeqCst),
            FREE_FAILURES as usize + 2,
            "the operator's start ran on_down: {operator:?}"
        );
        let refused = request.await.unwrap_err();
        assert!(refused.downcast_ref::<StartPaused>().is_some(), "{refused}");
    }

    // A backend that crashes at its first request is briefly up between failures: an
    // operator's start then must not end the series (its free retries would come again).
    #[tokio::test(flavor = "current_thread")]
    async fn an_operators_start_of_an_up_backend_keeps_the_series() {
        use crate::{BoxError, MonitoredService, Url, probe, trigger};

        let url = Url::parse("http://127.0.0.1:9/").unwrap();
        let service = MonitoredService::new(url, Duration::from_secs(60))
            .probe(probe::from_fn(|_| async { Ok::<bool, BoxError>(false) }))
            .on_down(trigger::from_fn(|| async {
                Err::<(), BoxError>("cannot start".into())
            }));
        let registered = super::super::Registered::new("app".into(), service);
        for _ in 0..=FREE_FAILURES {
            assert!(registered.wake().await.is_err());
        }
        registered.set_status_up();
        registered.wake_requested().await.unwrap();
        // Down again at once: one more failure of the same series, and a longer pause.
        registered.set_status_down();
        assert!(
            registered
                .start_pause_left()
                .is_some_and(|left| left > FIRST_PAUSE),
            "{:?}",
            registered.start_pause_left()
        );
    }

    // The status example's backend (no `on_down`) went down 2 s after it was first seen up,
    // and was warned of as a failed start that "may be started again at once".
    #[tokio::test(flavor = "current_thread")]
    async fn a_service_without_on_down_has_no_failed_starts() {
        use crate::{BoxError, MonitoredService, Url, probe};

        let url = Url::parse("http://127.0.0.1:9/").unwrap();
        let service = MonitoredService::new(url, Duration::from_secs(60))
            .probe(probe::from_fn(|_| async { Ok::<bool, BoxError>(false) }));
        let registered = super::super::Registered::new("app".into(), service);
        for _ in 0..=FREE_FAILURES {
            registered.set_status_up();
            registered.set_status_down();
        }
        assert_eq!(registered.start_pause_left(), None);
        assert_eq!(
            registered.backoff.failed().0,
            1,
            "no failure counted before"
        );
    }

    // A reload retires a definition whose program had just come up: marked down as its program
    // is stopped, it was warned of as down "after it came up" and counted a failed start.
    #[tokio::test(flavor = "current_thread")]
    async fn a_service_released_then_marked_down_soon_after_it_came_up_has_no_failed_start() {
        use crate::{BoxError, MonitoredService, Url, probe, trigger};

        let url = Url::parse("http://127.0.0.1:9/").unwrap();
        let service = MonitoredService::new(url, Duration::from_secs(60))
            .probe(probe::from_fn(|_| async { Ok::<bool, BoxError>(false) }))
            .on_down(trigger::from_fn(|| async { Ok::<(), BoxError>(()) }));
        let registered = super::super::Registered::new("app".into(), service);
        registered.set_status_up();
        registered.release_held();
        registered.set_status_down();
        assert_eq!(registered.stats.counters().failed_starts, 0);
        assert_eq!(
            registered.backoff.failed().0,
            1,
            "no failure counted before"
        );
    }
}
