//! After a start made while Redis was unreachable, every replica that asked has run `on_down`;
//! with a `process` trigger and a lock file only one of them runs the program, and only it can
//! stop it. The fleet's idle stop must go to that one, not to whichever replica asks first.
#![cfg(feature = "fleet")]

mod fleet_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fleet_support::*;
use futures::FutureExt;
use futures::future::BoxFuture;
use tower_monitor::{BoxError, MonitoredService, ServiceState, Trigger};

/// `on_down` as a `process` trigger with a lock file sees it: replica `me` starts the backend
/// unless another one runs it already (then it starts nothing, and succeeds), and can tell
/// while it runs it, and once what it started has ended.
struct Start {
    backend: Arc<Backend>,
    owner: Arc<Owner>,
    me: usize,
    started: AtomicBool,
}

impl Trigger for Start {
    fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        self.owner.starts_asked.fetch_add(1, Ordering::SeqCst);
        let mut replica = self.owner.replica.lock().unwrap();
        if replica.is_none() {
            *replica = Some(self.me);
            self.started.store(true, Ordering::SeqCst);
            self.backend.start();
        }
        async { Ok(()) }.boxed()
    }

    fn ended(&self) -> Option<BoxFuture<'static, ()>> {
        if self.owner.runner() == Some(self.me) {
            return Some(futures::future::pending().boxed());
        }
        // Its program exited (crashed, or stopped); one found running elsewhere: cannot tell.
        self.started
            .load(Ordering::SeqCst)
            .then(|| futures::future::ready(()).boxed())
    }
}

/// The service of replica `me`: started as [`Start`] does, and stopped only where it runs
/// (elsewhere `on_idle` fails, as `process_stop` does: "not running here").
fn owned_service(
    backend: &Arc<Backend>,
    owner: &Arc<Owner>,
    me: usize,
    idle: Duration,
) -> MonitoredService {
    let start = Start {
        backend: Arc::clone(backend),
        owner: Arc::clone(owner),
        me,
        started: AtomicBool::new(false),
    };
    MonitoredService::new(backend.url(), GRACE)
        .on_down(start)
        .on_idle(idle, owner.stop_where_it_runs(backend, me))
        .probe_timeout(Duration::from_millis(500))
        .stop_timeout(Duration::from_secs(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_start_without_redis_the_idle_stop_goes_to_the_replica_that_runs_the_backend() {
    let outages = Outages::logged();
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::from_millis(300)).await;
    let owner = Arc::new(Owner::default());
    // a will run the backend; b's idle time is the shorter, so that b comes to the idle stop
    // first. (Longer than Redis takes to come back below, so that no stop is tried before.)
    let idle = [Duration::from_millis(2800), Duration::from_millis(2000)];
    let replicas = replicas(&redis, "t", &["a", "b"], |i| {
        owned_service(&backend, &owner, i, idle[i])
    })
    .await;
    let (a, b) = (Arc::clone(&replicas[0]), Arc::clone(&replicas[1]));

    // Redis is gone: a starts the backend on its own, and b, whose request comes while the
    // backend boots, asks for a start on its own too (it finds the program running: nothing).
    redis.kill();
    let first = tokio::spawn(async move { request(&a, HOLD, 1).await });
    assert!(eventually(Duration::from_secs(5), || owner.runner() == Some(0)).await);
    assert_eq!(request(&b, HOLD, 1).await, 200);
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(
        owner.starts_asked.load(Ordering::SeqCst),
        2,
        "both started it"
    );
    assert_eq!(backend.starts(), 1);

    // Redis is back; each replica serves a request, so that both idle times start now.
    redis.restart().await;
    assert!(
        eventually(Duration::from_secs(10), || outages.recovered("a") == 1
            && outages.recovered("b") == 1)
        .await,
        "the replicas did not find Redis again"
    );
    let (a, b) = (&replicas[0], &replicas[1]);
    assert_eq!(
        tokio::join!(request(a, None, 1), request(b, None, 1)),
        (200, 200)
    );

    stopped_by_the_runner(
        &backend,
        &owner,
        1,
        "a replica that does not run the backend",
    )
    .await;
    assert!(
        all_reach(&replicas, ServiceState::Down, Duration::from_secs(10)).await,
        "every replica sees the backend down"
    );
}

/// A Redis restarted during a start loses its lease: a replica waiting for that start takes
/// it over, and its `on_down` finds the program running under the first replica (it starts
/// nothing). The idle stop must still go to the replica that runs the program.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_start_taken_over_from_a_holder_that_runs_it_the_idle_stop_goes_to_that_holder() {
    // The binary's one subscriber is there before this test logs (`Outages::logged`).
    Outages::logged();
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    // Boots long enough for the lease to be lost, and taken over, before it is up.
    let backend = Backend::new(Duration::from_secs(4)).await;
    let owner = Arc::new(Owner::default());
    let idle = [Duration::from_millis(2800), Duration::from_millis(2000)];
    let replicas = replicas(&redis, "t", &["c", "d"], |i| {
        owned_service(&backend, &owner, i, idle[i])
    })
    .await;
    let (c, d) = (Arc::clone(&replicas[0]), Arc::clone(&replicas[1]));

    let first = tokio::spawn(async move { request(&c, HOLD, 1).await });
    assert!(
        eventually(Duration::from_secs(5), || state(&d)
            == ServiceState::Starting)
        .await,
        "d did not hear of c's start"
    );
    assert_eq!(owner.runner(), Some(0));
    redis.restart().await;
    assert!(
        eventually(Duration::from_secs(10), || owner
            .starts_asked
            .load(Ordering::SeqCst)
            == 2)
        .await,
        "d did not take the start over"
    );
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(backend.starts(), 1);

    // Both idle times start now, once d has seen the backend up too (its own poll ends the
    // start it took over; a request without a hold would get the fallback before).
    let (c, d) = (&replicas[0], &replicas[1]);
    assert!(
        eventually(Duration::from_secs(10), || state(d) == ServiceState::Up).await,
        "d did not see the backend up"
    );
    assert_eq!(
        tokio::join!(request(c, None, 1), request(d, None, 1)),
        (200, 200)
    );
    stopped_by_the_runner(&backend, &owner, 1, "the replica that took the start over").await;
}

/// A replica that started the backend under the lease, whose program then crashed and was
/// started again by another replica without the fleet hearing of it (as a start made while
/// Redis was unreachable is), is no longer its starter: its trigger says what it started has
/// ended, and the idle stop goes to the replica that runs the program now, even though the
/// first one comes to it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_starter_whose_program_crashed_and_was_started_elsewhere_leaves_the_stop_to_that_one() {
    // The binary's one subscriber is there before this test logs (`Outages::logged`).
    Outages::logged();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::from_millis(300)).await;
    let owner = Arc::new(Owner::default());
    // e comes to the idle stop first.
    let idle = [Duration::from_millis(1500), Duration::from_millis(2500)];
    let replicas = replicas(&redis, "t", &["e", "f"], |i| {
        owned_service(&backend, &owner, i, idle[i])
    })
    .await;
    let (e, f) = (&replicas[0], &replicas[1]);

    // e starts the backend under the lease: e is the starter.
    assert_eq!(request(e, HOLD, 1).await, 200);
    assert_eq!(owner.runner(), Some(0));

    // e's program crashes, and f's trigger runs it again, unheard of by the fleet.
    *owner.replica.lock().unwrap() = None;
    backend.stop();
    *owner.replica.lock().unwrap() = Some(1);
    backend.start();

    // Each replica serves a request, so that both idle times start now.
    assert_eq!(
        tokio::join!(request(e, HOLD, 1), request(f, HOLD, 1)),
        (200, 200)
    );

    // The crash was one stop; the idle stop is the second.
    stopped_by_the_runner(&backend, &owner, 2, "the replica whose program had crashed").await;
    assert_eq!(backend.starts(), 2, "no start besides the two");
}

