//! The poller: one task per service while it is starting or stopping (or requests are held),
//! probing at a steady pace and ending Starting / Stopping at their timeouts.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Registered;
use crate::lifecycle::{Event, ServiceState};

/// How often the monitor probes a backend that is starting or stopping (at most 20 probes a
/// second): a held request is forwarded within about this long of the backend answering.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(50);

impl Registered {
    /// One poller per service, running while the backend is starting or stopping (or requests
    /// are held): it probes every [`POLL_INTERVAL`] and ends Starting / Stopping at their timeouts.
    pub(crate) fn ensure_polling(&self) {
        if self.polling.load(Ordering::SeqCst) {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.polling.swap(true, Ordering::SeqCst) {
            return;
        }
        // Made before the spawn: a runtime shutting down drops a task it never polled, and the
        // flag must not stay set for a poller that never ran.
        let running = PollerFlag {
            me,
            finished: false,
        };
        runtime.spawn(async move {
            let mut running = running;
            let me = Arc::clone(&running.me);
            while me.needs_polling() || me.resume_polling() {
                let (stamp, state, lasted) = me.lifecycle.stamped_snapshot();
                // The wait for its dependencies is theirs to bound: the start timeout is for
                // the backend's own start, and is not counted while they come up.
                let own = me.dependencies.own_part(stamp, lasted);
                if state == ServiceState::Starting
                    && own.is_some_and(|own| own >= me.service.start_timeout)
                {
                    if let Some(down) = me.lifecycle.apply(Event::StartTimedOut) {
                        // Where it was looked for: a URL whose port is not the one the
                        // backend listens on is the likely mistake.
                        let url = crate::redact::url(me.service.url());
                        let why = match me.looked_at_last() {
                            true => format!("its start timeout passed with {url} still down"),
                            false => format!(
                                "its start timeout passed with {url} not probed: {LOCAL}"
                            ),
                        };
                        // A start another replica leads is counted there (see
                        // `leads_its_start`), whatever this replica's own timeout says.
                        me.after_start_led(down, &why, me.leads_its_start());
                        me.abandon_start();
                    }
                    continue;
                }
                if state == ServiceState::Stopping
                    && lasted >= me.service.stop_timeout
                    && !me.stop_running()
                {
                    match me.looked_at_last() {
                        true => tracing::warn!(service = %me.name, "{} still answers {:?} after on_idle", me.name, lasted),
                        false => tracing::warn!(service = %me.name, "{} not probed {:?} after on_idle: {LOCAL}", me.name, lasted),
                    }
                    me.apply(Event::StopTimedOut);
                    continue;
                }
                // A program on its way out may still accept a connection: not the backend up.
                if !me.ending_last_run.load(Ordering::SeqCst) {
                    let _ = me.reprobe().await;
                }
                if me.needs_polling() {
                    tokio::time::sleep(me.poll_interval()).await;
                }
            }
            running.finished = true;
        });
    }

    pub(super) fn stop_running(&self) -> bool {
        self.stop_runs.running()
    }

    /// Fleet hook: a replica that waits for another replica's start or stop polls slowly; the
    /// other's announcement ends the wait. Otherwise [`POLL_INTERVAL`].
    fn poll_interval(&self) -> Duration {
        #[cfg(feature = "fleet")]
        if let Some(member) = self.fleet.get() {
            return member.poll_interval(POLL_INTERVAL);
        }
        POLL_INTERVAL
    }

    fn needs_polling(&self) -> bool {
        matches!(
            self.state(),
            ServiceState::Starting | ServiceState::Stopping
        ) || (self.watchers.load(Ordering::SeqCst) > 0 && self.state() != ServiceState::Up)
    }

    /// Called when the poller is about to stop: stops it, unless polling became needed again
    /// meanwhile and no other poller has started (then this one carries on).
    fn resume_polling(&self) -> bool {
        self.polling.store(false, Ordering::SeqCst);
        self.needs_polling() && !self.polling.swap(true, Ordering::SeqCst)
    }

    /// Counts a held request while the guard lives, and makes sure the backend is polled.
    pub(crate) fn watch(&self) -> Watching<'_> {
        self.watchers.fetch_add(1, Ordering::SeqCst);
        self.ensure_polling();
        Watching(self)
    }

    /// Requests held now, waiting for the backend to come up (for snapshots).
    pub(crate) fn held(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }
}

/// A held request, counted while it waits.
pub(crate) struct Watching<'a>(&'a Registered);

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Clears the "poller running" flag if the poller is dropped mid-way (its runtime shut down);
/// a poller that finishes has handed the flag over already.
struct PollerFlag {
    me: Arc<Registered>,
    finished: bool,
}

impl Drop for PollerFlag {
    fn drop(&mut self) {
        if !self.finished {
            self.me.polling.store(false, Ordering::SeqCst);
        }
    }
}

/// Why a probe could not be made: said where a timeout would otherwise blame the backend.
const LOCAL: &str = "this process is out of file descriptors, local ports or memory";

impl Registered {
    /// Whether the last probe looked at the backend: not one that could not be made for want
    /// of this process's own resources.
    fn looked_at_last(&self) -> bool {
        let last = self.stats.last_probe().map(|probe| probe.result);
        last != Some(crate::ProbeResult::LocalResources)
    }
}
