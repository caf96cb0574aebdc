//! Model checks of the lifecycle's transitions that race (run: see `src/sync.rs`).

use super::*;
use crate::sync::Arc;
use crate::sync::atomic::{AtomicBool, AtomicUsize};
use loom::thread;

/// Invariant: a cold start runs `on_down` once. Of wakes racing with each other and with a
/// failing start, a wake wins `Down → Starting` only once per time the service went back
/// to Down: starts ≤ 1 + failed starts.
#[test]
fn loom_one_start_per_cold_start() {
    loom::model(|| {
        let life = Arc::new(Lifecycle::new());
        let starts = Arc::new(AtomicUsize::new(0));
        let fails = Arc::new(AtomicUsize::new(0));
        let wakers: Vec<_> = (0..2)
            .map(|_| {
                let (life, starts) = (life.clone(), starts.clone());
                thread::spawn(move || {
                    if life.apply(Event::Wake).is_some() {
                        starts.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        let failer = {
            let (life, fails) = (life.clone(), fails.clone());
            thread::spawn(move || {
                if life.apply(Event::WakeFailed).is_some() {
                    fails.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        for t in wakers {
            t.join().unwrap();
        }
        failer.join().unwrap();
        let (starts, fails) = (starts.load(Ordering::SeqCst), fails.load(Ordering::SeqCst));
        assert!(starts >= 1, "someone started it");
        assert!(starts <= 1 + fails, "{starts} starts with {fails} failures");
    });
}

/// Invariant: a reader that sees a state reads that state's start with it, never the
/// previous state's: the poller must not take a service that was Down for an hour as
/// Starting for an hour (it would time the start out at once, and the next request would
/// run `on_down` a second time for one cold start).
#[test]
fn loom_a_state_is_read_with_its_own_start() {
    loom::model(|| {
        let hour = std::time::Duration::from_secs(3600);
        let life = Arc::new(Lifecycle {
            epoch: Instant::now().checked_sub(hour).unwrap(),
            ..Lifecycle::new()
        });
        let waker = {
            let life = life.clone();
            thread::spawn(move || {
                life.apply(Event::Wake);
            })
        };
        let reader = {
            let life = life.clone();
            thread::spawn(move || {
                if life.state() == ServiceState::Starting {
                    // A second read, as a caller of `state()` then `snapshot()` makes.
                    let (_, lasted) = life.snapshot();
                    assert!(lasted < hour, "Starting read as lasting {lasted:?}");
                }
            })
        };
        waker.join().unwrap();
        reader.join().unwrap();
    });
}

/// A probe that found the backend up (and caches it if the state is still Up) racing
/// `clear_side`, from Up with an up cached; answers the final state and whether an up is
/// cached.
fn race_with_a_probe_up(
    clear_side: impl Fn(&Lifecycle, &AtomicBool) + Send + Sync + 'static,
) -> (ServiceState, bool) {
    let life = Arc::new(Lifecycle::new());
    life.apply(Event::MarkedUp);
    let cached = Arc::new(AtomicBool::new(true));
    let probe = {
        let (life, cached) = (life.clone(), cached.clone());
        thread::spawn(move || {
            life.apply(Event::ProbedUp);
            life.cache_if_up(
                || cached.store(true, Ordering::SeqCst),
                || cached.store(false, Ordering::SeqCst),
            );
        })
    };
    let other = {
        let (life, cached) = (life.clone(), cached.clone());
        thread::spawn(move || clear_side(&life, &cached))
    };
    probe.join().unwrap();
    other.join().unwrap();
    (life.state(), cached.load(Ordering::SeqCst))
}

/// Invariant: a forward that found the backend gone (`set_status_down`) racing a probe
/// that found it up never leaves the service Down with an up cached (requests would go
/// straight to a dead backend for the grace period, and nothing would wake it).
#[test]
fn loom_no_cached_up_while_down() {
    loom::model(|| {
        let (state, cached) = race_with_a_probe_up(|life, cached| {
            life.down(
                Event::MarkedDown,
                || false,
                || cached.store(false, Ordering::SeqCst),
            );
        });
        // Up is fine (the probe's up came last); Down with an up cached is not.
        assert!(
            state != ServiceState::Down || !cached,
            "an up stayed cached while down"
        );
    });
}

/// Invariant: after an idle stop and a probe that found the backend up race, no up is left
/// cached while the service is Stopping (requests would be forwarded to a stopping backend).
#[test]
fn loom_no_cached_up_while_stopping() {
    loom::model(|| {
        let (state, cached) = race_with_a_probe_up(|life, cached| {
            life.stop(|| cached.store(false, Ordering::SeqCst));
        });
        assert_eq!(state, ServiceState::Stopping);
        assert!(!cached, "an up stayed cached while stopping");
    });
}
