//! Fleet mode: several replicas (gateways, or copies of one app) in front of the same backends
//! share each backend's lifecycle through Redis or Valkey. Behind the `fleet` cargo feature.
//!
//! Without it, each replica's [`MinMonitor`](crate::MinMonitor) runs `on_down` on its own (N
//! starts of one VM), stops the backend when *it* is idle (while another replica streams from
//! it), and probes on its own. With a fleet joined ([`MinMonitor::join_fleet`](crate::MinMonitor::join_fleet)):
//!
//! - **One start, one stop.** `on_down` and `on_idle` run under a lease per service: taken
//!   with set-if-absent and an expiry, renewed while the start or stop lasts, carrying a
//!   fencing token (`INCR`) that the release and renewal scripts check, so a holder that lost
//!   the lease can neither extend it nor announce anything. The other replicas learn the
//!   Starting / Stopping state (an announcement on the fleet's channel, and the lease itself)
//!   and hold requests or answer the fallback. If the holder vanishes, another replica (not one
//!   shutting down) takes the start over when the lease expires. A stop that ended with the
//!   backend down is marked in Redis until the next lease, so that a replica that has not heard
//!   of it yet (the announcements are pub/sub: late, or lost while a listener reconnects) does
//!   not stop the backend again.
//! - **Fleet-wide idleness.** The idle stop runs only if no replica has had a request in flight
//!   for the idle time. Each replica publishes its activity from its heartbeat, never per
//!   request: at most once per quarter of the idle time per service, and at once when its
//!   in-flight count goes 0→1 after a quiet spell. The stop comes one idle time after the
//!   fleet's last request ended, to within a heartbeat.
//! - **Shared status.** An up found by one replica's probe is announced; the others cache it
//!   for their grace period instead of probing.
//! - **Faults.** Every Redis call is bounded ([`Fleet::redis_timeout`], 200 ms by default). When
//!   Redis cannot be reached, each replica serves on its local state (a cold start runs its own
//!   `on_down`, and so does a replica that was waiting for another's start), logs one warning
//!   per outage, and never runs an idle stop, since it cannot show
//!   the fleet is idle. The heartbeat notices Redis coming back (a restarted Redis included) and
//!   the fleet converges without a restart.
//!
//! The client is the `redis` crate (maintained by the Redis organisation, the most used Rust
//! client, works with Valkey), with its connection manager, which reconnects by itself and
//! multiplexes every call of a replica over one connection. `fred` would do as well; `redis`
//! was chosen for its smaller dependency tree and its plain scripting API.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tower_monitor::fleet::{Fleet, FleetConfig};
//! use tower_monitor::{BoxError, MinMonitor, MonitoredService, Url, trigger};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let monitor = Arc::new(MinMonitor::new());
//! let start = trigger::from_fn(|| async { Ok::<(), BoxError>(()) });
//! let stop = trigger::from_fn(|| async { Ok::<(), BoxError>(()) });
//! let backend = MonitoredService::new(Url::parse("http://127.0.0.1:8081/")?, Duration::from_secs(10))
//!     .on_down(start)
//!     .on_idle(Duration::from_secs(300), stop);
//! monitor.add("app", backend)?;
//! monitor.join_fleet(Fleet::new(&FleetConfig::new("redis://127.0.0.1:6379/").prefix("shop"))?)?;
//! # Ok(())
//! # }
//! ```

mod activity;
mod config;
mod error;
mod follow;
mod heard;
mod lease;
mod member;
mod remote;
mod scripts;
mod shared;
mod starter;
mod store;
mod tasks;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use config::{DEFAULT_PREFIX, FleetConfig};
pub use error::FleetError;
pub(crate) use lease::Refused;
pub(crate) use member::Member;
pub(crate) use shared::Shared;

/// How long a Redis call may take before the replica goes on without it, unless set otherwise.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(200);
/// How long a lease lasts without renewal (its holder renews it at a third of that).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// The longest interval between two heartbeats of a replica (shorter if an idle time needs it).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

/// Whether any monitor in this process has joined a fleet: the in-flight hook is one load
/// of this flag when none has.
static IN_USE: AtomicBool = AtomicBool::new(false);

#[inline]
pub(crate) fn in_use() -> bool {
    IN_USE.load(Ordering::Relaxed)
}

/// One replica's membership of a fleet, before it is joined with
/// [`MinMonitor::join_fleet`](crate::MinMonitor::join_fleet). One `Fleet` per monitor: each is
/// one replica (so it is not `Clone`: two monitors with one replica id would ignore each
/// other's announcements as their own).
///
/// ```
/// use std::time::Duration;
/// use tower_monitor::fleet::{Fleet, FleetConfig};
///
/// let fleet = Fleet::new(&FleetConfig::new("redis://127.0.0.1:6379/"))
///     .unwrap()
///     .replica("gateway-a")
///     .lease_ttl(Duration::from_secs(10));
/// assert_eq!(fleet.replica_id(), "gateway-a");
/// ```
#[derive(Debug)]
pub struct Fleet {
    config: FleetConfig,
    replica: String,
    lease_ttl: Duration,
    redis_timeout: Duration,
    heartbeat: Duration,
}

