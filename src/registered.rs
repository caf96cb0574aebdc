//! A service once added: its definition, its status cache, its lifecycle, and what each
//! transition sets off (running `on_down` / `on_idle`, polling, releasing held requests).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::{MonitorError, SharedError};
use crate::idle::IdleWatch;
use crate::lifecycle::{Event, Lifecycle, ServiceState, Transition};
use crate::service::MonitoredService;
use crate::single_flight::SingleFlight;
use crate::stats::{ProbeResult, Stats};
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
    /// Counts and last events, for snapshots and metrics.
    pub(crate) stats: Stats,
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
    /// Runs of `on_idle` in progress (and stops about to try): while any runs, a closed port
    /// does not end Stopping, so `on_down` cannot race a stop that has not finished.
    stop_runs: Arc<AtomicUsize>,
    /// Whether any probe has finished yet (the first up is not a "coming back").
    seen: AtomicBool,
    /// When probes started succeeding again after a down, while `ready_after` has not passed.
    settling_since: Mutex<Option<Instant>>,
    /// Fleet hook: this service's part in a fleet, once the monitor has joined one. Read only
    /// on the slow paths (wake, stop, transitions, probe results, in-flight 0↔1).
    #[cfg(feature = "fleet")]
    pub(crate) fleet: std::sync::OnceLock<Arc<crate::fleet::Member>>,
}

impl Registered {
    pub(crate) fn new(name: String, service: MonitoredService) -> Arc<Self> {
        Arc::new_cyclic(|me: &Weak<Self>| Self {
            name: name.into(),
            cache: StatusCache::new(service.grace_period),
            lifecycle: Lifecycle::new(),
            stats: Stats::default(),
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
            stop_runs: Arc::default(),
            seen: AtomicBool::new(false),
            settling_since: Mutex::new(None),
            #[cfg(feature = "fleet")]
            fleet: std::sync::OnceLock::new(),
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
        self.mark_down(Event::MarkedDown);
    }

    /// Applies a down event and forgets any cached up, in the order that lets no up cached
    /// meanwhile survive it (see `Lifecycle::down`).
    fn mark_down(&self, event: Event) {
        if let Some(transition) = self.lifecycle.down(event, || self.cache.mark_down()) {
            self.after(transition);
        }
    }

    /// Asks for the backend to start: runs `on_down` if it is down (one run per cold start,
    /// shared by everyone who asks while it runs), remembers the wish if it is stopping, and
    /// does nothing more if it is starting or up. Fails only with `on_down`'s own failure.
    pub(crate) fn wake(&self) -> impl Future<Output = Result<(), SharedError>> + Send + 'static {
        let joined = self.waking.join_or_start(|| {
            let on_down = self.service.on_down.clone()?;
            if let Some(transition) = self.lifecycle.apply(Event::Wake) {
                self.after(transition);
                return Some(self.fleet_wake(self.run_on_down(on_down)));
            }
            if self.state() != ServiceState::Stopping {
                return None;
            }
            self.wake_after_stop.store(true, Ordering::SeqCst);
            // Stopping may have ended between the two looks, its wake-up seeing no wish.
            let Some(transition) = self.lifecycle.apply(Event::Wake) else {
                // Up again (the stop failed) or starting: nothing is left to wish for, and a
                // wish kept would start the backend right after its next idle stop.
                if self.state() != ServiceState::Stopping {
                    self.wake_after_stop.store(false, Ordering::SeqCst);
                }
                return None;
            };
            self.wake_after_stop.store(false, Ordering::SeqCst);
            self.after(transition);
            Some(self.fleet_wake(self.run_on_down(on_down)))
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

    /// Fleet hook: in a fleet, `on_down` runs only under the fleet's lease (one start across
    /// the replicas); otherwise `run` is returned as it is.
    fn fleet_wake(
        &self,
        run: BoxFuture<'static, Result<(), SharedError>>,
    ) -> BoxFuture<'static, Result<(), SharedError>> {
        #[cfg(feature = "fleet")]
        if let Some(member) = self.fleet.get() {
            return member.wake(run);
        }
        run
    }

    /// A run of `on_down` (not started yet), for a fleet replica taking over a start.
    #[cfg(feature = "fleet")]
    pub(crate) fn on_down_run(&self) -> Option<BoxFuture<'static, Result<(), SharedError>>> {
        let on_down = self.service.on_down.clone()?;
        Some(self.run_on_down(on_down))
    }

    fn run_on_down(
        &self,
        on_down: Arc<dyn crate::Trigger>,
    ) -> BoxFuture<'static, Result<(), SharedError>> {
        let me = self.me.upgrade();
        let timeout = self.service.trigger_timeout;
        async move {
            let Some(me) = me else { return Ok(()) };
            me.stats.wake(&me.name);
            let result = run_bounded(&on_down, timeout, &me.stats, &me.name, "on_down").await;
            if result.is_err() {
                me.apply(Event::WakeFailed);
            }
            result
        }
        .boxed()
    }

    /// The idle stop: [`stop_locally`](Self::stop_locally), or in a fleet only once the whole
    /// fleet has been idle for the idle time and this replica holds the fleet's lease.
    pub(crate) fn stop(&self) -> BoxFuture<'static, Result<bool, SharedError>> {
        self.fleet_stop(true)
    }

