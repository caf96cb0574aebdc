//! Concurrency: one probe for many callers, cancelled callers, and adds during reads.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::sync::Notify;
use tower_monitor::{BoxError, MinMonitor, MonitorError, MonitoredService, Url, probe};

const GRACE: Duration = Duration::from_millis(300);

fn tcp_service(url: Url, grace: Duration) -> MonitoredService {
    MonitoredService::new(url, grace).probe_timeout(Duration::from_secs(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_status_calls_share_one_probe() {
    let runs = counter();
    let monitor = Arc::new(MinMonitor::new());
    let url = url_for(refused_addr().await);
    monitor
        .add(
            "app",
            MonitoredService::new(url, Duration::from_secs(60))
                .probe(counting_probe(runs.clone(), true)),
        )
        .unwrap();
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let monitor = monitor.clone();
            tokio::spawn(async move { monitor.status("app").await })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap().unwrap());
    }
    // An up result is cached before the flight is released, so a latecomer finds it cached.
    assert_eq!(count(&runs), 1);
}

#[tokio::test]
async fn concurrent_status_calls_on_a_down_service_share_one_probe() {
    let runs = counter();
    let gate = Arc::new(Notify::new());
    let (r, g) = (runs.clone(), gate.clone());
    let monitor = MinMonitor::new();
    let url = url_for(refused_addr().await);
    let service = MonitoredService::new(url, GRACE).probe(probe::from_fn(move |_url| {
        r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let g = g.clone();
        async move {
            g.notified().await;
            Ok::<bool, BoxError>(false)
        }
    }));
    monitor.add("app", service).unwrap();
    // join_all polls every call once (each joins the flight) before the gate opens.
    let calls = (0..100).map(|_| monitor.status("app"));
    let open = async {
        gate.notify_one();
    };
    let (results, ()) = futures::join!(futures::future::join_all(calls), open);
    assert!(results.into_iter().all(|r| !r.unwrap()));
    assert_eq!(count(&runs), 1);
}

#[tokio::test]
async fn a_caller_cancelled_mid_probe_neither_cancels_nor_sticks_the_probe() {
    let runs = counter();
    let started = Arc::new(Notify::new());
    let gate = Arc::new(Notify::new());
    let (r, s, g) = (runs.clone(), started.clone(), gate.clone());
    let monitor = Arc::new(MinMonitor::new());
    let url = url_for(refused_addr().await);
    let service =
        MonitoredService::new(url, Duration::from_secs(60)).probe(probe::from_fn(move |_url| {
            r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (s, g) = (s.clone(), g.clone());
            async move {
                s.notify_one();
                g.notified().await;
                Ok::<bool, BoxError>(true)
            }
        }));
    monitor.add("app", service).unwrap();
    let m = monitor.clone();
    let caller = tokio::spawn(async move { m.status("app").await });
    started.notified().await;
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    gate.notify_one();
    // The probe ran on and cached its up: this call joins it or finds the cache, never re-probes.
    assert!(monitor.status("app").await.unwrap());
    assert_eq!(count(&runs), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_can_be_added_while_others_read_statuses() {
    let backend = Backend::start().await;
    let monitor = Arc::new(MinMonitor::new());
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let monitor = monitor.clone();
            let url = backend.url();
            tokio::spawn(async move {
                monitor
                    .add(format!("svc-{i}"), tcp_service(url, GRACE))
                    .unwrap();
                for j in 0..=i {
                    // Every service added so far by this task, or maybe by others.
                    match monitor.status(&format!("svc-{j}")).await {
                        Ok(up) => assert!(up),
                        Err(MonitorError::UnknownService(_)) => {
                            assert!(j < i, "own service must exist")
                        }
                        Err(other) => panic!("{other}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(monitor.names().len(), 16);
}
