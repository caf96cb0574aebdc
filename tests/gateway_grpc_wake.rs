//! A gRPC backend that sleeps behind the gateway, reached by a tonic client: the first call
//! starts it, and is held until it is up (hold mode) or answered with the gRPC status
//! `UNAVAILABLE` that tonic reads as such (fallback mode); a call no route matches reads
//! `UNIMPLEMENTED`. Everything on 127.0.0.1; the backend is stopped when the test ends.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;
use tonic_health::pb::health_check_response::ServingStatus as Status;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tower_monitor::config::TriggerRegistry;
use tower_monitor::{BoxError, trigger};

/// A gRPC health server on `port`, started by the `start_grpc` trigger after `boot`, as a
/// backend that takes a while to come up does.
struct SleepingBackend {
    port: u16,
    starts: Arc<AtomicUsize>,
    server: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl SleepingBackend {
    async fn new() -> Self {
        // A free port, left unbound until the start: nothing answers there while it sleeps.
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self {
            port,
            starts: Arc::new(AtomicUsize::new(0)),
            server: Arc::new(Mutex::new(None)),
        }
    }

    fn registry(&self, boot: Duration) -> TriggerRegistry {
        let (port, starts, server) = (self.port, self.starts.clone(), self.server.clone());
        let mut registry = TriggerRegistry::new();
        registry.register("start_grpc", move |_spec| {
            let (starts, server) = (starts.clone(), server.clone());
            Ok(Arc::new(trigger::from_fn(move || {
                starts.fetch_add(1, Ordering::SeqCst);
                let server = server.clone();
                async move {
                    let task = tokio::spawn(async move {
                        tokio::time::sleep(boot).await;
                        let (reporter, health) = tonic_health::server::health_reporter();
                        reporter
                            .set_service_status("chat", ServingStatus::Serving)
                            .await;
                        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
                        let _ = tonic::transport::Server::builder()
                            .add_service(health)
                            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(
                                listener,
                            ))
                            .await;
                    });
                    *server.lock().unwrap() = Some(task);
                    Ok::<(), BoxError>(())
                }
            })))
        });
        registry
    }

    fn config(&self, gateway_fields: &str) -> String {
        format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "grpc" }} ],
                   "services": {{ "grpc": {{ "protocol": "http2"{gateway_fields} }} }} }},
                 "services": {{ "grpc": {{ "url": "http://127.0.0.1:{}/", "grace_period": "30s",
                   "probe_timeout": "300ms", "on_down": {{ "type": "start_grpc" }} }} }} }}"#,
            self.port
        )
    }
}

impl Drop for SleepingBackend {
    fn drop(&mut self) {
        if let Some(server) = self.server.lock().unwrap().take() {
            server.abort();
        }
    }
}

async fn client(gateway: &common::InProcessGateway) -> HealthClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", gateway.addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
}

fn ask() -> HealthCheckRequest {
    HealthCheckRequest {
        service: "chat".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_call_to_a_sleeping_backend_is_held_until_it_is_up() {
    let backend = SleepingBackend::new().await;
    let registry = backend.registry(Duration::from_millis(700));
    let config = backend.config(r#", "hold": { "max_wait": "10s" }"#);
    let gateway = common::start_gateway(&config, &registry).await;
    let mut client = client(&gateway).await;

    // Ten calls at once, on one HTTP/2 connection: one start, every call answered.
    let calls = (0..10).map(|_| {
        let mut client = client.clone();
        async move { client.check(ask()).await }
    });
    for answer in futures::future::join_all(calls).await {
        let answer = answer.expect("a held call is answered by the backend");
        assert_eq!(answer.into_inner().status(), Status::Serving);
    }
    assert_eq!(backend.starts.load(Ordering::SeqCst), 1);
    // Up now: the next call goes straight through.
    let again = client.check(ask()).await.expect("a call to an up backend");
    assert_eq!(again.into_inner().status(), Status::Serving);
    assert_eq!(backend.starts.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_hold_a_grpc_call_to_a_sleeping_backend_reads_unavailable_then_succeeds() {
    let backend = SleepingBackend::new().await;
    let registry = backend.registry(Duration::from_millis(300));
    let gateway = common::start_gateway(&backend.config(""), &registry).await;
    let mut client = client(&gateway).await;

    let status = client
        .check(ask())
        .await
        .expect_err("the backend sleeps: the gateway answers for it");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(backend.starts.load(Ordering::SeqCst), 1);

    // The client retries, as gRPC clients do on UNAVAILABLE, until the backend is up.
    let mut answer = client.check(ask()).await;
    for _ in 0..100 {
        match &answer {
            Err(status) if status.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                answer = client.check(ask()).await;
            }
            _ => break,
        }
    }
    let answer = answer.expect("the backend is up after its boot");
    assert_eq!(answer.into_inner().status(), Status::Serving);
    assert_eq!(backend.starts.load(Ordering::SeqCst), 1, "started once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_call_that_matches_no_route_reads_unimplemented() {
    let backend = SleepingBackend::new().await;
    let config = backend.config("").replace(
        r#"{ "service": "grpc" }"#,
        r#"{ "host": "grpc.example", "service": "grpc" }"#,
    );
    let gateway = common::start_gateway(&config, &backend.registry(Duration::ZERO)).await;
    // The client names the gateway's address as the authority: no route matches it.
    let status = client(&gateway)
        .await
        .check(ask())
        .await
        .expect_err("no route");
    // Not "protocol error" (a text 404 read as a gRPC message).
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    assert_eq!(status.message(), "no route for this request");
    assert_eq!(backend.starts.load(Ordering::SeqCst), 0);
}
