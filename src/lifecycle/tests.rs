//! The lifecycle's transitions, one event at a time.

use super::*;
use Event::*;
use ServiceState::*;

#[test]
fn one_cold_start_from_down_to_up() {
    let life = Lifecycle::new();
    assert_eq!(life.state(), Down);
    assert_eq!(life.apply(Wake).map(|t| t.to), Some(Starting));
    assert_eq!(life.apply(Wake), None, "a second wake while starting");
    assert_eq!(
        life.apply(ProbedDown),
        None,
        "failed probes do not end Starting"
    );
    assert_eq!(
        life.apply(ProbedUp).map(|t| (t.from, t.to)),
        Some((Starting, Up))
    );
}

#[test]
fn stopping_is_left_only_by_down_or_timeout_or_failure() {
    let life = Lifecycle::new();
    life.apply(MarkedUp);
    assert_eq!(life.apply(Stop).map(|t| t.to), Some(Stopping));
    assert_eq!(
        life.apply(ProbedUp),
        None,
        "still answering while it shuts down"
    );
    assert_eq!(life.apply(Wake), None, "woken only once it is down");
    assert_eq!(life.apply(ProbedDown).map(|t| t.to), Some(Down));
    life.apply(MarkedUp);
    life.apply(Stop);
    assert_eq!(life.apply(StopFailed).map(|t| t.to), Some(Up));
}

#[test]
fn an_event_for_a_stay_applies_to_that_stay_only() {
    let life = Lifecycle::new();
    life.apply(MarkedUp);
    let first = life.apply(Stop).unwrap().began;
    life.apply(MarkedDown);
    life.apply(MarkedUp);
    let second = life.apply(Stop).unwrap().began;
    assert_ne!(first, second);
    assert_eq!(life.apply_to(first, StopFailed), None, "a later stay");
    assert_eq!(life.state(), Stopping);
    assert_eq!(life.apply_to(second, StopFailed).map(|t| t.to), Some(Up));
}

#[test]
fn a_refusal_seen_before_the_backend_came_up_does_not_mark_it_down() {
    let life = Lifecycle::new();
    let sent = Instant::now();
    life.apply(MarkedUp);
    let cleared = std::cell::Cell::new(false);
    let stale = life.down_if_before(MarkedDown, sent, || cleared.set(true));
    assert_eq!(stale, None);
    assert_eq!(life.state(), Up);
    assert!(!cleared.get(), "the cached up is kept");
    // Sent once this stay had begun: it speaks of it.
    let sent = Instant::now() + Duration::from_millis(1);
    let fresh = life.down_if_before(MarkedDown, sent, || cleared.set(true));
    assert_eq!(fresh.map(|t| t.to), Some(Down));
    assert!(cleared.get());
}

#[test]
fn a_refusal_seen_while_stopping_leaves_the_stop_to_end_it() {
    let life = Lifecycle::new();
    life.apply(MarkedUp);
    life.apply(Stop);
    let seen = Instant::now() + Duration::from_millis(1);
    let cleared = std::cell::Cell::new(false);
    assert_eq!(
        life.down_if_before(MarkedDown, seen, || cleared.set(true)),
        None
    );
    assert_eq!(life.state(), Stopping);
    assert!(!cleared.get());
}

#[test]
fn a_failed_or_timed_out_start_is_down_again() {
    let life = Lifecycle::new();
    life.apply(Wake);
    assert_eq!(life.apply(WakeFailed).map(|t| t.to), Some(Down));
    life.apply(Wake);
    assert_eq!(life.apply(StartTimedOut).map(|t| t.to), Some(Down));
    assert_eq!(life.apply(StartTimedOut), None);
}

#[test]
fn concurrent_wakes_have_one_winner() {
    let life = std::sync::Arc::new(Lifecycle::new());
    let winners: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| usize::from(life.apply(Wake).is_some())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    assert_eq!(winners, 1);
}

#[test]
fn marked_up_leaves_a_stop_whose_on_idle_runs_to_its_end() {
    let life = Lifecycle::new();
    assert_eq!(life.mark_up(|| true).map(|t| t.map(|t| t.to)), Ok(Some(Up)));
    life.apply(Stop);
    assert_eq!(life.mark_up(|| true), Err(StopRuns));
    assert_eq!(life.state(), Stopping);
    // Once on_idle has returned, a Stopping service may be marked up.
    assert_eq!(
        life.mark_up(|| false).map(|t| t.map(|t| t.to)),
        Ok(Some(Up))
    );
}
