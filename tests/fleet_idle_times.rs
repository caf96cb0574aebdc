//! Fleet mode with replicas whose idle times differ for one service (a rolling update that
//! changes it, say): each replica's requests keep the backend up for that replica's idle time.
#![cfg(feature = "fleet")]

mod common;
mod fleet_support;

use std::sync::Arc;
use std::time::Duration;

use fleet_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_idle_time_elsewhere_does_not_stop_a_backend_a_long_one_still_streams_from() {
    let logs = common::logs(tracing::Level::WARN);
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::ZERO).await;
    backend.start_now().await;
    // a's idle time is 400 ms; b's is 4 s, so b tells the fleet of its stream once a second,
    // and its published activity is older than a's idle time most of the time.
    let (short, long) = (Duration::from_millis(400), Duration::from_secs(4));
    let idles = [short, long];
    let replicas = replicas(&redis, "idles", &["a", "b"], |i| {
        service(&backend, idles[i], Duration::from_secs(10))
    })
    .await;
    let (a, b) = (&replicas[0], Arc::clone(&replicas[1]));

    // b streams for 2.5 s (six of a's idle times). a sees the backend up (and its idle time
    // begins) once the fleet knows of the stream: b tells it at its idle watch's next look.
    b.set_status_up("app").unwrap();
    let stream = tokio::spawn(async move { request(&b, None, 26).await });
    let mut known = false;
    for _ in 0..200 {
        let seen = redis
            .command(&["ZSCORE", "idles:svc:app:active", "b"])
            .await;
        if seen.is_some_and(|reply| !reply.starts_with("$-1")) {
            known = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(known, "b published its activity");
    a.set_status_up("app").unwrap();
    // A request through a too: its replica then publishes its own activity and idle time.
    assert_eq!(request(a, None, 1).await, 200);
    let ended = loop {
        if stream.is_finished() {
            break stream.await.unwrap();
        }
        assert_eq!(backend.stops(), 0, "stopped while replica b was streaming");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(ended, 200);
    assert_eq!(backend.stops(), 0, "stopped while replica b was streaming");

    // Within b's idle time after its stream, a's shorter one does not stop the backend either
    // (five of a's idle times, with a's retries); after it, one stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(backend.stops(), 0, "stopped within b's idle time");
    assert!(eventually(Duration::from_secs(10), || backend.stops() == 1).await);

    // Each replica was told of the other's idle time once, at its first publication after
    // the other's.
    for (here, there) in [
        ("0.40 s, on replica b 4.00 s", "a"),
        ("4.00 s, on replica a 0.40 s", "b"),
    ] {
        let said = logs.lines_with(&["fleet: app's idle time here is", here]);
        assert_eq!(
            said.len(),
            1,
            "replica {there} said it {} times",
            said.len()
        );
    }
}
