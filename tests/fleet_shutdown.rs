//! Fleet mode on a replica that is shutting down (`MinMonitor::release_held`): it takes no
//! lease on the fleet's behalf any more, neither to take a start over nor for an idle stop.
//! What it would start it would then stop, or leave unwatched; a stop it began might not end
//! before it is gone. The replicas that stay do both.
#![cfg(feature = "fleet")]

mod fleet_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fleet_support::*;
use tower_monitor::{BoxError, MonitoredService, ServiceState, trigger};

/// The lease time of the test fleets (see [`fleet`]).
const LEASE: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_shutting_down_does_not_take_a_start_over() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::from_millis(100)).await;

    // Replica a will crash in the middle of its start.
    let a = Doomed::new(&redis, &backend, "a").await;
    let b = replica(
        fleet(&redis.url(), "t", "b"),
        service(&backend, Duration::from_secs(60), GRACE),
    );
    redis.wait_for_listeners("t", 2).await;

    // b learns that a is starting it, and waits for that start, watching the lease.
    a.start_followed_by(&[&b]).await;
    // b is shutting down; then a crashes, its lease neither renewed nor freed.
    b.release_held();
    a.crash();
    redis
        .until_gone("t:svc:app:lease", LEASE * 2, "a's lease did not expire")
        .await;
    // b looks at the lease as soon as it has expired (it knew how long it had left): well
    // within a lease time it would have taken it, and started the backend.
    tokio::time::sleep(LEASE).await;
    assert_eq!(
        backend.starts(),
        0,
        "the replica shutting down took the start over"
    );
    assert_eq!(
        redis
            .command(&["EXISTS", "t:svc:app:lease"])
            .await
            .as_deref(),
        Some(":0\r\n"),
        "the replica shutting down took the lease"
    );
    assert_eq!(state(&b), ServiceState::Starting);

    // A replica that stays starts it, once; b sees it up.
    let c = replica(
        fleet(&redis.url(), "t", "c"),
        service(&backend, Duration::from_secs(60), GRACE),
    );
    assert_eq!(request(&c, HOLD, 1).await, 200);
    assert_eq!(backend.starts(), 1);
    assert!(
        eventually(Duration::from_secs(5), || state(&b) == ServiceState::Up).await,
        "b still {:?}",
        state(&b)
    );
}

/// As [`service`], counting the runs of `on_idle` in `stops`.
fn counted(backend: &Arc<Backend>, idle: Duration, stops: &Arc<AtomicUsize>) -> MonitoredService {
    let (backend, stops) = (Arc::clone(backend), Arc::clone(stops));
    service(&backend, idle, GRACE).on_idle(
        idle,
        trigger::from_fn(move || {
            stops.fetch_add(1, Ordering::SeqCst);
            backend.stop();
            async { Ok::<(), BoxError>(()) }
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_shutting_down_leaves_the_idle_stop_to_the_others() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::ZERO).await;
    backend.start_now().await;
    // a's idle time is the shorter: it would come to the stop well before b (each leaves its
    // first idle stop to the starter, which neither is: the backend was up before).
    let (a_stops, b_stops) = (Arc::default(), Arc::default());
    let a = replica(
        fleet(&redis.url(), "t", "a"),
        counted(&backend, Duration::from_millis(600), &a_stops),
    );
    let b = replica(
        fleet(&redis.url(), "t", "b"),
        counted(&backend, Duration::from_millis(1500), &b_stops),
    );
    redis.wait_for_listeners("t", 2).await;
    a.release_held();
    for monitor in [&a, &b] {
        monitor.set_status_up("app").unwrap();
    }

    assert!(
        eventually(Duration::from_secs(10), || backend.stops() == 1).await,
        "the backend was not stopped"
    );
    assert_eq!(
        (
            a_stops.load(Ordering::SeqCst),
            b_stops.load(Ordering::SeqCst)
        ),
        (0, 1),
        "the replica shutting down ran the idle stop"
    );
    assert!(
        all_reach(&[a, b], ServiceState::Down, Duration::from_secs(10)).await,
        "every replica sees the backend down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_start_whose_lease_comes_after_the_release_is_handed_on() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::from_millis(100)).await;
    // a waits for Redis as long as the test needs (its lease call in flight across the
    // release); b is the usual replica.
    let a_started = Arc::new(AtomicUsize::new(0));
    let (counted, started) = (Arc::clone(&a_started), Arc::clone(&backend));
    let a_service =
        service(&backend, Duration::from_secs(60), GRACE).on_down(trigger::from_fn(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            started.start();
            async { Ok::<(), BoxError>(()) }
        }));
    let a = replica(
        fleet(&redis.url(), "t", "a").redis_timeout(Duration::from_secs(10)),
        a_service,
    );
    let b = replica(
        fleet(&redis.url(), "t", "b"),
        service(&backend, Duration::from_secs(60), GRACE),
    );
    redis.wait_for_listeners("t", 2).await;

    // a's request starts the backend; its lease call waits on a frozen Redis while a's held
    // requests are released (the gateway shutting down), and gets the lease after.
    redis.freeze();
    let a_request = Arc::clone(&a);
    let held = tokio::spawn(async move { request(&a_request, None, 1).await });
    let starting = eventually(Duration::from_secs(5), || {
        state(&a) == ServiceState::Starting
    })
    .await;
    a.release_held();
    redis.thaw();
    assert!(starting, "a's request did not start the backend");
    tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("a's request is answered")
        .unwrap();

    // The replica that stays starts it; a, shutting down, started nothing.
    assert!(
        eventually(Duration::from_secs(10), || state(&b) == ServiceState::Up).await,
        "b still {:?}: the start was not handed on",
        state(&b)
    );
    assert_eq!(
        a_started.load(Ordering::SeqCst),
        0,
        "the replica shutting down started the backend with the lease it got after its release"
    );
    assert_eq!(backend.starts(), 1);
    assert!(
        eventually(Duration::from_secs(10), || state(&a) == ServiceState::Up).await,
        "a still {:?}",
        state(&a)
    );
}
