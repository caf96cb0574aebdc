//! A start watched for its backend ending before it comes up, and given up at its timeout.
//!
//! A supervised program that exits at once (a bad flag, a port in use) would otherwise leave
//! the service Starting until the start timeout: every request held for nothing, or shown the
//! "starting" page, for a minute. The trigger that started it tells when it ends
//! ([`Trigger::ended`]); if that comes while the same start is still on, the start ends there.
//!
//! One that hangs at boot is stopped when its start times out ([`Trigger::abandon`]): left
//! running, it would make every later start a no-op ("running already").
//!
//! One that crashed is given a moment to end before the next start ([`ENDING`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{Either, select};

use super::Registered;
use crate::Trigger;
use crate::lifecycle::{Event, Stamp};

/// How long a start waits for what `on_down` started last to end, should it still run. A
/// program that crashes closes its sockets before its exit is seen (a moment later, or after
/// it has written a dump), so a request can find its backend gone, and ask for a start, while
/// it still runs.
pub(super) const ENDING: Duration = Duration::from_secs(1);

impl Registered {
    /// Before a start: if what `on_down` started last still runs (its [`Trigger::ended`] has
    /// not resolved), the wait for its end, up to [`ENDING`], to make before `on_down` runs;
    /// until that wait is over (or dropped) the poller does not probe, as what answers then is
    /// that program on its way out. Run at once, `on_down` would find a crashed program
    /// "running already" and start nothing, and the start would end, failed, at that
    /// program's exit (or come up on its last answers): one crash counted twice towards the
    /// pause after failed starts, and said as a start that did not come up. One still
    /// running past the wait (hung) is left to `on_down`, as before. Made before the start's
    /// transition, so that its poller's first probe already sees it.
    pub(super) fn last_run_ending(&self, on_down: &Arc<dyn Trigger>) -> Option<LastRunEnding> {
        // A user's trigger, as in `watch_start`: a panic counts as "cannot tell".
        let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| on_down.ended()));
        let mut ended = ended.ok().flatten()?;
        // Its first poll is the user's code too, run here under the start's single flight.
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (&mut ended).now_or_never()));
        if !matches!(polled, Ok(None)) {
            return None;
        }
        let me = self.me.upgrade()?;
        me.ending_last_run.store(true, Ordering::SeqCst);
        Some(LastRunEnding { ended, me })
    }

    /// After `on_down` returned for the start `starting`: if it can tell when what it started
    /// ends, ends that start (`Starting → Down`) should it come first. The watch ends with the
    /// start, whatever ends it (up, the start timeout, the backend's end).
    pub(super) fn watch_start(self: &Arc<Self>, starting: Stamp, on_down: &Arc<dyn Trigger>) {
        // A user's trigger: its panic would fail a start that `on_down` made (a 500 for every
        // request that shared it); the start is then just not watched.
        let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| on_down.ended()))
            .unwrap_or_else(|_| {
                tracing::error!(service = %self.name, "on_down's `ended` panicked; the start is not watched");
                None
            });
        let Some(mut ended) = ended else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let me = Arc::clone(self);
        runtime.spawn(async move {
            loop {
                let changed = me.changed();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if me.lifecycle.stamp() != starting {
                    return;
                }
                if let Either::Left(_) = select(&mut ended, changed).await {
                    if let Some(down) = me.lifecycle.apply_to(starting, Event::WakeFailed) {
                        me.after_because(down, "what on_down started has ended");
                    }
                    return;
                }
            }
        });
    }

    /// Whether what `on_down` last started still runs here, as far as its trigger can tell:
    /// `Some(true)` while [`Trigger::ended`] has not resolved (a supervised program that has
    /// not exited), `Some(false)` once it has (the program exited: crashed, or stopped),
    /// `None` when the trigger cannot tell (no `ended`, as a webhook's; one found running
    /// under another supervisor's lock file; a panic). In a fleet this decides whether a
    /// replica is the backend's starter, whose idle stop it is to make.
    #[cfg(feature = "fleet")]
    pub(crate) fn runs_its_start(&self) -> Option<bool> {
        let on_down = self.service.on_down.as_ref()?;
        // A user's trigger, as in `watch_start`: a panic counts as "cannot tell".
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            on_down.ended().map(|ended| ended.now_or_never().is_none())
        }))
        .unwrap_or(None)
    }

    /// The start timed out (`Starting → Down`): stops what `on_down` started, if it can, so
    /// that the next request starts the backend afresh.
    pub(crate) fn abandon_start(self: &Arc<Self>) {
        let Some(on_down) = self.service.on_down.as_ref() else {
            return;
        };
        // A user's trigger, as in `watch_start`.
        let abandon = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| on_down.abandon()))
            .unwrap_or_else(|_| {
                tracing::error!(service = %self.name, "on_down's `abandon` panicked; what it started is left running");
                None
            });
        let Some(abandon) = abandon else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let name = Arc::clone(&self.name);
        // Bounded as `on_idle`'s stop is: a supervised program's stop bounds itself (SIGKILL
        // after its stop grace), a user's may not.
        let timeout = self.service.trigger_timeout;
        tracing::warn!(service = %name, "{name} did not come up within its start timeout: stopping what on_down started, so that the next request starts it afresh");
        runtime.spawn(async move {
            let abandon = std::panic::AssertUnwindSafe(abandon).catch_unwind();
            match tokio::time::timeout(timeout, abandon).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => tracing::error!(service = %name, "on_down's `abandon` panicked"),
                Err(_) => tracing::warn!(service = %name, ?timeout, "on_down's `abandon` did not end within the trigger timeout"),
            }
        });
    }
}

