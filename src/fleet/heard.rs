//! What another replica's announcements (`starting`, `stopping`, `up`, `resumed`, `down`) do
//! to this replica's state of the service.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::member::Member;
use crate::lifecycle::{Event, ServiceState};

impl Member {
    /// An announcement from another replica.
    pub(crate) fn on_message(self: &Arc<Self>, kind: &str, from: &str) {
        let Some(registered) = self.service.upgrade() else {
            return;
        };
        tracing::debug!(service = %self.name, kind, from, "fleet: announcement");
        match kind {
            "starting" => {
                self.set_remote_stopping(None);
                self.started_here.store(false, Ordering::SeqCst);
                if registered.apply(Event::Wake).is_some() {
                    self.follow(self.shared.lease_ttl);
                }
            }
            "stopping" => {
                self.set_remote_stopping(Some(self.shared.lease_ttl));
                registered.cache.mark_down();
                registered.apply(Event::Stop);
            }
            // Not while another replica stops it: that up was seen before the stop.
            "up" if !self.remote_stopping() => {
                registered.apply(Event::ProbedUp);
                registered.cache_up_if_still_up();
            }
            "resumed" => {
                self.set_remote_stopping(None);
                // That replica's stop was called off. This one's own may run still: its lease
                // lost (it expired while Redis could not be reached, or Redis restarted) and
                // taken by that replica. Its `on_idle` is not undone: its end decides here.
                if registered.mark_up().is_err() {
                    tracing::info!(service = %self.name, from, "fleet: replica {from} called its stop of {} off, but this replica's own stop of it still runs; its end decides", self.name);
                }
            }
            "down" => {
                let was_stopping = self.remote_stopping();
                self.set_remote_stopping(None);
                let state = registered.state();
                if was_stopping || state == ServiceState::Stopping {
                    self.heard_stop_end();
                }
                match state {
                    ServiceState::Stopping => {
                        registered.apply(Event::ProbedDown);
                    }
                    // A start led elsewhere failed: down here too, so the next request may
                    // wake it again (unless this replica waits to start it after a stop).
                    ServiceState::Starting if !was_stopping && !self.holds_lease() => {
                        registered.heard_start_failed(from);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        self.lease_changed.notify_one();
    }
}
