//! The end of what a reload removed: once the requests in flight to the services it removed
//! have ended (their open upgraded connections too; at most the grace), their held requests
//! are answered, and the programs their definitions started are stopped as a shutdown stops
//! them. Other services' connections, kept alive or busy, hold nothing.

use std::sync::Arc;
use std::time::Duration;

use super::gate::{Gate, Opener};
use crate::registered::Registered;

/// What one reload retires.
pub(super) struct Retired {
    pub(super) grace: Duration,
    /// The definitions removed or changed.
    pub(super) services: Vec<Arc<Registered>>,
    /// Their programs (strong handles: a program whose last handle goes is killed at once,
    /// not stopped).
    #[cfg(unix)]
    pub(super) programs: Vec<(String, crate::trigger::Process)>,
    /// The gates of the earlier reloads whose programs may not all be stopped yet: the new
    /// definitions wait for those stops too.
    pub(super) earlier: Vec<Gate>,
    /// Opened at the end: the new definitions may start (`None`: opened already, as there
    /// was no program to stop).
    pub(super) opener: Option<Opener>,
}

/// How long before the grace ends the removed services' held requests are answered, as at a
/// shutdown.
const HELD_ANSWER_TIME: Duration = Duration::from_secs(1);

/// How often the removed services' requests in flight are counted while some are left: they
/// tell no one when they end (a request pays two atomic operations, no more).
const DRAIN_LOOK_EVERY: Duration = Duration::from_millis(50);

/// Completes once none of `services` has a request in flight (held ones, and open upgraded
/// connections, count). The hold of a dependent among them on its dependency does not count:
/// it lasts until the dependent is stopped, after this.
async fn drained(services: &[Arc<Registered>]) {
    while (services.iter()).any(|service| service.in_flight_but_held_by(services) > 0) {
        tokio::time::sleep(DRAIN_LOOK_EVERY).await;
    }
}

impl Retired {
    pub(super) async fn run(self) {
        // Nothing of its own to retire: only the earlier reloads' stops to wait for.
        if !self.services.is_empty() {
            let answer_time = HELD_ANSWER_TIME.min(self.grace / 2);
            let mut waiting = std::pin::pin!(drained(&self.services));
            if tokio::time::timeout(self.grace - answer_time, waiting.as_mut())
                .await
                .is_err()
            {
                for service in &self.services {
                    service.release_held();
                }
                if tokio::time::timeout(answer_time, waiting).await.is_err() {
                    let names: Vec<&str> = self.services.iter().map(|s| &*s.name).collect();
                    let names = names.join(", ");
                    tracing::warn!(grace = ?self.grace, services = %names, "reload: requests to {names} still in flight (or upgraded connections open) after the grace; stopping their programs all the same");
                }
            }
        }
        // From now on no request starts them.
        for service in &self.services {
            service.release_held();
        }
        for gate in self.earlier {
            gate.opened_within(super::plan::START_WAIT_BOUND).await;
        }
        #[cfg(unix)]
        {
            let stops = self.programs.iter().map(|(name, program)| async move {
                if program.is_running() {
                    tracing::info!(service = %name, pid = program.pid(), "reload: stopping the program of {name}'s previous definition");
                }
                if let Err(error) = program.stop().await {
                    tracing::error!(service = %name, %error, "reload: could not stop the program of {name}'s previous definition");
                }
            });
            futures::future::join_all(stops).await;
        }
        // An old definition's idle stop still under way (`on_idle`, which may stop the
        // backend by other means than its program) ends before a new definition starts: a
        // start beside a stop of one backend could leave it stopped. Bounded by the stop's
        // own trigger timeout.
        for service in &self.services {
            if !service
                .stops_ended_within(service.service.trigger_timeout)
                .await
            {
                let name = &*service.name;
                tracing::warn!(service = %name, "reload: the idle stop of {name}'s previous definition still runs after its trigger timeout; its new definition may start beside it");
            }
        }
        // Its program stopped, each old definition is down: one still counted up would hold
        // its dependencies (kept, the very ones in use) from their idle stop for as long as
        // anything keeps it (a router made before the reload, an upgraded connection).
        for service in &self.services {
            service.set_status_down();
        }
        if let Some(opener) = self.opener {
            opener.open();
        }
    }
}
