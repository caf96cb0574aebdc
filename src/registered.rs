//! A service once added: its definition, its status cache, its lifecycle, and what each
//! transition sets off (running `on_down` / `on_idle`, polling, releasing held requests).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::{MonitorError, SharedError};
use crate::idle::IdleWatch;
use crate::lifecycle::{Event, Lifecycle, ServiceState, Transition};
use crate::metrics;
use crate::service::MonitoredService;
use crate::single_flight::SingleFlight;
use crate::status::StatusCache;
use crate::trigger::run_bounded;

/// How often the monitor probes a backend that is starting or stopping (at most 20 probes a
/// second): a held request is forwarded within about this long of the backend answering.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(50);

pub(crate) struct Registered {
    pub(crate) name: Arc<str>,
    pub(crate) service: MonitoredService,
    pub(crate) cache: Arc<StatusCache>,
    pub(crate) lifecycle: Lifecycle,
    /// Requests in flight through the layer, when the service has `on_idle`.
    pub(crate) idle: Option<Arc<IdleWatch>>,
    me: Weak<Registered>,
    probing: SingleFlight<bool>,
    /// Runs of `on_down`: requests arriving while one runs share its result.
    waking: SingleFlight<()>,
    /// Woken at every transition: held requests wait on it.
    changed: Notify,
    /// Whether the poller task runs.
    polling: AtomicBool,
    /// Held requests: while any wait, the poller runs even if nothing is starting.
    watchers: AtomicUsize,
    /// A request asked for a start while the backend was stopping: start it once it is down.
    wake_after_stop: AtomicBool,
    /// Whether any probe has finished yet (the first up is not a "coming back").
    seen: AtomicBool,
    /// When probes started succeeding again after a down, while `ready_after` has not passed.
    settling_since: Mutex<Option<Instant>>,
}

impl Registered {
    pub(crate) fn new(name: String, service: MonitoredService) -> Arc<Self> {
        Arc::new_cyclic(|me: &Weak<Self>| Self {
            name: name.into(),
            cache: StatusCache::new(service.grace_period),
            lifecycle: Lifecycle::new(),
            idle: service
                .on_idle
                .as_ref()
                .map(|(after, _)| IdleWatch::new(*after, me.clone())),
            service,
            me: me.clone(),
            probing: SingleFlight::default(),
            waking: SingleFlight::default(),
            changed: Notify::new(),
            polling: AtomicBool::new(false),
            watchers: AtomicUsize::new(0),
            wake_after_stop: AtomicBool::new(false),
            seen: AtomicBool::new(false),
            settling_since: Mutex::new(None),
        })
    }

    pub(crate) fn state(&self) -> ServiceState {
        self.lifecycle.state()
    }

