//! Probing a service: one probe at a time, shared by every caller, with its result applied to
//! the lifecycle and the status cache.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use futures::FutureExt;
use tokio::time::Instant;
use tracing::Instrument;

use super::Registered;
use crate::error::{MonitorError, SharedError};
use crate::lifecycle::{Event, ServiceState};
use crate::stats::ProbeResult;

impl Registered {
    /// Cached up, or the result of a probe (shared with every concurrent caller).
    pub(crate) fn status(
        &self,
    ) -> impl Future<Output = Result<bool, MonitorError>> + Send + 'static {
        self.probe_shared(false)
    }

    /// The result of a probe, whatever the cache says.
    pub(crate) fn reprobe(
        &self,
    ) -> impl Future<Output = Result<bool, MonitorError>> + Send + 'static {
        self.probe_shared(true)
    }

    /// Starts a probe in the background if none is running; returns whether one could start.
    pub(crate) fn start_probe(&self) -> bool {
        self.probing
            .join_or_start(|| Some(self.probe_job()))
            .is_ok()
    }

    fn probe_shared(
        &self,
        force: bool,
    ) -> impl Future<Output = Result<bool, MonitorError>> + Send + 'static {
        let joined = if !force && self.cache.is_up_now() {
            Ok(None)
        } else {
            self.probing
                .join_or_start(|| (force || !self.cache.is_up_now()).then(|| self.probe_job()))
        };
        let name = Arc::clone(&self.name);
        async move {
            match joined {
                Ok(Some(flight)) => flight.await.map_err(|source| MonitorError::Probe {
                    service: name.to_string(),
                    source,
                }),
                // The cache turned up while we were deciding (a probe just finished).
                Ok(None) => Ok(true),
                Err(_) => Err(MonitorError::NoRuntime(name.to_string())),
            }
        }
    }

    /// Whether the backend answers right now: one probe of its own (not joined to one that
    /// began earlier, not held back by `ready_after`), bounded by the probe timeout, its
    /// result applied to nothing. For a fleet replica about to start a backend that another
    /// replica may have started already, or to stop one it finds running. `None` when this
    /// process could not make the probe for want of its own resources (`EMFILE`): that says
    /// nothing of the backend, which is then neither started nor stopped on its word.
    #[cfg(feature = "fleet")]
    pub(crate) async fn answers_now(&self) -> Option<bool> {
        // The call inside the future: a probe that panics before it returns one is caught too.
        let probe = AssertUnwindSafe(async { self.service.probe.probe(&self.service.url).await })
            .catch_unwind();
        match tokio::time::timeout(self.service.probe_timeout, probe).await {
            Ok(Ok(Ok(answers))) => Some(answers),
            Ok(Ok(Err(error))) if crate::local_resources::cause(&*error).is_some() => None,
            _ => Some(false),
        }
    }

    fn probe_job(&self) -> impl Future<Output = Result<bool, SharedError>> + Send + 'static {
        let me = self.me.upgrade();
        async move {
            let Some(me) = me else {
                return Err(SharedError::from(crate::BoxError::from("service removed")));
            };
            let started = Instant::now();
            let timeout = me.service.probe_timeout;
            // The probe's own lines (a TCP connect refused, an HTTP status) name the service.
            let span = tracing::debug_span!("probe", service = %me.name);
            // The call inside the future: a probe that panics before it returns one (a
            // `probe::from_fn` closure's own code) is a failed probe like any other.
            let probe = AssertUnwindSafe(
                async { me.service.probe.probe(&me.service.url).await }.instrument(span),
            )
            .catch_unwind();
            let result = match tokio::time::timeout(timeout, probe).await {
                Ok(Ok(result)) => result,
                Ok(Err(_panic)) => {
                    tracing::error!(service = %me.name, "probe panicked; counted as a failed probe");
                    Err("the probe panicked".into())
                }
                Err(_) => {
                    tracing::debug!(service = %me.name, ?timeout, "probe timed out");
                    Ok(false)
                }
            };
            let elapsed = started.elapsed();
            if let Err(error) = &result {
                if crate::local_resources::cause(error.as_ref()).is_some() {
                    me.ran_out(error.as_ref(), elapsed);
                    return result.map_err(SharedError::from);
                }
            }
            let came_back = me.seen.swap(true, Ordering::SeqCst) && me.state() != ServiceState::Up;
            let result = me.settle(result, came_back);
            // Fleet hook: an up is not believed while another replica is stopping the backend,
            // and one found before another replica's stop ended changes nothing.
            #[cfg(feature = "fleet")]
            let result = match me.fleet.get() {
                Some(member) => match member.filter_probe(result, elapsed) {
                    Some(result) => result,
                    None => {
                        me.stats.probe(&me.name, ProbeResult::Down, elapsed);
                        return Ok(me.state() == ServiceState::Up);
                    }
                },
                None => result,
            };
            match &result {
                Ok(up) => {
                    tracing::debug!(service = %me.name, up, ?elapsed, "probe finished");
                    let result = if *up {
                        ProbeResult::Up
                    } else {
                        ProbeResult::Down
                    };
                    me.stats.probe(&me.name, result, elapsed);
                }
                Err(error) => {
                    tracing::warn!(service = %me.name, %error, ?elapsed, "probe failed");
                    me.stats.probe(&me.name, ProbeResult::Error, elapsed);
                }
            }
            if let Ok(true) = result {
                let again = me.state() == ServiceState::Up;
                me.apply(Event::ProbedUp);
                if again {
                    me.recheck_dependencies();
                }
                me.cache_up_if_still_up();
                // Fleet hook: the other replicas use this up instead of probing themselves.
                #[cfg(feature = "fleet")]
                if let Some(member) = me.fleet.get() {
                    member.probed_up();
                }
            } else {
                // A failed probe also forgets any cached up: it no longer holds. While
                // `on_idle` still runs, a closed port is not a stopped backend yet: the state
                // stays Stopping (see `mark_down`).
                me.mark_down(Event::ProbedDown);
            }
            result.map_err(SharedError::from)
        }
    }

    /// A probe that failed for want of this process's own resources (`EMFILE` under a flood
    /// of clients, `EADDRNOTAVAIL` with the local ports all taken): it says nothing of the
    /// backend, so nothing changes: the state stays what it was (an Up backend is neither
    /// marked down nor started again, a Starting one goes on until it answers or its start
    /// timeout passes), the cached up stays until it expires, and the callers get the error
    /// (the layer forwards to a backend last known up: a kept connection may still reach it).
    /// Logged at error at most once a minute, as it can come with every request.
    fn ran_out(&self, error: &(dyn std::error::Error + 'static), elapsed: std::time::Duration) {
        self.stats
            .probe(&self.name, ProbeResult::LocalResources, elapsed);
        let state = self.state();
        let name = Arc::clone(&self.name);
        self.local_said.say(
            |quietly| {
                tracing::error!(
                    service = %self.name,
                    %error,
                    %state,
                    local_quietly = quietly,
                    "probe could not be made: this process is out of file descriptors, local \
                     ports or memory (its own, not the backend's); the state is left as it was \
                     (logged at error at most once a minute; local_quietly: those logged at \
                     debug since the last one)"
                );
            },
            || {
                tracing::debug!(
                    service = %self.name,
                    %error,
                    %state,
                    "probe could not be made for want of this process's own resources"
                );
            },
            move |quietly| {
                tracing::error!(
                    service = %name,
                    local_quietly = quietly,
                    "probes that could not be made in the last minute for want of this \
                     process's own file descriptors, local ports or memory, logged at debug: \
                     {quietly}"
                );
            },
        );
    }

    /// Holds back an up that follows a down until `ready_after` has passed since the first one.
    fn settle(
        &self,
        result: Result<bool, crate::BoxError>,
        came_back: bool,
    ) -> Result<bool, crate::BoxError> {
        let ready_after = self.service.ready_after;
        let mut since = self
            .settling_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(true) if came_back && !ready_after.is_zero() => {
                let first_up = *since.get_or_insert_with(Instant::now);
                if first_up.elapsed() < ready_after {
                    tracing::debug!(service = %self.name, ?ready_after, "answering again; settling before it counts as up");
                    return Ok(false);
                }
                *since = None;
                Ok(true)
            }
            other => {
                *since = None;
                other
            }
        }
    }

    /// Caches the up a probe or `set_status_up` found, unless the state has left Up (an idle
    /// stop between the two would otherwise leave a stale up cached while stopping).
    pub(crate) fn cache_up_if_still_up(&self) {
        self.lifecycle
            .cache_if_up(|| self.cache.mark_up(), || self.cache.mark_down());
        // Already up, so no transition arms the idle watch: it may have stopped looking (its
        // runtime shut down), and would then never stop the backend.
        if let Some(idle) = &self.idle {
            idle.look_again_if_stopped(self);
        }
    }
}
