//! [`Member`]: one service's part in the fleet: its lease, its activity, and what the other
//! replicas' announcements do to its local state.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::Notify;

use super::activity::Activity;
use super::lease::{Attempt, Kind, Lease, Refused};
use super::shared::Shared;
use crate::error::SharedError;
use crate::lifecycle::{Event, ServiceState, Transition};
use crate::registered::{Asker, Registered, ShuttingDown};

/// How often a replica probes a backend whose start or stop another replica leads.
const FOLLOWER_POLL: Duration = Duration::from_secs(1);

pub(crate) struct Member {
    pub(crate) shared: Arc<Shared>,
    pub(crate) service: Weak<Registered>,
    pub(crate) name: Arc<str>,
    pub(crate) idle_after: Option<Duration>,
    /// The lease this replica holds for this service, if any.
    pub(crate) lease: Mutex<Option<Lease>>,
    /// This replica's activity on the service (with `on_idle` only).
    pub(crate) activity: Option<Activity>,
    /// Whether a stop is to be tried again when the fleet could be idle.
    retrying: AtomicBool,
    /// Until when another replica is known to be stopping the backend (fleet nanoseconds).
    pub(super) remote_stopping_until: AtomicU64,
    /// When another replica's stop was last heard to have ended with the backend down (fleet
    /// nanoseconds; 0: never).
    pub(super) remote_stopped_at: AtomicU64,
    /// Whether a task watches the lease to take the start over if its holder vanishes.
    pub(super) following: AtomicBool,
    /// Whether this replica ran `on_down` for the backend's latest start under the lease, the
    /// one start (see [`leave_to_starter`](Self::leave_to_starter)).
    pub(super) started_here: AtomicBool,
    /// Whether this replica's last idle stop was left to the starter.
    pub(super) left_to_starter: AtomicBool,
    /// Whether another replica's different idle time has been warned of.
    idle_differs_said: AtomicBool,
    pub(crate) lease_changed: Notify,
}

impl Member {
    pub(crate) fn new(shared: Arc<Shared>, registered: &Arc<Registered>) -> Arc<Self> {
        let idle_after = registered.service.on_idle.as_ref().map(|(after, _)| *after);
        Arc::new(Self {
            shared,
            service: Arc::downgrade(registered),
            name: Arc::clone(&registered.name),
            idle_after,
            lease: Mutex::new(None),
            activity: idle_after.map(Activity::new),
            retrying: AtomicBool::new(false),
            remote_stopping_until: AtomicU64::new(0),
            remote_stopped_at: AtomicU64::new(0),
            following: AtomicBool::new(false),
            started_here: AtomicBool::new(false),
            left_to_starter: AtomicBool::new(false),
            idle_differs_said: AtomicBool::new(false),
            lease_changed: Notify::new(),
        })
    }

