//! A real program as the backend: a detached `Command` that binds its port only after booting
//! is started exactly once, however requests arrive while it boots.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceExt};
use tower_monitor::{MinMonitor, MonitoredService, ServiceState, trigger::Command};

/// Appends its PID to a file, sleeps for the boot time, then accepts connections until killed.
const SLOW_BACKEND: &str = r#"
import os, socket, sys, time
with open(sys.argv[1], "a") as f:
    f.write(f"{os.getpid()}\n")
time.sleep(float(sys.argv[3]))
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[2])))
s.listen(128)
while True:
    c, _ = s.accept()
    c.close()
"#;

/// Kills the backend's processes (by the PIDs it wrote) when the test ends, pass or fail.
struct Spawned(std::path::PathBuf);

impl Spawned {
    fn pids(&self) -> Vec<String> {
        std::fs::read_to_string(&self.0)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        for pid in self.pids() {
            let _ = std::process::Command::new("kill").arg(&pid).status();
        }
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booting_program_is_started_once_while_requests_keep_coming() {
    let port = refused_addr().await.port();
    let spawned = Spawned(std::env::temp_dir().join(format!(
        "tower-monitor-spawns-{}-{port}",
        std::process::id()
    )));
    let on_down = Command::new("python3")
        .args(["-c", SLOW_BACKEND])
        .arg(spawned.0.as_os_str())
        .args([port.to_string(), "1.5".to_string()])
        .detached();
    let url = tower_monitor::Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
    let monitor = Arc::new(MinMonitor::new());
    monitor
        .add(
            "app",
            MonitoredService::new(url, Duration::from_secs(30)).on_down(on_down),
        )
        .unwrap();
    let layer = monitor.layer("app").unwrap();
    let inner = tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("app")))
    });
    // A client retrying every 100 ms through the boot, and one held request.
    let held = tokio::spawn(
        layer
            .clone()
            .hold(Duration::from_secs(20))
            .layer(inner)
            .oneshot(Request::new(())),
    );
    let mut answers = Vec::new();
    loop {
        let status = layer
            .layer(inner)
            .oneshot(Request::new(()))
            .await
            .unwrap()
            .status();
        answers.push(status);
        if status == StatusCode::OK || answers.len() > 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answers.last(), Some(&StatusCode::OK), "{answers:?}");
    assert!(
        answers.len() > 5,
        "the backend took its boot time: {answers:?}"
    );
    let held = held.await.unwrap().unwrap();
    assert_eq!(held.status(), StatusCode::OK);
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Up);
    assert_eq!(spawned.pids().len(), 1, "started exactly once");
}
