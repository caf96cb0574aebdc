//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade (cargo feature `metrics`).
//!
//! Install any recorder (for instance `metrics-exporter-prometheus`; the `admin` feature's
//! admin service does it for you) and the monitor reports:
//!
//! | name | type | labels | moves when |
//! |------|------|--------|------------|
//! | `tower_monitor_probes_total` | counter | `service`, `result` (`up`, `down`, `error`, `local_resources`: the probe could not be made for want of this process's own file descriptors, local ports or memory, and the state was left as it was) | a probe finishes |
//! | `tower_monitor_probe_duration_seconds` | histogram | `service`, `result` | a probe finishes: how long it took |
//! | `tower_monitor_transitions_total` | counter | `service`, `from`, `to` (states: `down`, `starting`, `up`, `stopping`) | the service changes state |
//! | `tower_monitor_state` | gauge | `service`, `state` | 1 for the state the service is in, 0 for the others; set at each transition and sampled |
//! | `tower_monitor_cold_start_seconds` | histogram | `service` | Starting → Up: how long the start lasted |
//! | `tower_monitor_wakes_total` | counter | `service` | `on_down` runs (once per cold start) |
//! | `tower_monitor_idle_stops_total` | counter | `service` | `on_idle` runs |
//! | `tower_monitor_failed_starts_total` | counter | `service` | a start ends without the backend up (`on_down` failed, the start timeout passed, the program ended first), or the backend is down again soon after it came up: the starts the backoff counts (in fleet mode, a start is counted by the replica that led it) |
//! | `tower_monitor_holds_total` | counter | `service` | a request is held until the backend is up (hold mode, `hold_when_gone`), once per hold, whatever its end: a request held for a start, then held again by `hold_when_gone` as its backend was gone, counts twice |
//! | `tower_monitor_trigger_failures_total` | counter | `service`, `trigger` (`on_down`, `on_idle`, `on_up`, `always`) | a trigger fails, times out or panics |
//! | `tower_monitor_fallbacks_total` | counter | `service`, `reason` (`not_ready`, `error`, `timeout`, `start_failed`, `local_resources`: its status could not be known for want of this process's own file descriptors, local ports or memory, the backend not last up) | a request is answered by the fallback |
//! | `tower_monitor_requests_held` | gauge | `service` | sampled: requests held now (hold mode) |
//! | `tower_monitor_requests_in_flight` | gauge | `service` | sampled: requests in flight now (services with `on_idle`) |
//! | `tower_monitor_proxy_failures_total` | counter | `service`, `reason` (`unreachable`, `local_resources`, `kept_closed`, `timeout`, `head_too_large`, `failed`, `busy`, `client_body`, `client_slow`, `bad_path`, `bad_host`, `not_forwarded`, `not_allowed`, `request_head_too_large`, `body_timeout`) | the [proxy](crate::proxy) answers itself: the backend did not (502, 504), was at its limit of requests in flight for too long (503), could not be reached for want of this process's own file descriptors, local ports or memory (`local_resources`, 503: the backend is not marked down), or the request was refused (400, 405, 408, 431, 501); or it cut an answer whose body the backend stopped sending (`body_timeout`); counted even when a [`MonitorLayer`](crate::MonitorLayer) in front answers in its place (a gone backend's fallback) |
//!
//! Durations are in seconds. Every event metric is recorded where the event happens, never once
//! per request that finds the backend cached up: on that path the layer makes no facade call
//! at all, with or without a recorder (the `layer` bench measures it).
//!
//! The two "now" gauges are **sampled**, not kept up to date request by request, because a
//! facade call per request would cost every cached-up request a lookup in the recorder. They are
//! set from the monitor's own counters whenever a snapshot is taken
//! ([`MinMonitor::snapshot`](crate::MinMonitor::snapshot); the admin service takes one for each
//! `GET /metrics`, so each scrape sees current values). With another exporter, call
//! `snapshot()` before each export, or on a timer. Each snapshot also sets the state gauge, so
//! a service that has kept its first state since it was added has its series too.
//!
//! The event counters a service can move start at 0 with its first snapshot (so at the first
//! scrape), rather than appearing with their first event: Prometheus' `increase()` and
//! `rate()` need a sample before the first event to see it, so an alert on the first failed
//! start of a service would otherwise miss it. Those are `wakes`, `failed_starts` and the
//! `on_down` trigger failures of a service with `on_down`; `idle_stops` and the `on_idle`
//! trigger failures of one with `on_idle`; and for every service `holds` and `fallbacks` by
//! each reason.
//!
//! `describe()` (feature `metrics`) registers each metric's description and unit with the
//! installed recorder.
//!
//! ```
//! // The names are constants, with or without the feature.
//! assert_eq!(tower_monitor::metrics::PROBES, "tower_monitor_probes_total");
//! ```

