//! A service once added: its definition, its status cache, its lifecycle, and what each
//! transition sets off (running `on_down` / `on_idle`, polling, releasing held requests; see
//! `transition.rs`).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::{MonitorError, SharedError};
use crate::idle::IdleWatch;
use crate::lifecycle::{Event, Lifecycle, ServiceState, Stamp};
use crate::service::MonitoredService;
use crate::single_flight::SingleFlight;
use crate::stats::Stats;
use crate::status::StatusCache;
use crate::trigger::run_bounded;

mod backoff;
mod dependencies;
mod poller;
mod probe;
mod release;
mod start_watch;
mod stop;
mod transition;

pub(crate) use backoff::StartPaused;
pub(crate) use release::{Asker, ShuttingDown};

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
    /// A start asked for while the backend was stopping, and by whom (`Asker::wish`): start
    /// it once it is down.
    wake_after_stop: AtomicU8,
    /// Runs of `on_idle` in progress (and stops about to try): while any runs, a closed port
    /// does not end Stopping, so `on_down` cannot race a stop that has not finished.
    stop_runs: Arc<AtomicUsize>,
    /// Runs of `on_down` in progress (and starts about to be made): while any runs, an idle
    /// stop is called off, so `on_idle` cannot race a start that has not finished.
    start_runs: Arc<AtomicUsize>,
    /// Failed starts since the backend was last up, and the pause they impose on the next.
    backoff: backoff::StartBackoff,
    /// The server is shutting down: held requests are answered, none is held, and requests
    /// start nothing (see `release`).
    release: release::Release,
    /// Whether any probe has finished yet (the first up is not a "coming back").
    seen: AtomicBool,
    /// Whether this down spell's "nothing starts it" was said (see `say_nothing_starts_it`).
    said_nothing_starts_it: AtomicBool,
    /// Whether the current state's first held request to time out was said (see
    /// `say_held_timed_out`); cleared at every transition.
    said_held_timed_out: AtomicBool,
    /// When probes started succeeding again after a down, while `ready_after` has not passed.
    settling_since: Mutex<Option<Instant>>,
    /// The services it needs up first, and its hold on them while it is not down.
    dependencies: dependencies::Dependencies,
    /// Fleet hook: this service's part in a fleet, once the monitor has joined one. Read only
    /// on the slow paths (wake, stop, transitions, probe results, in-flight 0↔1).
    #[cfg(feature = "fleet")]
    pub(crate) fleet: std::sync::OnceLock<Arc<crate::fleet::Member>>,
}

impl Registered {
    #[cfg(all(test, not(loom)))]
    pub(crate) fn new(name: String, service: MonitoredService) -> Arc<Self> {
        Self::with_dependencies(name, service, Vec::new())
    }

