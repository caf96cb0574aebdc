//! The bare hyper form: a `MonitorService` turned into a hyper service.
//!
//! Run:  cargo run --example hyper
//! Then: curl -i http://127.0.0.1:3001/
//!
//! Flags (used by `benches/load.sh`): `--port N` to listen elsewhere (0: any free port), `--no-monitor` to serve the
//! same handler without the layer. The backend here is a listener this example keeps up, so
//! every request is forwarded: this is the cost of guarding a service whose backend is awake.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::{Layer, service_fn};
use tower_monitor::{BoxError, MinMonitor, MonitoredService, Url};

async fn hello(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::from("hello\n")))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let monitored = !args.iter().any(|a| a == "--no-monitor");
    let port = match args.iter().position(|a| a == "--port") {
        Some(i) => args
            .get(i + 1)
            .ok_or("--port needs a number")?
            .parse::<u16>()?,
        None => 3001,
    };

    // An always-up backend, so the layer forwards every request.
    let backend = TcpListener::bind("127.0.0.1:0").await?;
    let url = Url::parse(&format!("http://{}/", backend.local_addr()?))?;
    tokio::spawn(async move { while backend.accept().await.is_ok() {} });
    let monitor = Arc::new(MinMonitor::new());
    monitor.add(
        "backend",
        MonitoredService::new(url, Duration::from_secs(30)),
    )?;
    let layer = monitor.layer("backend")?;

    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr} (monitor layer: {monitored})");
    println!("try: curl -i http://{addr}/");
    loop {
        let (stream, _) = listener.accept().await?;
        let io = TokioIo::new(stream);
        let builder = auto::Builder::new(TokioExecutor::new());
        if monitored {
            let service = TowerToHyperService::new(layer.layer(service_fn(hello)));
            tokio::spawn(async move { builder.serve_connection(io, service).await });
        } else {
            let service = TowerToHyperService::new(service_fn(hello));
            tokio::spawn(async move { builder.serve_connection(io, service).await });
        }
    }
}
