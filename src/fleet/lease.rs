//! The lease: which replica runs a service's `on_down` or `on_idle`, with a fencing token.
//!
//! Taken with one atomic script (set-if-absent with an expiry, the token from `INCR`), renewed
//! at a third of its time while the start or stop lasts, and freed at the transition that ends
//! it. Renewing and freeing check the token: a holder that was too slow and whose lease was
//! taken over can neither extend it nor announce anything.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use super::member::Member;

/// Why a lease is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Starting,
    Stopping,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Stopping => "stopping",
        }
    }
}

/// A lease this replica holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Lease {
    /// `kind:token:replica`, as stored in Redis.
    value: String,
    token: i64,
}

/// The outcome of trying to take the lease.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Taken: this replica runs the trigger.
    Taken,
    /// Another replica holds it; look again after `wait`.
    Held { wait: Duration },
    /// Free, but a replica was active within the idle time (or Redis restarted too recently
    /// to tell); it could be idle after `wait`.
    Busy { wait: Duration },
    /// Free, but the fleet has stopped the backend since it was last started: an idle stop
    /// asked by a replica that has not heard of that stop yet, or of a backend started since
    /// without a lease. (The mark, `mark`, lasts `wait` more.)
    Stopped { wait: Duration, mark: String },
    /// Redis cannot be reached.
    Unavailable,
}

/// Why the fleet did not let a stop asked on request go ahead (see
/// [`MonitorError::FleetRefused`](crate::MonitorError::FleetRefused)).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Refused(pub(crate) &'static str);

impl From<Attempt> for Refused {
    fn from(attempt: Attempt) -> Self {
        Self(match attempt {
            Attempt::Unavailable => "the fleet's Redis cannot be reached",
            Attempt::Held { .. } => "another replica is starting or stopping it",
            Attempt::Busy { .. } => {
                "Redis restarted too recently to tell whether a replica is using it"
            }
            Attempt::Stopped { .. } => "another replica has stopped it since it was last started",
            Attempt::Taken => "the fleet's lease was taken",
        })
    }
}

/// How soon to look again when the lease is still held by this replica's previous start or
/// stop, which is being freed.
const OWN_LEASE_RETRY: Duration = Duration::from_millis(20);

impl Member {
    /// Tries to take the lease for `kind`; a stop with `idle_check` also needs the fleet idle.
    pub(crate) async fn try_lease(self: &Arc<Self>, kind: Kind, idle_check: bool) -> Attempt {
        self.try_lease_past(kind, idle_check, None).await
    }

    /// [`try_lease`](Self::try_lease), passing over the stopped mark `past` (see
    /// [`ACQUIRE`](super::scripts::ACQUIRE)).
    pub(crate) async fn try_lease_past(
        self: &Arc<Self>,
        kind: Kind,
        idle_check: bool,
        past: Option<&str>,
    ) -> Attempt {
        let shared = &self.shared;
        if !shared.store.is_up() {
            return Attempt::Unavailable;
        }
        let idle = match (idle_check, self.idle_after) {
            (true, Some(after)) => after,
            _ => Duration::ZERO,
        };
        // Every replica has published its activity again within two heartbeats of a restart.
        let settle = shared.tick() * 2;
        let answer = shared
            .store
            .acquire(
                &self.name,
                kind.as_str(),
                shared.lease_ttl,
                (idle, settle),
                past,
            )
            .await;
        let Some((code, value, number)) = answer else {
            if kind == Kind::Stopping {
                self.abandon_late_stop();
            }
            return Attempt::Unavailable;
        };
        let millis = Duration::from_millis(u64::try_from(number).unwrap_or(0));
        match code {
            1 => {
                let lease = Lease {
                    value,
                    token: number,
                };
                *self.lease.lock().unwrap_or_else(PoisonError::into_inner) = Some(lease.clone());
                self.set_remote_stopping(None);
                tracing::debug!(service = %self.name, lease = %lease.value, "fleet: took the lease");
                self.renew_while_held(lease);
                Attempt::Taken
            }
            0 => {
                if value.starts_with("stopping:") {
                    self.set_remote_stopping(Some(millis));
                }
                let mine = value.ends_with(&format!(":{}", shared.store.replica));
                let wait = if mine { OWN_LEASE_RETRY } else { millis };
                Attempt::Held {
                    wait: wait.max(Duration::from_millis(5)) + Duration::from_millis(5),
                }
            }
            3 => Attempt::Stopped {
                wait: millis,
                mark: value,
            },
            _ => Attempt::Busy {
                wait: millis.max(Duration::from_millis(5)),
            },
        }
    }

