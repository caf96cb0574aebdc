//! Fleet mode: a replica that takes over a start from a holder gone with the lease first looks
//! whether the backend answers already: one that answers, or that it cannot look at (this
//! process out of its own resources), is not started a second time. A start that ends while it
//! looks (its "up" heard, or its timeout) must not have `on_down` run for it either: that would
//! start an up backend a second time, without a start to watch it.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_that_finds_the_lease_freed_and_the_backend_up_does_not_start_it_again() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::ZERO).await;
    // ready_after holds the follower's own polls back: its take-over must not rely on them.
    let f = replica(
        fleet(&redis.url(), "t", "f"),
        service(&backend, Duration::from_secs(60), GRACE).ready_after(Duration::from_secs(3)),
    );
    // Replica x (not in this test) leads a start: it holds the lease for 1.5 s more.
    let held = following_x(&redis, &f, "1500").await;
    // x's start succeeds, and its lease ends with no "up" heard here (x crashed, say).
    backend.start_now().await;

    assert_eq!(held.await.unwrap(), 200, "the held request is forwarded");
    assert_eq!(backend.starts(), 0, "f started a backend x had started");
    assert_eq!(state(&f), ServiceState::Up);
    // f's up ended the lease it took over.
    redis
        .until_gone(
            "t:svc:app:lease",
            Duration::from_secs(5),
            "the lease was never freed",
        )
        .await;
}

/// A follower that takes a freed lease over looks at the backend before starting it: if it
/// cannot look (this process out of file descriptors, memory), the backend may well be up,
/// and it is not started a second time on that; the start timeout bounds the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_that_cannot_look_at_the_backend_does_not_start_it() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::ZERO).await;
    // Down at first (the request wakes it), then no probe can be made.
    let short = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let shortage = Arc::clone(&short);
    let probe = tower_monitor::probe::from_fn(move |_| {
        let short = shortage.load(std::sync::atomic::Ordering::SeqCst);
        async move {
            match short {
                true => Err(std::io::Error::from(std::io::ErrorKind::OutOfMemory).into()),
                false => Ok::<bool, BoxError>(false),
            }
        }
    });
    let f = replica(
        fleet(&redis.url(), "t", "f"),
        service(&backend, Duration::from_secs(60), GRACE).probe(probe),
    );
    // Replica x (not in this test) leads a start: its lease ends with no word from it.
    let _held = following_x(&redis, &f, "500").await;
    short.store(true, std::sync::atomic::Ordering::SeqCst);
    let lease = ["GET", "t:svc:app:lease"];
    let taken = |reply: &Option<String>| reply.as_deref().is_some_and(|r| r.contains(":f"));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !taken(&redis.command(&lease).await) {
        assert!(
            std::time::Instant::now() < deadline,
            "f never took the lease over"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Its on_down would run at once after its look.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        backend.starts(),
        0,
        "f started a backend it could not look at"
    );
    assert_eq!(state(&f), ServiceState::Starting);
}

/// Replica f held by a request while replica x (not in the test) leads the start, its lease
/// for `ms` milliseconds more: f's request, once f is Starting.
async fn following_x(
    redis: &RedisServer,
    f: &Arc<tower_monitor::MinMonitor>,
    ms: &str,
) -> tokio::task::JoinHandle<u16> {
    redis.wait_for_listeners("t", 1).await;
    redis
        .command(&["SET", "t:svc:app:fence", "1"])
        .await
        .unwrap();
    redis
        .command(&["SET", "t:svc:app:lease", "starting:1:x", "PX", ms])
        .await
        .unwrap();
    let held = tokio::spawn({
        let f = Arc::clone(f);
        async move { request(&f, HOLD, 1).await }
    });
    assert!(
        eventually(Duration::from_secs(5), || state(f)
            == ServiceState::Starting)
        .await,
        "f follows x's start"
    );
    held
}
