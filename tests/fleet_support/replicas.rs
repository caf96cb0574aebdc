//! Three replicas of one fleet in front of one backend, as most fleet tests start.

use std::sync::Arc;
use std::time::Duration;

use tower_monitor::MinMonitor;

use super::{Backend, RedisServer, fleet, replica, service};

/// The grace period of every replica's service.
pub const GRACE: Duration = Duration::from_secs(2);
/// How long a request is held at most.
pub const HOLD: Option<Duration> = Some(Duration::from_secs(10));

/// Three replicas of the fleet "t", each with the same service in front of `backend`, all
/// listening.
pub async fn three(
    redis: &RedisServer,
    backend: &Arc<Backend>,
    idle: Duration,
) -> Vec<Arc<MinMonitor>> {
    let replicas = ["a", "b", "c"]
        .into_iter()
        .map(|id| replica(fleet(&redis.url(), "t", id), service(backend, idle, GRACE)))
        .collect();
    redis.wait_for_listeners("t", 3).await;
    replicas
}
