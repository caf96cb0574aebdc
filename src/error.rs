use std::sync::Arc;

/// A boxed error, the error type of [`Probe`](crate::Probe) and [`Trigger`](crate::Trigger).
///
/// ```
/// use tower_monitor::BoxError;
///
/// let err: BoxError = "backend refused to start".into();
/// assert_eq!(err.to_string(), "backend refused to start");
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error shared by every caller that waited on the same probe or trigger run.
pub type SharedError = Arc<dyn std::error::Error + Send + Sync>;

/// What can go wrong when registering or asking about a monitored service.
///
/// ```
/// use tower_monitor::{MinMonitor, MonitorError};
///
/// let monitor = MinMonitor::new();
/// let err = monitor.set_status_up("nope").unwrap_err();
/// assert!(matches!(err, MonitorError::UnknownService(ref name) if name == "nope"));
/// assert_eq!(err.to_string(), "no service named \"nope\" is registered");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// A service with this name was already added.
    #[error("a service named {0:?} is already registered")]
    DuplicateServiceRegistration(String),

    /// A service name that is empty or holds a control character (a newline would split the
    /// log lines that name the service).
    #[error("service name {0:?} is not usable: it must be non-empty, without control characters")]
    InvalidServiceName(String),

    /// No service with this name was ever added.
    #[error("no service named {0:?} is registered")]
    UnknownService(String),

    /// A service was added with a dependency ([`MonitoredService::depends_on`](crate::MonitoredService::depends_on))
    /// that is not registered: dependencies are added first.
    #[error(
        "service {service:?} depends on {dependency:?}, which is not registered: add {dependency:?} first"
    )]
    UnknownDependency {
        /// The service being added.
        service: String,
        /// The dependency it names.
        dependency: String,
    },

    /// The probe failed for a reason other than the service being unreachable
    /// (for example a custom probe's own error, or a probe that panicked).
    #[error("probe of service {service:?} failed: {source}")]
    Probe {
        /// The service whose probe failed.
        service: String,
        /// What the probe reported.
        #[source]
        source: SharedError,
    },

    /// The service's URL cannot be probed (no host, or no port and no known scheme).
    #[error("URL {url:?} cannot be probed: {reason}")]
    InvalidUrl {
        /// The rejected URL, as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A trigger run on request ([`MinMonitor::start`](crate::MinMonitor::start),
    /// [`MinMonitor::stop`](crate::MinMonitor::stop)) failed, timed out or panicked.
    #[error("`{trigger}` of service {service:?} failed: {source}")]
    Trigger {
        /// The service.
        service: String,
        /// Which trigger: `on_down` or `on_idle`.
        trigger: &'static str,
        /// What went wrong.
        #[source]
        source: SharedError,
    },

    /// [`MinMonitor::start`](crate::MinMonitor::start) of a service that has no `on_down`:
    /// nothing can start it, so nothing was run and its state is unchanged.
    #[error("service {0:?} has no `on_down`: there is nothing to start it with")]
    NothingToStart(String),

    /// In fleet mode, a stop asked on request ([`MinMonitor::stop`](crate::MinMonitor::stop))
    /// that the fleet could not agree to now, so nothing was run and the backend stays up:
    /// Redis cannot be reached, or another replica is starting or stopping the backend.
    #[error("service {service:?} was not stopped: {reason}")]
    FleetRefused {
        /// The service.
        service: String,
        /// Why, in words for an operator.
        reason: &'static str,
    },

    /// A probe had to start but the caller is not inside a Tokio runtime.
    #[error("service {0:?} must be probed from within a Tokio runtime")]
    NoRuntime(String),
}
