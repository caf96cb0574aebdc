//! [`Shared`]: one replica's running part of a fleet: its Redis, its services, its tasks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::member::Member;
use super::store::Store;
use crate::registered::Registered;

/// What a joined fleet holds; the monitor owns it, its background tasks hold it weakly and end
/// when it is dropped.
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) lease_ttl: Duration,
    members: Mutex<HashMap<Arc<str>, Weak<Member>>>,
    /// Wakes the heartbeat early: a service became busy and its activity is due now.
    pub(crate) kick: Arc<Notify>,
    /// The heartbeat interval asked for; the one used is shorter if an idle time needs it.
    heartbeat: Duration,
    /// The heartbeat interval in use, in nanoseconds.
    tick: AtomicU64,
    /// The fleet's epoch in Redis as last seen (0: not yet).
    pub(crate) epoch: AtomicI64,
    origin: Instant,
}

impl Shared {
    pub(crate) fn new(store: Store, lease_ttl: Duration, heartbeat: Duration) -> Self {
        Self {
            store,
            lease_ttl,
            members: Mutex::default(),
            kick: Arc::new(Notify::new()),
            heartbeat,
            tick: AtomicU64::new(nanos_of(heartbeat)),
            epoch: AtomicI64::new(0),
            origin: Instant::now(),
        }
    }

    /// Makes `registered` take part in the fleet.
    pub(crate) fn attach(self: &Arc<Self>, registered: &Arc<Registered>) {
        let member = Member::new(Arc::clone(self), registered);
        if let Some(after) = member.idle_after {
            // A heartbeat at least every period of activity publication (a quarter idle time).
            let wanted = nanos_of((after / 4).max(Duration::from_millis(10)));
            self.tick.fetch_min(wanted, Ordering::SeqCst);
        }
        let name = Arc::clone(&registered.name);
        if registered.fleet.set(Arc::clone(&member)).is_ok() {
            self.members
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(name, Arc::downgrade(&member));
        }
        super::IN_USE.store(true, Ordering::Relaxed);
        // The heartbeat may be waiting out the longer interval it read before this service.
        self.kick.notify_one();
    }

    pub(crate) fn member(&self, service: &str) -> Option<Arc<Member>> {
        let members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        members.get(service).and_then(Weak::upgrade)
    }

    pub(crate) fn members(&self) -> Vec<Arc<Member>> {
        let members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        members.values().filter_map(Weak::upgrade).collect()
    }

    /// The heartbeat interval in use.
    pub(crate) fn tick(&self) -> Duration {
        Duration::from_nanos(self.tick.load(Ordering::SeqCst)).min(self.heartbeat)
    }

    /// Now, as nanoseconds since this fleet started (never 0, which means "never").
    pub(crate) fn now(&self) -> u64 {
        nanos_of(self.origin.elapsed()).max(1)
    }
}

fn nanos_of(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
