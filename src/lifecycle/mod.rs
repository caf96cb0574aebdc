//! The life of one backend as one state machine: Down, Starting, Up, Stopping.
//!
//! Every change of state goes through [`Lifecycle::apply`], which looks up the transition
//! table ([`next`]) and makes the change with one compare-and-swap. So whatever the runtime and
//! however requests arrive, exactly one caller wins each transition: one wake per cold start
//! (`Down → Starting`), one stop per idle period (`Up → Stopping`). What a transition sets off
//! (running `on_down`, polling, releasing held requests, logging) is the caller's job; see
//! `src/registered`.
//!
//! ```text
//!            wake                probed up / marked up
//!   Down ────────────▶ Starting ──────────────────────▶ Up
//!    ▲  ◀──────────────   │  wake failed, start timeout  │
//!    │                    ▼                              │ idle stop
//!    │   probed down / stop timeout                      ▼
//!    └──────────────────────────────────────────────── Stopping
//!        (Up → Down too, when a probe fails or the backend is marked down, but not for a
//!         probe that could not be made for want of the process's own resources;
//!         Stopping → Up when on_idle fails, or when marked up once it has returned)
//! ```

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::sync::atomic::{AtomicU64, Ordering, fence};

/// Where a monitored backend is in its life.
///
/// ```
/// # use std::time::Duration;
/// use tower_monitor::{MinMonitor, MonitoredService, ServiceState, Url};
///
/// let monitor = MinMonitor::new();
/// # let url = Url::parse("http://127.0.0.1:9/").unwrap();
/// monitor.add("app", MonitoredService::new(url, Duration::from_secs(30))).unwrap();
/// assert_eq!(monitor.state("app").unwrap(), ServiceState::Down);
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// monitor.set_status_up("app").unwrap();
/// assert_eq!(monitor.state("app").unwrap(), ServiceState::Up);
/// # });
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceState {
    /// Not known to be up: no probe has succeeded yet, or the last one failed. The next request
    /// that may wake it runs `on_down`.
    Down,
    /// `on_down` ran (or is running); the monitor polls until the backend answers, or until the
    /// start timeout passes.
    Starting,
    /// A probe found it up (cached for the grace period).
    Up,
    /// `on_idle` ran; nothing is forwarded to it until a probe finds it down, or the stop
    /// timeout passes.
    Stopping,
}

impl ServiceState {
    /// The state's name in lower case, as logs and metrics write it.
    ///
    /// ```
    /// assert_eq!(tower_monitor::ServiceState::Starting.as_str(), "starting");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Down => "down",
            Self::Starting => "starting",
            Self::Up => "up",
            Self::Stopping => "stopping",
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Starting,
            2 => Self::Up,
            3 => Self::Stopping,
            _ => Self::Down,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Self::Down => 0,
            Self::Starting => 1,
            Self::Up => 2,
            Self::Stopping => 3,
        }
    }
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to the backend, as far as the monitor can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A request (or an operator) asks for it to start.
    Wake,
    /// `on_down` failed, timed out or panicked, or what it started ended before it came up.
    WakeFailed,
    /// Starting lasted longer than the start timeout.
    StartTimedOut,
    /// A probe found it up.
    ProbedUp,
    /// A probe found it down (or failed).
    ProbedDown,
    /// `set_status_up`.
    MarkedUp,
    /// `set_status_down`, or a forward that found the backend gone.
    MarkedDown,
    /// Idle long enough (or an operator asks): run `on_idle`.
    Stop,
    /// `on_idle` failed, timed out or panicked: the backend is presumably still running.
    StopFailed,
    /// A request came in as an idle stop began: the stop is called off before `on_idle` runs.
    StopCancelled,
    /// Stopping lasted longer than the stop timeout.
    StopTimedOut,
}

/// The transition table: the state `event` leads to from `state`, or `None` for no change.
pub(crate) fn next(state: ServiceState, event: Event) -> Option<ServiceState> {
    use Event::*;
    use ServiceState::*;
    match (state, event) {
        (Down, Wake) => Some(Starting),
        (Starting, WakeFailed | StartTimedOut) => Some(Down),
        // A backend found up while stopping is still shutting down: it stays Stopping.
        (Down | Starting, ProbedUp) => Some(Up),
        (Down | Starting | Stopping, MarkedUp) => Some(Up),
        // Starting is not ended by a failed probe: the backend is expected to be down meanwhile.
        (Up | Stopping, ProbedDown) => Some(Down),
        (Up | Stopping, MarkedDown) => Some(Down),
        (Up, Stop) => Some(Stopping),
        (Stopping, StopFailed | StopCancelled) => Some(Up),
        (Stopping, StopTimedOut) => Some(Down),
        _ => None,
    }
}

