//! What a replica learns late about another replica's stop. Announcements come over pub/sub,
//! which delivers each at most once and whenever the listener gets to it, and a probe may
//! finish long after it found the backend answering: neither may make a replica stop the
//! stopped backend again, nor call it up.
#![cfg(feature = "fleet")]

mod fleet_support;

use std::sync::Arc;
use std::time::Duration;

use fleet_support::*;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tower_monitor::{BoxError, MinMonitor, MonitoredService, ServiceState, probe, trigger};

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

/// Replicas a and c of the fleet "t" with these services, each having seen the backend up.
async fn up_pair(
    redis: &RedisServer,
    services: [MonitoredService; 2],
) -> (Arc<MinMonitor>, Arc<MinMonitor>) {
    let replicas = replicas(redis, "t", &["a", "c"], |i| services[i].clone()).await;
    for monitor in &replicas {
        monitor.set_status_up("app").unwrap();
    }
    (Arc::clone(&replicas[0]), Arc::clone(&replicas[1]))
}

fn probes(monitor: &MinMonitor) -> u64 {
    monitor.snapshot()[0].counters.probes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_up_probed_before_the_fleets_stop_ended_is_not_believed_after_it() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::ZERO).await;
    backend.start_now().await;
    // a's on_idle closes the backend when the test says so.
    let closing = Arc::new(Notify::new());
    let (close, stopped) = (Arc::clone(&closing), Arc::clone(&backend));
    let a_service = MonitoredService::new(backend.url(), GRACE)
        .on_idle(
            Duration::from_secs(60),
            trigger::from_fn(move || {
                let (close, stopped) = (Arc::clone(&close), Arc::clone(&stopped));
                async move {
                    close.notified().await;
                    stopped.stop();
                    Ok::<(), BoxError>(())
                }
            }),
        )
        .probe_timeout(Duration::from_millis(500));
    // c's probe connects, then waits for the test before it tells what it found.
    let (c_service, began, answer) = held_probe_service(&backend);
    let (a, c) = up_pair(&redis, [a_service, c_service]).await;

    // a stops the backend; c, told so, probes it while it still answers.
    let stopper = Arc::clone(&a);
    let stop = tokio::spawn(async move { stopper.stop("app").await });
    began.notified().await;
    closing.notify_one();
    assert!(stop.await.unwrap().unwrap(), "a stops the backend");
    // a's stop is over, and c has heard so.
    assert!(eventually(Duration::from_secs(5), || state(&c) == ServiceState::Down).await);

    // Only now does c's probe tell the up it found before the stop.
    let before = probes(&c);
    answer.notify_one();
    assert!(eventually(Duration::from_secs(5), || probes(&c) > before).await);
    // Bounded: long enough for an "up" c announced to reach a.
    let believed = eventually(Duration::from_millis(300), || {
        state(&c) == ServiceState::Up || state(&a) == ServiceState::Up
    });
    assert!(!believed.await, "an up older than the stop was believed");
    assert_eq!(backend.stops(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_up_probed_before_the_fleets_stop_ended_does_not_undo_a_fresher_up() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::ZERO).await;
    backend.start_now().await;
    // a starts and stops the backend when asked (its own idle time is out of reach).
    let a_service = service(&backend, Duration::from_secs(60), GRACE);
    // c's probe connects, then waits for the test before it tells what it found.
    let (c_service, began, answer) = held_probe_service(&backend);
    let (a, c) = up_pair(&redis, [a_service, c_service]).await;

    // c's probe finds the backend up; then a stops it, and c hears so.
    let prober = Arc::clone(&c);
    tokio::spawn(async move { prober.reprobe("app").await });
    began.notified().await;
    assert!(a.stop("app").await.unwrap(), "a stops the backend");
    assert!(eventually(Duration::from_secs(5), || state(&c) == ServiceState::Down).await);

    // a starts it again, and c hears that it is up.
    a.start("app").await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || state(&c) == ServiceState::Up).await,
        "c did not hear of a's start: {}",
        state(&c)
    );

    // Only now does c's probe tell the up it found before the stop: older than the up c heard
    // since, it changes nothing.
    let before = probes(&c);
    answer.notify_one();
    assert!(eventually(Duration::from_secs(5), || probes(&c) > before).await);
    let undone = eventually(Duration::from_millis(300), || state(&c) != ServiceState::Up);
    assert!(!undone.await, "c took the backend for {}", state(&c));
    assert_eq!(backend.starts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backend_started_outside_the_fleet_after_its_stop_is_stopped_when_idle() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::ZERO).await;
    backend.start_now().await;
    // a stops the backend when asked; c when its idle time has passed.
    let services = [
        service(&backend, Duration::from_secs(60), GRACE),
        service(&backend, Duration::from_millis(400), GRACE),
    ];
    let (a, c) = up_pair(&redis, services).await;
    assert!(a.stop("app").await.unwrap(), "a stops the backend");
    // a's stop is over once its lease is freed, which comes just after `stop` returns. Until
    // then the fleet is stopping the backend, and c rightly believes no backend it finds
    // answering (c may have called it down already, by its own probe, on hearing "stopping").
    redis
        .until_gone(
            "t:svc:app:lease",
            Duration::from_secs(5),
            "a kept its lease",
        )
        .await;
    assert!(eventually(Duration::from_secs(5), || state(&c) == ServiceState::Down).await);

    // Started again without the fleet's lease (by hand, or by a replica that could not reach
    // Redis), and found up by c's next request.
    backend.start_now().await;
    assert_eq!(request(&c, None, 0).await, 200);
    assert_eq!(state(&c), ServiceState::Up);

    // The fleet is idle: c stops it (the mark of a's stop is about a backend that was down).
    assert!(
        eventually(Duration::from_secs(10), || backend.stops() == 2).await,
        "the backend was left running; c is {}",
        state(&c)
    );
}

/// The service of a replica whose probe connects to the backend, then waits for the test
/// before it tells what it found: `began` is notified once it has connected, and it answers
/// once `answer` is.
fn held_probe_service(backend: &Arc<Backend>) -> (MonitoredService, Arc<Notify>, Arc<Notify>) {
    let (began, answer) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (begun, answered, addr) = (Arc::clone(&began), Arc::clone(&answer), backend.addr);
    let service = service(backend, Duration::from_secs(60), GRACE)
        .probe_timeout(Duration::from_secs(30))
        .probe(probe::from_fn(move |_url| {
            let (begun, answered) = (Arc::clone(&begun), Arc::clone(&answered));
            async move {
                let up = TcpStream::connect(addr).await.is_ok();
                begun.notify_one();
                answered.notified().await;
                Ok::<bool, BoxError>(up)
            }
        }));
    (service, began, answer)
}
