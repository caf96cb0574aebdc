//! The idle stop and an operator's stop: `on_idle` run once the backend is found idle (in a
//! fleet, once the whole fleet is, under its lease), called off by a request that came in.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::Registered;
use super::runs::TriggerRun;
use crate::error::SharedError;
use crate::lifecycle::{Event, Stamp};
use crate::trigger::run_bounded_unsaid;

impl Registered {
    /// The idle stop: [`stop_locally`](Self::stop_locally), or in a fleet only once the whole
    /// fleet has been idle for the idle time and this replica holds the fleet's lease.
    pub(crate) fn stop(&self) -> BoxFuture<'static, Result<bool, SharedError>> {
        self.fleet_stop(true)
    }

    /// A stop asked for by an operator: as [`stop`](Self::stop), without waiting for the
    /// fleet to be idle (the fleet's lease is still taken, so it runs once).
    pub(crate) fn stop_requested(&self) -> BoxFuture<'static, Result<bool, SharedError>> {
        self.fleet_stop(false)
    }

    /// Fleet hook: the stop goes through the fleet when there is one.
    fn fleet_stop(&self, idle_check: bool) -> BoxFuture<'static, Result<bool, SharedError>> {
        #[cfg(feature = "fleet")]
        if let (Some(member), Some(me)) = (self.fleet.get(), self.me.upgrade()) {
            return member.stop(me, idle_check);
        }
        self.stop_locally(idle_check).boxed()
    }

    /// Runs `on_idle` if the backend is up: the cached up is forgotten at once, and the backend
    /// is Stopping until a probe finds it down. Fails with `on_idle`'s own failure (then the
    /// backend counts as up again, uncached, and the stop is retried after the idle time).
    /// An idle stop (`idle_check`) is called off if a request came in since the idle watch's
    /// last look: one that read the cached up just before it was forgotten is not cut off. It
    /// is called off too while `on_down` still runs (the backend answered before it returned);
    /// an operator's stop instead waits for that `on_down` to end, at most the trigger timeout
    /// (`on_down`'s own bound), Stopping meanwhile, and is called off if it has not (failing
    /// with [`StartStillRuns`]): `on_idle` never runs beside `on_down`. A start that has not
    /// begun `on_down` (it still waits for its dependencies) is called off by an operator's
    /// stop rather than waited for (see `call_off`). A stop whose future is
    /// dropped before `on_idle` began is called off too. No stop begins while another's
    /// `on_idle` still runs: two never run at once.
    pub(crate) fn stop_locally(
        &self,
        idle_check: bool,
    ) -> impl Future<Output = Result<bool, SharedError>> + Send + 'static {
        let on_idle = self.service.on_idle.as_ref().map(|(_, t)| Arc::clone(t));
        // Counted before the transition, so no probe sees Stopping without it; a caller that
        // loses the transition gives it back at once (the guard drops below).
        let (running, others) = TriggerRun::counted(&self.stop_runs);
        // Another stop's `on_idle` still runs (the backend was marked up meanwhile): this one
        // does not begin, or two would run at once; the idle watch looks again later.
        if others {
            tracing::debug!(service = %self.name, "a stop still runs; not stopping again");
        }
        let mut transition = on_idle
            .as_ref()
            .filter(|_| !others)
            .and_then(|_| self.lifecycle.stop(|| self.cache.mark_down()));
        if let Some(stopping) = transition {
            self.after(stopping);
            // Read after the transition: a start counts itself before its own (see
            // `start_for`), so one that is on, or about to be, is seen.
            let starting = self.start_runs.running();
            if idle_check
                && (starting
                    || self
                        .idle
                        .as_ref()
                        .is_some_and(|idle| idle.active_since_look()))
            {
                // Called off whatever the state became meanwhile: `on_idle` must not run.
                transition = None;
                if let Some(back) = self
                    .lifecycle
                    .apply_to(stopping.began, Event::StopCancelled)
                {
                    let why = if starting {
                        "on_down still runs"
                    } else {
                        "a request came in"
                    };
                    tracing::info!(service = %self.name, "{why} as the idle stop began; {} stays up", self.name);
                    self.after(back);
                    self.cache_up_if_still_up();
                }
            }
        }
        let me = self.me.upgrade();
        let timeout = self.service.trigger_timeout;
        // Made with the transition, not in the future: one dropped before it is first polled
        // (an idle stop spawned on a runtime that shuts down) calls the stop off too.
        let not_begun = NotBegun(
            transition
                .filter(|_| on_idle.is_some())
                .zip(me.clone())
                .map(|(stopping, me)| (me, stopping.began)),
        );
        async move {
            let _running = running;
            let (Some(on_idle), Some(stopping), Some(me)) = (on_idle, transition, me) else {
                return Ok(false);
            };
            // An operator's stop of a backend that answered before its `on_down` returned (an
            // idle stop was called off for it above): on_idle waits for that run to end. A
            // start still waiting for its dependencies is called off instead: the backend was
            // found up since it began, so it would run no `on_down` anyway (see `call_off`),
            // and its wait may last far longer than the trigger timeout.
            if me.start_runs.running() {
                me.call_off.call_off();
                tracing::info!(service = %me.name, "a start still runs: the stop of {} calls it off if its on_down has not begun, or waits for its on_down to end (at most {:.2} s) before on_idle", me.name, timeout.as_secs_f64());
            }
            if !me.start_runs.none_within(timeout).await {
                tracing::warn!(service = %me.name, "a start still runs after {:.2} s: {} is not stopped beside its on_down", timeout.as_secs_f64(), me.name);
                drop(not_begun);
                return Err(Arc::new(StartStillRuns(timeout)) as SharedError);
            }
            not_begun.began();
            me.stats.idle_stop(&me.name);
            match run_bounded_unsaid(&on_idle, timeout, &me.stats, &me.name, "on_idle").await {
                Ok(()) => Ok(true),
                Err(error) => {
                    me.say_stop_failed(&error);
                    // Back to Up only from this stop's own Stopping: not from a later one, if
                    // the backend was marked down, woken and stopped again while this ran.
                    if let Some(transition) =
                        me.lifecycle.apply_to(stopping.began, Event::StopFailed)
                    {
                        me.after(transition);
                    }
                    Err(error)
                }
            }
        }
    }
}