    /// A stop asked for by an operator: as [`stop`](Self::stop), without waiting for the
    /// fleet to be idle (the fleet's lease is still taken, so it runs once).
    pub(crate) fn stop_requested(&self) -> BoxFuture<'static, Result<bool, SharedError>> {
        self.fleet_stop(false)
    }

    /// Fleet hook: the stop goes through the fleet when there is one.
    fn fleet_stop(&self, idle_check: bool) -> BoxFuture<'static, Result<bool, SharedError>> {
        #[cfg(feature = "fleet")]
        if let (Some(member), Some(me)) = (self.fleet.get(), self.me.upgrade()) {
            return member.stop(me, idle_check);
        }
        let _ = idle_check;
        self.stop_locally().boxed()
    }

    /// Runs `on_idle` if the backend is up: the cached up is forgotten at once, and the backend
    /// is Stopping until a probe finds it down. Fails with `on_idle`'s own failure (then the
    /// backend counts as up again, uncached, and the stop is retried after the idle time).
    pub(crate) fn stop_locally(
        &self,
    ) -> impl Future<Output = Result<bool, SharedError>> + Send + 'static {
        let on_idle = self.service.on_idle.as_ref().map(|(_, t)| Arc::clone(t));
        // Counted before the transition, so no probe sees Stopping without it; a caller that
        // loses the transition gives it back at once (the guard drops below).
        let running = StopRun::new(&self.stop_runs);
        let transition = on_idle
            .as_ref()
            .and_then(|_| self.lifecycle.stop(|| self.cache.mark_down()));
        if let Some(transition) = transition {
            self.after(transition);
        }
        let me = self.me.upgrade();
        let timeout = self.service.trigger_timeout;
        async move {
            let _running = running;
            let (Some(on_idle), Some(_), Some(me)) = (on_idle, transition, me) else {
                return Ok(false);
            };
            me.stats.idle_stop(&me.name);
            match run_bounded(&on_idle, timeout, &me.stats, &me.name, "on_idle").await {
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

    /// Requests held now, waiting for the backend to come up (for snapshots).
    pub(crate) fn held(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }

    /// A future that completes at the next transition. Create it before checking the state, so
    /// a transition between the check and the wait is not missed.
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    pub(crate) fn apply(&self, event: Event) -> Option<Transition> {
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
                self.stats.cold_start(name, lasted);
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
        crate::metrics::transition(name, from.as_str(), to.as_str());
        self.changed.notify_waiters();
        // Fleet hook: a lease held for this start or stop is released, announcing the new state.
        #[cfg(feature = "fleet")]
        if let Some(member) = self.fleet.get() {
            member.transition(transition);
        }
        match to {
            ServiceState::Starting | ServiceState::Stopping => self.ensure_polling(),
            ServiceState::Up => {
                // A start asked for while stopping is moot once the backend is up again.
                self.wake_after_stop.store(false, Ordering::SeqCst);
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
    pub(crate) fn cache_up_if_still_up(&self) {
        self.lifecycle
            .cache_if_up(|| self.cache.mark_up(), || self.cache.mark_down());
    }

    /// One poller per service, running while the backend is starting or stopping (or requests
    /// are held): it probes every [`POLL_INTERVAL`] and ends Starting / Stopping at their timeouts.
    pub(crate) fn ensure_polling(&self) {
        if self.polling.load(Ordering::SeqCst) {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.polling.swap(true, Ordering::SeqCst) {
            return;
        }
        // Made before the spawn: a runtime shutting down drops a task it never polled, and the
        // flag must not stay set for a poller that never ran.
        let running = PollerFlag {
            me,
            finished: false,
        };
        runtime.spawn(async move {
            let mut running = running;
            let me = Arc::clone(&running.me);
            while me.needs_polling() || me.resume_polling() {
                let (state, lasted) = me.lifecycle.snapshot();
                if state == ServiceState::Starting && lasted >= me.service.start_timeout {
                    me.apply(Event::StartTimedOut);
                    continue;
                }
                if state == ServiceState::Stopping
                    && lasted >= me.service.stop_timeout
                    && !me.stop_running()
                {
                    tracing::warn!(service = %me.name, "{} still answers {:?} after on_idle", me.name, lasted);
                    me.apply(Event::StopTimedOut);
                    continue;
                }
                let _ = me.reprobe().await;
                if me.needs_polling() {
                    tokio::time::sleep(me.poll_interval()).await;
                }
            }
            running.finished = true;
        });
    }

    fn stop_running(&self) -> bool {
        self.stop_runs.load(Ordering::SeqCst) > 0
    }

    /// Fleet hook: a replica that waits for another replica's start or stop polls slowly; the
    /// other's announcement ends the wait. Otherwise [`POLL_INTERVAL`].
    fn poll_interval(&self) -> Duration {
        #[cfg(feature = "fleet")]
        if let Some(member) = self.fleet.get() {
            return member.poll_interval(POLL_INTERVAL);
        }
        POLL_INTERVAL
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
            // Fleet hook: an up is not believed while another replica is stopping the backend.
            #[cfg(feature = "fleet")]
            let result = match me.fleet.get() {
                Some(member) => member.filter_probe(result),
                None => result,
            };
            match &result {
                Ok(up) => {
                    tracing::debug!(service = %me.name, up, ?elapsed, "probe finished");
                    let result = if *up {
                        ProbeResult::Up
                    } else {
                        ProbeResult::Down
                    };
                    me.stats.probe(&me.name, result, elapsed);
                }
                Err(error) => {
                    tracing::warn!(service = %me.name, %error, ?elapsed, "probe failed");
                    me.stats.probe(&me.name, ProbeResult::Error, elapsed);
                }
            }
            if let Ok(true) = result {
                me.apply(Event::ProbedUp);
                me.cache_up_if_still_up();
                // Fleet hook: the other replicas use this up instead of probing themselves.
                #[cfg(feature = "fleet")]
                if let Some(member) = me.fleet.get() {
                    member.probed_up();
                }
            } else if me.state() == ServiceState::Stopping && me.stop_running() {
                // `on_idle` still runs: a closed port is not a stopped backend yet.
                me.cache.mark_down();
            } else {
                // A failed probe also forgets any cached up: it no longer holds.
                me.mark_down(Event::ProbedDown);
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

/// Fleet hook, called by the idle watch when its in-flight count goes 0→1 (`busy`) or 1→0.
/// Without the `fleet` feature it is nothing; with it and no fleet joined, one relaxed load.
#[inline]
pub(crate) fn fleet_activity(service: &Weak<Registered>, busy: bool) {
    #[cfg(feature = "fleet")]
    if crate::fleet::in_use() {
        if let Some(member) = service.upgrade().and_then(|me| me.fleet.get().cloned()) {
            member.activity(busy);
        }
    }
    #[cfg(not(feature = "fleet"))]
    let _ = (service, busy);
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
struct PollerFlag {
    me: Arc<Registered>,
    finished: bool,
}

impl Drop for PollerFlag {
    fn drop(&mut self) {
        if !self.finished {
            self.me.polling.store(false, Ordering::SeqCst);
        }
    }
}

/// Counts a run of `on_idle` while it lives, however it ends (a dropped future included).
struct StopRun(Arc<AtomicUsize>);

impl StopRun {
    fn new(runs: &Arc<AtomicUsize>) -> Self {
        runs.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(runs))
    }
}

impl Drop for StopRun {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
