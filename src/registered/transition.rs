//! What every transition of a service sets off: its log line, its metrics, the fleet's hook,
//! the poller, the idle watch's arming and a start asked for while it was stopping.

use std::sync::atomic::Ordering;

use super::{Registered, backoff};
use crate::lifecycle::{Event, ServiceState, Transition};

impl Registered {
    pub(crate) fn apply(&self, event: Event) -> Option<Transition> {
        let transition = self.lifecycle.apply(event)?;
        self.after(transition);
        Some(transition)
    }

    /// Counts a failed start: how many in a row now, and when the next may begin, in words.
    /// `led_here`: whether it is this monitor's to count in `failed_starts` (not a start
    /// another replica led, which that replica counts).
    fn start_failed(&self, led_here: bool) -> (u32, String) {
        let (failed, pause) = self.backoff.failed();
        if led_here {
            self.stats.failed_start(&self.name);
        }
        let next = if pause.is_zero() {
            "it may be started again at once".to_string()
        } else {
            format!("not started again for {} s", pause.as_secs())
        };
        (failed, next)
    }

    /// Whether the start under way is this monitor's to count if it fails: not while it only
    /// follows a start another replica of its fleet leads (holding no lease for it), whose
    /// failure that replica counts; its own start timeout may well pass first.
    pub(super) fn leads_its_start(&self) -> bool {
        #[cfg(feature = "fleet")]
        if let Some(member) = self.fleet.get() {
            return !member.follows_a_start();
        }
        true
    }

    /// What every transition sets off.
    pub(super) fn after(&self, transition: Transition) {
        self.after_because(transition, "down again");
    }

    /// [`after`](Self::after), saying `why` a start ended without the backend up.
    pub(super) fn after_because(&self, transition: Transition, why: &str) {
        self.after_start_led(transition, why, true);
    }

    /// A start another replica led ended without the backend up (its "down"): down here too,
    /// and this replica's backoff counts it, but `failed_starts` counts it only where it was
    /// led, so that the fleet's sum counts each start once.
    #[cfg(feature = "fleet")]
    pub(crate) fn heard_start_failed(&self, from: &str) {
        if let Some(transition) = self.lifecycle.apply(Event::WakeFailed) {
            let why = format!("the start replica {from} led failed");
            self.after_start_led(transition, &why, false);
        }
    }

    /// [`after_because`](Self::after_because), counting a failed start in `failed_starts`
    /// only if `led_here`.
    pub(super) fn after_start_led(&self, transition: Transition, why: &str, led_here: bool) {
        let Transition {
            from, to, lasted, ..
        } = transition;
        let name = &*self.name;
        let secs = lasted.as_secs_f64();
        match (from, to) {
            (ServiceState::Starting, ServiceState::Up) => {
                tracing::info!(service = %name, "{name} came up after {secs:.2} s starting");
                self.stats.cold_start(name, lasted);
            }
            // Most likely stopped by the shutdown itself: not a failure of the backend's.
            (ServiceState::Starting, ServiceState::Down) if self.is_released() => {
                tracing::info!(
                    service = %name,
                    "{name} did not come up before the shutdown: {why} after {secs:.2} s starting"
                );
            }
            (ServiceState::Starting, ServiceState::Down) => {
                let (failed, next) = self.start_failed(led_here);
                tracing::warn!(
                    service = %name,
                    failed_in_a_row = failed,
                    "{name} did not come up: {why} after {secs:.2} s starting; {next}"
                );
            }
            // Stopped by the shutdown, or its definition retired by a reload: what stopped it
            // is the gateway's own doing, not a crash, however soon after it came up.
            (ServiceState::Up, ServiceState::Down) if self.is_released() => {
                tracing::info!(
                    service = %name,
                    "{name} is down after {secs:.2} s up (shutting down, or removed by a reload)"
                );
            }
            // Down soon after it came up (it crashed at its first request, say): as failed a
            // start as one that never came up, or each request would start it again. Without
            // an `on_down` nothing here starts it, so there is no start to pause or warn of.
            (ServiceState::Up, ServiceState::Down)
                if lasted < backoff::STABLE && self.service.on_down.is_some() =>
            {
                let (failed, next) = self.start_failed(true);
                tracing::warn!(
                    service = %name,
                    failed_in_a_row = failed,
                    "{name} is down {secs:.2} s after it came up; {next}"
                );
            }
            (ServiceState::Up, _) => {
                // Up long enough, or stopped for being idle: its starts work.
                self.backoff.end_series();
                tracing::info!(service = %name, "{name} is {to} after {secs:.2} s {from}");
            }
            (ServiceState::Stopping, ServiceState::Down) => {
                tracing::info!(service = %name, "{name} stopped after {secs:.2} s stopping")
            }
            _ => tracing::info!(service = %name, "{name} is {to} after {secs:.2} s {from}"),
        }
        self.said_held_timed_out.store(false, Ordering::Relaxed);
        crate::metrics::transition(name, from.as_str(), to.as_str());
        self.dependencies.follow(|| self.state());
        self.changed.notify_waiters();
        // Fleet hook: a lease held for this start or stop is released, announcing the new state.
        #[cfg(feature = "fleet")]
        if let Some(member) = self.fleet.get() {
            member.transition(transition);
        }
        match to {
            ServiceState::Starting | ServiceState::Stopping => self.ensure_polling(),
            ServiceState::Up => {
                self.times_up.fetch_add(1, Ordering::SeqCst);
                // Down again later is a new spell, whose 503s are explained anew.
                self.said_nothing_starts_it.store(false, Ordering::Relaxed);
                // A start asked for while stopping is moot once the backend is up again.
                self.wake_after_stop.forget();
                if let Some(idle) = &self.idle {
                    idle.arm_if_idle();
                }
            }
            ServiceState::Down => {
                // Up again later is a new spell, whose stop that finds nothing is said anew.
                self.said_nothing_to_stop.store(false, Ordering::Relaxed);
                if let Some(asker) = self.wake_after_stop.take() {
                    // A request's wish is refused if the server has begun shutting down since.
                    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                        runtime.spawn(self.start_for(asker));
                    }
                }
            }
        }
    }
}
