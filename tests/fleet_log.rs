//! A Redis outage is logged once at warn, and its end once, however many calls fail meanwhile.
#![cfg(feature = "fleet")]

mod fleet_support;

use std::time::Duration;

use fleet_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_outage_is_one_warning_and_one_recovery_notice() {
    let outages = Outages::logged();
    let warned = || outages.warned("a");
    let recovered = || outages.recovered("a");

    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::ZERO).await;
    backend.start_now().await;
    let fleet = fleet(&redis.url(), "t", "a").heartbeat(Duration::from_millis(50));
    let monitor = replica(
        fleet,
        service(
            &backend,
            Duration::from_secs(60),
            Duration::from_millis(100),
        ),
    );
    assert_eq!(request(&monitor, None, 1).await, 200);
    assert_eq!(warned(), 0);

    for outage in 1..=2 {
        redis.kill();
        // Twenty heartbeats fail, and requests go on; one warning.
        for _ in 0..10 {
            assert_eq!(request(&monitor, None, 1).await, 200);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(warned(), outage, "one warning per outage");
        redis.restart().await;
        assert!(eventually(Duration::from_secs(10), || recovered() == outage).await);
        assert_eq!(warned(), outage);
    }
}
