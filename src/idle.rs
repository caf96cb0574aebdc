//! Idle shutdown: stop the backend once no request has been in flight for a while.
//!
//! A request is in flight from the layer's `call` until its response body has been sent to the
//! end or dropped, so a long download or stream keeps the backend awake, which a `Delay` on
//! `always` (re-armed only when requests start) cannot do. The idle time also starts when the
//! backend is first seen up, so a backend that was running before any request is stopped too.
//!
//! What a request costs: counting it in and out is one uncontended atomic increment and one
//! decrement, on a counter (a shard) that only its thread's requests normally touch, plus a
//! flag that is written at most once per look. No clock read, no shared write, no timer re-armed
//! per request, so requests on several threads do not slow each other down.
//!
//! Instead of a timer per request, the watch looks every quarter of the idle time while the
//! service is up: it sums the shards and checks whether a request ended since the last look.
//! Precision: the backend is stopped between `after` and `after × 1.25` after the last request
//! ended (or after it was first seen up), plus the timer's millisecond granularity and however
//! late a busy runtime runs it. A snapshot need not wait for the look that sees the end: the
//! next look is armed, so the stop is due `after` after it (see `IdleWatch::idle_deadline`).

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::time::Instant;

use crate::deadline::{Deadline, Expiring, saturating_after};
use crate::lifecycle::ServiceState;
use crate::registered::Registered;

mod shards;

pub(crate) use shards::{InFlight, Shards};

/// The shortest time between two looks (the timer's granularity).
const MIN_LOOK_EVERY: Duration = Duration::from_millis(1);

pub(crate) struct IdleWatch {
    /// Requests in flight, and whether one ended since the last look: the service's own count
    /// (see `Registered::requests`).
    shards: Arc<Shards>,
    /// The next look: armed while the service is up.
    look: Deadline,
    /// What the looks know.
    seen: Mutex<Seen>,
    after: Duration,
    look_every: Duration,
    service: Weak<Registered>,
    me: Weak<IdleWatch>,
}

/// What the looks know.
#[derive(Default)]
struct Seen {
    /// Since when nothing has been in flight; `None` while busy.
    quiet_since: Option<Instant>,
    /// Whether the last look found a request in flight (what the fleet was told).
    busy: bool,
}

