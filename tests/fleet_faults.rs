//! Fleet mode when things go wrong, with a real Redis: Redis killed, frozen or gone; a replica
//! gone while it holds the lease; a late lease holder; a failed start, counted once. The
//! follower that finds the lease freed is in `fleet_takeover_ended.rs`.
#![cfg(feature = "fleet")]

mod fleet_support;

use std::sync::Arc;
use std::time::Duration;

use fleet_support::*;
use tower_monitor::{BoxError, MinMonitor, MonitoredService, ServiceState, trigger};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_mid_run_serves_on_local_state_and_stops_nothing_until_it_is_back() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let idle = Duration::from_millis(500);
    let backend = Backend::new(Duration::ZERO).await;
    backend.start_now().await;
    let replicas: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|id| {
            let service = service(&backend, idle, Duration::from_millis(300));
            replica(fleet(&redis.url(), "t", id), service)
        })
        .collect();
    redis.wait_for_listeners("t", 3).await;
    for monitor in &replicas {
        assert_eq!(request(monitor, None, 1).await, 200);
    }

    redis.kill();
    // Requests keep being served (the cached up expires meanwhile: probes, no Redis)...
    for round in 0..6 {
        for monitor in &replicas {
            let answer = tokio::time::timeout(Duration::from_secs(2), request(monitor, None, 1));
            assert_eq!(
                answer.await.expect("a request waited on Redis"),
                200,
                "round {round}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...and with no request for four idle times, nothing is stopped: idleness cannot be shown.
    tokio::time::sleep(idle * 4).await;
    assert_eq!(backend.stops(), 0, "stopped while Redis was down");
    for monitor in &replicas {
        assert_eq!(state(monitor), ServiceState::Up);
    }

    // Redis is back (empty, as after a restart): the fleet converges and stops once.
    redis.restart().await;
    assert!(eventually(Duration::from_secs(15), || backend.stops() == 1).await);
    tokio::time::sleep(idle * 3).await;
    assert_eq!(backend.stops(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_gone_while_holding_the_lease_is_taken_over_after_the_lease_expires() {
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
    let c = replica(
        fleet(&redis.url(), "t", "c"),
        service(&backend, Duration::from_secs(60), GRACE),
    );
    redis.wait_for_listeners("t", 3).await;

    // b and c learn that a is starting it, and do not start it themselves.
    a.start_followed_by(&[&b]).await;
    assert_eq!(request(&c, None, 1).await, 503);
    assert_eq!(backend.starts(), 0);

    // Replica a crashes: its tasks are gone, its lease is neither renewed nor freed.
    a.crash();
    // Within the lease time (1.5 s) and a bit, b or c takes the start over: once.
    let answers = tokio::join!(request(&b, HOLD, 1), request(&c, HOLD, 1));
    assert_eq!(answers, (200, 200));
    assert_eq!(backend.starts(), 1, "one takeover");
}

/// Replicas a and b of one service, and a request to a that has begun a's start: a's
/// `on_down` waits for the gate answered, then fails; b's is `b` (see [`service`]).
async fn a_failing_start(
    redis: &RedisServer,
    backend: &Arc<Backend>,
    b: MonitoredService,
) -> (
    Arc<tokio::sync::Notify>,
    Arc<MinMonitor>,
    Arc<MinMonitor>,
    tokio::task::JoinHandle<u16>,
) {
    let gate = Arc::new(tokio::sync::Notify::new());
    let opened = Arc::clone(&gate);
    let failing =
        MonitoredService::new(backend.url(), GRACE).on_down(trigger::from_fn(move || {
            let opened = Arc::clone(&opened);
            async move {
                opened.notified().await;
                Err::<(), BoxError>("boot failed".into())
            }
        }));
    let a = replica(fleet(&redis.url(), "t", "a"), failing);
    let b = replica(fleet(&redis.url(), "t", "b"), b);
    redis.wait_for_listeners("t", 2).await;
    let a_request = Arc::clone(&a);
    let first = tokio::spawn(async move { request(&a_request, None, 1).await });
    (gate, a, b, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_lease_holder_can_neither_free_the_lease_nor_announce() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::ZERO).await;
    // a's on_down waits for the test, then fails: a's start ends (Starting → Down) and it tries
    // to free its lease and announce "down".
    let (gate, a, b, first) = a_failing_start(
        &redis,
        &backend,
        service(&backend, Duration::from_secs(60), GRACE),
    )
    .await;
    let lease = ["GET", "t:svc:app:lease"];
    let mine =
        |reply: &Option<String>| reply.as_deref().is_some_and(|r| r.contains("starting:1:a"));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !mine(&redis.command(&lease).await) {
        assert!(
            std::time::Instant::now() < deadline,
            "a never took the lease"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        eventually(Duration::from_secs(5), || state(&b)
            == ServiceState::Starting)
        .await
    );

    // Meanwhile a's lease "expired" and replica z took the next one (token 2).
    redis
        .command(&["SET", "t:svc:app:fence", "2"])
        .await
        .unwrap();
    redis
        .command(&["SET", "t:svc:app:lease", "starting:2:z", "PX", "60000"])
        .await
        .unwrap();

    gate.notify_one();
    assert_eq!(first.await.unwrap(), 500, "a's on_down failed");
    assert!(eventually(Duration::from_secs(5), || state(&a) == ServiceState::Down).await);
    // a's release was refused: z's lease stands, and b heard no "down" from a.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = redis.command(&lease).await.unwrap();
    assert!(held.contains("starting:2:z"), "the lease is {held:?}");
    assert_eq!(
        state(&b),
        ServiceState::Starting,
        "b believed a late holder's announcement"
    );
}

/// A start one replica leads, and that fails, is one failed start for the fleet: counted by
/// the replica that led it, not again by each replica that followed it (which still goes down
/// and backs off), so that a sum over the replicas counts each start once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_start_is_counted_by_the_replica_that_led_it_only() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::ZERO).await;
    let (gate, a, b, first) = a_failing_start(
        &redis,
        &backend,
        service(&backend, Duration::from_secs(60), GRACE),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(5), || state(&b)
            == ServiceState::Starting)
        .await,
        "b never heard a's start"
    );
    gate.notify_one();
    assert_eq!(first.await.unwrap(), 500, "a's on_down failed");
    assert!(
        eventually(Duration::from_secs(5), || state(&b) == ServiceState::Down).await,
        "b never heard that a's start failed"
    );
    let failed = |monitor: &MinMonitor| monitor.snapshot()[0].counters.failed_starts;
    assert_eq!(failed(&a), 1, "the replica that led the start");
    assert_eq!(failed(&b), 0, "b counted a start it did not lead");
    assert_eq!(backend.starts(), 0);
}

/// A follower whose own start timeout passes while another replica still leads the start
/// goes down and backs off, but does not count a failed start: the start is the leader's,
/// which may yet come up, and is counted there if it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_followers_own_start_timeout_is_not_counted_a_failed_start() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::ZERO).await;
    let impatient =
        service(&backend, Duration::from_secs(60), GRACE).start_timeout(Duration::from_millis(500));
    let (gate, a, b, first) = a_failing_start(&redis, &backend, impatient).await;
    assert!(
        eventually(Duration::from_secs(5), || state(&b)
            == ServiceState::Starting)
        .await,
        "b never heard a's start"
    );
    assert!(
        eventually(Duration::from_secs(5), || state(&b) == ServiceState::Down).await,
        "b's start timeout never passed"
    );
    assert_eq!(state(&a), ServiceState::Starting, "a's start goes on");
    let failed = |monitor: &MinMonitor| monitor.snapshot()[0].counters.failed_starts;
    assert_eq!(failed(&b), 0, "b counted a start a still leads");
    gate.notify_one();
    assert_eq!(first.await.unwrap(), 500, "a's on_down failed");
    assert_eq!(failed(&a), 1, "the replica that led the start");
    assert_eq!(failed(&b), 0, "b counted a start it did not lead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_redis_delays_no_cached_request_and_stops_nothing() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let idle = Duration::from_millis(500);
    // The requests below are to stay cached up however slow a loaded machine makes the test
    // (a request past the grace probes the backend again, which is not what this is about).
    let cached = Duration::from_secs(60);
    let running = Backend::new(Duration::ZERO).await;
    running.start_now().await;
    let cold = Backend::new(Duration::from_millis(100)).await;
    let replicas: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|id| {
            let monitor = replica(
                fleet(&redis.url(), "t", id),
                service(&running, idle, cached),
            );
            monitor
                .add("cold", service(&cold, Duration::from_secs(60), GRACE))
                .unwrap();
            monitor
        })
        .collect();
    redis.wait_for_listeners("t", 2).await;
    for monitor in &replicas {
        assert_eq!(request(monitor, None, 1).await, 200);
    }

    // Redis stops answering (connections open, no reply): every call runs into its timeout.
    redis.freeze();
    for monitor in &replicas {
        let answer = tokio::time::timeout(Duration::from_secs(1), request(monitor, None, 1));
        assert_eq!(
            answer.await.expect("a cached-up request waited on Redis"),
            200
        );
    }
    // A cold start still happens: the lease attempt gives up after its timeout, and the
    // replica starts the backend on its own.
    let first = Arc::clone(&replicas[0]);
    let started = tokio::time::timeout(
        Duration::from_secs(5),
        async move { first.start("cold").await },
    );
    started
        .await
        .expect("the cold start waited on Redis")
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || cold.starts() == 1).await);
    tokio::time::sleep(idle * 4).await;
    assert_eq!(
        running.stops(),
        0,
        "stopped while Redis could not show the fleet idle"
    );

    redis.thaw();
    assert!(eventually(Duration::from_secs(15), || running.stops() == 1).await);
}

/// A start taken over from a replica gone while it held the lease is watched as a local one:
/// a backend program that exits before it comes up ends it there and then, not at the start
/// timeout (a minute here).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_taken_over_start_whose_program_exits_at_once_ends_at_once() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::ZERO).await;
    let a = Doomed::new(&redis, &backend, "a").await;
    let program = trigger::Process::builder("sh")
        .args(["-c", "exit 3"])
        .build();
    let b = replica(
        fleet(&redis.url(), "t", "b"),
        MonitoredService::new(backend.url(), GRACE)
            .on_down(program.clone())
            .start_timeout(Duration::from_secs(60)),
    );
    redis.wait_for_listeners("t", 2).await;

    a.start_followed_by(&[&b]).await;
    a.crash();
    // After the lease time (1.5 s), b takes the start over and runs the program, which exits.
    assert!(eventually(Duration::from_secs(10), || program.starts() == 1).await);
    assert!(
        eventually(Duration::from_secs(5), || state(&b) == ServiceState::Down).await,
        "still {:?}",
        state(&b)
    );
    assert_eq!(program.starts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_stop_while_redis_is_down_is_refused_saying_why() {
    use tower::ServiceExt;
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::ZERO).await;
    backend.start_now().await;
    let service = service(&backend, Duration::from_secs(60), Duration::from_secs(30));
    let monitor = replica(fleet(&redis.url(), "s", "a"), service);
    redis.wait_for_listeners("s", 1).await;
    assert_eq!(request(&monitor, None, 1).await, 200);
    let admin = tower_monitor::admin::Admin::new(Arc::clone(&monitor), "secret");
    let stop = || {
        http::Request::post("/services/app/stop")
            .header("authorization", "Bearer secret")
            .body(())
            .unwrap()
    };

    redis.kill();
    let refused = monitor.stop("app").await.unwrap_err();
    assert!(
        matches!(refused, tower_monitor::MonitorError::FleetRefused { .. }),
        "{refused:?}"
    );
    assert_eq!(
        refused.to_string(),
        "service \"app\" was not stopped: the fleet's Redis cannot be reached"
    );
    // The admin action says the same, as a temporary failure (it was a 409 saying "up").
    let answer = admin.clone().oneshot(stop()).await.unwrap();
    assert_eq!(answer.status(), 503);
    let body = http_body_util::BodyExt::collect(answer.into_body()).await;
    assert_eq!(
        body.unwrap().to_bytes(),
        "not stopped: the fleet's Redis cannot be reached\n"
    );
    assert_eq!(backend.stops(), 0, "stopped while Redis was down");
    assert_eq!(state(&monitor), ServiceState::Up);

    // Redis back: the same stop goes through.
    redis.restart().await;
    let mut answer = admin.clone().oneshot(stop()).await.unwrap();
    for _ in 0..100 {
        if answer.status() == 200 {
            break;
        }
        // The replica finds Redis back at its next look.
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = admin.clone().oneshot(stop()).await.unwrap();
    }
    assert_eq!(answer.status(), 200);
    assert!(eventually(Duration::from_secs(5), || backend.stops() == 1).await);
}
