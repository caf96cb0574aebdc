//! Three gateway processes with one Redis in front of one backend program: a herd spread over
//! all three starts the backend exactly once.
#![cfg(all(feature = "fleet", feature = "gateway"))]

mod common;
mod fleet_support;

use std::path::PathBuf;

const PROGRAM: &str = env!("CARGO_BIN_EXE_tower-monitor-gateway");

/// Files of this test, and the backend programs listed in one of them, gone when dropped.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("tower-monitor-fleet-gw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn lines(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.file(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for pid in self.lines("pids") {
            let _ = std::process::Command::new("kill").arg(&pid).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateway_processes_start_a_backend_program_once() {
    let Some(redis) = fleet_support::RedisServer::start().await else {
        return;
    };
    let scratch = Scratch::new();
    let port = common::refused_addr().await.port();
    // The backend: a program that notes each start, then serves on the port.
    let start = format!(
        "echo started >> {starts}; python3 -m http.server {port} --bind 127.0.0.1 >/dev/null 2>&1 & echo $! >> {pids}",
        starts = scratch.file("starts").display(),
        pids = scratch.file("pids").display(),
    );
    let config = serde_json::json!({
        "gateway": {
            "listen": "127.0.0.1:0",
            "routes": [ { "service": "app" } ],
            "services": { "app": { "hold": { "max_wait": "20s" } } }
        },
        "fleet": { "redis": redis.url(), "prefix": "three-gateways" },
        "services": { "app": {
            "url": format!("http://127.0.0.1:{port}/"),
            "grace_period": "30s",
            "on_down": { "type": "command", "command": "sh", "args": ["-c", start] }
        } }
    });
    let config_file = scratch.file("gateway.json");
    std::fs::write(&config_file, config.to_string()).unwrap();
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(common::spawn_gateway_program(PROGRAM, &config_file, false).await);
    }
    redis.wait_for_listeners("three-gateways", 3).await;
    let requests: Vec<_> = (0..30)
        .map(|i| {
            let addr = gateways[i % 3].1;
            tokio::spawn(async move { common::get(addr, "/", &[]).await })
        })
        .collect();
    for request in requests {
        let reply = request.await.unwrap();
        assert_eq!(reply.status, http::StatusCode::OK, "{}", reply.body);
    }
    assert_eq!(
        scratch.lines("starts").len(),
        1,
        "one start across three gateways"
    );
}
