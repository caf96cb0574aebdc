//! A `tower-monitor-gateway` killed (`kill -9`) while its backend program runs, with a
//! `lock_file`: what outlives it (a program that ignores SIGTERM; what a wrapper script
//! started) holds the backend's port, and the next gateway on the same lock file stops that,
//! so that the backend sleeps again, and then runs its own. Linux: the record in the lock file
//! is checked through `/proc`.
#![cfg(target_os = "linux")]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

const PROGRAM: &str = env!("CARGO_BIN_EXE_tower-monitor-gateway");

/// An HTTP server on 127.0.0.1, port `argv[2]`, that answers its process id; with `argv[1]`
/// "deaf" it ignores SIGTERM.
const SERVER: &str = r#"
import os, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
if sys.argv[1] == "deaf":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
class Pid(BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[2])), Pid).serve_forever()
"#;

/// How the server is run: itself, deaf to SIGTERM; or plain, from `sh -c` that does not `exec`.
#[derive(Clone, Copy)]
enum Run {
    Deaf,
    Wrapped,
}

/// Processes of the test, with when they started, killed by PID when it ends, however it
/// ends, unless their id is another process's by then (the test stops them, and a busy
/// machine gives ids out again); and its lock file, removed.
struct Strays(Vec<(u32, Option<u64>)>, PathBuf);

impl Strays {
    fn push(&mut self, pid: u32) {
        self.0.push((pid, start_time(pid)));
    }
}

impl Drop for Strays {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.1);
        for &(pid, started) in &self.0 {
            if alive(pid) && started.is_some() && start_time(pid) == started {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// The fields of `/proc/PID/stat` after the command name, if `pid` exists.
fn stat(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    Some(after_comm.split_whitespace().map(str::to_string).collect())
}

/// When `pid` started, in clock ticks after boot (field 22): with its id, it names a process.
fn start_time(pid: u32) -> Option<u64> {
    stat(pid)?.get(19)?.parse().ok()
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|fields| !matches!(fields.first().map(String::as_str), Some("Z" | "X")))
}

/// Waits (bounded) until `check` holds: nothing tells the test when a process that is not its
/// child ends.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < give_up, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The gateway's configuration: "app" on `backend`, run as `run` with `lock`, idle-stopped
/// after `idle`; requests held while it starts.
fn config(
    tag: &str,
    backend: SocketAddr,
    (script, lock): (&str, &Path),
    run: Run,
    idle: &str,
) -> common::TempFile {
    let port = backend.port().to_string();
    let (command, args) = match run {
        Run::Deaf => ("python3", json!([script, "deaf", port])),
        Run::Wrapped => (
            "sh",
            json!(["-c", "python3 \"$0\" plain \"$1\"; exit $?", script, port]),
        ),
    };
    let config = json!({
        "gateway": { "listen": "127.0.0.1:0", "routes": [ { "service": "app" } ],
                     "services": { "app": { "hold": { "max_wait": "20s" } } } },
        "services": { "app": {
            "url": format!("http://{backend}/"), "grace_period": "30s", "probe_timeout": "300ms",
            "on_down": { "type": "process", "command": command, "args": args,
                         "stop_grace": "1s", "lock_file": lock },
            "on_idle": { "after": idle, "trigger": { "type": "process_stop" } } } }
    });
    common::TempFile::new(tag, &config.to_string())
}

/// The process id that answers `GET /` through the gateway at `addr`.
async fn answering_pid(addr: SocketAddr) -> u32 {
    let reply = common::exchange(
        addr,
        "GET / HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    body.trim()
        .parse()
        .unwrap_or_else(|_| panic!("a process id: {reply}"))
}

async fn the_next_gateway_stops_what_a_killed_one_left(tag: &str, run: Run) {
    let backend = common::refused_addr().await;
    let script = common::TempFile::new(&format!("{tag}-server"), SERVER);
    let lock = PathBuf::from(format!("{}.lock", script.path()));
    let mut strays = Strays(Vec::new(), lock.clone());
    let files = (script.path(), lock.as_path());

    // The first gateway starts the program, and is killed without a chance to stop it.
    let first = config(&format!("{tag}-first"), backend, files, run, "1h");
    let (mut killed, addr, log) = common::gateway_with_log(PROGRAM, &first).await;
    let leftover = answering_pid(addr).await;
    strays.push(leftover);
    let leader: u32 = std::fs::read_to_string(&lock)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    killed.start_kill().unwrap();
    killed.wait().await.unwrap();
    drop(log);
    if let Run::Wrapped = run {
        eventually("the wrapper script ends on its SIGTERM", || !alive(leader)).await;
    }
    assert!(
        alive(leftover),
        "the server outlives the killed gateway (what this test is about)"
    );

    // The next one finds the backend up, and its idle stop stops what the first one left.
    let next = config(&format!("{tag}-next"), backend, files, run, "500ms");
    let (mut gateway, addr, log) = common::gateway_with_log(PROGRAM, &next).await;
    assert_eq!(
        answering_pid(addr).await,
        leftover,
        "the leftover answers at first"
    );
    eventually("the idle stop stops the leftover", || !alive(leftover)).await;

    // Its own program runs on the next request, and is stopped with it.
    let own = answering_pid(addr).await;
    strays.push(own);
    assert_ne!(own, leftover);
    let log = common::stop_and_read_log(&mut gateway, log).await;
    assert!(!alive(own), "the gateway's shutdown stops its own program");
    let found = log
        .lines()
        .find(|l| l.contains("left its process group running"));
    let found = found.unwrap_or_else(|| panic!("the leftover is logged:\n{log}"));
    assert!(
        found.contains("service=app") && found.contains(&format!("pgid={leader}")),
        "{found}"
    );
    assert!(
        log.contains("stopped what the dead supervisor left of the program"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_deaf_to_sigterm_left_by_a_killed_gateway_is_stopped_by_the_next() {
    the_next_gateway_stops_what_a_killed_one_left("leftover-deaf", Run::Deaf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_wrapper_script_started_is_stopped_by_the_next_gateway() {
    the_next_gateway_stops_what_a_killed_one_left("leftover-wrapped", Run::Wrapped).await;
}