    /// A stop's acquire that gave up may still run once Redis answers: the lease it takes has
    /// no holder, and the others, told "stopping", would refuse the backend (still up) until it
    /// expired. Freed right behind it, telling them the stop is off. (A start's late lease is
    /// still left to expire: this replica starts the backend on its own meanwhile.)
    fn abandon_late_stop(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = Arc::clone(&self.shared);
        let name = Arc::clone(&self.name);
        runtime.spawn(async move {
            let message = format!("resumed {} {name}", shared.store.replica);
            let kind = Kind::Stopping.as_str();
            if shared.store.abandon(&name, kind, &message).await == Some(true) {
                tracing::debug!(service = %name, "fleet: freed a stop's lease taken after its call gave up");
            }
        });
    }

    /// Frees the lease this replica holds, if any, announcing `message` (`up`, `down`, …).
    pub(crate) fn release(&self, message: &str) {
        self.free(message, false);
    }

    /// [`release`](Self::release); if `stopped` (a stop this replica ran ended with the backend
    /// down) and the lease is a stop's, the fleet marks the backend stopped until the next
    /// lease, so that a replica that missed this stop does not stop the backend again. The mark
    /// lasts as long as the activity Redis keeps: a replica that missed the stop looks for an
    /// idle stop well within it. (A backend started since without a lease, found answering,
    /// is stopped all the same: see [`stop`](Self::stop).)
    pub(crate) fn free(&self, message: &str, stopped: bool) {
        let Some(lease) = self
            .lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = Arc::clone(&self.shared);
        let name = Arc::clone(&self.name);
        let announcement = format!("{message} {} {name}", shared.store.replica);
        let member = self.service.upgrade().and_then(|r| r.fleet.get().cloned());
        let mark = match &self.activity {
            Some(activity) if stopped && lease.value.starts_with(Kind::Stopping.as_str()) => {
                Some(activity.keep())
            }
            _ => None,
        };
        runtime.spawn(async move {
            let freed = shared
                .store
                .release(&name, &lease.value, lease.token, &announcement, mark)
                .await;
            match freed {
                Some(true) => {
                    tracing::debug!(service = %name, lease = %lease.value, message = %announcement, "fleet: freed the lease")
                }
                Some(false) => {
                    tracing::warn!(service = %name, lease = %lease.value, "fleet: the lease had been taken over; nothing announced")
                }
                // It expires on its own.
                None => {}
            }
            if let Some(member) = member {
                member.lease_changed.notify_one();
            }
        });
    }

    /// Renews `lease` at a third of its time for as long as this replica holds it.
    fn renew_while_held(self: &Arc<Self>, lease: Lease) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let member = Arc::downgrade(self);
        let every = self.shared.lease_ttl / 3;
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(me) = member.upgrade() else { return };
                let held = me.lease.lock().unwrap_or_else(PoisonError::into_inner).clone();
                if held.as_ref() != Some(&lease) {
                    return;
                }
                let ttl = me.shared.lease_ttl;
                if me.shared.store.renew(&me.name, &lease.value, lease.token, ttl).await == Some(false) {
                    tracing::warn!(service = %me.name, lease = %lease.value, "fleet: lost the lease (it expired and was taken over)");
                    let mut slot = me.lease.lock().unwrap_or_else(PoisonError::into_inner);
                    if slot.as_ref() == Some(&lease) {
                        *slot = None;
                    }
                    return;
                }
            }
        });
    }
}