    /// A service whose `depends_on` names are resolved to `dependencies`.
    pub(crate) fn with_dependencies(
        name: String,
        service: MonitoredService,
        dependencies: Vec<Arc<Registered>>,
    ) -> Arc<Self> {
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
            wake_after_stop: AtomicU8::new(release::NO_WISH),
            stop_runs: Arc::default(),
            start_runs: Arc::default(),
            backoff: backoff::StartBackoff::default(),
            release: release::Release::default(),
            seen: AtomicBool::new(false),
            said_nothing_starts_it: AtomicBool::new(false),
            said_held_timed_out: AtomicBool::new(false),
            settling_since: Mutex::new(None),
            dependencies: dependencies::Dependencies::new(dependencies),
            #[cfg(feature = "fleet")]
            fleet: std::sync::OnceLock::new(),
        })
    }

    pub(crate) fn state(&self) -> ServiceState {
        self.lifecycle.state()
    }

    pub(crate) fn set_status_up(&self) {
        self.apply(Event::MarkedUp);
        self.cache_up_if_still_up();
    }

    /// Counts as a request in flight for `on_idle` until dropped (see [`crate::Activity`]).
    pub(crate) fn activity(&self) -> crate::Activity {
        crate::Activity(self.idle.as_ref().map(|idle| idle.enter()))
    }

    pub(crate) fn set_status_down(&self) {
        self.mark_down(Event::MarkedDown);
    }

    /// `set_status_down` for a connection attempted at `attempted` and refused: only if the
    /// backend is up, and was before then (see `Lifecycle::down_if_before`).
    pub(crate) fn set_status_down_if_up_before(&self, attempted: Instant) {
        let clear = || self.cache.mark_down();
        if let Some(transition) = self
            .lifecycle
            .down_if_before(Event::MarkedDown, attempted, clear)
        {
            self.after(transition);
        }
    }

    /// Applies a down event and forgets any cached up, in the order that lets no up cached
    /// meanwhile survive it; a stop whose `on_idle` still runs stays Stopping (see
    /// `Lifecycle::down`).
    fn mark_down(&self, event: Event) {
        let stop_runs = || self.stop_running();
        if let Some(transition) = self
            .lifecycle
            .down(event, stop_runs, || self.cache.mark_down())
        {
            self.after(transition);
        }
    }

    /// A request asks for the backend to start: see [`start_for`](Self::start_for).
    /// For a request that finds the backend down: if it has no `on_down`, says why its
    /// requests get no start, once per down spell at info (a stream of them must not fill
    /// the log, and without it an operator sees 503s and no line at all).
    pub(crate) fn say_nothing_starts_it(&self) {
        if self.service.on_down.is_none()
            && self.state() == ServiceState::Down
            && !self.said_nothing_starts_it.swap(true, Ordering::Relaxed)
        {
            let name = &*self.name;
            tracing::info!(
                service = name,
                "{name} is down and nothing starts it (no on_down): its requests get the \
                 fallback, or are held, until it is up"
            );
        }
    }

    /// For a held request answered 504 at `max_wait`: the first of each state said at info,
    /// with how long the backend has been in it, so that a start longer than `max_wait` is
    /// seen as such (the rest at debug: a herd times out together).
    pub(crate) fn say_held_timed_out(&self, max_wait: std::time::Duration) {
        let name = &*self.name;
        if self.said_held_timed_out.swap(true, Ordering::Relaxed) {
            tracing::debug!(
                service = name,
                ?max_wait,
                "held request waited its longest; answering 504"
            );
            return;
        }
        let (state, lasted) = self.lifecycle.snapshot();
        tracing::info!(
            service = name,
            "{name} did not come up within the hold's max_wait ({:.2} s): held requests are \
             answered 504 (it has been {state} for {:.2} s)",
            max_wait.as_secs_f64(),
            lasted.as_secs_f64()
        );
    }

    pub(crate) fn wake(&self) -> impl Future<Output = Result<(), SharedError>> + Send + 'static {
        self.start_for(Asker::Request)
    }

    /// Asks for the backend to start: runs `on_down` if it is down (one run per cold start,
    /// shared by everyone who asks while it runs), remembers the wish if it is stopping, and
    /// does nothing more if it is starting or up. Fails with `on_down`'s own failure, or with
    /// [`StartPaused`] while the pause after a series of failed starts lasts (see `backoff`).
    /// Once held requests are released (the server is shutting down), a request's start fails
    /// with [`ShuttingDown`] instead, before anything runs: every start a request can set off
    /// comes here, so this is the one place that says no.
    pub(crate) fn start_for(
        &self,
        asker: Asker,
    ) -> impl Future<Output = Result<(), SharedError>> + Send + 'static {
        let joined = self.waking.join_or_start(|| {
            let on_down = self.service.on_down.clone()?;
            if asker == Asker::Request && self.is_released() {
                return self.start_refused();
            }
            if self.state() == ServiceState::Down {
                if let Some((paused, first)) = self.backoff.pausing() {
                    // Once per pause at info: why requests get no start must be explained,
                    // a stream of requests must not fill the log.
                    if first {
                        tracing::info!(service = %self.name, "{}: {paused}", self.name);
                    } else {
                        tracing::debug!(service = %self.name, "{}: {paused}", self.name);
                    }
                    let paused: SharedError = Arc::new(paused);
                    return Some(futures::future::ready(Err(paused)).boxed());
                }
            }
            // Counted before the transition, as a stop is: an idle stop that follows it (the
            // backend answering before on_down returns) sees it.
            let running = stop::TriggerRun::new(&self.start_runs);
            if let Some(transition) = self.lifecycle.apply(Event::Wake) {
                self.after(transition);
                let starting = Some(transition.began);
                let run = self.run_on_down(on_down, starting, running, asker);
                return Some(self.fleet_wake(asker, run));
            }
            drop(running);
            if self.state() != ServiceState::Stopping {
                return None;
            }
            self.wake_after_stop
                .fetch_max(asker.wish(), Ordering::SeqCst);
            let running = stop::TriggerRun::new(&self.start_runs);
            // Stopping may have ended between the two looks, its wake-up seeing no wish.
            let Some(transition) = self.lifecycle.apply(Event::Wake) else {
                // Up again (the stop failed) or starting: nothing is left to wish for, and a
                // wish kept would start the backend right after its next idle stop.
                if self.state() != ServiceState::Stopping {
                    self.wake_after_stop
                        .store(release::NO_WISH, Ordering::SeqCst);
                }
                return None;
            };
            self.wake_after_stop
                .store(release::NO_WISH, Ordering::SeqCst);
            self.after(transition);
            let run = self.run_on_down(on_down, Some(transition.began), running, asker);
            Some(self.fleet_wake(asker, run))
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
        #[cfg_attr(not(feature = "fleet"), allow(unused_variables))] asker: Asker,
        run: BoxFuture<'static, Result<(), SharedError>>,
    ) -> BoxFuture<'static, Result<(), SharedError>> {
        #[cfg(feature = "fleet")]
        if let Some(member) = self.fleet.get() {
            return member.wake(asker, run);
        }
        run
    }

    /// A run of `on_down` (not started yet), for a fleet replica taking over a start: the
    /// start it belongs to is the Starting stay now on, watched as a local one is.
    #[cfg(feature = "fleet")]
    pub(crate) fn on_down_run(&self) -> Option<BoxFuture<'static, Result<(), SharedError>>> {
        let on_down = self.service.on_down.clone()?;
        let starting = Some(self.lifecycle.stamp()).filter(|s| s.state() == ServiceState::Starting);
        let running = stop::TriggerRun::new(&self.start_runs);
        Some(self.run_on_down(on_down, starting, running, Asker::Request))
    }

    /// Runs `on_down` for the start `starting` names (when known, its end is watched for),
    /// counted in `start_runs` by `running` until it ends, once its dependencies, started for
    /// `asker`, are up.
    fn run_on_down(
        &self,
        on_down: Arc<dyn crate::Trigger>,
        starting: Option<Stamp>,
        running: stop::TriggerRun,
        asker: Asker,
    ) -> BoxFuture<'static, Result<(), SharedError>> {
        let me = self.me.upgrade();
        let timeout = self.service.trigger_timeout;
        let dependencies = self.dependencies.come_up(&self.name, asker);
        async move {
            let _running = running;
            let Some(me) = me else { return Ok(()) };
            me.stats.wake(&me.name);
            let unfinished = start_watch::UnfinishedStart::new(&me, starting);
            let mut why = "on_down failed";
            let result = match dependencies {
                Some(dependencies) => {
                    let awaiting = me.dependencies.awaiting(starting);
                    let result = dependencies.await;
                    drop(awaiting);
                    match result {
                        // Over meanwhile (a probe found it up, say): `on_down` is for this
                        // start only, and what ends a start has said so already.
                        Ok(()) if starting.is_some_and(|start| me.lifecycle.stamp() != start) => {
                            unfinished.finished();
                            return match me.state() {
                                ServiceState::Up => Ok(()),
                                _ => Err(Arc::new(dependencies::StartEnded) as SharedError),
                            };
                        }
                        Ok(()) => None,
                        Err(down) => {
                            tracing::warn!(service = %me.name, "{} not started: {down}", me.name);
                            why = "a dependency did not come up";
                            Some(Err(down))
                        }
                    }
                }
                None => None,
            };
            let result = match result {
                Some(failed) => failed,
                None => run_bounded(&on_down, timeout, &me.stats, &me.name, "on_down").await,
            };
            unfinished.finished();
            match (&result, starting) {
                (Err(_), _) => {
                    if let Some(down) = me.lifecycle.apply(Event::WakeFailed) {
                        me.after_because(down, why);
                    }
                }
                (Ok(()), Some(starting)) => me.watch_start(starting, &on_down),
                (Ok(()), None) => {}
            }
            result
        }
        .boxed()
    }

    /// A future that completes at the next transition. Create it before checking the state, so
    /// a transition between the check and the wait is not missed.
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{BoxError, Url, probe, trigger};

    #[tokio::test]
    async fn an_idle_stop_is_called_off_for_a_request_that_came_in_meanwhile() {
        let stops = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&stops);
        let url = Url::parse("http://127.0.0.1:9/").unwrap();
        let service = MonitoredService::new(url, std::time::Duration::from_secs(60))
            .probe(probe::from_fn(|_| async { Ok::<bool, BoxError>(true) }))
            .on_idle(
                std::time::Duration::from_secs(3600),
                trigger::from_fn(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<(), BoxError>(()) }
                }),
            );
        let registered = Registered::new("app".into(), service);
        registered.set_status_up();
        let idle = registered.idle.clone().unwrap();

        // In flight as the stop begins: the stop is called off, the up cached again.
        let request = idle.enter();
        assert!(!registered.stop().await.unwrap());
        assert_eq!(registered.state(), ServiceState::Up);
        assert!(registered.cache.is_up());
        // Ended since the idle watch's last look: not idle for the idle time either.
        drop(request);
        assert!(!registered.stop().await.unwrap());
        assert_eq!(registered.state(), ServiceState::Up);
        assert_eq!(stops.load(Ordering::SeqCst), 0);

        // An operator's stop is not an idle stop: it runs whatever is in flight.
        let _request = idle.enter();
        assert!(registered.stop_requested().await.unwrap());
        assert_eq!(registered.state(), ServiceState::Stopping);
        assert_eq!(stops.load(Ordering::SeqCst), 1);
    }
}
