//! One service definition, built and then added to a [`MinMonitor`](crate::MinMonitor).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::probe::{Probe, Tcp};
use crate::trigger::Trigger;

/// How long a probe may take before the service counts as down, unless set otherwise.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The definition of a monitored service: where it is, how long an up status is trusted, how it
/// is probed, and what to run when a request finds it up or down.
///
/// ```
/// use std::time::Duration;
/// use tower_monitor::{BoxError, MonitoredService, Url, trigger};
///
/// let service = MonitoredService::new(
///     Url::parse("http://127.0.0.1:8081/").unwrap(),
///     Duration::from_secs(30),
/// )
/// .probe_timeout(Duration::from_millis(500))
/// .on_down(trigger::from_fn(|| async {
///     // ask the backend to start
///     Ok::<(), BoxError>(())
/// }));
/// # let _ = service;
/// ```
#[derive(Clone)]
pub struct MonitoredService {
    pub(crate) url: Url,
    pub(crate) grace_period: Duration,
    pub(crate) probe_timeout: Duration,
    pub(crate) probe: Arc<dyn Probe>,
    pub(crate) probe_on_add: bool,
    pub(crate) ready_after: Duration,
    pub(crate) on_down: Option<Arc<dyn Trigger>>,
    pub(crate) on_up: Option<Arc<dyn Trigger>>,
    pub(crate) always: Option<Arc<dyn Trigger>>,
    pub(crate) on_idle: Option<(Duration, Arc<dyn Trigger>)>,
}

impl MonitoredService {
    /// A service at `url` whose up status is trusted for `grace_period` after a successful probe.
    /// With a zero grace period every status request probes.
    ///
    /// Defaults: the [`Tcp`] probe, a [`DEFAULT_PROBE_TIMEOUT`] of 2 s, no triggers, and the first
    /// probe deferred to the first status request.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_monitor::{MonitoredService, Url};
    ///
    /// let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    /// let service = MonitoredService::new(url, Duration::from_secs(30));
    /// # let _ = service;
    /// ```
    pub fn new(url: Url, grace_period: Duration) -> Self {
        Self {
            url,
            grace_period,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
            probe: Arc::new(Tcp),
            probe_on_add: false,
            ready_after: Duration::ZERO,
            on_down: None,
            on_up: None,
            always: None,
            on_idle: None,
        }
    }

    /// Runs `trigger` for each request that finds the service down, before the fallback answer.
    /// Concurrent runs are coalesced: requests arriving while one runs share its result.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_monitor::{BoxError, MonitoredService, Url, trigger};
    /// # let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    /// let service = MonitoredService::new(url, Duration::from_secs(30))
    ///     .on_down(trigger::from_fn(|| async { Ok::<(), BoxError>(()) }));
    /// # let _ = service;
    /// ```
    pub fn on_down(mut self, trigger: impl Trigger) -> Self {
        self.on_down = Some(Arc::new(trigger));
        self
    }

    /// Runs `trigger` for each request that finds the service up, before forwarding it.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_monitor::{BoxError, MonitoredService, Url, trigger};
    /// # let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    /// let service = MonitoredService::new(url, Duration::from_secs(30))
    ///     .on_up(trigger::from_fn(|| async { Ok::<(), BoxError>(()) }));
    /// # let _ = service;
    /// ```
    pub fn on_up(mut self, trigger: impl Trigger) -> Self {
        self.on_up = Some(Arc::new(trigger));
        self
    }

    /// Runs `trigger` for every request, up or down, before `on_up` / `on_down`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_monitor::{BoxError, MonitoredService, Url, trigger};
    /// # let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    /// let service = MonitoredService::new(url, Duration::from_secs(30))
    ///     .always(trigger::from_fn(|| async { Ok::<(), BoxError>(()) }));
    /// # let _ = service;
    /// ```
    pub fn always(mut self, trigger: impl Trigger) -> Self {
        self.always = Some(Arc::new(trigger));
        self
    }