impl Fleet {
    /// A replica of the fleet `config` describes, with a replica id made up of the process id
    /// and a random number. Fails if the URL or prefix is unusable (the error names the field).
    /// Connects nothing yet: joining does, and a Redis that is down then is not an error.
    ///
    /// ```
    /// use tower_monitor::fleet::{Fleet, FleetConfig};
    ///
    /// assert!(Fleet::new(&FleetConfig::new("redis://127.0.0.1:6379/")).is_ok());
    /// assert!(Fleet::new(&FleetConfig::new("redis://127.0.0.1:6379/").prefix("")).is_err());
    /// ```
    pub fn new(config: &FleetConfig) -> Result<Self, FleetError> {
        config.validate()?;
        Ok(Self {
            config: config.clone(),
            replica: default_replica_id(),
            lease_ttl: DEFAULT_LEASE_TTL,
            redis_timeout: DEFAULT_REDIS_TIMEOUT,
            heartbeat: DEFAULT_HEARTBEAT,
        })
    }

    /// Names this replica (unique in the fleet; no whitespace), for logs and for Redis.
    ///
    /// ```
    /// # use tower_monitor::fleet::{Fleet, FleetConfig};
    /// let fleet = Fleet::new(&FleetConfig::new("redis://127.0.0.1:6379/")).unwrap().replica("a");
    /// assert_eq!(fleet.replica_id(), "a");
    /// ```
    pub fn replica(mut self, id: impl Into<String>) -> Self {
        self.replica = id.into();
        self
    }

    /// How long a lease lasts unless renewed (default [`DEFAULT_LEASE_TTL`]): how long the
    /// fleet waits before another replica takes over a start whose replica vanished.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_monitor::fleet::{Fleet, FleetConfig};
    /// let fleet = Fleet::new(&FleetConfig::new("redis://127.0.0.1:6379/")).unwrap()
    ///     .lease_ttl(Duration::from_secs(5));
    /// # let _ = fleet;
    /// ```
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How long any Redis call may take (default [`DEFAULT_REDIS_TIMEOUT`]).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_monitor::fleet::{Fleet, FleetConfig};
    /// let fleet = Fleet::new(&FleetConfig::new("redis://127.0.0.1:6379/")).unwrap()
    ///     .redis_timeout(Duration::from_millis(100));
    /// # let _ = fleet;
    /// ```
    pub fn redis_timeout(mut self, timeout: Duration) -> Self {
        self.redis_timeout = timeout;
        self
    }

    /// The longest interval between two heartbeats (default [`DEFAULT_HEARTBEAT`]); a service
    /// whose idle time is shorter than four of them shortens it to a quarter of that idle time.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_monitor::fleet::{Fleet, FleetConfig};
    /// let fleet = Fleet::new(&FleetConfig::new("redis://127.0.0.1:6379/")).unwrap()
    ///     .heartbeat(Duration::from_secs(2));
    /// # let _ = fleet;
    /// ```
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// This replica's id.
    ///
    /// ```
    /// # use tower_monitor::fleet::{Fleet, FleetConfig};
    /// let fleet = Fleet::new(&FleetConfig::new("redis://127.0.0.1:6379/")).unwrap();
    /// assert!(!fleet.replica_id().is_empty());
    /// ```
    pub fn replica_id(&self) -> &str {
        &self.replica
    }

    /// Checks the settings and starts the background tasks (heartbeat, listener).
    pub(crate) fn start(self) -> Result<Arc<Shared>, FleetError> {
        config::check_word("fleet.replica", &self.replica)?;
        let positive = |field: &'static str, value: Duration| {
            if value < Duration::from_millis(1) {
                return Err(FleetError::Invalid {
                    field,
                    value: format!("{value:?}"),
                    reason: "must be at least 1 ms".to_string(),
                });
            }
            Ok(())
        };
        positive("fleet.lease_ttl", self.lease_ttl)?;
        positive("fleet.redis_timeout", self.redis_timeout)?;
        positive("fleet.heartbeat", self.heartbeat)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| FleetError::NoRuntime)?;
        let invalid = |reason: redis::RedisError| FleetError::Invalid {
            field: "fleet.redis",
            value: crate::redact::url_text(&self.config.redis),
            reason: reason.to_string(),
        };
        let client = redis::Client::open(self.config.redis.as_str()).map_err(invalid)?;
        let _entered = runtime.enter();
        let store = store::Store::new(
            client,
            self.redis_timeout,
            self.config.prefix.clone(),
            self.replica.clone(),
        )
        .map_err(invalid)?;
        let shared = Arc::new(Shared::new(store, self.lease_ttl, self.heartbeat));
        tracing::info!(replica = %self.replica, prefix = %self.config.prefix, "fleet: joined");
        runtime.spawn(tasks::heartbeat(
            Arc::downgrade(&shared),
            Arc::clone(&shared.kick),
        ));
        runtime.spawn(tasks::listen(Arc::downgrade(&shared)));
        Ok(shared)
    }
}

fn default_replica_id() -> String {
    use std::hash::BuildHasher;
    let random =
        std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now());
    format!("{}-{:08x}", std::process::id(), random as u32)
}
