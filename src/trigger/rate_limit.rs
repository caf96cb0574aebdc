use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use tokio::time::Instant;

use super::Trigger;
use crate::BoxError;

/// Lets at most `max_runs` runs of a trigger start in any sliding window of `period`; beyond
/// that it fails with [`RateLimited`] (which the layer answers with a 500, as pullcord does).
///
/// ```
/// use std::time::Duration;
/// use tower_monitor::trigger::{Command, RateLimit};
///
/// // Start the VM at most 3 times an hour, whatever the traffic.
/// let start = RateLimit::new(3, Duration::from_secs(3600), Command::new("start-vm"));
/// # let _ = start;
/// ```
#[derive(Clone)]
pub struct RateLimit {
    max_runs: usize,
    period: Duration,
    trigger: Arc<dyn Trigger>,
    /// Start times of the runs within the last `period`, oldest first.
    runs: Arc<Mutex<VecDeque<Instant>>>,
}

/// The error of a [`RateLimit`] over its limit.
#[derive(Debug, Clone, thiserror::Error)]
#[error("rate limit reached: at most {max_runs} runs per {period:?}")]
pub struct RateLimited {
    /// The limit.
    pub max_runs: usize,
    /// Its window.
    pub period: Duration,
}

impl RateLimit {
    /// At most `max_runs` runs of `trigger` per sliding `period`.
    ///
    /// Memory grows with the runs started within one `period`, not with `max_runs`, so any
    /// limit is fine, `usize::MAX` included.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_monitor::trigger::{Command, RateLimit};
    /// let limited = RateLimit::new(1, Duration::from_secs(60), Command::new("true"));
    /// # let _ = limited;
    /// ```
    pub fn new(max_runs: usize, period: Duration, trigger: impl Trigger) -> Self {
        Self {
            max_runs,
            period,
            trigger: Arc::new(trigger),
            // Grows with the runs actually started in a period, never from `max_runs`: a huge
            // limit ("practically unlimited") must not allocate anything up front.
            runs: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    fn admit(&self) -> Result<(), RateLimited> {
        let now = Instant::now();
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        while runs
            .front()
            .is_some_and(|&start| now.duration_since(start) >= self.period)
        {
            runs.pop_front();
        }
        if runs.len() >= self.max_runs {
            return Err(RateLimited {
                max_runs: self.max_runs,
                period: self.period,
            });
        }
        runs.push_back(now);
        Ok(())
    }
}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("max_runs", &self.max_runs)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl Trigger for RateLimit {
    fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        match self.admit() {
            Ok(()) => self.trigger.trigger(),
            Err(limited) => futures::future::ready(Err(limited.into())).boxed(),
        }
    }

    fn ended(&self) -> Option<BoxFuture<'static, ()>> {
        self.trigger.ended()
    }

    fn abandon(&self) -> Option<BoxFuture<'static, ()>> {
        self.trigger.abandon()
    }
}