    /// A cold start: `run` (the local `on_down`) runs only if this replica takes the lease, or
    /// if Redis cannot be reached (then each replica starts on its own: serving wins). If another
    /// replica holds the lease, this one waits for its up, and takes over if the lease expires.
    /// A request's start that gets the lease only once held requests are released hands it on.
    pub(crate) fn wake(
        self: &Arc<Self>,
        asker: Asker,
        run: BoxFuture<'static, Result<(), SharedError>>,
    ) -> BoxFuture<'static, Result<(), SharedError>> {
        let me = Arc::clone(self);
        async move {
            match me.try_lease(Kind::Starting, false).await {
                Attempt::Taken => {
                    let state = me.service.upgrade().map(|r| r.state());
                    if state != Some(ServiceState::Starting) {
                        // Up (announced by another replica) while the lease was being taken.
                        me.release(message_for(state.unwrap_or(ServiceState::Down)));
                        return Ok(());
                    }
                    if asker == Asker::Request && me.shutting_down() {
                        // Released while the lease was being taken: a request starts nothing
                        // from then on (see `Registered::start_for`), and this replica would
                        // stop what it started, or leave it unwatched. Freed announcing
                        // "starting": the replicas that stay find it free and start the
                        // backend; this one stays Starting until their "up" (or its start
                        // timeout).
                        tracing::info!(service = %me.name, "fleet: shutting down; handing the start of {} on to the other replicas", me.name);
                        me.release(message_for(ServiceState::Starting));
                        return Err(Arc::new(ShuttingDown) as SharedError);
                    }
                    me.started_here.store(true, Ordering::SeqCst);
                    run.await
                }
                Attempt::Unavailable => {
                    // Not the one start: every replica may make it (see `leave_to_starter`).
                    me.started_here.store(false, Ordering::SeqCst);
                    run.await
                }
                // (Stopped answers an idle stop only, never a start.)
                Attempt::Held { wait } | Attempt::Busy { wait } | Attempt::Stopped { wait, .. } => {
                    me.started_here.store(false, Ordering::SeqCst);
                    tracing::debug!(service = %me.name, "fleet: another replica holds the lease; waiting for its start");
                    me.follow(wait);
                    Ok(())
                }
            }
        }
        .boxed()
    }

    /// A stop: runs `on_idle` only under the lease and, for an idle stop, only if no replica
    /// has been active for the idle time. When that cannot be shown (Redis unreachable, another
    /// replica busy or holding the lease), the backend stays up and the idle time starts over.
    /// A replica shutting down leaves the idle stop to the others.
    pub(crate) fn stop(
        self: &Arc<Self>,
        registered: Arc<Registered>,
        idle_check: bool,
    ) -> BoxFuture<'static, Result<bool, SharedError>> {
        let me = Arc::clone(self);
        async move {
            if registered.state() != ServiceState::Up || me.idle_after.is_none() {
                return Ok(false);
            }
            if idle_check && me.shutting_down() {
                // The fleet's idle stop is left to a replica that stays (whose idle watch sees
                // the fleet idle too): this one, shutting down, may be gone before the stop
                // ends, leaving the others Stopping until the lease expires. Looking on, so
                // that its last requests still reach the fleet.
                tracing::debug!(service = %me.name, "fleet: shutting down; leaving the idle stop to the other replicas");
                if let Some(idle) = &registered.idle {
                    idle.arm_if_idle();
                }
                return Ok(false);
            }
            if me.leave_to_starter(&registered, idle_check) {
                // Looking on, so that this replica's requests meanwhile reach the fleet.
                if let Some(idle) = &registered.idle {
                    idle.arm_if_idle();
                }
                return Ok(false);
            }
            // A request here since the last look calls the stop off before the fleet is told
            // (taking the lease announces it); the local check after the transition remains
            // for a request that comes in meanwhile.
            let idle = registered.idle.as_ref();
            if idle_check && idle.is_some_and(|idle| idle.active_since_look()) {
                if let Some(idle) = idle {
                    idle.arm_if_idle();
                }
                return Ok(false);
            }
            let mut attempt = me.try_lease(Kind::Stopping, idle_check).await;
            if let Attempt::Stopped { mark, .. } = &attempt {
                // The fleet's stop found the backend down: answering now, it was started
                // since without a lease (by hand, or by a replica that could not reach Redis),
                // and no replica would stop it again while the mark lasts, if ever (they go
                // Down at their stop timeout, and nothing idles once all are down).
                if registered.answers_now().await == Some(true) {
                    tracing::info!(service = %me.name, "fleet: {} answers although the fleet stopped it and no lease was taken since; stopping it if the fleet is idle", me.name);
                    attempt = me
                        .try_lease_past(Kind::Stopping, idle_check, Some(mark))
                        .await;
                }
            }
            match attempt {
                Attempt::Taken => {
                    let stopped = registered.stop_locally(idle_check).await;
                    if let Ok(false) = stopped {
                        // Nothing to stop after all: free the lease, saying where it is.
                        me.release(message_for(registered.state()));
                    }
                    stopped
                }
                Attempt::Stopped { .. } if idle_check => {
                    // This replica missed that stop (its announcements are late, or were lost
                    // with its listener's connection): it catches up as the announcements
                    // would have made it, Stopping until a probe finds the backend down.
                    tracing::info!(service = %me.name, "fleet: another replica has stopped {} since it was last started; not stopping it again", me.name);
                    registered.cache.mark_down();
                    registered.apply(Event::Stop);
                    Ok(false)
                }
                refused => {
                    tracing::debug!(service = %me.name, ?refused, "fleet: the fleet is not idle (or cannot show it); staying up");
                    match refused {
                        Attempt::Busy { wait } if idle_check => me.retry_stop(wait),
                        _ if idle_check => {
                            if let Some(idle) = &registered.idle {
                                idle.arm_if_idle();
                            }
                        }
                        // Asked for (an operator's stop): say why nothing was done.
                        refused => return Err(Arc::new(Refused::from(refused)) as SharedError),
                    }
                    Ok(false)
                }
            }
        }
        .boxed()
    }

    /// Called at every local transition: a start or stop this replica led has ended, so its
    /// lease is freed and the new state announced (a stop that ended down is marked, see
    /// [`free`](Self::free)).
    pub(crate) fn transition(&self, transition: Transition) {
        let Transition { from, to, .. } = transition;
        if matches!(from, ServiceState::Starting | ServiceState::Stopping) {
            let message = match (from, to) {
                (ServiceState::Stopping, ServiceState::Up) => "resumed",
                _ => message_for(to),
            };
            let stopped = from == ServiceState::Stopping && to == ServiceState::Down;
            self.free(message, stopped);
        }
    }

    /// A local probe found the backend up: the other replicas cache it too.
    pub(crate) fn probed_up(&self) {
        let Some(registered) = self.service.upgrade() else {
            return;
        };
        if registered.state() != ServiceState::Up || !self.shared.store.is_up() {
            return;
        }
        let message = format!("up {} {}", self.shared.store.replica, self.name);
        let shared = Arc::clone(&self.shared);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { shared.store.publish(message).await });
        }
    }

    /// The in-flight count went 0→1 (`busy`) or 1→0. No Redis call here: the heartbeat
    /// publishes (see [`Activity`]), kicked when a busy period begins after a quiet spell.
    pub(crate) fn activity(&self, busy: bool) {
        let Some(activity) = &self.activity else {
            return;
        };
        let now = self.shared.now();
        if busy {
            // Busy again: the starter has the first turn at the next idle stop again.
            self.left_to_starter.store(false, Ordering::SeqCst);
            if activity.began(now) {
                self.shared.kick.notify_one();
            }
        } else {
            activity.ended(now);
        }
    }

    /// The activity due for publication at `now`, if any.
    pub(crate) fn due(&self, now: u64, republish: bool) -> Option<u64> {
        self.activity.as_ref()?.due(now, republish)
    }

    /// Publishes `at` (an activity [`due`](Self::due) found) as this replica's latest.
    pub(crate) async fn publish_activity(&self, now: u64, at: u64) {
        let Some(activity) = &self.activity else {
            return;
        };
        let age = i64::try_from(now.saturating_sub(at) / 1_000_000).unwrap_or(i64::MAX);
        let store = &self.shared.store;
        let Some(other) = store
            .touch(&self.name, -age, (activity.after, activity.keep()))
            .await
        else {
            return;
        };
        activity.published(now, at);
        if let Some((replica, idle)) = other {
            if !self.idle_differs_said.swap(true, Ordering::Relaxed) {
                // Safe (each replica's activity is measured against its own idle time too),
                // but seldom meant: the backend then sleeps after the longest of them.
                tracing::warn!(service = %self.name, other_replica = %replica,
                    "fleet: {}'s idle time here is {:.2} s, on replica {replica} {:.2} s; it is \
                     stopped once each replica's own has passed since its last request",
                    self.name, activity.after.as_secs_f64(), Duration::from_millis(idle).as_secs_f64());
            }
        }
    }

    /// Tries the idle stop again after `wait` (when the fleet could be idle), if this replica
    /// is still idle itself then; its own idle watch covers the other cases.
    fn retry_stop(self: &Arc<Self>, wait: Duration) {
        if self.retrying.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.retrying.store(false, Ordering::SeqCst);
            return;
        };
        let member = Arc::downgrade(self);
        runtime.spawn(async move {
            tokio::time::sleep(wait).await;
            let Some(me) = member.upgrade() else { return };
            me.retrying.store(false, Ordering::SeqCst);
            let idle_here = me
                .activity
                .as_ref()
                .is_some_and(|activity| activity.idle_here(me.shared.now()));
            let Some(registered) = me.service.upgrade() else {
                return;
            };
            if idle_here && registered.state() == ServiceState::Up {
                let _ = registered.stop().await;
            }
        });
    }

    /// How often to probe while Starting or Stopping: slowly when another replica leads the
    /// start or stop (its announcement ends the wait; N replicas do not each probe the booting
    /// backend 20 times a second), `usual` otherwise, and whenever Redis cannot be reached.
    pub(crate) fn poll_interval(&self, usual: Duration) -> Duration {
        let led_elsewhere = self.following.load(Ordering::SeqCst) || self.remote_stopping();
        if led_elsewhere && self.shared.store.is_up() && !self.holds_lease() {
            return FOLLOWER_POLL.max(usual);
        }
        usual
    }

    /// Whether this replica only follows a start another replica leads: it watches the
    /// lease, holding none itself (not after it took the start over, nor while it runs
    /// `on_down` without Redis).
    pub(crate) fn follows_a_start(&self) -> bool {
        self.following.load(Ordering::SeqCst) && !self.holds_lease()
    }

    pub(super) fn holds_lease(&self) -> bool {
        self.lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

/// The announcement of a lease freed in `state`.
pub(super) fn message_for(state: ServiceState) -> &'static str {
    match state {
        ServiceState::Up => "up",
        ServiceState::Starting => "starting",
        ServiceState::Stopping => "stopping",
        _ => "down",
    }
}
