//! Model checks of the races between an idle stop and what may come while it begins: an
//! operator's `set_status_up`, a failed probe, a request counted in, a start asked for (run:
//! see `src/sync.rs`).
//!
//! `Registered` itself cannot run under loom (its triggers, timers and wake-ups are Tokio's),
//! so each model makes the calls its caller makes, in the caller's order, on the real parts:
//! the [`Lifecycle`], the stop's [`Runs`], the idle watch's [`Shards`], and the status cache's
//! [`DeadlineState`] (`StatusCache::is_up` is its `is_armed`, `mark_down` its `disarm`).

use loom::thread;

use super::release::Asker;
use super::runs::{Runs, TriggerRun};
use super::wish::WakeAfterStop;
use crate::deadline::DeadlineState;
use crate::idle::{InFlight, Shards};
use crate::lifecycle::{Event, Lifecycle, ServiceState};

/// Any instant: nothing here passes, as no timer runs.
const UP_UNTIL: u64 = 1;

fn cache_up(cache: &DeadlineState) {
    // No timer in a model: whether one must be started is of no concern here.
    let _ = cache.arm(UP_UNTIL);
}

/// The service Up, an up cached.
fn up() -> (Lifecycle, DeadlineState) {
    let life = Lifecycle::new();
    life.apply(Event::MarkedUp);
    let cache = DeadlineState::new();
    cache_up(&cache);
    (life, cache)
}

/// What an idle stop's beginning leaves: whether its transition was made (so its `on_idle`
/// runs), and its count in the stop's runs, alive while `on_idle` would run.
struct Began {
    stopping: bool,
    _running: TriggerRun,
}

/// The start of `Registered::stop_locally`, up to `on_idle`: counted in the stop's runs, then
/// the transition and the cache cleared, unless another stop runs.
fn begin_stop(life: &Lifecycle, cache: &DeadlineState, runs: &std::sync::Arc<Runs>) -> Began {
    let (running, others) = TriggerRun::counted(runs);
    let stopping = !others && life.stop(|| cache.disarm()).is_some();
    Began {
        stopping,
        _running: running,
    }
}

/// An idle stop from Up, with an up cached, racing `other`; answers what the stop began
/// (its run still counted, as `on_idle` runs on), the state and whether an up is cached.
fn race_with_a_stop(
    other: impl Fn(&Lifecycle, &DeadlineState, &Runs) + Send + Sync + 'static,
) -> (Began, ServiceState, bool) {
    let (life, cache) = up();
    let shared = std::sync::Arc::new((life, cache, std::sync::Arc::new(Runs::default())));
    let stop = {
        let shared = shared.clone();
        thread::spawn(move || begin_stop(&shared.0, &shared.1, &shared.2))
    };
    let racer = {
        let shared = shared.clone();
        thread::spawn(move || other(&shared.0, &shared.1, &shared.2))
    };
    let began = stop.join().unwrap();
    racer.join().unwrap();
    (began, shared.0.state(), shared.1.is_armed())
}

/// Invariant: `set_status_up` (`Lifecycle::mark_up`, then the cache refreshed if still Up)
/// racing an idle stop's beginning never undoes the stop while its `on_idle` runs: the state
/// stays Stopping, and no up is left cached (requests would be forwarded to a stopping
/// backend). The stop counts itself before its transition, so a mark-up that sees Stopping
/// also sees the stop running.
#[test]
fn loom_a_mark_up_never_undoes_a_running_stop() {
    loom::model(|| {
        let (began, state, cached) = race_with_a_stop(|life, cache, runs| {
            // `Registered::set_status_up`.
            let _ = life.mark_up(|| runs.running());
            life.cache_if_up(|| cache_up(cache), || cache.disarm());
        });
        assert!(began.stopping, "a mark-up from Up changes nothing");
        assert_eq!(
            state,
            ServiceState::Stopping,
            "marked up while on_idle runs"
        );
        assert!(!cached, "an up cached while stopping");
    });
}