impl IdleWatch {
    /// A watch that stops `service` once `shards` have counted nothing in flight for `after`.
    pub(crate) fn new(
        after: Duration,
        shards: Arc<Shards>,
        service: Weak<Registered>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            shards,
            look: Deadline::new(),
            seen: Mutex::new(Seen::default()),
            after,
            look_every: (after / 4).max(MIN_LOOK_EVERY),
            service,
            me: me.clone(),
        })
    }

    /// Starts the idle time now, unless a request is in flight (its end will start it), and
    /// starts looking. Called when the service is seen up.
    pub(crate) fn arm_if_idle(&self) {
        let now = Instant::now();
        self.seen().quiet_since = (self.in_flight() == 0).then_some(now);
        let next = saturating_after(now, self.look_every.min(self.after).max(MIN_LOOK_EVERY));
        // A sooner look stays: it will see the new idle time.
        if self.look.armed_at().is_none_or(|armed| armed > next) {
            self.look_at(next);
        }
    }

    /// Starts looking again if the looks have stopped while the service is up: their timer's
    /// runtime shut down (which drops the timer), or the idle time passed where there was no
    /// runtime to run `on_idle` on. Called whenever the service is seen up; without it, a
    /// backend that was already up on the next runtime would never be stopped.
    pub(crate) fn look_again_if_stopped(&self, service: &Registered) {
        if !self.look.is_armed() && service.state() == ServiceState::Up {
            self.arm_if_idle();
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn look_at(&self, at: Instant) {
        if let Some(me) = self.me.upgrade() {
            Deadline::arm(&me, at);
        }
    }

    /// When `on_idle` runs if no request comes first (for snapshots, taken at `now`): `None`
    /// while a request is in flight or the service is not `up`.
    ///
    /// Read from what the looks left, without waiting for the next one: requests do not read
    /// the clock, so the end of the last one is known only to be since the last look, and the
    /// idle time starts at the next look (see [`look`](Self::look)). Until that look, the stop
    /// is due `after` after it: between `after` and `after × 1.25` after the request ended,
    /// where the stop itself comes; no sooner, and no later but for the timer's lateness.
    pub(crate) fn idle_deadline(&self, up: bool, now: Instant) -> Option<Instant> {
        if !up || self.in_flight() > 0 {
            return None;
        }
        // Read, not cleared: clearing them is the looks' job.
        let ended = self.shards.ended();
        let since = match self.seen().quiet_since {
            Some(since) if !ended => since,
            // A request ended since the last look (or the last look saw one in flight, or the
            // service came up with one in flight): the next look starts the idle time. None
            // armed while up: the looks stopped with their runtime, and no stop is planned
            // until the service is next seen up on one (`look_again_if_stopped`).
            _ => self.look.armed_at()?.max(now),
        };
        Some(saturating_after(since, self.after))
    }

    /// Requests in flight now, summed over the shards (also for snapshots).
    pub(crate) fn in_flight(&self) -> usize {
        self.shards.in_flight()
    }

    /// Whether a request is in flight, or one ended, since the last look (see
    /// [`Shards::active_since_look`]).
    pub(crate) fn active_since_look(&self) -> bool {
        self.shards.active_since_look()
    }

    /// One look: has the service been idle long enough?
    fn look(&self, service: &Registered, now: Instant) -> Next {
        let mut seen = self.seen();
        if service.state() != ServiceState::Up {
            // Stopping, down or starting: the idle time starts again when it is next up.
            seen.quiet_since = None;
            return Next::Rest;
        }
        // The flags first: a request that ended before its flag was cleared is not counted.
        let ended = self.shards.take_ended();
        let busy = self.in_flight() > 0;
        if busy != seen.busy {
            // In flight 0 → 1 or 1 → 0, as the looks see it.
            seen.busy = busy;
            crate::registered::fleet_activity(&self.service, busy);
        } else if ended && !busy {
            // Requests came and went between two looks: activity all the same, for the fleet.
            crate::registered::fleet_activity(&self.service, true);
            crate::registered::fleet_activity(&self.service, false);
        }
        if busy {
            seen.quiet_since = None;
            return Next::LookAt(saturating_after(now, self.look_every));
        }
        // Quiet. If a request ended since the last look, or the last look saw one in flight, the
        // idle time starts now: the last request ended by now.
        let since = match seen.quiet_since {
            Some(since) if !ended => since,
            _ => now,
        };
        seen.quiet_since = Some(since);
        let stop_at = saturating_after(since, self.after);
        if now < stop_at {
            return Next::LookAt(stop_at.min(saturating_after(now, self.look_every)));
        }
        seen.quiet_since = None;
        Next::Stop
    }
}

/// What a look found.
enum Next {
    /// Not idle long enough yet: look again then.
    LookAt(Instant),
    /// Idle long enough: stop the service (and look again once it is next up).
    Stop,
    /// Not up: look again once it is next up.
    Rest,
}

impl Expiring for IdleWatch {
    fn deadline(&self) -> &Deadline {
        &self.look
    }

    fn expired(&self) {
        let Some(service) = self.service.upgrade() else {
            return;
        };
        match self.look(&service, Instant::now()) {
            Next::LookAt(at) => self.look_at(at),
            Next::Rest => {}
            Next::Stop => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    // Looked on a plain thread (the service was marked up outside a runtime):
                    // the looks stop here, and start again when it is next seen up on one.
                    tracing::warn!(service = %service.name, after = ?self.after, "no request in flight for the idle time, but no Tokio runtime to run on_idle on; trying again once the service is seen up on one");
                    return;
                };
                tracing::info!(service = %service.name, after = ?self.after, "no request in flight for the idle time; running on_idle");
                // The stop's failure is logged where it runs; the backend then counts as up
                // again, which starts the idle time over and so retries the stop.
                runtime.spawn(service.stop());
            }
        }
    }
}
