//! Probe a backend and watch its status change.
//!
//! Run: cargo run --example status
//!
//! Starts a tiny TCP backend on 127.0.0.1, asks the monitor for its status, stops the backend,
//! and shows how the cached up lasts the grace period while a down is always a fresh probe.

use std::io::IsTerminal;
use std::time::Duration;

use tokio::net::TcpListener;
use tower_monitor::{MinMonitor, MonitoredService, Url};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter("tower_monitor=debug")
        // Colour codes only on a terminal, not in a file or pipe the output goes to.
        .with_ansi(std::io::stdout().is_terminal())
        .init();

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = Url::parse(&format!("http://{}/", listener.local_addr()?))?;
    let backend = tokio::spawn(async move { while listener.accept().await.is_ok() {} });

    let grace = Duration::from_secs(2);
    let monitor = MinMonitor::new();
    monitor.add("backend", MonitoredService::new(url.clone(), grace))?;

    println!("backend listening at {url}");
    println!(
        "status: up = {}  (probed)",
        monitor.status("backend").await?
    );
    println!(
        "status: up = {}  (cached)",
        monitor.status("backend").await?
    );

    backend.abort();
    println!("backend stopped");
    println!(
        "status: up = {}  (still cached: trusted for the grace period)",
        monitor.status("backend").await?
    );
    tokio::time::sleep(grace).await;
    println!(
        "status: up = {}  (grace period over: probed again)",
        monitor.status("backend").await?
    );
    Ok(())
}
