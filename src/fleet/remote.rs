//! What another replica's stop means here: while it lasts, and for what was probed before it
//! ended, an answering backend does not count as up.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::member::Member;
use crate::lifecycle::ServiceState;

impl Member {
    /// While another replica stops the backend, a probe that still finds it answering does
    /// not count as up (it is shutting down). Unless Stopping here too: an up found then
    /// leaves it Stopping, where a down would call it stopped while the other still stops it.
    /// A probe that began (`elapsed` ago) before the other's stop was heard to end tells
    /// nothing (`None`): its up is older than that stop, and than whatever was heard since (a
    /// fresh start's up, say), which a down made of it would undo.
    pub(crate) fn filter_probe(
        &self,
        result: Result<bool, crate::BoxError>,
        elapsed: Duration,
    ) -> Option<Result<bool, crate::BoxError>> {
        let stopping_here = || {
            self.service
                .upgrade()
                .is_some_and(|r| r.state() == ServiceState::Stopping)
        };
        let began = self
            .shared
            .now()
            .saturating_sub(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
        match result {
            Ok(true) if self.remote_stopping() && !stopping_here() => {
                tracing::debug!(service = %self.name, "fleet: answering, but another replica is stopping it; not up");
                Some(Ok(false))
            }
            Ok(true) if self.stopped_since(began) => {
                tracing::debug!(service = %self.name, "fleet: an up probed before another replica's stop ended; ignored");
                None
            }
            other => Some(other),
        }
    }

    /// Another replica's stop has ended with the backend down: what a probe found before now
    /// is older than that stop.
    pub(super) fn heard_stop_end(&self) {
        self.remote_stopped_at
            .store(self.shared.now(), Ordering::SeqCst);
    }

    /// Whether another replica's stop was heard to end at or after `at` (fleet nanoseconds).
    fn stopped_since(&self, at: u64) -> bool {
        let stopped = self.remote_stopped_at.load(Ordering::SeqCst);
        stopped != 0 && at <= stopped
    }

    pub(crate) fn remote_stopping(&self) -> bool {
        let until = self.remote_stopping_until.load(Ordering::SeqCst);
        until != 0 && self.shared.now() < until
    }

    pub(crate) fn set_remote_stopping(&self, lasting: Option<Duration>) {
        let until = lasting.map_or(0, |lasting| {
            let lasting = u64::try_from(lasting.as_nanos()).unwrap_or(u64::MAX);
            self.shared.now().saturating_add(lasting)
        });
        self.remote_stopping_until.store(until, Ordering::SeqCst);
    }
}