impl Registered {
    /// Logs a failed `on_idle`. One with nothing of its backend to stop (a program this
    /// supervisor did not start answers on its port) fails so at every idle time for as long
    /// as that program runs: said at warn once per up spell (until the backend is found
    /// down), then at debug, or the log fills with what the operator was told already.
    fn say_stop_failed(&self, error: &SharedError) {
        let name = &*self.name;
        if !nothing_to_stop(error) {
            tracing::warn!(service = %name, trigger = "on_idle", %error, "trigger failed");
        } else if self.said_nothing_to_stop.swap(true, Ordering::Relaxed) {
            tracing::debug!(service = %name, trigger = "on_idle", %error,
                "{name} stays up: its on_idle still has nothing to stop");
        } else {
            tracing::warn!(service = %name, trigger = "on_idle", %error,
                "{name} stays up: its on_idle has nothing to stop (said once while {name} stays up)");
        }
    }
}

/// Whether `error` says that a program's idle stop found nothing of its running.
fn nothing_to_stop(error: &SharedError) -> bool {
    #[cfg(unix)]
    {
        use crate::trigger::ProcessError;
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&**error);
        while let Some(error) = next {
            if let Some(ProcessError::NotRunning { .. }) = error.downcast_ref() {
                return true;
            }
            next = error.source();
        }
    }
    #[cfg(not(unix))]
    let _ = error;
    false
}

/// Calls a stop off (back to Up, from its own Stopping) unless `on_idle` began: its future
/// dropped while it waited for `on_down`, or that wait given up. Otherwise the service would
/// stay Stopping, its backend running and nothing forwarded to it, until the stop timeout.
struct NotBegun(Option<(Arc<Registered>, Stamp)>);

impl NotBegun {
    fn began(mut self) {
        self.0 = None;
    }
}

impl Drop for NotBegun {
    fn drop(&mut self) {
        let Some((me, stopping)) = self.0.take() else {
            return;
        };
        if let Some(back) = me.lifecycle.apply_to(stopping, Event::StopCancelled) {
            tracing::info!(service = %me.name, "the stop of {} was called off before on_idle ran; it stays up", me.name);
            me.after(back);
            me.cache_up_if_still_up();
        }
    }
}

/// Why an operator's stop did not run `on_idle`: a start's `on_down` still ran after the
/// trigger timeout, and `on_idle` must not run beside `on_down`. (A start still waiting for
/// its dependencies is called off by the stop, not waited for.)
#[derive(Debug)]
pub(crate) struct StartStillRuns(Duration);

impl fmt::Display for StartStillRuns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a start still ran after the trigger timeout ({:.2} s): on_idle was not run beside \
             its on_down, and the service stays up",
            self.0.as_secs_f64()
        )
    }
}

impl std::error::Error for StartStillRuns {}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::lifecycle::ServiceState;
    use crate::{BoxError, MonitoredService, Url, probe, trigger};

    /// An idle stop is spawned (see `IdleWatch::expired`) after its transition: a runtime that
    /// shuts down before the task first runs drops it unpolled. The stop is then called off,
    /// Up again, rather than Stopping with no `on_idle` run and no poller to end it.
    #[test]
    fn a_stop_dropped_before_it_first_ran_is_called_off() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let url = Url::parse("http://127.0.0.1:9/").unwrap();
        let service = MonitoredService::new(url, Duration::from_secs(60))
            .probe(probe::from_fn(|_| async { Ok::<bool, BoxError>(true) }))
            .on_idle(
                Duration::from_secs(3600),
                trigger::from_fn(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<(), BoxError>(()) }
                }),
            );
        let registered = Registered::new("app".into(), service);
        // A current-thread runtime runs nothing outside `block_on`: the spawned stop is
        // certainly dropped unpolled when it shuts down.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async { registered.set_status_up() });
        {
            let _on = runtime.enter();
            runtime.spawn(registered.stop());
        }
        assert_eq!(registered.state(), ServiceState::Stopping);
        drop(runtime);

        assert_eq!(registered.state(), ServiceState::Up);
        assert_eq!(runs.load(Ordering::SeqCst), 0);
    }
}
