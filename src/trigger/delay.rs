use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use tokio::time::Instant;

use super::Trigger;
use crate::BoxError;
use crate::deadline::{Deadline, Expiring, saturating_after};

/// Runs a trigger once `delay` has passed with no new call: each call (re)arms one timer.
///
/// On `always`, this is pullcord's idle shutdown: "stop the backend 15 minutes after the last
/// request" (see also [`MonitoredService::on_idle`](crate::MonitoredService::on_idle), which
/// also counts requests still streaming their response). Calls return at once and never wait
/// for the wrapped trigger, whose run is bounded by a timeout (default
/// [`DEFAULT_TRIGGER_TIMEOUT`](crate::DEFAULT_TRIGGER_TIMEOUT), [`timeout`](Self::timeout) to
/// change it) and whose failures, timeouts and panics are logged. Dropping the `Delay` (with the
/// monitor that holds it) stops its timer.
///
/// Any delay is accepted: one too long to add to the clock (up to `Duration::MAX`) means
/// "practically forever" (a century), so the trigger never runs.
///
/// ```
/// use std::time::Duration;
/// use tower_monitor::trigger::{Command, Delay};
///
/// let stop_when_idle = Delay::new(Duration::from_secs(15 * 60), Command::new("systemctl").args(["stop", "app"]));
/// # let _ = stop_when_idle;
/// ```
#[derive(Clone)]
pub struct Delay {
    inner: Arc<Delayed>,
}

struct Delayed {
    deadline: Deadline,
    delay: Duration,
    timeout: Duration,
    trigger: Arc<dyn Trigger>,
    /// The service whose trigger it is, once a call through a monitor tells it: its delayed
    /// run is nobody's call, and its log lines must still name the service.
    service: OnceLock<Arc<str>>,
}

impl Delay {
    /// Runs `trigger` after `delay` without calls.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_monitor::trigger::{Command, Delay};
    /// let later = Delay::new(Duration::from_secs(60), Command::new("true"));
    /// # let _ = later;
    /// ```
    pub fn new(delay: Duration, trigger: impl Trigger) -> Self {
        Self {
            inner: Arc::new(Delayed {
                deadline: Deadline::new(),
                delay,
                timeout: crate::DEFAULT_TRIGGER_TIMEOUT,
                trigger: Arc::new(trigger),
                service: OnceLock::new(),
            }),
        }
    }

    /// How long a run of the wrapped trigger may take before it is dropped and logged as timed
    /// out; a run nobody waits for must still end, or each expiry would leave one more behind.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_monitor::trigger::{Command, Delay};
    /// let later = Delay::new(Duration::from_secs(60), Command::new("true")).timeout(Duration::from_secs(5));
    /// # let _ = later;
    /// ```
    pub fn timeout(self, timeout: Duration) -> Self {
        let Delayed { delay, trigger, .. } = &*self.inner;
        Self {
            inner: Arc::new(Delayed {
                deadline: Deadline::new(),
                delay: *delay,
                timeout,
                trigger: Arc::clone(trigger),
                service: OnceLock::new(),
            }),
        }
    }
}

impl Expiring for Delayed {
    fn deadline(&self) -> &Deadline {
        &self.deadline
    }

    fn expired(&self) {
        let service = self.service.get().cloned();
        run_detached(Arc::clone(&self.trigger), self.timeout, service);
    }
}

/// Runs a trigger in the background, bounded by `timeout`, logging its failure, its timeout or
/// its panic: nobody waits for its result.
fn run_detached(trigger: Arc<dyn Trigger>, timeout: Duration, service: Option<Arc<str>>) {
    let name = service.clone();
    let run = async move {
        let service = name.as_deref();
        let run = super::running_as(name.clone(), async { trigger.trigger().await });
        let run = AssertUnwindSafe(run).catch_unwind();
        match tokio::time::timeout(timeout, run).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => {
                tracing::warn!(service = service.map(tracing::field::display), %error, "delayed trigger failed")
            }
            Ok(Err(_panic)) => tracing::error!(
                service = service.map(tracing::field::display),
                "delayed trigger panicked"
            ),
            Err(_) => tracing::warn!(
                service = service.map(tracing::field::display),
                ?timeout,
                "delayed trigger timed out; dropped"
            ),
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn(run)),
        Err(_) => tracing::warn!(
            service = service.as_deref().map(tracing::field::display),
            "delayed trigger needs a Tokio runtime to run; skipped"
        ),
    }
}

impl fmt::Debug for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delay")
            .field("delay", &self.inner.delay)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl Trigger for Delay {
    fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        if self.inner.service.get().is_none() {
            if let Some(service) = super::running_for() {
                let _ = self.inner.service.set(service);
            }
        }
        Deadline::arm(
            &self.inner,
            saturating_after(Instant::now(), self.inner.delay),
        );
        futures::future::ready(Ok(())).boxed()
    }
}
