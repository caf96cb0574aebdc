//! Taking a start over: a replica waiting for another's start watches the lease, and starts
//! the backend itself if the lease is freed or expires while the start is not over.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::lease::{Attempt, Kind};
use super::member::{Member, message_for};
use crate::lifecycle::ServiceState;

impl Member {
    /// Watches the lease while this replica waits for another's start: if the lease is freed
    /// or expires (its holder crashed) while the service is still starting here, this replica
    /// takes it and runs `on_down`, unless it is shutting down (held requests released); if
    /// Redis cannot be reached, it runs `on_down` without it. One watcher per service. The
    /// holder's wait for the service's dependencies is left out of this replica's start timeout.
    pub(crate) fn follow(self: &Arc<Self>, first_wait: Duration) {
        if let Some(registered) = self.service.upgrade() {
            registered.start_led_elsewhere();
        }
        if self.following.swap(true, Ordering::SeqCst) {
            self.lease_changed.notify_one();
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.following.store(false, Ordering::SeqCst);
            return;
        };
        let member = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut wait = first_wait;
            loop {
                let Some(me) = member.upgrade() else { return };
                let starting = || {
                    me.service
                        .upgrade()
                        .is_some_and(|r| r.state() == ServiceState::Starting)
                };
                if !starting() {
                    break me.following.store(false, Ordering::SeqCst);
                }
                let _ = tokio::time::timeout(wait, me.lease_changed.notified()).await;
                if !starting() {
                    break me.following.store(false, Ordering::SeqCst);
                }
                if me.shutting_down() {
                    // A replica that stays takes the start over; this one, shutting down,
                    // would stop what it started or leave it unwatched. It does not even take
                    // the lease (which would hold the others back), and follows on (slowly
                    // polled) until the start ends or its start timeout passes.
                    wait = me.shared.lease_ttl;
                    continue;
                }
                match me.try_lease(Kind::Starting, false).await {
                    Attempt::Taken => {
                        me.following.store(false, Ordering::SeqCst);
                        let Some(registered) = me.service.upgrade() else {
                            return me.release("down");
                        };
                        // The start ended here meanwhile (its "up" or "down" came in while the
                        // lease was being taken): nothing to start, nothing to hold.
                        let state = registered.state();
                        if state != ServiceState::Starting {
                            return me.release(message_for(state));
                        }
                        // The holder frees the lease when its start succeeds, and its "up" may
                        // not be here yet: look before starting the backend a second time. If
                        // it answers, the lease is kept and this replica's poller ends Starting
                        // (after `ready_after`, if set), which frees it announcing the state.
                        // So too if the look could not be made (this process out of file
                        // descriptors): the backend may be up, and the start timeout bounds it.
                        if registered.answers_now().await != Some(false) {
                            tracing::debug!(service = %me.name, "fleet: the lease was free and the backend answers (or could not be looked at); not starting it again");
                            registered.ensure_polling();
                            return;
                        }
                        if registered.is_released() {
                            // Shutting down since the look above: the start is handed on, its
                            // announcement ("starting") waking the replicas that follow it,
                            // which find the lease free.
                            return me.release(message_for(state));
                        }
                        let Some(run) = registered.on_down_run() else {
                            // The start ended while the backend was looked at (its "up", or
                            // its timeout), or there is no on_down: nothing to run.
                            let state = registered.state();
                            if state != ServiceState::Starting {
                                me.release(message_for(state));
                            }
                            return;
                        };
                        // Not the one start: the holder may run it still, its lease lost with
                        // a restarted Redis (see `leave_to_starter`).
                        me.started_here.store(false, Ordering::SeqCst);
                        tracing::info!(service = %me.name, "fleet: took over the start (the lease was free)");
                        let _ = run.await;
                        return;
                    }
                    Attempt::Held { wait: next }
                    | Attempt::Busy { wait: next }
                    | Attempt::Stopped { wait: next, .. } => wait = next,
                    Attempt::Unavailable => {
                        // The holder's "up" or "down", and its lease expiring, can no longer be
                        // heard: waiting on would hold this replica's requests until its start
                        // timeout, even if the holder (or its program) is gone. As a cold start
                        // in an outage does, it starts the backend on its own.
                        me.following.store(false, Ordering::SeqCst);
                        return me.start_unheard().await;
                    }
                }
            }
        });
    }

    /// The start this replica follows, once Redis cannot be reached: unless the backend
    /// answers already (its poller ends Starting), `on_down` runs here without the lease, not
    /// as the one start (see `leave_to_starter`).
    async fn start_unheard(self: &Arc<Self>) {
        let Some(registered) = self.service.upgrade() else {
            return;
        };
        if registered.state() != ServiceState::Starting {
            return;
        }
        if registered.answers_now().await != Some(false) {
            registered.ensure_polling();
            return;
        }
        // Shutting down since the last look: it would stop what it started, or leave it
        // unwatched (its start timeout ends the wait).
        if registered.is_released() {
            return;
        }
        if let Some(run) = registered.on_down_run() {
            self.started_here.store(false, Ordering::SeqCst);
            tracing::info!(service = %self.name, "fleet: Redis cannot be reached while another replica starts {}; starting it here", self.name);
            let _ = run.await;
        }
    }

    /// Whether this replica is shutting down (its held requests released): it takes no lease
    /// on the fleet's behalf any more, and leaves the fleet's starts and stops to the others.
    pub(super) fn shutting_down(&self) -> bool {
        self.service.upgrade().is_some_and(|r| r.is_released())
    }
}
