//! The gateway's `fleet` section: two gateways (in one process) with one Redis start a shared
//! backend once; a bad section is an error naming its field.
#![cfg(all(feature = "fleet", feature = "gateway"))]

mod common;
mod fleet_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpListener;
use tower_monitor::config::TriggerRegistry;
use tower_monitor::gateway::Gateway;

fn registry(runs: Arc<AtomicUsize>, backend: SocketAddr) -> TriggerRegistry {
    common::booting_backend_registry(runs, backend)
}

fn config(backend: SocketAddr, fleet: &str) -> String {
    format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
               "services": {{ "app": {{ "hold": {{ "max_wait": "10s" }} }} }} }},
             "fleet": {fleet},
             "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s",
                 "on_down": {{ "type": "start" }} }} }} }}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_sharing_a_fleet_start_the_backend_once() {
    let Some(redis) = fleet_support::RedisServer::start().await else {
        return;
    };
    let backend = common::refused_addr().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let fleet = format!(r#"{{ "redis": "{}", "prefix": "gw-test" }}"#, redis.url());
    let mut addrs = Vec::new();
    let mut stops = Vec::new();
    for _ in 0..2 {
        let gateway =
            Gateway::from_config(&config(backend, &fleet), &registry(runs.clone(), backend))
                .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        tokio::spawn(gateway.serve(listener, async move {
            let _ = stopped.await;
        }));
    }
    redis.wait_for_listeners("gw-test", 2).await;
    let requests: Vec<_> = (0..20)
        .map(|i| {
            let addr = addrs[i % 2];
            tokio::spawn(async move { common::get(addr, "/", &[]).await })
        })
        .collect();
    for request in requests {
        let reply = request.await.unwrap();
        assert_eq!(reply.status, http::StatusCode::OK, "{}", reply.body);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "one start across the fleet");
}

#[test]
fn a_bad_fleet_section_names_its_field() {
    let backend: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (fleet, field) in [
        (r#"{ "redis": "not a url" }"#, "fleet.redis"),
        (
            r#"{ "redis": "redis://127.0.0.1:6379/", "port": 1 }"#,
            "fleet.port",
        ),
        (r#"{ "prefix": "x" }"#, "fleet.redis"),
    ] {
        let err =
            Gateway::from_config(&config(backend, fleet), &TriggerRegistry::new()).unwrap_err();
        assert_eq!(err.path(), field, "{fleet}: {err}");
    }
}
