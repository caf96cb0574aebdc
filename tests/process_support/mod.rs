//! Helpers for tests with real programs: process liveness by PID, scratch files, and the log
//! lines programs' output produced.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::Level;

#[path = "../common/logs.rs"]
mod logs;
pub use logs::Logged;
use logs::logs;

/// Whether `pid` is a running process: `kill -0` succeeds and (on Linux) it is not a zombie
/// waiting for a parent to reap it.
pub fn alive(pid: u32) -> bool {
    let signalled = std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !signalled {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat[stat.rfind(')').unwrap() + 1..]
                .split_whitespace()
                .next();
            !matches!(state, Some("Z" | "X"))
        }
        Err(_) => false,
    }
}

/// Whether `pid` exists at all, zombie included.
pub fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits (bounded) until `check` holds: for the exit of processes that are not our children,
/// of which nothing tells us.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Kills `pid` if it still runs (cleanup after a test).
pub fn kill(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tower-monitor-{}-{}-{name}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Reads a PID a program wrote to `file`, waiting (bounded) until it is there.
pub async fn read_pid(file: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(file) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        assert!(Instant::now() < deadline, "no pid in {}", file.display());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts reading the log of this test binary, at info: its one global subscriber
/// (`logs.rs`), installed at the first call. Every test of a binary that has this module calls
/// this first, before it logs anything.
pub fn record_logs() {
    logs(Level::INFO);
}

/// The log of this test binary so far (see [`record_logs`]).
pub fn log() -> logs::Captured {
    logs(Level::INFO)
}

/// The events logged so far whose `program` field is `program`.
pub fn logged_by(program: &str) -> Vec<Logged> {
    logs(Level::INFO).events_with("program", program)
}
