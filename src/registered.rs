//! A service once added: its definition, its status cache, and its runs in flight.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::time::Instant;

use crate::error::{MonitorError, SharedError};
use crate::idle::IdleWatch;
use crate::service::MonitoredService;
use crate::single_flight::SingleFlight;
use crate::status::StatusCache;

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

pub(crate) struct Registered {
    pub(crate) name: Arc<str>,
    pub(crate) service: MonitoredService,
    pub(crate) cache: Arc<StatusCache>,
    /// Requests in flight through the layer, when the service has `on_idle`.
    pub(crate) idle: Option<Arc<IdleWatch>>,
    probing: SingleFlight<bool>,
    /// Runs of `on_down`, coalesced like probes.
    waking: SingleFlight<()>,
    /// The last status a probe (or `set_status_up`) saw, to log transitions.
    last_seen: Arc<AtomicU8>,
    /// When probes started succeeding again after a down, while `ready_after` has not passed.
    settling_since: Arc<Mutex<Option<Instant>>>,
}

impl Registered {
    pub(crate) fn new(name: String, service: MonitoredService) -> Self {
        Self {
            name: name.into(),
            cache: StatusCache::new(service.grace_period),
            idle: service
                .on_idle
                .as_ref()
                .map(|(after, trigger)| IdleWatch::new(*after, Arc::clone(trigger))),
            service,
            probing: SingleFlight::default(),
            waking: SingleFlight::default(),
            last_seen: Arc::new(AtomicU8::new(UNKNOWN)),
            settling_since: Arc::default(),
        }
    }

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

    pub(crate) fn set_status_up(&self) {
        self.cache.mark_up();
        note_transition(&self.name, &self.last_seen, UP);
    }

    pub(crate) fn set_status_down(&self) {
        self.cache.mark_down();
        note_transition(&self.name, &self.last_seen, DOWN);
    }

    /// Runs `on_down`, or joins the run in flight.
    pub(crate) fn wake(&self) -> impl Future<Output = Result<(), SharedError>> + Send + 'static {
        let joined = self.waking.join_or_start(|| {
            let on_down = self.service.on_down.clone()?;
            Some(async move { on_down.trigger().await.map_err(SharedError::from) })
        });
        let name = Arc::clone(&self.name);
        async move {
            match joined {
                Ok(Some(run)) => run.await,
                Ok(None) => Ok(()),
                Err(_) => Err(Arc::new(MonitorError::NoRuntime(name.to_string())) as SharedError),
            }
        }
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
        let joined = if !force && self.cache.is_up() {
            Ok(None)
        } else {
            self.probing
                .join_or_start(|| (force || !self.cache.is_up()).then(|| self.probe_job()))
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

    fn probe_job(&self) -> impl Future<Output = Result<bool, SharedError>> + Send + 'static {
        let probe = Arc::clone(&self.service.probe);
        let url = self.service.url.clone();
        let timeout = self.service.probe_timeout;
        let cache = Arc::clone(&self.cache);
        let last_seen = Arc::clone(&self.last_seen);
        let name = Arc::clone(&self.name);
        let (ready_after, settling_since) =
            (self.service.ready_after, Arc::clone(&self.settling_since));
        async move {
            let started = Instant::now();
            let result = match tokio::time::timeout(timeout, probe.probe(&url)).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::debug!(service = %name, ?timeout, "probe timed out");
                    Ok(false)
                }
            };
            let elapsed = started.elapsed();
            let came_back = last_seen.load(Ordering::Relaxed) == DOWN;
            let result = settle(result, ready_after, came_back, &settling_since, &name);
            match &result {
                Ok(true) => cache.mark_up(),
                // A failed probe also forgets any cached up: it no longer holds.
                Ok(false) | Err(_) => cache.mark_down(),
            }
            match &result {
                Ok(up) => {
                    tracing::debug!(service = %name, up, ?elapsed, "probe finished");
                    note_transition(&name, &last_seen, if *up { UP } else { DOWN });
                }
                Err(error) => {
                    tracing::warn!(service = %name, %error, ?elapsed, "probe failed");
                }
            }
            result.map_err(SharedError::from)
        }
    }
}

/// Holds back an up that follows a down until `ready_after` has passed since the first one.
fn settle(
    result: Result<bool, crate::BoxError>,
    ready_after: std::time::Duration,
    came_back: bool,
    settling_since: &Mutex<Option<Instant>>,
    name: &str,
) -> Result<bool, crate::BoxError> {
    let mut since = settling_since
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    match result {
        Ok(true) if came_back && !ready_after.is_zero() => {
            let first_up = *since.get_or_insert_with(Instant::now);
            if first_up.elapsed() < ready_after {
                tracing::debug!(service = %name, ?ready_after, "answering again; settling before it counts as up");
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

fn note_transition(name: &str, last_seen: &AtomicU8, now: u8) {
    let before = last_seen.swap(now, Ordering::Relaxed);
    if before == now {
        return;
    }
    match (before, now) {
        (UNKNOWN, UP) => tracing::info!(service = %name, "service is up"),
        (UNKNOWN, _) => tracing::info!(service = %name, "service is down"),
        (_, UP) => tracing::info!(service = %name, "service came up"),
        _ => tracing::info!(service = %name, "service went down"),
    }
}
