//! [`FleetError`]: what can go wrong when setting up a fleet (never while serving).

/// What can go wrong when building a [`Fleet`](super::Fleet) or joining one. Once joined, Redis
/// failures are never errors: the replica serves on its local state and logs the outage.
///
/// ```
/// use tower_monitor::fleet::{Fleet, FleetConfig, FleetError};
///
/// let err = Fleet::new(&FleetConfig::new("not a url")).unwrap_err();
/// assert!(matches!(err, FleetError::Invalid { field: "fleet.redis", .. }));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// A setting is not usable.
    #[error("{field} = {value:?} is invalid: {reason}")]
    Invalid {
        /// The setting, as a configuration names it (`fleet.redis`, `fleet.prefix`, …).
        field: &'static str,
        /// The value given.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The monitor is in a fleet already.
    #[error("this monitor has joined a fleet already")]
    AlreadyJoined,
    /// Joining starts background tasks: it must be done inside a Tokio runtime.
    #[error("a fleet must be joined from within a Tokio runtime")]
    NoRuntime,
}
