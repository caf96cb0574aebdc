//! Fleet mode after a rolling update: the entries of replicas gone for good (dropped without a
//! word) drop out of a service's activity and idle times, a live replica's stay, and a replica
//! that joins later is not warned of a gone one's idle time.
#![cfg(feature = "fleet")]

mod common;
mod fleet_support;

use std::time::Duration;

use fleet_support::*;

const PREFIX: &str = "gone";

/// Waits (bounded, looking every 20 ms: Redis tells no one) until `check` holds for what the
/// fleet `prefix` lists of `replica`; false if it never did.
async fn until_listed(
    redis: &RedisServer,
    prefix: &str,
    replica: &str,
    within: Duration,
    check: impl Fn((bool, bool)) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while !check(redis.lists(prefix, replica).await) {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// A replica c, with an idle time of its own (`idle`), joins the fleet `prefix` and serves a
/// request: it warns once of an idle time that differs, b's (`of_b`), never of a gone one's.
async fn c_joins(
    redis: &RedisServer,
    prefix: &str,
    backend: &std::sync::Arc<Backend>,
    logs: &common::Captured,
    idle: Duration,
    of_b: &str,
) -> std::sync::Arc<tower_monitor::MinMonitor> {
    let c = replica(
        fleet(&redis.url(), prefix, "c"),
        service(backend, idle, Duration::from_secs(10)),
    );
    c.set_status_up("app").unwrap();
    assert_eq!(request(&c, None, 1).await, 200);
    let of_c = [format!(
        "app's idle time here is {:.2} s",
        idle.as_secs_f64()
    )];
    let of_c: Vec<&str> = of_c.iter().map(String::as_str).collect();
    let warned = || !logs.lines_with(&of_c).is_empty();
    assert!(eventually(Duration::from_secs(5), warned).await);
    let said = logs.lines_with(&of_c);
    assert_eq!(said.len(), 1, "c warned once: {said:?}");
    assert!(
        said[0].contains(&format!("on replica b {of_b}")),
        "{}",
        said[0]
    );
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gone_replicas_entries_drop_out_and_a_live_ones_stay() {
    let logs = common::logs(tracing::Level::WARN);
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::ZERO).await;
    backend.start_now().await;
    // a (idle time 600 ms) leaves; b (300 ms) stays. An entry is dropped once its replica has
    // been inactive for twice the longest idle time listed: 1.2 s while a is listed.
    let idles = [Duration::from_millis(600), Duration::from_millis(300)];
    let mut replicas = replicas(&redis, PREFIX, &["a", "b"], |i| {
        service(&backend, idles[i], Duration::from_secs(10))
    })
    .await;
    let (a, b) = (replicas.remove(0), replicas.remove(0));
    a.set_status_up("app").unwrap();
    b.set_status_up("app").unwrap();
    assert_eq!(request(&a, None, 1).await, 200);
    let listed = |(active, idle)| active && idle;
    assert!(until_listed(&redis, PREFIX, "a", Duration::from_secs(5), listed).await);

    // b streams for 8 s, publishing its activity every 75 ms; it is warned of a's idle time,
    // a being listed then.
    let streaming = std::sync::Arc::clone(&b);
    let stream = tokio::spawn(async move { request(&streaming, None, 80).await });
    assert!(until_listed(&redis, PREFIX, "b", Duration::from_secs(5), listed).await);
    let of_a = ["app's idle time here is 0.30 s, on replica a 0.60 s"];
    assert!(eventually(Duration::from_secs(5), || logs.lines_with(&of_a).len() == 1).await);

    // a is gone without a goodbye (its process killed, say): its entries drop out at one of
    // b's publications, b's own stay.
    drop(a);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while redis.lists(PREFIX, "a").await != (false, false) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a's entries are still there: {:?}",
            redis.lists(PREFIX, "a").await
        );
        assert_eq!(redis.lists(PREFIX, "b").await, (true, true), "b's entries");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(redis.lists(PREFIX, "b").await, (true, true), "b's entries");

    // c joins with an idle time of its own (900 ms): warned once, of b's, never of the gone a's.
    let _c = c_joins(
        &redis,
        PREFIX,
        &backend,
        &logs,
        Duration::from_millis(900),
        "0.30 s",
    )
    .await;
    assert_eq!(logs.lines_with(&of_a).len(), 1, "only b was warned of a");
    assert_eq!(backend.stops(), 0, "stopped while b streamed");
    assert_eq!(redis.lists(PREFIX, "b").await, (true, true), "b's entries");
    stream.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_joins_when_a_gone_one_is_stale_is_not_warned_of_it() {
    let logs = common::logs(tracing::Level::WARN);
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let prefix = "stale";
    let backend = Backend::new(Duration::ZERO).await;
    backend.start_now().await;
    // a (idle time 1 s) leaves; b (600 ms) and c (800 ms) are live. While a is listed, an
    // entry drops out 2 s after its replica's latest activity.
    let idles = [1000, 600, 800].map(Duration::from_millis);
    let mut replicas = replicas(&redis, prefix, &["a", "b"], |i| {
        service(&backend, idles[i], Duration::from_secs(10))
    })
    .await;
    let (a, b) = (replicas.remove(0), replicas.remove(0));
    a.set_status_up("app").unwrap();
    b.set_status_up("app").unwrap();
    assert_eq!(request(&a, None, 1).await, 200);
    let listed = |(active, idle)| active && idle;
    let until = |replica| until_listed(&redis, prefix, replica, Duration::from_secs(5), listed);
    assert!(until("a").await);
    drop(a);
    // b is active a second after a, and warned of a (listed then).
    let since_a = redis.activity(prefix, "a").await.expect("a is listed");
    while redis.now_ms().await < since_a + 1000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(request(&b, None, 1).await, 200);
    assert!(until("b").await);
    let b_of_a = ["app's idle time here is 0.60 s, on replica a 1.00 s"];
    assert!(
        eventually(Duration::from_secs(5), || logs.lines_with(&b_of_a).len()
            == 1)
        .await
    );

    // Nobody publishes once a's activity is 2 s old: a is still listed when c first publishes,
    // and that call drops it before it looks for an idle time that differs.
    loop {
        let since_a = redis.activity(prefix, "a").await.expect("a is listed");
        if redis.now_ms().await > since_a + 2050 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(redis.lists(prefix, "a").await, (true, true), "a's entries");
    let _c = c_joins(&redis, prefix, &backend, &logs, idles[2], "0.60 s").await;
    assert_eq!(
        redis.lists(prefix, "a").await,
        (false, false),
        "a's entries"
    );
    assert_eq!(redis.lists(prefix, "b").await, (true, true), "b's entries");
}
