//! [`MinMonitor::snapshot`]: what every service is doing right now, in one call, ready to
//! serialize (the admin service's `GET /status` is this, as JSON).

use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

use crate::monitor::MinMonitor;
use crate::stats::ProbeResult;

pub use crate::stats::Counters;

/// One service, as [`MinMonitor::snapshot`] saw it.
///
/// Serialized (with `serde`), times are RFC 3339 strings in UTC with milliseconds, durations
/// are seconds (a float), and the state is lower case:
///
/// ```json
/// {"name":"app","state":"up","since":"2026-11-25T21:40:03.120Z",
///  "last_probe":{"at":"2026-11-25T21:40:03.120Z","result":"up","duration":0.0004},
///  "requests_in_flight":0,"requests_held":0,"idle_deadline":"2026-11-25T21:55:03.200Z",
///  "last_cold_start":1.62,
///  "counters":{"probes":3,"wakes":1,"idle_stops":0,"fallbacks":2,"trigger_failures":0,"cold_starts":1,
///  "failed_starts":0,"holds":0}}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ServiceSnapshot {
    /// The name the service was added under.
    pub name: String,
    /// Its state.
    #[serde(serialize_with = "state_name")]
    pub state: crate::ServiceState,
    /// Since when it has been in that state (for a service still in its first state, since it
    /// was added).
    #[serde(serialize_with = "time")]
    pub since: SystemTime,
    /// The last probe that finished, if any.
    pub last_probe: Option<LastProbe>,
    /// Requests in flight through the layer now; `None` for a service without `on_idle`, whose
    /// requests are not counted (counting costs each request two shared atomic writes).
    pub requests_in_flight: Option<usize>,
    /// Requests held now (hold mode), waiting for the backend to come up.
    pub requests_held: usize,
    /// When `on_idle` runs if no request comes before; `None` without `on_idle`, while a
    /// request is in flight, or while the service is not up (down, starting or stopping).
    ///
    /// Known as soon as the last request ends (requests read no clock, so the idle time counts
    /// from the idle watch's first look after that end: see
    /// [`MonitoredService::on_idle`](crate::MonitoredService::on_idle)): the earliest the stop
    /// can come, between the idle time and 1.25 times it after the last request ended, which
    /// is when it comes, but for the timer's lateness (a millisecond, more on a busy
    /// runtime). Also `None` in the rare case where the watch has stopped looking, its Tokio
    /// runtime shut down, until the service is next seen up on one.
    #[serde(serialize_with = "optional_time")]
    pub idle_deadline: Option<SystemTime>,
    /// How long the last cold start (Starting → Up) took.
    #[serde(serialize_with = "optional_seconds")]
    pub last_cold_start: Option<Duration>,
    /// Counts since the service was added.
    pub counters: Counters,
}

/// The last probe of a service.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LastProbe {
    /// When it finished.
    #[serde(serialize_with = "time")]
    pub at: SystemTime,
    /// What it found.
    pub result: ProbeResult,
    /// How long it took.
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
}

impl MinMonitor {
    /// A snapshot of every service, sorted by name: state and since when, the last probe,
    /// requests in flight and held, the idle deadline, and counters.
    ///
    /// Taking it also sets the sampled gauges `tower_monitor_requests_held` and
    /// `tower_monitor_requests_in_flight` (see [`metrics`](crate::metrics)).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_monitor::{MinMonitor, MonitoredService, ServiceState, Url};
    ///
    /// let monitor = MinMonitor::new();
    /// # let url = Url::parse("http://127.0.0.1:9/").unwrap();
    /// monitor.add("app", MonitoredService::new(url, Duration::from_secs(30))).unwrap();
    /// let snapshot = monitor.snapshot();
    /// assert_eq!(snapshot[0].name, "app");
    /// assert_eq!(snapshot[0].state, ServiceState::Down);
    /// assert_eq!(snapshot[0].counters.probes, 0);
    /// let json = serde_json::to_string(&snapshot).unwrap();
    /// assert!(json.contains(r#""state":"down""#));
    /// ```
    pub fn snapshot(&self) -> Vec<ServiceSnapshot> {
        let mut names = self.names();
        names.sort();
        names
            .into_iter()
            .filter_map(|name| self.lookup(&name).ok())
            .map(|registered| {
                let seen = observe(&registered);
                crate::metrics::requests_now(
                    &registered.name,
                    seen.requests_held,
                    seen.requests_in_flight,
                );
                // Sampled too: a service that has not changed state since it was added (down
                // from the start, say) would otherwise have no state series at all.
                crate::metrics::state_now(&registered.name, seen.state.as_str());
                crate::metrics::counters_now(
                    &registered.name,
                    registered.service.on_down.is_some(),
                    registered.service.on_idle.is_some(),
                );
                ServiceSnapshot {
                    name: registered.name.to_string(),
                    state: seen.state,
                    since: seen.since,
                    last_probe: seen.last_probe,
                    requests_in_flight: seen.requests_in_flight,
                    requests_held: seen.requests_held,
                    idle_deadline: seen.idle_deadline,
                    last_cold_start: seen.last_cold_start,
                    counters: seen.counters,
                }
            })
            .collect()
    }
}

/// What one registered service reports of itself (see `Registered::observe`).
pub(crate) struct Observed {
    pub(crate) state: crate::ServiceState,
    pub(crate) since: SystemTime,
    pub(crate) last_probe: Option<LastProbe>,
    pub(crate) requests_in_flight: Option<usize>,
    pub(crate) requests_held: usize,
    pub(crate) idle_deadline: Option<SystemTime>,
    pub(crate) last_cold_start: Option<Duration>,
    pub(crate) counters: Counters,
}

fn state_name<S: Serializer>(state: &crate::ServiceState, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(state.as_str())
}

pub(crate) fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

fn time<S: Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*at))
}

fn optional_time<S: Serializer>(at: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => time(at, s),
        None => s.serialize_none(),
    }
}

fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn optional_seconds<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => seconds(d, s),
        None => s.serialize_none(),
    }
}

/// Reads one service's lifecycle, counters and request counts.
fn observe(registered: &crate::registered::Registered) -> Observed {
    let (now, wall) = (tokio::time::Instant::now(), SystemTime::now());
    // The lifecycle keeps monotonic instants; a snapshot speaks wall-clock time.
    let wall_clock = |at: tokio::time::Instant| match at.checked_duration_since(now) {
        Some(ahead) => wall + ahead,
        None => wall - now.saturating_duration_since(at),
    };
    let stats = &registered.stats;
    let counters = stats.counters();
    let (state, lasted) = registered.lifecycle.snapshot();
    Observed {
        state,
        since: wall - lasted,
        last_probe: stats.last_probe(),
        requests_in_flight: registered.idle.as_ref().map(|idle| idle.in_flight()),
        requests_held: registered.held(),
        idle_deadline: registered
            .idle
            .as_ref()
            .and_then(|idle| idle.idle_deadline(state == crate::ServiceState::Up, now))
            .map(wall_clock),
        last_cold_start: stats.last_cold_start(),
        counters,
    }
}
