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
///  "counters":{"probes":3,"wakes":1,"idle_stops":0,"fallbacks":2,"trigger_failures":0,"cold_starts":1}}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ServiceSnapshot {
    /// The name the service was added under.
    pub name: String,
    /// Its state.
    #[serde(serialize_with = "state_name")]
    pub state: crate::ServiceState,
    /// Since when it has been in that state; `None` if it has not changed state since it was
    /// added.
    #[serde(serialize_with = "optional_time")]
    pub since: Option<SystemTime>,
    /// The last probe that finished, if any.
    pub last_probe: Option<LastProbe>,
    /// Requests in flight through the layer now; `None` for a service without `on_idle`, whose
    /// requests are not counted (counting costs each request two shared atomic writes).
    pub requests_in_flight: Option<usize>,
    /// Requests held now (hold mode), waiting for the backend to come up.
    pub requests_held: usize,
    /// When `on_idle` runs if no request comes before; `None` without `on_idle` or while a
    /// request is in flight.
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
    pub(crate) since: Option<SystemTime>,
    pub(crate) last_probe: Option<LastProbe>,
    pub(crate) requests_in_flight: Option<usize>,
    pub(crate) requests_held: usize,
    pub(crate) idle_deadline: Option<SystemTime>,
    pub(crate) last_cold_start: Option<Duration>,
    pub(crate) counters: Counters,
}

/// The state as the JSON, the metrics' labels and the status page spell it.
pub(crate) fn state_label(state: crate::ServiceState) -> &'static str {
    use crate::ServiceState::*;
    match state {
        Down => "down",
        Starting => "starting",
        Up => "up",
        Stopping => "stopping",
        #[allow(unreachable_patterns)]
        _ => "unknown",
    }
}

fn state_name<S: Serializer>(state: &crate::ServiceState, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(state_label(*state))
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

// Until the lifecycle lands: the state is what the status cache says, and nothing else is
// recorded yet. Replaced by `Registered::observe` once the lifecycle keeps states and stats.
fn observe(registered: &crate::registered::Registered) -> Observed {
    let state = if registered.cache.is_up() {
        crate::ServiceState::Up
    } else {
        crate::ServiceState::Down
    };
    Observed {
        state,
        since: None,
        last_probe: None,
        requests_in_flight: None,
        requests_held: 0,
        idle_deadline: None,
        last_cold_start: None,
        counters: Counters::default(),
    }
}

/// Stand-in for the lifecycle's `ServiceState` until it lands (same pinned shape).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceState {
    /// Not running.
    Down,
    /// `on_down` ran; waiting for it to come up.
    Starting,
    /// Up.
    Up,
    /// `on_idle` ran; waiting for it to go down.
    Stopping,
}