/// The wait for the end of what `on_down` started last (see `last_run_ending`); the poller
/// probes again once it is over or dropped.
pub(super) struct LastRunEnding {
    ended: futures::future::BoxFuture<'static, ()>,
    me: Arc<Registered>,
}

impl LastRunEnding {
    pub(super) async fn wait(mut self) {
        // A panic there is "cannot tell", as in `last_run_ending`: it must not fail the start.
        let ended = std::panic::AssertUnwindSafe(&mut self.ended).catch_unwind();
        match tokio::time::timeout(ENDING, ended).await {
            Ok(Ok(())) => {
                tracing::debug!(service = %self.me.name, "what on_down started last has ended: starting it afresh");
            }
            Ok(Err(_)) => {
                tracing::error!(service = %self.me.name, "on_down's `ended` panicked; starting {} without waiting for it", self.me.name);
            }
            Err(_) => {}
        }
    }
}

impl Drop for LastRunEnding {
    fn drop(&mut self) {
        self.me.ending_last_run.store(false, Ordering::SeqCst);
    }
}

/// Ends the start a run of `on_down` was made for, should that run be dropped unfinished (its
/// runtime shut down while it ran, or it panicked): otherwise the service would stay Starting
/// until its start timeout, and no request would run `on_down` again meanwhile.
pub(super) struct UnfinishedStart {
    registered: Option<Arc<Registered>>,
    starting: Option<Stamp>,
}

impl UnfinishedStart {
    pub(super) fn new(registered: &Arc<Registered>, starting: Option<Stamp>) -> Self {
        Self {
            registered: Some(Arc::clone(registered)),
            starting,
        }
    }

    /// The run ended: what comes next is its result's to say.
    pub(super) fn finished(mut self) {
        self.registered = None;
    }
}

impl Drop for UnfinishedStart {
    fn drop(&mut self) {
        let Some(me) = self.registered.take() else {
            return;
        };
        // Only the start the run was made for, as a failed run's end (see `run_on_down`).
        let down = self
            .starting
            .and_then(|starting| me.lifecycle.apply_to(starting, Event::WakeFailed));
        if let Some(down) = down {
            me.after_because(down, "on_down was cut short (its runtime shut down)");
        }
    }
}
