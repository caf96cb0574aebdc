//! [`Stats`]: the counts and last events of one service, kept for snapshots and sent on to the
//! `metrics` facade, both at the same event.
//!
//! Only events are counted here (probes, wakes, stops, failures, fallbacks), never requests
//! that find the backend cached up: that path stays free of shared writes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::metrics;
use crate::snapshot::LastProbe;
use crate::sync::lock;

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ProbeResult {
    /// The backend answered as expected.
    Up,
    /// The backend could not be reached (or did not answer as expected, or the probe timed out).
    Down,
    /// The probe itself failed (or panicked).
    Error,
    /// The probe could not be made for want of this process's own resources (file
    /// descriptors, local ports, memory): it says nothing of the backend, whose state is left
    /// as it was.
    #[serde(rename = "local_resources")]
    LocalResources,
}

impl ProbeResult {
    /// The `result` label: `up`, `down`, `error` or `local_resources`.
    ///
    /// ```
    /// assert_eq!(tower_monitor::ProbeResult::Down.as_str(), "down");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Error => "error",
            Self::LocalResources => "local_resources",
        }
    }
}

/// Counts of one service's events since it was added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Counters {
    /// Probes that finished.
    pub probes: u64,
    /// `on_down` runs.
    pub wakes: u64,
    /// `on_idle` runs.
    pub idle_stops: u64,
    /// Requests answered by the fallback.
    pub fallbacks: u64,
    /// Trigger runs that failed, timed out or panicked.
    pub trigger_failures: u64,
    /// Cold starts that ended up (Starting → Up).
    pub cold_starts: u64,
    /// Starts that failed: Starting → Down (`on_down` failed, the start timeout passed, the
    /// backend ended first), or down again soon after it came up. In a fleet, a start another
    /// replica led is counted there, not here.
    pub failed_starts: u64,
    /// Requests held until the backend was up (or the hold gave up), each counted once.
    pub holds: u64,
}

/// The live counterpart of [`Counters`], plus the last probe and cold start.
#[derive(Default)]
pub(crate) struct Stats {
    probes: AtomicU64,
    wakes: AtomicU64,
    idle_stops: AtomicU64,
    fallbacks: AtomicU64,
    trigger_failures: AtomicU64,
    cold_starts: AtomicU64,
    failed_starts: AtomicU64,
    holds: AtomicU64,
    last_probe: Mutex<Option<LastProbe>>,
    last_cold_start: Mutex<Option<Duration>>,
}

impl Stats {
    pub(crate) fn probe(&self, service: &str, result: ProbeResult, took: Duration) {
        self.probes.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_probe) = Some(LastProbe {
            at: SystemTime::now(),
            result,
            duration: took,
        });
        metrics::probe(service, result.as_str(), took);
    }

    pub(crate) fn wake(&self, service: &str) {
        self.wakes.fetch_add(1, Ordering::Relaxed);
        metrics::wake(service);
    }

    pub(crate) fn idle_stop(&self, service: &str) {
        self.idle_stops.fetch_add(1, Ordering::Relaxed);
        metrics::idle_stop(service);
    }

    pub(crate) fn trigger_failed(&self, service: &str, trigger: &'static str) {
        self.trigger_failures.fetch_add(1, Ordering::Relaxed);
        metrics::trigger_failed(service, trigger);
    }

    pub(crate) fn fallback(&self, service: &str, reason: &'static str) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        metrics::fallback(service, reason);
    }

    pub(crate) fn cold_start(&self, service: &str, took: Duration) {
        self.cold_starts.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_cold_start) = Some(took);
        metrics::cold_start(service, took);
    }

    pub(crate) fn failed_start(&self, service: &str) {
        self.failed_starts.fetch_add(1, Ordering::Relaxed);
        metrics::failed_start(service);
    }

    pub(crate) fn hold(&self, service: &str) {
        self.holds.fetch_add(1, Ordering::Relaxed);
        metrics::hold(service);
    }

    pub(crate) fn counters(&self) -> Counters {
        Counters {
            probes: self.probes.load(Ordering::Relaxed),
            wakes: self.wakes.load(Ordering::Relaxed),
            idle_stops: self.idle_stops.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            trigger_failures: self.trigger_failures.load(Ordering::Relaxed),
            cold_starts: self.cold_starts.load(Ordering::Relaxed),
            failed_starts: self.failed_starts.load(Ordering::Relaxed),
            holds: self.holds.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn last_probe(&self) -> Option<LastProbe> {
        *lock(&self.last_probe)
    }

    pub(crate) fn last_cold_start(&self) -> Option<Duration> {
        *lock(&self.last_cold_start)
    }
}
