//! `Process` and `Supervisor` with real programs on 127.0.0.1: started once while booting,
//! stopped with SIGTERM then SIGKILL, restarted after an exit, nothing left behind.

#[path = "../process_support/mod.rs"]
mod process_support;

mod cleanup;
mod config;
mod daemonized;
mod early_exit;
mod hung_start;
#[cfg(target_os = "linux")]
mod leftover;
#[cfg(target_os = "linux")]
mod leftover_races;
mod lifecycle;
mod overlapping_stops;
#[cfg(target_os = "linux")]
mod remains;
#[cfg(target_os = "linux")]
mod start_during_stop;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tower_monitor::trigger::{Process, ProcessBuilder};

/// A backend that notes each start in `starts`, boots for `boot`, then serves on `addr`; it
/// exits 0 on SIGTERM after noting it in `starts`.
pub fn booting_backend(starts: &Path, boot: Duration, addr: SocketAddr) -> ProcessBuilder {
    const SCRIPT: &str = r#"
import os, signal, socket, sys, time
starts, boot, port = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
def note(text):
    with open(starts, "a") as f:
        f.write(text + "\n")
def on_term(signum, frame):
    note("SIGTERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
note(f"started {os.getpid()}")
time.sleep(boot)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen(64)
while True:
    conn, _ = server.accept()
    conn.close()
"#;
    Process::builder("python3").args([
        "-c".to_string(),
        SCRIPT.to_string(),
        starts.display().to_string(),
        boot.as_secs_f64().to_string(),
        addr.port().to_string(),
    ])
}

pub async fn free_addr() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

pub fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