    /// Cached up, or the result of a probe (shared with every concurrent caller).
    pub(crate) fn status(
        &self,
    ) -> impl Future<Output = Result<bool, MonitorError>> + Send + 'static {
        self.probe_shared(false)
    }

    /// The result of a probe, whatever the cache says.
    pub(crate) fn reprobe(
        &self,
    ) -> impl Future<Output = Result<bool, MonitorError>> + Send + 'static {
        self.probe_shared(true)
    }

    pub(crate) fn set_status_up(&self) {
        self.apply(Event::MarkedUp);
        self.cache_up_if_still_up();
    }

    pub(crate) fn set_status_down(&self) {
        self.cache.mark_down();
        self.apply(Event::MarkedDown);
    }

    /// Asks for the backend to start: runs `on_down` if it is down (one run per cold start,
    /// shared by everyone who asks while it runs), remembers the wish if it is stopping, and
    /// does nothing more if it is starting or up. Fails only with `on_down`'s own failure.
    pub(crate) fn wake(&self) -> impl Future<Output = Result<(), SharedError>> + Send + 'static {
        let joined = self.waking.join_or_start(|| {
            let on_down = self.service.on_down.clone()?;
            if let Some(transition) = self.lifecycle.apply(Event::Wake) {
                self.after(transition);
                return Some(self.run_on_down(on_down));
            }
            if self.state() != ServiceState::Stopping {
                return None;
            }
            self.wake_after_stop.store(true, Ordering::SeqCst);
            // Stopping may have ended between the two looks, its wake-up seeing no wish.
            let transition = self.lifecycle.apply(Event::Wake)?;
            self.wake_after_stop.store(false, Ordering::SeqCst);
            self.after(transition);
            Some(self.run_on_down(on_down))
        });
        let name = Arc::clone(&self.name);
        async move {
            match joined {
                Ok(Some(run)) => run.await,
                Ok(None) => Ok(()),
                Err(_) => Err(Arc::new(MonitorError::NoRuntime(name.to_string())) as SharedError),
            }
        }
    }

    fn run_on_down(
        &self,
        on_down: Arc<dyn crate::Trigger>,
    ) -> futures::future::BoxFuture<'static, Result<(), SharedError>> {
        let me = self.me.upgrade();
        let timeout = self.service.trigger_timeout;
        let name = Arc::clone(&self.name);
        async move {
            metrics::wake(&name);
            let result = run_bounded(&on_down, timeout, &name, "on_down").await;
            if result.is_err() {
                if let Some(me) = me {
                    me.apply(Event::WakeFailed);
                }
            }
            result
        }
        .boxed()
    }

    /// Runs `on_idle` if the backend is up: the cached up is forgotten at once, and the backend
    /// is Stopping until a probe finds it down. Fails with `on_idle`'s own failure (then the
    /// backend counts as up again, uncached, and the stop is retried after the idle time).
    pub(crate) fn stop(&self) -> impl Future<Output = Result<bool, SharedError>> + Send + 'static {
        let on_idle = self.service.on_idle.as_ref().map(|(_, t)| Arc::clone(t));
        let transition = on_idle
            .as_ref()
            .and_then(|_| self.lifecycle.stop(|| self.cache.mark_down()));
        if let Some(transition) = transition {
            self.after(transition);
        }
        let me = self.me.upgrade();
        let timeout = self.service.trigger_timeout;
        async move {
            let (Some(on_idle), Some(_), Some(me)) = (on_idle, transition, me) else {
                return Ok(false);
            };
            metrics::idle_stop(&me.name);
            match run_bounded(&on_idle, timeout, &me.name, "on_idle").await {
                Ok(()) => Ok(true),
                Err(error) => {
                    me.apply(Event::StopFailed);
                    Err(error)
                }
            }
        }
    }

    /// Starts a probe in the background if none is running; returns whether one could start.
    pub(crate) fn start_probe(&self) -> bool {
        self.probing
            .join_or_start(|| Some(self.probe_job()))
            .is_ok()
    }

    /// Counts a held request while the guard lives, and makes sure the backend is polled.
    pub(crate) fn watch(&self) -> Watching<'_> {
        self.watchers.fetch_add(1, Ordering::SeqCst);
        self.ensure_polling();
        Watching(self)
    }

    /// A future that completes at the next transition. Create it before checking the state, so
    /// a transition between the check and the wait is not missed.
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    fn apply(&self, event: Event) -> Option<Transition> {
        let transition = self.lifecycle.apply(event)?;
        self.after(transition);
        Some(transition)
    }

    /// What every transition sets off.
    fn after(&self, transition: Transition) {
        let Transition { from, to, lasted } = transition;
        let name = &*self.name;
        let secs = lasted.as_secs_f64();
        match (from, to) {
            (ServiceState::Starting, ServiceState::Up) => {
                tracing::info!(service = name, "{name} came up after {secs:.2} s starting");
                metrics::cold_start(name, lasted);
            }
            (ServiceState::Starting, ServiceState::Down) => tracing::warn!(
                service = name,
                "{name} did not come up: down again after {secs:.2} s starting"
            ),
            (ServiceState::Stopping, ServiceState::Down) => {
                tracing::info!(service = name, "{name} stopped after {secs:.2} s stopping")
            }
            _ => tracing::info!(service = name, "{name} is {to} after {secs:.2} s {from}"),
        }
        metrics::transition(name, from.as_str(), to.as_str());
        self.changed.notify_waiters();
        match to {
            ServiceState::Starting | ServiceState::Stopping => self.ensure_polling(),
            ServiceState::Up => {
                if let Some(idle) = &self.idle {
                    idle.arm_if_idle();
                }
            }
            ServiceState::Down => {
                if self.wake_after_stop.swap(false, Ordering::SeqCst) {
                    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                        runtime.spawn(self.wake());
                    }
                }
            }
        }
    }

    /// Caches the up a probe or `set_status_up` found, unless the state has left Up (an idle
    /// stop between the two would otherwise leave a stale up cached while stopping).
    fn cache_up_if_still_up(&self) {
        self.lifecycle
            .cache_if_up(|| self.cache.mark_up(), || self.cache.mark_down());
    }

    /// One poller per service, running while the backend is starting or stopping (or requests
    /// are held): it probes every [`POLL_INTERVAL`] and ends Starting / Stopping at their timeouts.
    fn ensure_polling(&self) {
        let Some(me) = self.me.upgrade() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.polling.swap(true, Ordering::SeqCst) {
            return;
        }
        runtime.spawn(async move {
            let mut running = PollerFlag {
                flag: &me.polling,
                finished: false,
            };
            while me.needs_polling() || me.resume_polling() {
                let state = me.state();
                let lasted = me.lifecycle.lasted();
                if state == ServiceState::Starting && lasted >= me.service.start_timeout {
                    me.apply(Event::StartTimedOut);
                    continue;
                }
                if state == ServiceState::Stopping && lasted >= me.service.stop_timeout {
                    tracing::warn!(service = %me.name, "{} still answers {:?} after on_idle", me.name, lasted);
                    me.apply(Event::StopTimedOut);
                    continue;
                }
                let _ = me.reprobe().await;
                if me.needs_polling() {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
            }
            running.finished = true;
        });
    }

    fn needs_polling(&self) -> bool {
        matches!(
            self.state(),
            ServiceState::Starting | ServiceState::Stopping
        ) || (self.watchers.load(Ordering::SeqCst) > 0 && self.state() != ServiceState::Up)
    }

    /// Called when the poller is about to stop: stops it, unless polling became needed again
    /// meanwhile and no other poller has started (then this one carries on).
    fn resume_polling(&self) -> bool {
        self.polling.store(false, Ordering::SeqCst);
        self.needs_polling() && !self.polling.swap(true, Ordering::SeqCst)
    }

    fn probe_shared(
        &self,
        force: bool,
    ) -> impl Future<Output = Result<bool, MonitorError>> + Send + 'static {
        let joined = if !force && self.cache.is_up() {
            Ok(None)
        } else {
            self.probing
                .join_or_start(|| (force || !self.cache.is_up()).then(|| self.probe_job()))
        };
        let name = Arc::clone(&self.name);
        async move {
            match joined {
                Ok(Some(flight)) => flight.await.map_err(|source| MonitorError::Probe {
                    service: name.to_string(),
                    source,
                }),
                // The cache turned up while we were deciding (a probe just finished).
                Ok(None) => Ok(true),
                Err(_) => Err(MonitorError::NoRuntime(name.to_string())),
            }
        }
    }

    fn probe_job(&self) -> impl Future<Output = Result<bool, SharedError>> + Send + 'static {
        let me = self.me.upgrade();
        async move {
            let Some(me) = me else {
                return Err(SharedError::from(crate::BoxError::from("service removed")));
            };
            let started = Instant::now();
            let timeout = me.service.probe_timeout;
            let probe = AssertUnwindSafe(async { me.service.probe.probe(&me.service.url).await })
                .catch_unwind();
            let result = match tokio::time::timeout(timeout, probe).await {
                Ok(Ok(result)) => result,
                Ok(Err(_panic)) => {
                    tracing::error!(service = %me.name, "probe panicked; counted as a failed probe");
                    Err("the probe panicked".into())
                }
                Err(_) => {
                    tracing::debug!(service = %me.name, ?timeout, "probe timed out");
                    Ok(false)
                }
            };
            let elapsed = started.elapsed();
            let came_back = me.seen.swap(true, Ordering::SeqCst) && me.state() != ServiceState::Up;
            let result = me.settle(result, came_back);
            match &result {
                Ok(up) => {
                    tracing::debug!(service = %me.name, up, ?elapsed, "probe finished");
                    metrics::probe(&me.name, if *up { "up" } else { "down" }, elapsed);
                }
                Err(error) => {
                    tracing::warn!(service = %me.name, %error, ?elapsed, "probe failed");
                    metrics::probe(&me.name, "error", elapsed);
                }
            }
            if let Ok(true) = result {
                me.apply(Event::ProbedUp);
                me.cache_up_if_still_up();
            } else {
                // A failed probe also forgets any cached up: it no longer holds.
                me.cache.mark_down();
                me.apply(Event::ProbedDown);
            }
            result.map_err(SharedError::from)
        }
    }

    /// Holds back an up that follows a down until `ready_after` has passed since the first one.
    fn settle(
        &self,
        result: Result<bool, crate::BoxError>,
        came_back: bool,
    ) -> Result<bool, crate::BoxError> {
        let ready_after = self.service.ready_after;
        let mut since = self
            .settling_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(true) if came_back && !ready_after.is_zero() => {
                let first_up = *since.get_or_insert_with(Instant::now);
                if first_up.elapsed() < ready_after {
                    tracing::debug!(service = %self.name, ?ready_after, "answering again; settling before it counts as up");
                    return Ok(false);
                }
                *since = None;
                Ok(true)
            }
            other => {
                *since = None;
                other
            }
        }
    }
}

/// A held request, counted while it waits.
pub(crate) struct Watching<'a>(&'a Registered);

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Clears the "poller running" flag if the poller is dropped mid-way (its runtime shut down);
/// a poller that finishes has handed the flag over already.
struct PollerFlag<'a> {
    flag: &'a AtomicBool,
    finished: bool,
}

impl Drop for PollerFlag<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.flag.store(false, Ordering::SeqCst);
        }
    }
}
