//! What a replica sends to Redis, measured: three replicas × 100 services (idle time 20 s,
//! grace period 10 s), 5 s of warm-up traffic, 10 s of traffic then 10 s of quiet, counted with
//! `INFO commandstats`. Not a pass/fail test (figures for the docs):
//! `cargo test --features fleet --test fleet_load -- --ignored --nocapture`.
#![cfg(feature = "fleet")]

mod fleet_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet_support::*;
use tower_monitor::MinMonitor;

const SERVICES: usize = 100;
const REPLICAS: usize = 3;
const WINDOW: Duration = Duration::from_secs(10);
const IDLE: Duration = Duration::from_secs(20);
/// What the scripts run inside Redis (counted by `commandstats` too, but no round trip).
const IN_SCRIPTS: [&str; 10] = [
    "time",
    "zadd",
    "zscore",
    "pexpire",
    "get",
    "set",
    "incr",
    "del",
    "zrevrange",
    "pttl",
];

async fn counts(redis: &RedisServer) -> Vec<(String, u64)> {
    redis.command_counts().await
}

/// Round trips (calls a replica makes) and commands run (scripts' insides included), per
/// replica per second, and the detail.
fn per_replica_second(before: &[(String, u64)], after: &[(String, u64)]) -> (f64, f64, String) {
    let (mut calls, mut commands) = (0, 0);
    let mut detail = Vec::new();
    for (name, count) in after {
        let was = before
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, c)| *c);
        // The counting itself (INFO) is not the fleet's.
        if count > &was && name != "info" {
            commands += count - was;
            if !IN_SCRIPTS.contains(&name.as_str()) {
                calls += count - was;
            }
            detail.push(format!("{name} {}", count - was));
        }
    }
    let per = |n: u64| n as f64 / WINDOW.as_secs_f64() / REPLICAS as f64;
    (per(calls), per(commands), detail.join(", "))
}

/// Requests for `window`: 200 a second at most, round-robin over replicas and services.
async fn traffic(replicas: &[Arc<MinMonitor>], window: Duration) -> usize {
    let until = Instant::now() + window;
    let mut sent = 0_usize;
    while Instant::now() < until {
        let monitor = Arc::clone(&replicas[sent % REPLICAS]);
        let name = format!("s{}", (sent * 7919) % SERVICES);
        tokio::spawn(async move { request_to(&monitor, &name).await });
        sent += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement for the docs, not a check"]
async fn commands_per_replica_per_second() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::ZERO).await;
    backend.start_now().await;
    let replicas: Vec<Arc<MinMonitor>> = (0..REPLICAS)
        .map(|r| {
            let monitor = Arc::new(MinMonitor::new());
            for s in 0..SERVICES {
                let service = service(&backend, IDLE, Duration::from_secs(10));
                monitor.add(format!("s{s}"), service).unwrap();
            }
            monitor
                .join_fleet(fleet(&redis.url(), "load", &format!("r{r}")))
                .unwrap();
            monitor
        })
        .collect();
    redis.wait_for_listeners("load", REPLICAS).await;

    traffic(&replicas, Duration::from_secs(5)).await;
    let before = counts(&redis).await;
    let sent = traffic(&replicas, WINDOW).await;
    let busy = counts(&redis).await;
    let (calls, commands, detail) = per_replica_second(&before, &busy);
    println!(
        "traffic ({sent} requests over {WINDOW:?}, {SERVICES} services, {REPLICAS} replicas): {calls:.1} calls, {commands:.1} commands per replica per second [{detail}]"
    );

    tokio::time::sleep(WINDOW).await;
    let quiet = counts(&redis).await;
    let (calls, commands, detail) = per_replica_second(&busy, &quiet);
    println!(
        "quiet (no request, all up): {calls:.1} calls, {commands:.1} commands per replica per second [{detail}]"
    );
}

async fn request_to(monitor: &Arc<MinMonitor>, name: &str) -> u16 {
    use http_body_util::BodyExt;
    use tower::{Layer, ServiceExt};
    let inner = tower::service_fn(|_request: http::Request<String>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
    });
    let response = monitor
        .layer(name)
        .unwrap()
        .layer(inner)
        .oneshot(http::Request::new(String::new()))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}
