//! A tonic gRPC server guarded by a sleeping backend: the client sees `Unavailable`, then success.
//!
//! Run: cargo run --example tonic
//!
//! The guarded service is tonic's standard health service (no protobuf to compile). Its first
//! calls find the backend down: `on_down` starts it, and the layer answers a gRPC status
//! `UNAVAILABLE`, which clients treat as "retry later". Once the backend is up, calls go through.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tower_monitor::{BoxError, MinMonitor, MonitoredService, Url, trigger};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // The backend is a TCP listener that comes up 2 s after `on_down` asks for it.
    let backend_addr = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let start_backend = trigger::from_fn(move || async move {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if let Ok(listener) = TcpListener::bind(backend_addr).await {
                while listener.accept().await.is_ok() {}
            }
        });
        Ok::<(), BoxError>(())
    });
    let monitor = Arc::new(MinMonitor::new());
    let url = Url::parse(&format!("http://{backend_addr}/"))?;
    monitor.add(
        "backend",
        MonitoredService::new(url, Duration::from_secs(30)).on_down(start_backend),
    )?;

    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = Server::builder()
        .layer(monitor.layer("backend")?)
        .add_service(health)
        .serve_with_incoming(TcpIncoming::from(listener));
    tokio::spawn(server);
    println!("gRPC server on {addr}; calling grpc.health.v1.Health/Check once a second");

    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = HealthClient::new(channel);
    for attempt in 1..=6 {
        match client.check(HealthCheckRequest::default()).await {
            Ok(reply) => {
                println!("call {attempt}: ok, {:?}", reply.into_inner().status());
                break;
            }
            Err(status) => println!("call {attempt}: {:?} ({})", status.code(), status.message()),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}
