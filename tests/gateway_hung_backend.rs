//! A backend program that hangs once up (stopped with SIGSTOP: its port still accepts), behind
//! the `tower-monitor-gateway` program, as GATEWAY.md's Failures section says it goes: each
//! request gets its 504 at `response_timeout`, an `http` probe finds the backend down once the
//! grace period has passed, and the program is stopped (SIGKILL past its `stop_grace`, as a
//! stopped process takes no SIGTERM) and started afresh.
#![cfg(unix)]

mod common;

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

const PROGRAM: &str = env!("CARGO_BIN_EXE_tower-monitor-gateway");

/// The pid of the `nth` start of the backend program (1 for the first), from the log lines.
fn started_pid(log: &std::sync::Mutex<Vec<String>>, nth: usize) -> Option<u32> {
    let log = log.lock().unwrap();
    let line = log.iter().find(|l| {
        l.contains("started the backend program") && l.contains(&format!("start={nth}"))
    })?;
    let pid = line.split("pid=").nth(1)?.split_whitespace().next()?;
    pid.parse().ok()
}

fn signal(pid: u32, name: &str) {
    let _ = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_backend_gets_504s_then_is_found_down_and_started_afresh() {
    let backend = common::refused_addr().await;
    let config = common::TempFile::new(
        "hung-backend",
        &format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                               "services": {{ "app": {{ "response_timeout": "1s" }} }} }},
                 "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "1s",
                     "probe": {{ "type": "http", "path": "/" }}, "probe_timeout": "300ms",
                     "start_timeout": "2s",
                     "on_down": {{ "type": "process", "command": "python3",
                                   "args": ["-m", "http.server", "{port}", "--bind", "127.0.0.1"],
                                   "current_dir": {dir:?}, "stop_grace": "1s" }} }} }} }}"#,
            port = backend.port(),
            dir = std::env::temp_dir().display().to_string()
        ),
    );
    let (mut gateway, addr) = common::spawn_gateway_program(PROGRAM, config.path(), true).await;
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut lines = BufReader::new(gateway.stderr.take().unwrap()).lines();
    let kept = std::sync::Arc::clone(&log);
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            kept.lock().unwrap().push(line);
        }
    });
    let status = || async { common::get(addr, "/", &[]).await.status.as_u16() };
    let until_200 = async |within: Duration| {
        let give_up = Instant::now() + within;
        loop {
            if status().await == 200 {
                return;
            }
            assert!(Instant::now() < give_up, "never served");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    until_200(Duration::from_secs(15)).await;
    let first = started_pid(&log, 1).expect("the first start is logged");

    signal(first, "STOP");
    let asked = Instant::now();
    assert_eq!(
        status().await,
        504,
        "hung: answered at the response timeout"
    );
    assert!(asked.elapsed() < Duration::from_secs(5));
    // Found down by the http probe, stopped at the start timeout, started afresh.
    until_200(Duration::from_secs(20)).await;
    let second = started_pid(&log, 2).expect("a second start");
    assert_ne!(first, second);
    // Killed, not left stopped: a stopped process would hold its port for ever.
    // (It was reaped, by the gateway, before the new one was started.)
    let alive = std::process::Command::new("kill")
        .args(["-0", &first.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(!alive, "the hung program {first} still runs");

    signal(first, "CONT");
    common::terminate_gateway_then_backend_is_gone(gateway, backend).await;
}
