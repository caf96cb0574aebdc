//! Fleet mode: a replica that takes over a start from a holder gone with the lease first looks
//! whether the backend answers already. A start that ends while it looks (its "up" heard, or
//! its timeout) must not have `on_down` run for it: that would start an up backend a second
//! time, without a start to watch it.
#![cfg(feature = "fleet")]

mod fleet_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use fleet_support::*;
use tokio::sync::Notify;
use tower_monitor::{BoxError, ServiceState, probe};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_start_that_ends_while_the_taker_looks_at_the_backend_runs_no_on_down() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::ZERO).await;
    let a = Doomed::new(&redis, &backend, "a").await;

    // b's probes answer "down" at once, until the test makes them wait for its word (each
    // then bounded by a probe timeout long enough for the test to act). Then the first to
    // wait (its poller's) finds the backend up, and the second (the taker's look) down.
    let hang = Arc::new(AtomicBool::new(false));
    let word = Arc::new(Notify::new());
    let waiting = Arc::new(AtomicUsize::new(0));
    let (h, w, n) = (hang.clone(), word.clone(), waiting.clone());
    let looks = probe::from_fn(move |_url| {
        let (hang, word, waiting) = (h.clone(), w.clone(), n.clone());
        async move {
            if !hang.load(Ordering::SeqCst) {
                return Ok::<bool, BoxError>(false);
            }
            let ticket = waiting.fetch_add(1, Ordering::SeqCst) + 1;
            word.notified().await;
            Ok(ticket == 1)
        }
    });
    let b_service = service(&backend, Duration::from_secs(60), GRACE)
        .probe(looks)
        .probe_timeout(Duration::from_secs(10));
    let b = replica(fleet(&redis.url(), "t", "b"), b_service);
    redis.wait_for_listeners("t", 2).await;

    a.start_followed_by(&[&b]).await;
    hang.store(true, Ordering::SeqCst);
    a.crash();

    // After the lease time (1.5 s), b takes the lease and looks at the backend.
    let taken = async {
        loop {
            let lease = redis.command(&["GET", "t:svc:app:lease"]).await;
            if lease.is_some_and(|reply| reply.contains(":b")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), taken)
        .await
        .expect("b never took the lease over");
    // Its look is under way, beside its poller's probe.
    let looking = eventually(Duration::from_secs(5), || {
        waiting.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert!(looking, "{} probes waiting", waiting.load(Ordering::SeqCst));

    // The start ends while b looks: the backend is known up.
    b.set_status_up("app").unwrap();
    assert_eq!(state(&b), ServiceState::Up);
    word.notify_waiters();

    // b runs no on_down for a start that has ended (the old code ran it at once after its
    // look), and the lease is free.
    let ran = eventually(Duration::from_millis(500), || backend.starts() > 0).await;
    assert!(!ran, "on_down ran for a start that had ended");
    assert_eq!(state(&b), ServiceState::Up);
    let freed = async {
        loop {
            let lease = redis.command(&["GET", "t:svc:app:lease"]).await;
            if lease.is_some_and(|reply| !reply.contains(":b")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), freed)
        .await
        .expect("b kept the lease");
}
