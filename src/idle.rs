//! Idle shutdown: stop the backend once no request has been in flight for a while.
//!
//! A request is in flight from the layer's `call` until its response body has been sent to the
//! end or dropped, so a long download or stream keeps the backend awake, which a `Delay` on
//! `always` (re-armed only when requests start) cannot do. The idle time also starts when the
//! backend is first seen up, so a backend that was running before any request is stopped too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use crate::deadline::{Deadline, Expiring};
use crate::registered::Registered;

pub(crate) struct IdleWatch {
    in_flight: AtomicUsize,
    /// Armed while nothing is in flight: when it passes, the service has been idle long enough.
    idle_until: Deadline,
    after: Duration,
    service: Weak<Registered>,
}

impl IdleWatch {
    pub(crate) fn new(after: Duration, service: Weak<Registered>) -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            idle_until: Deadline::new(),
            after,
            service,
        })
    }

    /// A request starts; it stays counted until the returned guard drops.
    pub(crate) fn enter(self: &Arc<Self>) -> InFlight {
        if self.in_flight.fetch_add(1, Ordering::SeqCst) == 0 {
            crate::registered::fleet_activity(&self.service, true);
        }
        self.idle_until.disarm();
        InFlight(Arc::clone(self))
    }

    /// Requests in flight now (for snapshots).
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// When `on_idle` runs if no request comes first (for snapshots).
    pub(crate) fn idle_deadline(&self) -> Option<Instant> {
        self.idle_until.armed_at()
    }

    /// Starts the idle time now, unless a request is in flight (its end will start it).
    pub(crate) fn arm_if_idle(self: &Arc<Self>) {
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            self.arm();
        }
    }

    fn arm(self: &Arc<Self>) {
        Deadline::arm(
            self,
            crate::deadline::saturating_after(Instant::now(), self.after),
        );
    }
}

impl Expiring for IdleWatch {
    fn deadline(&self) -> &Deadline {
        &self.idle_until
    }

    fn expired(&self) {
        // A request may have started just as the time ran out: it keeps the backend.
        if self.in_flight.load(Ordering::SeqCst) != 0 {
            return;
        }
        let Some(service) = self.service.upgrade() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        tracing::info!(service = %service.name, after = ?self.after, "no request in flight for the idle time; running on_idle");
        // The stop's failure is logged where it runs; the backend then counts as up again and
        // the idle time starts over, which retries the stop.
        runtime.spawn(service.stop());
    }
}

/// Counts one request as in flight while it lives.
pub(crate) struct InFlight(Arc<IdleWatch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let watch = &self.0;
        if watch.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            crate::registered::fleet_activity(&watch.service, false);
            watch.arm();
        }
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InFlight")
    }
}
