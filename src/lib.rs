//! On-demand service monitoring as Tower middleware.
//!
//! A [`MinMonitor`] holds named backend services, each with a URL to probe, a grace period and
//! optional triggers. Asking for a service's status answers a cached "up" when the last
//! successful probe (or [`MinMonitor::set_status_up`]) happened less than the grace period ago,
//! and probes now otherwise. A down status is never cached: a reported down always means that a
//! probe has just run and failed.
//!
//! # Start here
//!
//! - **In your own server** (axum, tonic, hyper): the [example](#example) at the end of this
//!   page, then [`layer`] for where the layer goes and [`MonitorLayer`] for its answers (hold
//!   mode, wake policy, waiting page). Each change of state is logged through `tracing`, naming
//!   the service: install a subscriber to see it.
//! - **In front of backends, with no code**: the `tower-monitor-gateway` program (feature
//!   `gateway`; `--help` says how to run it), configured by a JSON file that the `gateway`
//!   module describes (how the program behaves: GATEWAY.md, and every field with its default:
//!   CONFIG.md, both in the crate's source).
//! - **Your own proxy**: `proxy` (feature `proxy`), the gateway's reverse proxy as a Tower
//!   service, behind the layer.
//! - **From a configuration file**: [`config`] (a whole monitor from JSON).
//!
//! # Semantics, in short
//!
//! - Unreachable (refused, reset, timed out, unresolvable) is down, `Ok(false)`; a probe that
//!   fails for another reason is an error, [`MonitorError::Probe`].
//! - Concurrent callers of a service that is not cached up share one probe in flight. A caller
//!   that gives up (drops its future) cancels nothing: the probe finishes and caches its result.
//! - The layer's cached-up check is one atomic load: no lock, no allocation, no clock read. A
//!   timer task clears the cached up when the grace period ends, so the layer honours the grace
//!   period to about a millisecond (later if the runtime is starved; never a stale up if the
//!   runtime shuts down). [`MinMonitor::status`] also compares the cached up with the clock:
//!   asked after the grace period, it probes, even on a runtime too busy to have run the timer.
//! - Probing needs a Tokio runtime.
//! - Each service is in one [`ServiceState`]: `Down`, `Starting` (its `on_down` ran, once per
//!   cold start; the monitor polls it every 50 ms until it is up or `start_timeout` passes),
//!   `Up`, or `Stopping` (its `on_idle` ran; nothing is forwarded until a probe finds it down).
//!   Every trigger run is bounded by `trigger_timeout`.
//! - The [`layer`] runs, per request: status, `always`, then `on_up` and forward, or `on_down`
//!   (once per cold start) and a 503, or holds the request until the backend is up. Errors and failing triggers are 500s; the inner service is only
//!   called when the backend is up.
//!
//! # Where things are
//!
//! - [`probe`]: [`probe::Tcp`] (the default), [`probe::Http`] (status and body checks, `https`
//!   with the `rustls` feature), [`probe::Expect`] (a TCP dialogue), [`probe::from_fn`].
//! - [`trigger`]: [`trigger::Command`], [`trigger::Compound`], [`trigger::Delay`],
//!   [`trigger::RateLimit`], [`trigger::Webhook`] (`https` with the `rustls` feature),
//!   [`trigger::from_fn`]; on Unix
//!   [`trigger::Process`], a supervised backend program, with [`trigger::Supervisor`] to stop
//!   them all on exit; and [`MonitoredService::on_idle`] for idle shutdown.
//! - [`layer`]: [`MonitorLayer`] with its fallback answers, hold mode, wake policy and
//!   waiting page; where it goes in axum, hyper and tonic, and among tower middleware.
//! - [`config`]: a whole monitor from JSON, with your own trigger types.
//! - [`MinMonitor::snapshot`]: every service's state, last probe, requests and counters, to
//!   serialize (an example serves it from an axum app: `examples/snapshot.rs`).
//! - [`metrics`]: the metric names and labels (feature `metrics`), and `admin`: `/metrics`,
//!   `/status`, a status page and start/stop actions as one Tower service (feature `admin`).
//! - `proxy` (feature `proxy`): a reverse proxy as a Tower service (HTTP/1.1 and HTTP/2
//!   cleartext upstreams, WebSocket upgrades, forwarded headers, timeouts), to put behind the
//!   layer.
//! - `gateway` (feature `gateway`): the start-on-demand gateway (routes, serving, graceful
//!   shutdown) that the `tower-monitor-gateway` program runs.
//!
//! # Metrics
//!
//! With the `metrics` feature the monitor reports through the [`metrics`](https://docs.rs/metrics)
//! facade to whatever recorder you install: probes by result and their duration, state
//! transitions and the current state, cold-start durations, wakes, idle stops, trigger
//! failures by trigger, fallbacks by reason, and requests held and in flight (sampled when a
//! snapshot is taken, so that no request pays a facade call). The table of names and labels is
//! in [`metrics`]. Without a recorder, or without the feature, the path of a request that finds
//! its backend cached up is the same code: it records nothing.
//!
//! # Example
//!
//! ```no_run
//! use std::{sync::Arc, time::Duration};
//! use axum::{Router, routing::get};
//! use tower_monitor::{MinMonitor, MonitoredService, Url, trigger::Command};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let monitor = Arc::new(MinMonitor::new());
//! let backend = MonitoredService::new(Url::parse("http://127.0.0.1:8081/")?, Duration::from_secs(30))
//!     // Run once by the first request that finds it down; meanwhile requests get a 503.
//!     .on_down(Command::new("systemctl").args(["start", "app"]));
//! monitor.add("app", backend)?;
//! let app = Router::new().route("/", get(|| async { "hi" })).layer(monitor.layer("app")?);
//! axum::serve(tokio::net::TcpListener::bind("127.0.0.1:3000").await?, app).await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod activity;
// The gateway's feature includes the admin service's.
#[cfg(feature = "admin")]
mod accept_failed;
#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;
pub mod config;
mod deadline;
mod error;
#[cfg(feature = "fleet")]
#[cfg_attr(docsrs, doc(cfg(feature = "fleet")))]
pub mod fleet;
#[cfg(feature = "gateway")]
#[cfg_attr(docsrs, doc(cfg(feature = "gateway")))]
pub mod gateway;
mod idle;
pub mod layer;
mod lifecycle;
mod local_resources;
pub mod metrics;
mod monitor;
mod once_a_minute;
pub mod probe;
#[cfg(feature = "proxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
pub mod proxy;
mod redact;
mod registered;
mod service;
mod single_flight;
mod snapshot;
mod stats;
mod status;
mod sync;
pub mod trigger;

pub use activity::Activity;
pub use error::{BoxError, MonitorError, SharedError};
pub use futures::future::BoxFuture;
pub use layer::{MonitorLayer, MonitorService};
pub use lifecycle::ServiceState;
pub use monitor::MinMonitor;
pub use probe::Probe;
pub use service::{
    DEFAULT_PROBE_TIMEOUT, DEFAULT_START_TIMEOUT, DEFAULT_STOP_TIMEOUT, DEFAULT_TRIGGER_TIMEOUT,
    MonitoredService,
};
pub use snapshot::{Counters, LastProbe, ServiceSnapshot};
pub use stats::ProbeResult;
pub use trigger::Trigger;
pub use url::Url;

/// The README's examples, compiled and run as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