/// A replica following another's start cannot hear its "up" or "down", nor see its lease
/// expire, once Redis is unreachable: it starts the backend on its own, as a cold start in an
/// outage does, instead of holding its requests until its start timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_following_a_start_when_redis_goes_starts_the_backend_on_its_own() {
    // The binary's one subscriber is there before this test logs (`Outages::logged`).
    Outages::logged();
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::from_millis(1500)).await;
    let owner = Arc::new(Owner::default());
    let idle = Duration::from_secs(30);
    let replicas = replicas(&redis, "t", &["g", "h"], |i| {
        owned_service(&backend, &owner, i, idle)
    })
    .await;
    let (g, h) = (Arc::clone(&replicas[0]), Arc::clone(&replicas[1]));

    // g starts the backend under the lease; h hears of it and follows.
    let first = tokio::spawn(async move { request(&g, HOLD, 1).await });
    assert!(
        eventually(Duration::from_secs(5), || state(&h)
            == ServiceState::Starting)
        .await,
        "h did not hear of g's start"
    );
    // (The lease's announcement may come before g's `on_down` runs.)
    assert!(
        eventually(Duration::from_secs(5), || owner.runner() == Some(0)).await,
        "g did not start the backend"
    );

    // g's program crashes while it boots, and Redis goes: nobody will say the start failed.
    *owner.replica.lock().unwrap() = None;
    backend.stop();
    redis.kill();

    assert_eq!(
        request(&h, HOLD, 1).await,
        200,
        "h waited for a start it cannot hear of"
    );
    assert_eq!(owner.runner(), Some(1), "h runs the program");
    assert_eq!(owner.starts_asked.load(Ordering::SeqCst), 2);
    // g, still Starting, finds the backend h started.
    assert_eq!(first.await.unwrap(), 200);
}

/// Waits for the backend's `stops`th stop (the idle stop), and checks that no replica that does
/// not run it tried it first (`who`: which one would have).
async fn stopped_by_the_runner(backend: &Backend, owner: &Owner, stops: usize, who: &str) {
    assert!(
        eventually(Duration::from_secs(10), || backend.stops() == stops).await,
        "the backend was not stopped (stops tried elsewhere: {})",
        owner.stops_elsewhere.load(Ordering::SeqCst)
    );
    assert_eq!(
        owner.stops_elsewhere.load(Ordering::SeqCst),
        0,
        "{who} took the idle stop (and could not do it)"
    );
}
