//! While one replica stops the backend (a program given a grace to shut down), the others say
//! it is stopping, not stopped: their status, metrics and logs tell what is happening.
#![cfg(feature = "fleet")]

mod fleet_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleet_support::*;
use tokio::sync::Notify;
use tower_monitor::{BoxError, MinMonitor, MonitoredService, ServiceState, trigger};

/// The stop under way: which replica runs it, and what lets it finish.
#[derive(Default)]
struct SlowStop {
    by: Mutex<Option<usize>>,
    began: Notify,
    finish: Notify,
}

/// As [`service`], with an `on_idle` that waits for `stop.finish` before the backend closes.
fn slowly_stopped(
    backend: &Arc<Backend>,
    stop: &Arc<SlowStop>,
    me: usize,
    idle: Duration,
) -> MonitoredService {
    let (backend, stop) = (Arc::clone(backend), Arc::clone(stop));
    let probed = Arc::clone(&backend);
    MonitoredService::new(probed.url(), GRACE)
        .on_idle(
            idle,
            trigger::from_fn(move || {
                let (backend, stop) = (Arc::clone(&backend), Arc::clone(&stop));
                async move {
                    *stop.by.lock().unwrap() = Some(me);
                    let finish = stop.finish.notified();
                    stop.began.notify_one();
                    finish.await;
                    backend.stop();
                    Ok::<(), BoxError>(())
                }
            }),
        )
        .probe_timeout(Duration::from_millis(500))
        .stop_timeout(Duration::from_secs(30))
}

fn probes(monitor: &MinMonitor) -> u64 {
    monitor.snapshot()[0].counters.probes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_others_say_stopping_while_one_replica_stops_the_backend() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let idle = Duration::from_millis(400);
    let backend = Backend::new(Duration::ZERO).await;
    backend.start_now().await;
    let stop = Arc::new(SlowStop::default());
    let replicas = replicas(&redis, "t", &["a", "b", "c"], |i| {
        slowly_stopped(&backend, &stop, i, idle)
    })
    .await;
    let began = stop.began.notified();
    for monitor in &replicas {
        monitor.set_status_up("app").unwrap();
    }
    let seen: Vec<_> = replicas.iter().map(|m| probes(m)).collect();
    tokio::time::timeout(Duration::from_secs(10), began)
        .await
        .expect("the idle stop began");
    let by = stop.by.lock().unwrap().expect("a replica runs the stop");
    let others: Vec<usize> = (0..3).filter(|&i| i != by).collect();

    // The others learn of the stop, then probe the backend, which still answers (or give up
    // on it: down, and polling no more).
    assert!(
        eventually(Duration::from_secs(5), || {
            let stopping = |&i: &usize| state(&replicas[i]) == ServiceState::Stopping;
            others
                .iter()
                .any(|&i| state(&replicas[i]) == ServiceState::Down)
                || others
                    .iter()
                    .all(|&i| stopping(&i) && probes(&replicas[i]) > seen[i])
        })
        .await,
        "the others learn of the stop and probe"
    );
    for &i in &others {
        assert_eq!(
            state(&replicas[i]),
            ServiceState::Stopping,
            "a replica calls the backend stopped while another still stops it, and it answers"
        );
    }

    // The stop ends: every replica sees the backend down.
    stop.finish.notify_one();
    assert!(
        all_reach(&replicas, ServiceState::Down, Duration::from_secs(10)).await,
        "every replica sees the backend down after the stop"
    );
    assert_eq!(backend.stops(), 1);
}
