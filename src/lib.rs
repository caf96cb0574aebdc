//! On-demand service monitoring as Tower middleware.
//!
//! A [`MinMonitor`] holds named backend services, each with a URL to probe, a grace period and
//! optional triggers. Asking for a service's status answers a cached "up" when the last
//! successful probe (or [`MinMonitor::set_status_up`]) happened less than the grace period ago,
//! and probes now otherwise. A down status is never cached: a reported down always means that a
//! probe has just run and failed.
//!
//! # Semantics, in short
//!
//! - Unreachable (refused, reset, timed out, unresolvable) is down, `Ok(false)`; a probe that
//!   fails for another reason is an error, [`MonitorError::Probe`].
//! - Concurrent callers of a service that is not cached up share one probe in flight. A caller
//!   that gives up (drops its future) cancels nothing: the probe finishes and caches its result.
//! - The cached-up check is one atomic load: no lock, no allocation, no clock read. A timer
//!   clears the cached up when the grace period ends, to millisecond granularity (see
//!   [`MonitoredService::new`] and the crate's `status` module notes in the README).
//! - Probing needs a Tokio runtime.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower_monitor::{MinMonitor, MonitoredService, Url};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let monitor = MinMonitor::new();
//! // Nothing listens on the discard port of this machine: the probe finds it down.
//! let url = Url::parse("http://127.0.0.1:9/")?;
//! monitor.add("app", MonitoredService::new(url, Duration::from_secs(30)))?;
//! assert!(!monitor.status("app").await?);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
pub mod layer;
mod monitor;
pub mod probe;
mod registered;
mod service;
mod single_flight;
mod status;
pub mod trigger;

pub use error::{BoxError, MonitorError, SharedError};
pub use futures::future::BoxFuture;
pub use layer::{MonitorLayer, MonitorService};
pub use monitor::MinMonitor;
pub use probe::Probe;
pub use service::{DEFAULT_PROBE_TIMEOUT, MonitoredService};
pub use trigger::Trigger;
pub use url::Url;