/// A change of state that happened, and how long the state before it lasted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transition {
    pub(crate) from: ServiceState,
    pub(crate) to: ServiceState,
    pub(crate) lasted: Duration,
    /// The state this transition began, for [`Lifecycle::apply_to`].
    pub(crate) began: Stamp,
}

/// One particular stay in a state (the state and when it began): a state left and entered
/// again is another stay, with another stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp(u64);

impl Stamp {
    /// The state this stay is in.
    #[cfg(feature = "fleet")]
    pub(crate) fn state(self) -> ServiceState {
        unpack(self.0).0
    }
}

/// Why [`Lifecycle::mark_up`] changed nothing: a stop's `on_idle` still runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StopRuns;

/// The state of one backend, changed only through the transition table.
pub(crate) struct Lifecycle {
    /// The state (low two bits) and when it began (the rest: nanoseconds after `epoch`), in
    /// one word: a reader never pairs a new state with the start of the one before it.
    word: AtomicU64,
    epoch: Instant,
}

const STATE_BITS: u32 = 2;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;

fn pack(state: ServiceState, since: Duration) -> u64 {
    let nanos = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
    (nanos.min(u64::MAX >> STATE_BITS) << STATE_BITS) | u64::from(state.to_u8())
}

fn unpack(word: u64) -> (ServiceState, Duration) {
    let state = ServiceState::from_u8((word & STATE_MASK) as u8);
    (state, Duration::from_nanos(word >> STATE_BITS))
}

impl Lifecycle {
    pub(crate) fn new() -> Self {
        Self {
            word: AtomicU64::new(pack(ServiceState::Down, Duration::ZERO)),
            epoch: Instant::now(),
        }
    }

    pub(crate) fn state(&self) -> ServiceState {
        self.snapshot().0
    }

    /// The current stay in a state (see [`Stamp`]).
    pub(crate) fn stamp(&self) -> Stamp {
        Stamp(self.word.load(Ordering::SeqCst))
    }

    /// The state and how long it has lasted so far, read together.
    pub(crate) fn snapshot(&self) -> (ServiceState, Duration) {
        let (_, state, lasted) = self.stamped_snapshot();
        (state, lasted)
    }

    /// [`snapshot`](Self::snapshot), with the stay it describes.
    pub(crate) fn stamped_snapshot(&self) -> (Stamp, ServiceState, Duration) {
        let word = self.word.load(Ordering::SeqCst);
        let (state, since) = unpack(word);
        (
            Stamp(word),
            state,
            self.epoch.elapsed().saturating_sub(since),
        )
    }

    /// Applies `event`: the transition it leads to, if any, made atomically. Of several callers
    /// racing with the same event from the same state, exactly one gets `Some`.
    pub(crate) fn apply(&self, event: Event) -> Option<Transition> {
        let mut current = self.word.load(Ordering::SeqCst);
        loop {
            match self.apply_from(current, event) {
                Ok(transition) => return transition,
                Err(actual) => current = actual,
            }
        }
    }

    /// Applies `event` only to the stay in a state that `stamp` names: the outcome of a
    /// trigger run (a failed `on_idle`, say) cannot change a later stay, should the service
    /// have gone round the cycle while the trigger ran.
    pub(crate) fn apply_to(&self, stamp: Stamp, event: Event) -> Option<Transition> {
        self.apply_from(stamp.0, event).ok().flatten()
    }

    /// One attempt: `Err` with the current word if it is not `current` any more.
    fn apply_from(&self, current: u64, event: Event) -> Result<Option<Transition>, u64> {
        let (from, began) = unpack(current);
        let Some(to) = next(from, event) else {
            return Ok(None);
        };
        // Strictly after the stay it ends, even on a coarse clock: every stay's stamp differs.
        let now = (self.epoch.elapsed()).max(began.saturating_add(Duration::from_nanos(1)));
        let word = pack(to, now);
        self.word
            .compare_exchange(current, word, Ordering::SeqCst, Ordering::SeqCst)?;
        let lasted = now.saturating_sub(began);
        Ok(Some(Transition {
            from,
            to,
            lasted,
            began: Stamp(word),
        }))
    }
}

