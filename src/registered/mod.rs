//! A service once added: its definition, its status cache, its lifecycle, and what each
//! transition sets off (running `on_down` / `on_idle`, polling, releasing held requests; see
//! `transition.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::idle::{IdleWatch, Shards};
use crate::lifecycle::{Event, Lifecycle, ServiceState, StopRuns};
use crate::service::MonitoredService;
use crate::single_flight::SingleFlight;
use crate::stats::Stats;
use crate::status::StatusCache;

mod backoff;
mod call_off;
mod dependencies;
mod poller;
mod probe;
mod recheck;
mod release;
mod runs;
mod start;
mod start_watch;
mod stop;
mod transition;
mod wish;

pub(crate) use backoff::StartPaused;
pub(crate) use call_off::StartCalledOff;
pub(crate) use release::{Asker, ShuttingDown};

pub(crate) struct Registered {
    pub(crate) name: Arc<str>,
    pub(crate) service: MonitoredService,
    pub(crate) cache: Arc<StatusCache>,
    pub(crate) lifecycle: Lifecycle,
    /// Counts and last events, for snapshots and metrics.
    pub(crate) stats: Stats,
    /// Requests in flight through its layers (but the plainest, see `MonitorLayer::new`) and
    /// its activities (open upgraded connections): what the idle watch counts, and what a
    /// gateway's reload waits for before it stops the program of a definition it retired.
    pub(crate) requests: Arc<Shards>,
    /// Its idle watch, when the service has `on_idle`.
    pub(crate) idle: Option<Arc<IdleWatch>>,
    me: Weak<Registered>,
    probing: SingleFlight<bool>,
    /// Runs of `on_down`: requests arriving while one runs share its result.
    waking: SingleFlight<()>,
    /// Woken at every transition: held requests wait on it.
    changed: Notify,
    /// Whether the poller task runs.
    polling: AtomicBool,
    /// While a start waits for what `on_down` started last to end (see `let_last_run_end`):
    /// what answers then is that program on its way out, so the poller does not probe.
    ending_last_run: AtomicBool,
    /// Held requests: while any wait, the poller runs even if nothing is starting.
    watchers: AtomicUsize,
    /// A start asked for while the backend was stopping, and by whom: started once it is down.
    wake_after_stop: wish::WakeAfterStop,
    /// Runs of `on_idle` in progress (and stops about to try): while any runs, a closed port
    /// does not end Stopping, so `on_down` cannot race a stop that has not finished.
    stop_runs: Arc<runs::Runs>,
    /// Runs of `on_down` in progress (and starts about to be made): while any runs, an idle
    /// stop is called off and an operator's stop waits, so `on_idle` cannot race a start that
    /// has not finished.
    start_runs: Arc<runs::Runs>,
    /// Calls off the starts that have not begun `on_down`, for an operator's stop.
    call_off: call_off::CallOff,
    /// Failed starts since the backend was last up, and the pause they impose on the next.
    backoff: backoff::StartBackoff,
    /// The server is shutting down: held requests are answered, none is held, and requests
    /// start nothing (see `release`).
    release: release::Release,
    /// Whether any probe has finished yet (the first up is not a "coming back").
    seen: AtomicBool,
    /// Whether this down spell's "nothing starts it" was said (see `say_nothing_starts_it`).
    said_nothing_starts_it: AtomicBool,
    /// Whether this up spell's "on_idle has nothing to stop" was said (see `stop.rs`); cleared
    /// once the backend is down.
    said_nothing_to_stop: AtomicBool,
    /// Whether the current state's first held request to time out was said (see
    /// `say_held_timed_out`); cleared at every transition.
    said_held_timed_out: AtomicBool,
    /// When probes started succeeding again after a down, while `ready_after` has not passed.
    settling_since: Mutex<Option<Instant>>,
    /// The log of the probes that failed for want of this process's own resources (see
    /// `probe.rs`).
    local_said: Arc<crate::once_a_minute::OnceAMinute>,
    /// The services it needs up first, and its hold on them while it is not down.
    dependencies: dependencies::Dependencies,
    /// Its looks at them while it is up (see `recheck.rs`).
    rechecks: recheck::Rechecks,
    /// How many times it has entered Up: tells one down spell from the next.
    times_up: AtomicU64,
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
        let requests = Arc::new(Shards::new());
        Arc::new_cyclic(|me: &Weak<Self>| Self {
            name: name.into(),
            cache: StatusCache::new(service.grace_period),
            lifecycle: Lifecycle::new(),
            stats: Stats::default(),
            idle: service
                .on_idle
                .as_ref()
                .map(|(after, _)| IdleWatch::new(*after, Arc::clone(&requests), me.clone())),
            requests,
            service,
            me: me.clone(),
            probing: SingleFlight::default(),
            waking: SingleFlight::default(),
            changed: Notify::new(),
            polling: AtomicBool::new(false),
            ending_last_run: AtomicBool::new(false),
            watchers: AtomicUsize::new(0),
            wake_after_stop: wish::WakeAfterStop::new(),
            stop_runs: Arc::default(),
            start_runs: Arc::default(),
            call_off: call_off::CallOff::default(),
            backoff: backoff::StartBackoff::default(),
            release: release::Release::default(),
            seen: AtomicBool::new(false),
            said_nothing_starts_it: AtomicBool::new(false),
            said_nothing_to_stop: AtomicBool::new(false),
            said_held_timed_out: AtomicBool::new(false),
            settling_since: Mutex::new(None),
            local_said: Arc::default(),
            rechecks: recheck::Rechecks::new(dependencies.len()),
            times_up: AtomicU64::new(0),
            dependencies: dependencies::Dependencies::new(dependencies),
            #[cfg(feature = "fleet")]
            fleet: std::sync::OnceLock::new(),
        })
    }

    pub(crate) fn state(&self) -> ServiceState {
        self.lifecycle.state()
    }

    /// How many times it has entered Up so far.
    fn times_up(&self) -> u64 {
        self.times_up.load(Ordering::SeqCst)
    }

    /// An operator's word that the backend is up. Ignored while a stop's `on_idle` still runs
    /// (see [`mark_up`](Self::mark_up)): said at info, as an operator who sees no change asks why.
    pub(crate) fn set_status_up(&self) {
        if self.mark_up().is_err() {
            let name = &*self.name;
            tracing::info!(
                service = %name,
                "{name} is being stopped (its stop still runs): set_status_up changes \
                 nothing; the stop's end decides its state"
            );
        }
    }

    /// Marks the backend up as of now (an operator's word, or another replica's stop called
    /// off), unless this replica's own stop's `on_idle` still runs: `Err(StopRuns)`, and no
    /// change (see `Lifecycle::mark_up`).
    pub(crate) fn mark_up(&self) -> Result<(), StopRuns> {
        let marked = self.lifecycle.mark_up(|| self.stop_running());
        if let Ok(Some(transition)) = marked {
            self.after(transition);
        }
        self.cache_up_if_still_up();
        marked.map(drop)
    }

    /// Counts as a request in flight until dropped (see [`crate::Activity`]).
    pub(crate) fn activity(&self) -> crate::Activity {
        crate::Activity(self.requests.enter())
    }

    /// Waits until no run of `on_idle` is left, at most `bound`: whether none is.
    #[cfg(feature = "gateway")]
    pub(crate) async fn stops_ended_within(&self, bound: std::time::Duration) -> bool {
        self.stop_runs.none_within(bound).await
    }

    /// Requests in flight now (see [`requests`](Self::requests)).
    #[cfg(feature = "gateway")]
    pub(crate) fn in_flight(&self) -> usize {
        self.requests.in_flight()
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
                service = %name,
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
                service = %name,
                ?max_wait,
                "held request waited its longest; answering 504"
            );
            return;
        }
        let (state, lasted) = self.lifecycle.snapshot();
        tracing::info!(
            service = %name,
            "{name} did not come up within the hold's max_wait ({:.2} s): held requests are \
             answered 504 (it has been {state} for {:.2} s)",
            max_wait.as_secs_f64(),
            lasted.as_secs_f64()
        );
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

/// Model checks of an idle stop's races (run: see `src/sync.rs`).
#[cfg(all(test, loom))]
mod loom_models;

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

        // In flight as the stop begins: the stop is called off, the up cached again.
        let request = registered.requests.enter();
        assert!(!registered.stop().await.unwrap());
        assert_eq!(registered.state(), ServiceState::Up);
        assert!(registered.cache.is_up());
        // Ended since the idle watch's last look: not idle for the idle time either.
        drop(request);
        assert!(!registered.stop().await.unwrap());
        assert_eq!(registered.state(), ServiceState::Up);
        assert_eq!(stops.load(Ordering::SeqCst), 0);

        // An operator's stop is not an idle stop: it runs whatever is in flight.
        let _request = registered.requests.enter();
        assert!(registered.stop_requested().await.unwrap());
        assert_eq!(registered.state(), ServiceState::Stopping);
        assert_eq!(stops.load(Ordering::SeqCst), 1);
    }
}