use std::time::Duration;

/// Counter: probes by `service` and `result`.
pub const PROBES: &str = "tower_monitor_probes_total";
/// Histogram (seconds): probe duration by `service` and `result`.
pub const PROBE_DURATION: &str = "tower_monitor_probe_duration_seconds";
/// Counter: state transitions by `service`, `from` and `to`.
pub const TRANSITIONS: &str = "tower_monitor_transitions_total";
/// Gauge: 1 for the `state` a `service` is in, 0 for the others.
pub const STATE: &str = "tower_monitor_state";
/// Histogram (seconds): how long Starting lasted before Up, by `service`.
pub const COLD_START: &str = "tower_monitor_cold_start_seconds";
/// Counter: `on_down` runs by `service`.
pub const WAKES: &str = "tower_monitor_wakes_total";
/// Counter: `on_idle` runs by `service`.
pub const IDLE_STOPS: &str = "tower_monitor_idle_stops_total";
/// Counter: failed starts by `service`.
pub const FAILED_STARTS: &str = "tower_monitor_failed_starts_total";
/// Counter: requests held (hold mode) by `service`.
pub const HOLDS: &str = "tower_monitor_holds_total";
/// Counter: failed trigger runs by `service` and `trigger`.
pub const TRIGGER_FAILURES: &str = "tower_monitor_trigger_failures_total";
/// Counter: fallback answers by `service` and `reason`.
pub const FALLBACKS: &str = "tower_monitor_fallbacks_total";
/// Gauge (sampled): requests held now, by `service`.
pub const REQUESTS_HELD: &str = "tower_monitor_requests_held";
/// Gauge (sampled): requests in flight now, by `service`.
pub const REQUESTS_IN_FLIGHT: &str = "tower_monitor_requests_in_flight";
/// Counter: the proxy's own answers (the backend did not answer, or the request was refused),
/// by `service` and `reason`.
pub const PROXY_FAILURES: &str = "tower_monitor_proxy_failures_total";

/// The states, as the `state`, `from` and `to` labels spell them.
#[cfg(feature = "metrics")]
const STATES: [&str; 4] = ["down", "starting", "up", "stopping"];

/// The fallback's reasons, as the `reason` label spells them.
#[cfg(feature = "metrics")]
const FALLBACK_REASONS: [&str; 5] = [
    "not_ready",
    "error",
    "timeout",
    "start_failed",
    "local_resources",
];

/// Registers every metric's description and unit with the recorder installed now. Call it
/// once, after installing the recorder (the admin service does).
///
/// ```
/// tower_monitor::metrics::describe(); // no recorder: nothing happens
/// ```
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(PROBES, "Probes finished, by result.");
    describe_histogram!(PROBE_DURATION, Unit::Seconds, "How long probes took.");
    describe_counter!(TRANSITIONS, "State changes of services.");
    describe_gauge!(
        STATE,
        "1 for the state the service is in, 0 for the others."
    );
    describe_histogram!(
        COLD_START,
        Unit::Seconds,
        "How long services were starting before they came up."
    );
    describe_counter!(WAKES, "Runs of on_down (starts on demand).");
    describe_counter!(IDLE_STOPS, "Runs of on_idle (idle stops).");
    describe_counter!(
        FAILED_STARTS,
        "Starts that ended without the backend up, or with it down again soon after."
    );
    describe_counter!(HOLDS, "Requests held until the backend was up (hold mode).");
    describe_counter!(
        TRIGGER_FAILURES,
        "Trigger runs that failed, timed out or panicked."
    );
    describe_counter!(FALLBACKS, "Requests answered by the fallback, by reason.");
    describe_gauge!(
        REQUESTS_HELD,
        "Requests held until the backend is up (sampled)."
    );
    describe_gauge!(
        REQUESTS_IN_FLIGHT,
        "Requests in flight to the backend (sampled)."
    );
    describe_counter!(
        PROXY_FAILURES,
        "Requests the proxy answered itself (the backend did not, or the request was refused), by reason."
    );
}

#[cfg(feature = "metrics")]
mod record {
    use super::*;
    use ::metrics::{counter, gauge, histogram};

    pub(crate) fn probe(service: &str, result: &'static str, took: Duration) {
        let service = service.to_owned();
        counter!(PROBES, "service" => service.clone(), "result" => result).increment(1);
        histogram!(PROBE_DURATION, "service" => service, "result" => result)
            .record(took.as_secs_f64());
    }