impl Lifecycle {
    /// Records an up that a probe (or `set_status_up`) found with `mark`, unless the state has
    /// left Up meanwhile: then `clear` undoes it. A stop applies its transition before it clears
    /// the cache, so whichever order the two run in, no up stays cached while Stopping.
    pub(crate) fn cache_if_up(&self, mark: impl FnOnce(), clear: impl FnOnce()) {
        if self.state() == ServiceState::Up {
            mark();
            // Store (the cache) then load (the state), against the stop's store then store: the
            // fences make it a proper Dekker pair whatever orderings the cache uses inside.
            fence(Ordering::SeqCst);
            if self.state() != ServiceState::Up {
                clear();
            }
        }
    }

    /// Applies an idle stop (`Up → Stopping`) and, if it happened, `clear`s the cached up; the
    /// other half of [`cache_if_up`](Self::cache_if_up).
    pub(crate) fn stop(&self, clear: impl FnOnce()) -> Option<Transition> {
        let transition = self.apply(Event::Stop)?;
        fence(Ordering::SeqCst);
        clear();
        Some(transition)
    }

    /// Applies a down event (a failed probe, `set_status_down`), then `clear`s the cached up
    /// whether or not the state changed: the transition first, as in [`stop`](Self::stop), so
    /// an up cached meanwhile by [`cache_if_up`](Self::cache_if_up) cannot outlive it.
    ///
    /// Stopping is not ended while `stop_runs` says `on_idle` still runs: the backend refuses
    /// by design then, and a start made at once would run beside the stop (see
    /// [`down_if_before`](Self::down_if_before)). Decided on the word the transition would
    /// replace, so a stop that begins meanwhile (counted before its transition) is seen.
    pub(crate) fn down(
        &self,
        event: Event,
        stop_runs: impl Fn() -> bool,
        clear: impl FnOnce(),
    ) -> Option<Transition> {
        let transition = self.apply_unless_stopping(event, stop_runs).ok().flatten();
        fence(Ordering::SeqCst);
        clear();
        transition
    }

    /// An operator's `set_status_up` (`MarkedUp`): `Err(StopRuns)`, and no change, while the
    /// state is Stopping and `stop_runs` says its `on_idle` still runs (or is about to). A
    /// word said while a stop runs does not undo it: the stop's end decides (a failed
    /// `on_idle` is Up again, a done one waits for a probe). Decided as in
    /// [`down`](Self::down).
    pub(crate) fn mark_up(
        &self,
        stop_runs: impl Fn() -> bool,
    ) -> Result<Option<Transition>, StopRuns> {
        self.apply_unless_stopping(Event::MarkedUp, stop_runs)
    }

    /// Applies `event` unless the word it would replace is Stopping while `stop_runs()`.
    fn apply_unless_stopping(
        &self,
        event: Event,
        stop_runs: impl Fn() -> bool,
    ) -> Result<Option<Transition>, StopRuns> {
        let mut current = self.word.load(Ordering::SeqCst);
        loop {
            if unpack(current).0 == ServiceState::Stopping && stop_runs() {
                return Err(StopRuns);
            }
            match self.apply_from(current, event) {
                Ok(transition) => return Ok(transition),
                Err(actual) => current = actual,
            }
        }
    }

    /// [`down`](Self::down) for news from `seen`, a connection attempted then and refused:
    /// applied only to an Up stay that began before it. A backend that came up after the
    /// attempt is not the one that refused it, and marking it down would start it again. A
    /// backend being stopped refuses by design: Stopping ends when a probe finds it down once
    /// `on_idle` is done (or at the stop timeout); ended early, a start could run beside the
    /// stop.
    pub(crate) fn down_if_before(
        &self,
        event: Event,
        seen: Instant,
        clear: impl FnOnce(),
    ) -> Option<Transition> {
        let stamp = self.stamp();
        let (state, began) = unpack(stamp.0);
        if state != ServiceState::Up || seen.saturating_duration_since(self.epoch) <= began {
            return None;
        }
        // Only that stay: one that began since is newer than the news too.
        let transition = self.apply_to(stamp, event)?;
        fence(Ordering::SeqCst);
        clear();
        Some(transition)
    }
}

impl fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lifecycle")
            .field("state", &self.state())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

/// Model checks of the transitions that race (run: see `src/sync.rs`).
#[cfg(all(test, loom))]
mod loom_models;
