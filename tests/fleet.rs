//! Fleet mode with a real Redis: three replicas (monitors) in front of one backend.
#![cfg(feature = "fleet")]

mod fleet_support;

use std::sync::Arc;
use std::time::Duration;

use fleet_support::*;
use tower_monitor::{MinMonitor, ServiceState};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_herd_spread_over_three_replicas_starts_the_backend_once() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::from_millis(500)).await;
    let replicas = three(&redis, &backend, Duration::from_secs(60)).await;

    // 90 requests, round-robin over the replicas, arriving over about half a second.
    herd(&replicas, 90).await;
    assert_eq!(backend.starts(), 1, "one on_down across the fleet");
    for monitor in &replicas {
        assert_eq!(state(monitor), ServiceState::Up);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_on_one_replica_keeps_the_fleet_from_stopping_then_one_stop() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let idle = Duration::from_millis(600);
    let backend = Backend::new(Duration::ZERO).await;
    backend.start_now().await;
    let replicas = three(&redis, &backend, idle).await;
    for monitor in &replicas {
        monitor.set_status_up("app").unwrap();
    }

    // Replica b streams for 2.5 s, four times the idle time; a and c see no request at all.
    let b = Arc::clone(&replicas[1]);
    let stream = tokio::spawn(async move { request(&b, None, 26).await });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(backend.stops(), 0, "stopped while replica b was streaming");
    assert_eq!(stream.await.unwrap(), 200);

    // Now the whole fleet is idle: exactly one stop, and every replica learns it.
    assert!(eventually(Duration::from_secs(10), || backend.stops() == 1).await);
    tokio::time::sleep(idle * 4).await;
    assert_eq!(backend.stops(), 1, "one stop across the fleet");
    for monitor in &replicas {
        assert_ne!(
            state(monitor),
            ServiceState::Up,
            "a replica still believes it up"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn short_requests_between_looks_keep_the_fleet_from_stopping() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let idle = Duration::from_millis(1200);
    let backend = Backend::new(Duration::ZERO).await;
    backend.start_now().await;
    let replicas = three(&redis, &backend, idle).await;
    for monitor in &replicas {
        monitor.set_status_up("app").unwrap();
    }
    // Replica b answers a quick request every 50 ms for over three idle times: none is in
    // flight when its idle watch looks (every 300 ms), but b is never idle.
    let started = tokio::time::Instant::now();
    while started.elapsed() < idle * 3 + idle / 2 {
        assert_eq!(request(&replicas[1], None, 1).await, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(backend.stops(), 0, "stopped while replica b was serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_fleet_stops_once_and_a_later_request_starts_it_once() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let idle = Duration::from_millis(500);
    let backend = Backend::new(Duration::from_millis(200)).await;
    backend.start_now().await;
    let replicas = three(&redis, &backend, idle).await;
    for monitor in &replicas {
        assert_eq!(request(monitor, None, 1).await, 200);
    }
    assert!(eventually(Duration::from_secs(10), || backend.stops() == 1).await);
    assert!(
        all_reach(&replicas, ServiceState::Down, Duration::from_secs(10)).await,
        "every replica sees the backend down after the stop"
    );
    assert_eq!(backend.stops(), 1);

    // A request on each replica at once: one start.
    let wave: Vec<_> = replicas
        .iter()
        .map(|monitor| {
            let monitor = Arc::clone(monitor);
            tokio::spawn(async move { request(&monitor, HOLD, 1).await })
        })
        .collect();
    for answer in wave {
        assert_eq!(answer.await.unwrap(), 200);
    }
    assert_eq!(backend.starts(), 1, "woken once after the stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_at_all_a_replica_serves_and_starts_on_its_own() {
    // Nothing listens on this port: Redis is down from the start.
    let url = format!("redis://127.0.0.1:{}/", free_port().await);
    let backend = Backend::new(Duration::from_millis(100)).await;
    let monitor = replica(
        fleet(&url, "t", "alone"),
        service(&backend, Duration::from_secs(60), GRACE),
    );
    let answer = tokio::time::timeout(Duration::from_secs(5), request(&monitor, HOLD, 1));
    assert_eq!(answer.await.unwrap(), 200);
    assert_eq!(backend.starts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_up_found_by_one_replica_is_used_by_the_others_without_probing() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::ZERO).await;
    backend.start_now().await;
    let replicas = three(&redis, &backend, Duration::from_secs(60)).await;
    // Replica a probes (one connection to the backend) and announces the up.
    assert_eq!(request(&replicas[0], None, 1).await, 200);
    // The probe's connection is complete before the backend's accept loop counts it.
    assert!(eventually(Duration::from_secs(5), || backend.accepts() == 1).await);
    assert!(all_reach(&replicas, ServiceState::Up, Duration::from_secs(5)).await);
    for monitor in &replicas[1..] {
        assert_eq!(request(monitor, None, 1).await, 200);
    }
    assert_eq!(
        backend.accepts(),
        1,
        "b and c forwarded on a's up, without probing"
    );
}

#[tokio::test]
async fn joining_checks_its_settings_and_happens_once() {
    let url = "redis://127.0.0.1:1/";
    let monitor = MinMonitor::new();
    let err = monitor
        .join_fleet(fleet(url, "t", "two words"))
        .unwrap_err();
    assert!(err.to_string().contains("fleet.replica"), "{err}");
    let err = monitor
        .join_fleet(fleet(url, "t", "a").lease_ttl(Duration::ZERO))
        .unwrap_err();
    assert!(err.to_string().contains("fleet.lease_ttl"), "{err}");
    monitor.join_fleet(fleet(url, "t", "a")).unwrap();
    let err = monitor.join_fleet(fleet(url, "t", "b")).unwrap_err();
    assert!(matches!(
        err,
        tower_monitor::fleet::FleetError::AlreadyJoined
    ));
}

#[test]
fn joining_needs_a_runtime() {
    let err = MinMonitor::new()
        .join_fleet(fleet("redis://127.0.0.1:1/", "t", "a"))
        .unwrap_err();
    assert!(matches!(err, tower_monitor::fleet::FleetError::NoRuntime));
}
