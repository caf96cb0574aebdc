//! One service definition, built and then added to a [`MinMonitor`](crate::MinMonitor).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::probe::{Probe, Tcp};
use crate::trigger::Trigger;

/// How long a probe may take before the service counts as down, unless set otherwise.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a backend may be Starting before it counts as down again, unless set otherwise.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a backend may be Stopping before it counts as down anyway, unless set otherwise.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long any trigger the monitor runs may take before it counts as failed, unless set
/// otherwise.
pub const DEFAULT_TRIGGER_TIMEOUT: Duration = Duration::from_secs(30);

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
    pub(crate) start_timeout: Duration,
    pub(crate) stop_timeout: Duration,
    pub(crate) trigger_timeout: Duration,
    /// Names of the services this one needs up first, in the order given.
    pub(crate) depends_on: Vec<Arc<str>>,
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
            start_timeout: DEFAULT_START_TIMEOUT,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            trigger_timeout: DEFAULT_TRIGGER_TIMEOUT,
            depends_on: Vec::new(),
        }
    }

    /// Starts the service when a request finds it down: one run per cold start. The run takes
    /// the service from Down to Starting; while it is Starting no request runs it again (they
    /// get the fallback, or are held), and requests arriving while it runs share its result. A
    /// failing run (500) takes it back to Down, so the next request tries again.
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

    /// Stops the service once no request has been in flight through the layer for `after`: idle
    /// shutdown. A request counts as in flight until its response body has been sent to the end
    /// or dropped, so a long download or stream keeps the backend awake; a WebSocket, whose
    /// traffic comes after its `101` answer has ended, keeps it awake only while the handler
    /// holds a [`MinMonitor::activity`](crate::MinMonitor::activity). The time starts when
    /// the last request in flight ends, and when the service is first seen up (a backend
    /// already running is stopped even if no request comes). The trigger runs in the
    /// background; the service is then Stopping: its cached up is gone at once and nothing is
    /// forwarded to it until a probe finds it down, after which the next request wakes it
    /// again. A failing run is logged and retried after the idle time. It does not run while
    /// `on_down` still runs (a backend that answers before its start command returns): the
    /// idle stop is put off by another idle time, and an operator's stop
    /// ([`MinMonitor::stop`](crate::MinMonitor::stop)) waits for `on_down` to end first.
    ///
    /// Precision: the idle time is checked every `after / 4` (at least every millisecond), so
    /// the trigger runs between `after` and `after × 1.25` after the last request ended (plus
    /// the timer's lateness on a busy runtime). Counting costs every request an increment and a
    /// decrement on a counter of its own thread (no clock read, no shared write), so only
    /// services with `on_idle` pay, and threads do not slow each other down.
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

    /// How long the service may be Starting (after `on_down`) before it counts as down again,
    /// logged at warn, so that the next request may wake it again (default 60 s); what `on_down`
    /// started is then stopped if it can be ([`Trigger::abandon`](crate::Trigger::abandon): a
    /// supervised program is). Zero is not "no limit": it ends every start at once. Give a
    /// program that boots slowly a timeout above its boot time.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_monitor::{MonitoredService, Url};
    /// # let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    /// let service = MonitoredService::new(url, Duration::from_secs(30))
    ///     .start_timeout(Duration::from_secs(120));
    /// # let _ = service;
    /// ```
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// How long the service may be Stopping (after `on_idle`) before it counts as down anyway
    /// (default 60 s). Not while `on_idle` still runs (nor while an operator's stop waits for
    /// `on_down` to end before it): then it stays Stopping until the run ends, at the latest
    /// at the [`trigger_timeout`](Self::trigger_timeout), so that no start runs beside a stop
    /// that has not finished.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_monitor::{MonitoredService, Url};
    /// # let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    /// let service = MonitoredService::new(url, Duration::from_secs(30))
    ///     .stop_timeout(Duration::from_secs(10));
    /// # let _ = service;
    /// ```
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// How long any run of a trigger (`on_down`, `on_idle`, `on_up`, `always`) may take before
    /// it counts as failed (default 30 s). A failed `on_down` answers 500 (a held request keeps
    /// waiting within its `max_wait`); requests that shared the run are not cut short when one
    /// of them gives up. Zero is not "no limit": a run that does not finish at its first poll
    /// fails. It bounds, too, an operator's stop's wait for a start's `on_down` that still
    /// runs (see [`MinMonitor::stop`](crate::MinMonitor::stop)).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_monitor::{MonitoredService, Url};
    /// # let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    /// let service = MonitoredService::new(url, Duration::from_secs(30))
    ///     .trigger_timeout(Duration::from_secs(5));
    /// # let _ = service;
    /// ```
    pub fn trigger_timeout(mut self, timeout: Duration) -> Self {
        self.trigger_timeout = timeout;
        self
    }

    /// Needs the service `name` up before this one starts: a database, a cache, a queue that
    /// this backend talks to directly, not through the monitor. Call it once per dependency.
    ///
    /// A start of this service (a request's, or [`MinMonitor::start`](crate::MinMonitor::start))
    /// first brings its dependencies up: each is probed, started if down (its own `on_down`,
    /// as a request to it would), and awaited until a probe finds it up, all at once; only
    /// then does this service's `on_down` run. A dependency that does not come up within its
    /// own `trigger_timeout` and `start_timeout` (and its `stop_timeout` before that, if it
    /// was stopping) fails this start, as a failed `on_down` does, and `on_down` does not run.
    /// This service's own `start_timeout` does not count that wait. A dependency is started
    /// for whoever started this service: an operator's start starts it during a shutdown too
    /// ([`MinMonitor::release_held`](crate::MinMonitor::release_held)).
    ///
    /// While this service is not Down (starting, up or stopping), it counts as a request in
    /// flight for each dependency's `on_idle`, like an open WebSocket: a dependency is stopped
    /// for being idle only once every service depending on it is down, and its idle time
    /// after that. A service found up by a probe, with no start, holds its dependencies too,
    /// but starts none of them. Each time a probe finds this service up again once its grace
    /// period is over (a request asked), its dependencies are looked at too, through their own
    /// caches, and one found down (crashed: no request reaches it through the monitor) is
    /// started again, in the background; so is one an operator stopped while this service is
    /// up (stop this one first).
    ///
    /// `name` must be added to the monitor before this service, or
    /// [`MinMonitor::add`](crate::MinMonitor::add) fails with
    /// [`MonitorError::UnknownDependency`](crate::MonitorError::UnknownDependency): so no
    /// service can depend on itself, even through others. (A configuration file may list its
    /// services in any order.)
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_monitor::{MinMonitor, MonitoredService, Url};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let monitor = MinMonitor::new();
    /// let db = MonitoredService::new(Url::parse("tcp://127.0.0.1:5432")?, Duration::from_secs(30));
    /// let app = MonitoredService::new(Url::parse("http://127.0.0.1:8081/")?, Duration::from_secs(30))
    ///     .depends_on("db");
    /// monitor.add("db", db)?;
    /// monitor.add("app", app)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn depends_on(mut self, name: impl Into<String>) -> Self {
        self.depends_on.push(Arc::from(name.into()));
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

    /// How long a probe may run before the service counts as down (default 2 s). Zero is not
    /// "no limit": a probe that does not finish at its first poll counts as down.
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
            .field("url", &crate::redact::url(&self.url))
            .field("grace_period", &self.grace_period)
            .field("probe_timeout", &self.probe_timeout)
            .field("probe_on_add", &self.probe_on_add)
            .field("ready_after", &self.ready_after)
            .field("on_down", &self.on_down.is_some())
            .field("on_up", &self.on_up.is_some())
            .field("always", &self.always.is_some())
            .field("on_idle", &self.on_idle.as_ref().map(|(after, _)| after))
            .field("start_timeout", &self.start_timeout)
            .field("stop_timeout", &self.stop_timeout)
            .field("trigger_timeout", &self.trigger_timeout)
            .finish_non_exhaustive()
    }
}