    pub(crate) fn transition(service: &str, from: &'static str, to: &'static str) {
        counter!(TRANSITIONS, "service" => service.to_owned(), "from" => from, "to" => to)
            .increment(1);
        state_now(service, to);
    }

    pub(crate) fn state_now(service: &str, now: &'static str) {
        for state in STATES {
            let value = if state == now { 1.0 } else { 0.0 };
            gauge!(STATE, "service" => service.to_owned(), "state" => state).set(value);
        }
    }

    /// Registers the event counters `service` can move at 0 (see the module docs).
    pub(crate) fn counters_now(service: &str, starts: bool, stops: bool) {
        let service = || service.to_owned();
        if starts {
            counter!(WAKES, "service" => service()).increment(0);
            counter!(FAILED_STARTS, "service" => service()).increment(0);
            counter!(TRIGGER_FAILURES, "service" => service(), "trigger" => "on_down").increment(0);
        }
        if stops {
            counter!(IDLE_STOPS, "service" => service()).increment(0);
            counter!(TRIGGER_FAILURES, "service" => service(), "trigger" => "on_idle").increment(0);
        }
        counter!(HOLDS, "service" => service()).increment(0);
        for reason in FALLBACK_REASONS {
            counter!(FALLBACKS, "service" => service(), "reason" => reason).increment(0);
        }
    }

    pub(crate) fn failed_start(service: &str) {
        counter!(FAILED_STARTS, "service" => service.to_owned()).increment(1);
    }

    pub(crate) fn hold(service: &str) {
        counter!(HOLDS, "service" => service.to_owned()).increment(1);
    }

    pub(crate) fn cold_start(service: &str, took: Duration) {
        histogram!(COLD_START, "service" => service.to_owned()).record(took.as_secs_f64());
    }

    pub(crate) fn wake(service: &str) {
        counter!(WAKES, "service" => service.to_owned()).increment(1);
    }

    pub(crate) fn idle_stop(service: &str) {
        counter!(IDLE_STOPS, "service" => service.to_owned()).increment(1);
    }

    pub(crate) fn trigger_failed(service: &str, trigger: &'static str) {
        counter!(TRIGGER_FAILURES, "service" => service.to_owned(), "trigger" => trigger)
            .increment(1);
    }

    pub(crate) fn fallback(service: &str, reason: &'static str) {
        counter!(FALLBACKS, "service" => service.to_owned(), "reason" => reason).increment(1);
    }

    #[cfg(feature = "proxy")]
    pub(crate) fn proxy_failure(service: &str, reason: &'static str) {
        counter!(PROXY_FAILURES, "service" => service.to_owned(), "reason" => reason).increment(1);
    }

    pub(crate) fn requests_now(service: &str, held: usize, in_flight: Option<usize>) {
        gauge!(REQUESTS_HELD, "service" => service.to_owned()).set(held as f64);
        if let Some(in_flight) = in_flight {
            gauge!(REQUESTS_IN_FLIGHT, "service" => service.to_owned()).set(in_flight as f64);
        }
    }
}

// Without the feature every recording point is an empty inline function: no code at all.
#[cfg(not(feature = "metrics"))]
#[allow(unused_variables, dead_code)]
mod record {
    use super::*;

    #[inline(always)]
    pub(crate) fn probe(service: &str, result: &'static str, took: Duration) {}
    #[inline(always)]
    pub(crate) fn transition(service: &str, from: &'static str, to: &'static str) {}
    #[inline(always)]
    pub(crate) fn state_now(service: &str, now: &'static str) {}

    pub(crate) fn cold_start(service: &str, took: Duration) {}
    #[inline(always)]
    pub(crate) fn counters_now(service: &str, starts: bool, stops: bool) {}
    #[inline(always)]
    pub(crate) fn failed_start(service: &str) {}
    #[inline(always)]
    pub(crate) fn hold(service: &str) {}
    #[inline(always)]
    pub(crate) fn wake(service: &str) {}
    #[inline(always)]
    pub(crate) fn idle_stop(service: &str) {}
    #[inline(always)]
    pub(crate) fn trigger_failed(service: &str, trigger: &'static str) {}
    #[inline(always)]
    pub(crate) fn fallback(service: &str, reason: &'static str) {}
    #[inline(always)]
    pub(crate) fn requests_now(service: &str, held: usize, in_flight: Option<usize>) {}
    #[inline(always)]
    pub(crate) fn proxy_failure(service: &str, reason: &'static str) {}
}

#[cfg(feature = "proxy")]
pub(crate) use record::proxy_failure;
/// The recording points the lifecycle, probes, triggers and the layer call at events.
pub(crate) use record::{
    cold_start, counters_now, failed_start, fallback, hold, idle_stop, probe, requests_now,
    state_now, transition, trigger_failed, wake,
};
