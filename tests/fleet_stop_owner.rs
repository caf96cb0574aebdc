//! A backend that only the replica which started it can stop (a `process` trigger: the program
//! is that gateway's child, and every other replica's `process_stop` has nothing to stop): the
//! fleet's idle stop must go to that replica, not to whichever replica's idle watch asks first.
#![cfg(feature = "fleet")]

mod fleet_support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fleet_support::*;
use tower_monitor::{BoxError, MonitoredService, ServiceState, trigger};

/// As [`service`], but `on_down` makes replica `me` the backend's owner, and `on_idle` fails
/// on any other replica, as `process_stop` does ("not running here").
fn owned_service(
    backend: &Arc<Backend>,
    owner: &Arc<Owner>,
    me: usize,
    idle: Duration,
) -> MonitoredService {
    let (up, started) = (Arc::clone(backend), Arc::clone(owner));
    MonitoredService::new(backend.url(), GRACE)
        .on_down(trigger::from_fn(move || {
            *started.replica.lock().unwrap() = Some(me);
            up.start();
            async { Ok::<(), BoxError>(()) }
        }))
        .on_idle(idle, owner.stop_where_it_runs(backend, me))
        .probe_timeout(Duration::from_millis(500))
        .stop_timeout(Duration::from_secs(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_idle_stop_goes_to_the_replica_that_started_the_backend() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let idle = Duration::from_millis(600);
    let backend = Backend::new(Duration::from_millis(100)).await;
    let owner = Arc::new(Owner::default());
    let replicas = replicas(&redis, "t", &["a", "b", "c"], |i| {
        owned_service(&backend, &owner, i, idle)
    })
    .await;

    // Each round a different replica wakes the backend; then the other two serve a request
    // each, so that they are the last active: their idle watches come to the stop as soon as
    // the starter's does.
    for (round, starter) in [0, 1, 2].into_iter().enumerate() {
        assert_eq!(request(&replicas[starter], HOLD, 1).await, 200);
        assert_eq!(owner.runner(), Some(starter));
        let others: Vec<_> = (0..3)
            .filter(|&i| i != starter)
            .map(|i| {
                let monitor = Arc::clone(&replicas[i]);
                tokio::spawn(async move { request(&monitor, HOLD, 3).await })
            })
            .collect();
        for answer in others {
            assert_eq!(answer.await.unwrap(), 200);
        }
        assert!(
            eventually(Duration::from_secs(10), || backend.stops() == round + 1).await,
            "round {round}: the backend was not stopped (stops tried elsewhere: {})",
            owner.stops_elsewhere.load(Ordering::SeqCst)
        );
        assert!(
            all_reach(&replicas, ServiceState::Down, Duration::from_secs(10)).await,
            "round {round}: every replica sees the backend down"
        );
    }
    assert_eq!(backend.starts(), 3, "one start per round");
    assert_eq!(
        owner.stops_elsewhere.load(Ordering::SeqCst),
        0,
        "a replica that did not start the backend took the stop (and could not do it)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_leaves_the_stop_to_the_starter_still_shows_its_requests() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let idle = Duration::from_millis(1200);
    let backend = Backend::new(Duration::from_millis(100)).await;
    let owner = Arc::new(Owner::default());
    let replicas = replicas(&redis, "t", &["a", "b"], |i| {
        owned_service(&backend, &owner, i, idle)
    })
    .await;
    // a starts the backend, b serves a request, and a another one later: b's idle watch comes
    // to the stop first, and leaves it to a. From then on b serves a quick request every
    // 50 ms: its watch must go on looking, so that a, when its turn comes, sees b busy.
    assert_eq!(request(&replicas[0], HOLD, 1).await, 200);
    assert_eq!(request(&replicas[1], HOLD, 1).await, 200);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(request(&replicas[0], None, 1).await, 200);
    // b's watch looks every quarter idle time: it has come to the stop by now.
    tokio::time::sleep(idle + idle / 4 - Duration::from_millis(650)).await;
    let started = tokio::time::Instant::now();
    while started.elapsed() < idle * 3 {
        assert_eq!(request(&replicas[1], None, 1).await, 200, "stopped under b");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(backend.stops(), 0, "stopped while replica b was serving");
}