/// Invariant: a failed probe (`Lifecycle::down` with `ProbedDown`, as `Registered::mark_down`
/// makes it) racing an idle stop's beginning never ends the Stopping of a stop whose
/// `on_idle` runs (a start could then run beside it); before the stop, it is Down and the
/// stop does not begin. Either way no up is left cached.
#[test]
fn loom_a_failed_probe_never_ends_a_running_stop() {
    loom::model(|| {
        let (began, state, cached) = race_with_a_stop(|life, cache, runs| {
            life.down(Event::ProbedDown, || runs.running(), || cache.disarm());
        });
        let expected = if began.stopping {
            ServiceState::Stopping
        } else {
            ServiceState::Down
        };
        assert_eq!(state, expected);
        assert!(!cached, "an up cached while not up");
    });
}

/// A request through the layer (`MonitorService::call`): counted in, then the cached up read;
/// answers its count (alive while it is in flight) and whether it went straight to the
/// backend.
fn request(shards: &Shards, cache: &DeadlineState) -> (InFlight, bool) {
    let in_flight = shards.enter();
    let forwarded = cache.is_armed();
    (in_flight, forwarded)
}

/// The idle watch's look that finds nothing in flight and nothing ended (`IdleWatch::look`,
/// its idle time taken as passed), then the idle stop it sets off (`Registered::stop_locally`
/// with its idle check): transition, cache cleared, then called off if a request came in.
/// Answers whether `on_idle` runs.
fn look_then_stop(life: &Lifecycle, cache: &DeadlineState, shards: &Shards) -> bool {
    if shards.take_ended() || shards.in_flight() > 0 {
        return false;
    }
    let Some(stopping) = life.stop(|| cache.disarm()) else {
        return false;
    };
    if shards.active_since_look() {
        if life
            .apply_to(stopping.began, Event::StopCancelled)
            .is_some()
        {
            // `cache_up_if_still_up`.
            life.cache_if_up(|| cache_up(cache), || cache.disarm());
        }
        return false;
    }
    true
}

/// Invariant: a request that counts itself in as the idle watch looks and stops the service
/// is either seen by the stop (which is called off before `on_idle`) or sees the stop (no
/// cached up: it takes the slow path, which finds the service Stopping): `on_idle` never runs
/// with a request forwarded to the backend as if it were up. A stop called off leaves the
/// service Up with an up cached.
#[test]
fn loom_a_request_counted_in_is_seen_by_the_idle_stop() {
    loom::model(|| {
        let (life, cache) = up();
        let shared = std::sync::Arc::new((life, cache, Shards::with_count(2)));
        let stop = {
            let shared = shared.clone();
            thread::spawn(move || look_then_stop(&shared.0, &shared.1, &shared.2))
        };
        let (in_flight, forwarded) = request(&shared.2, &shared.1);
        let on_idle = stop.join().unwrap();
        assert!(
            !(on_idle && forwarded),
            "on_idle runs with a request forwarded as if up"
        );
        let (state, cached) = (shared.0.state(), shared.1.is_armed());
        if on_idle {
            assert_eq!(state, ServiceState::Stopping);
            assert!(!cached, "an up cached while stopping");
        } else {
            assert_eq!(state, ServiceState::Up);
            assert!(cached, "called off, and no up cached again");
        }
        drop(in_flight);
    });
}

/// Invariant: a start asked for while the backend stops is never lost to the stop's end. A
/// wake that finds the service Stopping (`Registered::start_for`, through
/// `WakeAfterStop::wake`) racing the stop's end in Down (the transition, then `after`
/// taking the wish) either wakes the service itself or has its wish taken by that end, which
/// starts it.
#[test]
fn loom_a_start_asked_while_stopping_is_never_lost() {
    loom::model(|| {
        let life = Lifecycle::new();
        life.apply(Event::MarkedUp);
        life.apply(Event::Stop);
        assert_eq!(life.state(), ServiceState::Stopping);
        let shared = std::sync::Arc::new((life, WakeAfterStop::new()));
        // The asker on a thread of its own: with it on the model's main thread, loom 0.7 never
        // ran the stop's end between the asker's two looks, the interleaving that loses it.
        let asker = {
            let shared = shared.clone();
            thread::spawn(move || shared.1.wake(&shared.0, Asker::Operator, || ()).is_some())
        };
        // The stop's end (`StopTimedOut` stands for any way Stopping ends in Down), then
        // `Registered::after`'s Down branch.
        let taken = shared.0.apply(Event::StopTimedOut).is_some() && shared.1.take().is_some();
        let woke = asker.join().unwrap();
        // Both may be: the start the end sets off then finds the service Starting and joins it.
        assert!(woke || taken, "a start asked for while stopping was lost");
    });
}
