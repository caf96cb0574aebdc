//! Fleet mode with a Redis that answers too late: a lease script that runs after the call that
//! sent it gave up.
#![cfg(feature = "fleet")]

mod fleet_support;

use std::sync::Arc;
use std::time::Duration;

use fleet_support::*;
use tower_monitor::ServiceState;

/// A stop asked while Redis is frozen gives up after its timeout; the lease script it sent still
/// runs when Redis thaws. That lease has no holder: it is freed (and the others told the stop
/// is off) as soon as Redis answers, not left to expire while the other replicas, told
/// "stopping", refuse the backend that is still up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_taken_after_its_call_gave_up_is_freed_when_redis_answers() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let running = Backend::new(Duration::ZERO).await;
    let replicas: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|id| {
            replica(
                fleet(&redis.url(), "t", id),
                service(&running, Duration::from_secs(60), GRACE),
            )
        })
        .collect();
    redis.wait_for_listeners("t", 2).await;
    // A start under the lease first: Redis then knows the script, as it does once any replica
    // has taken a lease (a script Redis does not know fails, late or not).
    for monitor in &replicas {
        assert_eq!(request(monitor, HOLD, 1).await, 200);
    }
    assert_eq!(running.starts(), 1);
    // The starts' leases are freed (a replica that took the lease as the other's "up" came in
    // frees it too, and its token counts): the stop's acquire finds the lease free, and its
    // token is the next one.
    redis
        .until_gone(
            "t:svc:app:lease",
            Duration::from_secs(5),
            "the start's lease was not freed",
        )
        .await;
    let before = fence(&redis).await.expect("a start took a token");

    redis.freeze();
    let first = Arc::clone(&replicas[0]);
    let stopped = tokio::time::timeout(
        Duration::from_secs(5),
        async move { first.stop("app").await },
    );
    assert!(
        !matches!(stopped.await.expect("the stop waited on Redis"), Ok(true)),
        "no stop without the lease"
    );
    redis.thaw();

    // The late acquire has run once the fence counts its token.
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while fence(&redis).await != Some(before + 1) {
        assert!(
            tokio::time::Instant::now() < until,
            "the stop's acquire never reached Redis"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Left to expire, the lease would live 1.5 s here (15 s by default).
    redis
        .until_gone(
            "t:svc:app:lease",
            Duration::from_secs(1),
            "the lease nobody holds was left to expire",
        )
        .await;
    assert_eq!(running.stops(), 0);
    let second = &replicas[1];
    let served = eventually(Duration::from_secs(5), || {
        second
            .state("app")
            .is_ok_and(|state| state == ServiceState::Up)
    });
    assert!(
        served.await,
        "the other replica still thinks the backend is stopping"
    );
    assert_eq!(request(second, None, 1).await, 200);
}

/// The last token the service's fence handed out.
async fn fence(redis: &RedisServer) -> Option<u64> {
    let reply = redis.command(&["GET", "t:svc:app:fence"]).await?;
    reply.strip_prefix('$')?.split("\r\n").nth(1)?.parse().ok()
}
