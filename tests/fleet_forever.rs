//! Fleet mode with durations that mean "never" (`Duration::MAX` as the idle time, as the lease
//! time): what the fleet asks Redis to keep is capped, since Redis refuses an expiry past the
//! end of its clock. Had a call failed for it, the replica would count Redis as unreachable
//! and start the backend on its own; here the fleet works as with any other duration.
#![cfg(feature = "fleet")]

mod fleet_support;

use std::time::Duration;

use fleet_support::*;
use tower_monitor::ServiceState;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_time_that_means_never_leaves_the_fleet_working() {
    let outages = Outages::logged();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let ids = ["idle-a", "idle-b", "idle-c"];
    let backend = Backend::new(Duration::from_millis(300)).await;
    let replicas = replicas(&redis, "t", &ids, |_| {
        service(&backend, Duration::MAX, GRACE)
    })
    .await;

    herd(&replicas, 30).await;
    assert_eq!(backend.starts(), 1, "one on_down across the fleet");
    // Never idle, so stopped by hand (once the start's lease is freed: a stop is refused
    // while another replica holds it): the stop's mark is kept as long as the activity would
    // be, capped.
    redis
        .until_gone(
            "t:svc:app:lease",
            Duration::from_secs(5),
            "the start's lease was not freed",
        )
        .await;
    assert_eq!(
        replicas[0].stop("app").await.map_err(|e| e.to_string()),
        Ok(true)
    );
    assert!(
        all_reach(&replicas, ServiceState::Down, Duration::from_secs(10)).await,
        "every replica sees the backend down"
    );
    let ttl = redis.command(&["PTTL", "t:svc:app:stopped"]).await;
    let ttl: i64 = ttl
        .as_deref()
        .and_then(|reply| reply.trim().strip_prefix(':')?.parse().ok())
        .expect("a stopped mark");
    assert!(ttl > 365 * 24 * 3600 * 1000, "the mark lasts {ttl} ms");
    herd(&replicas, 30).await;
    assert_eq!(backend.starts(), 2, "one on_down across the fleet again");
    for id in ids {
        assert_eq!(outages.warned(id), 0, "{id} found Redis unreachable");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_time_that_means_never_leaves_the_fleet_working() {
    let outages = Outages::logged();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let ids = ["lease-a", "lease-b", "lease-c"];
    let backend = Backend::new(Duration::from_millis(300)).await;
    let replicas: Vec<_> = ids
        .iter()
        .map(|id| {
            let fleet = fleet(&redis.url(), "t", id).lease_ttl(Duration::MAX);
            replica(fleet, service(&backend, Duration::from_secs(60), GRACE))
        })
        .collect();
    redis.wait_for_listeners("t", ids.len()).await;

    herd(&replicas, 30).await;
    assert_eq!(backend.starts(), 1, "one on_down across the fleet");
    for id in ids {
        assert_eq!(outages.warned(id), 0, "{id} found Redis unreachable");
    }
    // The start's lease was taken, and freed at its up.
    redis
        .until_gone(
            "t:svc:app:lease",
            Duration::from_secs(5),
            "the lease was not freed",
        )
        .await;
}