    /// Runs `trigger` once no request has been in flight through the layer for `after`: idle
    /// shutdown. A request counts as in flight until its response body has been sent to the end
    /// or dropped, so a long download or stream keeps the backend awake. The time starts when
    /// the last request in flight ends; the trigger runs once per idle period, in the
    /// background (its failure is logged). Counting costs every request two atomic operations
    /// on a shared counter, so only services with `on_idle` pay for it.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_monitor::{MonitoredService, Url, trigger::Command};
    /// # let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    /// let service = MonitoredService::new(url, Duration::from_secs(30))
    ///     .on_idle(Duration::from_secs(15 * 60), Command::new("systemctl").args(["stop", "app"]));
    /// # let _ = service;
    /// ```
    pub fn on_idle(mut self, after: Duration, trigger: impl Trigger) -> Self {
        self.on_idle = Some((after, Arc::new(trigger)));
        self
    }

    /// Replaces the default [`Tcp`] probe.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_monitor::{BoxError, MonitoredService, Url, probe};
    /// # let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    /// let service = MonitoredService::new(url, Duration::from_secs(30))
    ///     .probe(probe::from_fn(|_url| async { Ok::<bool, BoxError>(true) }));
    /// # let _ = service;
    /// ```
    pub fn probe(mut self, probe: impl Probe) -> Self {
        self.probe = Arc::new(probe);
        self
    }

    /// How long a probe may run before the service counts as down (default 2 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_monitor::{MonitoredService, Url};
    /// # let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    /// let service = MonitoredService::new(url, Duration::from_secs(30))
    ///     .probe_timeout(Duration::from_millis(250));
    /// # let _ = service;
    /// ```
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }

    /// A settling delay: when a probe succeeds after the service was down, report it up only
    /// once `delay` has passed (probes meanwhile answer down). For backends that accept
    /// connections before they can serve. A service already up at its first probe is up at once.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_monitor::{MonitoredService, Url};
    /// # let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    /// let service = MonitoredService::new(url, Duration::from_secs(30)).ready_after(Duration::from_secs(3));
    /// # let _ = service;
    /// ```
    pub fn ready_after(mut self, delay: Duration) -> Self {
        self.ready_after = delay;
        self
    }

    /// With `true`, the first probe starts in the background as soon as the service is added
    /// (inside a Tokio runtime); with `false`, the default, it waits for the first status request.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_monitor::{MonitoredService, Url};
    /// # let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    /// let service = MonitoredService::new(url, Duration::from_secs(30)).probe_on_add(true);
    /// # let _ = service;
    /// ```
    pub fn probe_on_add(mut self, now: bool) -> Self {
        self.probe_on_add = now;
        self
    }

    /// The URL this service is probed at.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_monitor::{MonitoredService, Url};
    /// let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    /// let service = MonitoredService::new(url.clone(), Duration::from_secs(30));
    /// assert_eq!(service.url(), &url);
    /// ```
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// How long an up status is trusted.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_monitor::{MonitoredService, Url};
    /// # let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    /// let service = MonitoredService::new(url, Duration::from_secs(30));
    /// assert_eq!(service.grace_period(), Duration::from_secs(30));
    /// ```
    pub fn grace_period(&self) -> Duration {
        self.grace_period
    }
}

impl fmt::Debug for MonitoredService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitoredService")
            .field("url", &self.url.as_str())
            .field("grace_period", &self.grace_period)
            .field("probe_timeout", &self.probe_timeout)
            .field("probe_on_add", &self.probe_on_add)
            .field("ready_after", &self.ready_after)
            .field("on_down", &self.on_down.is_some())
            .field("on_up", &self.on_up.is_some())
            .field("always", &self.always.is_some())
            .field("on_idle", &self.on_idle.as_ref().map(|(after, _)| after))
            .finish_non_exhaustive()
    }
}
