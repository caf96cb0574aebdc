//! The `tower-monitor-gateway` program killed (`kill -9`, as the OOM killer does): the backend
//! programs it started do not outlive it, so the gateway started next finds their ports free
//! and can stop what it starts.

mod common;

use std::time::{Duration, Instant};

use tokio::net::TcpStream;

const PROGRAM: &str = env!("CARGO_BIN_EXE_tower-monitor-gateway");

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_takes_its_backend_program_with_it() {
    let backend = common::refused_addr().await;
    let config = common::TempFile::new("killed", &common::process_backend_config(backend, ""));
    let (mut gateway, addr) = common::spawn_gateway_program(PROGRAM, config.path(), true).await;
    assert!(common::get_once(addr).await.starts_with("HTTP/1.1 503"));
    let pid = common::started_program_pid(&mut gateway).await;
    let give_up = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(backend).await.is_err() {
        assert!(Instant::now() < give_up, "the program never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    gateway.start_kill().unwrap();
    gateway.wait().await.unwrap();

    // Nothing tells this test when a process that is not its child ends: its port closing is
    // the sign, looked for until a bound.
    let give_up = Instant::now() + Duration::from_secs(10);
    let mut outlived = false;
    while TcpStream::connect(backend).await.is_ok() {
        if Instant::now() > give_up {
            outlived = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if outlived {
        let _ = tokio::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .await;
    }
    assert!(!outlived, "the backend program outlived the killed gateway");
}
