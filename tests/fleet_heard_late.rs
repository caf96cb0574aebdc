//! What a replica learns late about another replica's stop. Announcements come over pub/sub,
//! which delivers each at most once and whenever the listener gets to it, and a probe may
//! finish long after it found the backend answering: neither may make a replica stop the
//! stopped backend again, nor call it up.
#![cfg(feature = "fleet")]

mod fleet_support;

use std::time::Duration;

use fleet_support::*;
use tower_monitor::ServiceState;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_missed_the_fleets_stop_does_not_stop_the_backend_again() {
    // c hears the fleet through a relay that holds its announcements back, as a busy or
    // reconnecting listener would get them.
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::ZERO).await;
    backend.start_now().await;
    let relay = Relay::start(&redis).await;
    // a stops the backend when asked (its own idle time is out of reach); c, which hears the
    // fleet through the relay, when its idle time has passed.
    let a = replica(
        fleet(&redis.url(), "t", "a"),
        service(&backend, Duration::from_secs(60), GRACE),
    );
    let c = replica(
        fleet(&relay.url(), "t", "c"),
        service(&backend, Duration::from_millis(800), GRACE),
    );
    redis.wait_for_listeners("t", 2).await;
    a.set_status_up("app").unwrap();
    c.set_status_up("app").unwrap();

    relay.deafen();
    assert!(a.stop("app").await.unwrap(), "a stops the backend");
    // a's stop is over (its lease freed, announcing "down"), and c has heard nothing of it.
    redis
        .until_gone(
            "t:svc:app:lease",
            Duration::from_secs(5),
            "a kept its lease",
        )
        .await;
    assert_eq!(backend.stops(), 1);
    assert_eq!(state(&c), ServiceState::Up);

    // c's idle time passes: the fleet tells it the backend was stopped, and it stops nothing.
    assert!(
        eventually(Duration::from_secs(5), || state(&c) == ServiceState::Down).await,
        "c still believes the backend {}",
        state(&c)
    );
    assert_eq!(backend.stops(), 1, "c stopped the stopped backend again");
}
