//! The gateway in hold mode in front of a backend cached up but gone (crashed): a gRPC call
//! (HTTP/2 backend, tonic client) is held until the backend is started again, and a client
//! that goes away while its request is held ends it. Everything on 127.0.0.1.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tonic_health::ServingStatus;
use tonic_health::pb::health_check_response::ServingStatus as Status;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tower_monitor::config::TriggerRegistry;
use tower_monitor::{BoxError, ServiceState, trigger};

/// A registry whose `start` trigger (counted in `starts`) serves on `port`, once `gate` gives
/// it a permit: a gRPC health server (`grpc`) or a plain HTTP one.
fn registry(
    port: u16,
    grpc: bool,
    starts: &Arc<AtomicUsize>,
    gate: &Arc<Semaphore>,
) -> TriggerRegistry {
    let (starts, gate) = (Arc::clone(starts), Arc::clone(gate));
    let mut registry = TriggerRegistry::new();
    registry.register("start", move |_spec| {
        let (starts, gate) = (Arc::clone(&starts), Arc::clone(&gate));
        Ok(Arc::new(trigger::from_fn(move || {
            starts.fetch_add(1, Ordering::SeqCst);
            let gate = Arc::clone(&gate);
            async move {
                gate.acquire().await?.forget();
                let listener = TcpListener::bind(("127.0.0.1", port)).await?;
                if grpc {
                    let (reporter, health) = tonic_health::server::health_reporter();
                    reporter
                        .set_service_status("chat", ServingStatus::Serving)
                        .await;
                    tokio::spawn(
                        tonic::transport::Server::builder()
                            .add_service(health)
                            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(
                                listener,
                            )),
                    );
                } else {
                    let app = axum::Router::new().fallback(|| async { "up" });
                    tokio::spawn(async move { axum::serve(listener, app).await });
                }
                Ok::<(), BoxError>(())
            }
        })) as Arc<dyn tower_monitor::Trigger>)
    });
    registry.register("count", |_spec| {
        Ok(
            Arc::new(trigger::from_fn(|| async { Ok::<(), BoxError>(()) }))
                as Arc<dyn tower_monitor::Trigger>,
        )
    });
    registry
}

/// A gateway for "app" on `port` (HTTP/2 to it if `grpc`), in hold mode (at most `max_held`
/// held), with requests in flight counted (an `on_idle` an hour away); "app" cached up while
/// nothing listens there.
async fn gateway(
    port: u16,
    grpc: bool,
    max_held: usize,
    registry: &TriggerRegistry,
) -> common::InProcessGateway {
    let protocol = if grpc { r#""protocol": "http2", "# } else { "" };
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
               "services": {{ "app": {{ {protocol}"hold": {{ "max_wait": "10s", "max_held": {max_held} }} }} }} }},
             "services": {{ "app": {{ "url": "http://127.0.0.1:{port}/", "grace_period": "30s",
               "probe_timeout": "300ms", "on_down": {{ "type": "start" }},
               "on_idle": {{ "after": "1h", "trigger": {{ "type": "count" }} }} }} }} }}"#
    );
    let gateway = common::start_gateway(&config, registry).await;
    gateway.monitor.set_status_up("app").unwrap();
    gateway
}

/// A client whose request finds "app" gone: refused, marked down, a start asked for (which the
/// test's gate holds back), and held by the proxy.
async fn held_request(gateway: &common::InProcessGateway) -> TcpStream {
    let mut client = TcpStream::connect(gateway.addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: app.localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    common::wait_for_state(
        &gateway.monitor,
        "app",
        ServiceState::Starting,
        Duration::from_secs(10),
    )
    .await;
    client
}

async fn free_port() -> u16 {
    common::refused_addr().await.port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_call_to_a_crashed_backend_is_held_until_it_is_started_again() {
    let port = free_port().await;
    let (starts, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Semaphore::new(1)));
    let gateway = gateway(port, true, 100, &registry(port, true, &starts, &gate)).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", gateway.addr))
        .unwrap()
        .timeout(Duration::from_secs(15))
        .connect()
        .await
        .unwrap();
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "chat".into(),
        })
        .await
        .expect("the held call is answered by the backend started again");
    assert!(answer.metadata().contains_key("x-cold-start"));
    assert_eq!(answer.into_inner().status(), Status::Serving);
    assert_eq!(starts.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_while_held_ends_its_request() {
    let port = free_port().await;
    let (starts, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Semaphore::new(0)));
    let gateway = gateway(port, false, 100, &registry(port, false, &starts, &gate)).await;
    let in_flight = || gateway.monitor.snapshot()[0].requests_in_flight;
    let client = held_request(&gateway).await;
    assert_eq!(in_flight(), Some(1));
    drop(client);
    common::until(
        Duration::from_secs(5),
        "the held request ended with its client",
        in_flight,
        |now| *now == Some(0),
    )
    .await;
    gate.add_permits(1);
    common::wait_for_state(
        &gateway.monitor,
        "app",
        ServiceState::Up,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(starts.load(Ordering::SeqCst), 1);
}

/// `hold.max_held` bounds the requests held for a crashed backend and those held for its start
/// together: the one that found it gone fills the only place, so the next is answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_held_counts_the_requests_held_for_a_crashed_backend_too() {
    let port = free_port().await;
    let (starts, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Semaphore::new(0)));
    let gateway = gateway(port, false, 1, &registry(port, false, &starts, &gate)).await;
    let mut first = held_request(&gateway).await;
    let second = common::get(gateway.addr, "/", &[("host", "app.localhost")]).await;
    assert_eq!(
        second.status, 503,
        "the only place was taken: {}",
        second.body
    );
    gate.add_permits(1);
    let mut reply = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_string(&mut first, &mut reply),
    )
    .await
    .ok();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}
