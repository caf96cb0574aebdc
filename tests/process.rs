//! `Process` and `Supervisor` with real programs on 127.0.0.1: started once while booting,
//! stopped with SIGTERM then SIGKILL, restarted after an exit, nothing left behind.

mod process_support;

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use process_support::*;
use serde_json::json;
use tokio::net::TcpStream;
use tower_monitor::Trigger;
use tower_monitor::config::TriggerRegistry;
use tower_monitor::trigger::{Process, ProcessBuilder, ProcessError, Supervisor};
use tracing::Level;

/// A backend that notes each start in `starts`, boots for `boot`, then serves on `addr`; it
/// exits 0 on SIGTERM after noting it in `starts`.
fn booting_backend(starts: &Path, boot: Duration, addr: SocketAddr) -> ProcessBuilder {
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

async fn free_addr() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_triggers_while_it_boots_start_it_once() {
    let dir = scratch("start-once");
    let starts = dir.join("starts");
    let addr = free_addr().await;
    let supervisor = Supervisor::new();
    let backend = supervisor.supervise(booting_backend(&starts, Duration::from_millis(700), addr));
    // 64 clients each trigger it again and again until the backend accepts: many arrive at
    // once, the others spread over the whole boot.
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let (backend, barrier) = (backend.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let mut triggers = 0;
                loop {
                    backend.trigger().await.expect("trigger");
                    triggers += 1;
                    if TcpStream::connect(addr).await.is_ok() {
                        return triggers;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();
    let all = tokio::time::timeout(Duration::from_secs(20), futures::future::join_all(clients))
        .await
        .expect("the backend came up");
    let triggers: usize = all.into_iter().map(Result::unwrap).sum();
    let pid = backend.pid().expect("running");
    supervisor.shutdown(Duration::from_secs(5)).await.unwrap();

    assert!(
        triggers > 64,
        "the clients triggered during the boot: {triggers}"
    );
    let started: Vec<_> = lines(&starts)
        .into_iter()
        .filter(|l| l.starts_with("started"))
        .collect();
    assert_eq!(started, [format!("started {pid}")]);
    assert_eq!(backend.starts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sends_sigterm_to_the_program() {
    let dir = scratch("sigterm");
    let starts = dir.join("starts");
    let addr = free_addr().await;
    let backend = booting_backend(&starts, Duration::ZERO, addr)
        .stop_grace(Duration::from_secs(10))
        .build();
    backend.start().unwrap();
    let pid = backend.pid().unwrap();
    eventually("the backend notes its start", || !lines(&starts).is_empty()).await;

    let status = backend.stop().await.unwrap().expect("it was running");

    assert!(
        status.success(),
        "it exited by its SIGTERM handler: {status}"
    );
    assert_eq!(lines(&starts).last().map(String::as_str), Some("SIGTERM"));
    assert!(!alive(pid));
    assert!(!backend.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_ignoring_sigterm_is_killed_after_the_grace() {
    let dir = scratch("ignores-term");
    let pid_file = dir.join("pid");
    // The ignored SIGTERM is inherited by the sleeps too: the whole group ignores it.
    let stubborn = Process::builder("sh")
        .args([
            "-c",
            &format!(
                "trap '' TERM; echo $$ > {}; while :; do sleep 0.05; done",
                pid_file.display()
            ),
        ])
        .stop_grace(Duration::from_millis(300))
        .build();
    stubborn.start().unwrap();
    let pid = read_pid(&pid_file).await;

    let status = stubborn.stop().await.unwrap().expect("it was running");

    assert_eq!(status.signal(), Some(9), "SIGKILLed: {status}");
    assert!(!alive(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_includes_what_the_program_started_in_its_group() {
    let dir = scratch("stop-group");
    let pid_file = dir.join("pid");
    let parent = Process::builder("sh")
        .args([
            "-c",
            &format!("sleep 1000 & echo $! > {}; wait", pid_file.display()),
        ])
        .build();
    parent.start().unwrap();
    let grandchild = read_pid(&pid_file).await;
    assert!(alive(grandchild));

    parent.stop().await.unwrap();

    eventually("the grandchild is gone", || !alive(grandchild)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_program_left_ignoring_sigterm_is_killed_after_the_grace() {
    let dir = scratch("straggler");
    let pid_file = dir.join("pid");
    // The shell exits on SIGTERM at once; its child ignores it and outlives it.
    let parent = Process::builder("sh")
        .args([
            "-c",
            &format!(
                "(trap '' TERM; exec sleep 1000) & echo $! > {}; wait",
                pid_file.display()
            ),
        ])
        .stop_grace(Duration::from_millis(300))
        .build();
    parent.start().unwrap();
    let straggler = read_pid(&pid_file).await;

    let status = parent.stop().await.unwrap().expect("it was running");

    assert_eq!(
        status.signal(),
        Some(15),
        "the shell died of SIGTERM: {status}"
    );
    eventually("the straggler is gone", || !alive(straggler)).await;
}

#[test]
fn a_runtime_shutting_down_kills_the_program_it_was_watching() {
    let dir = scratch("runtime-gone");
    let pid_file = dir.join("pid");
    let process = Process::builder("sh")
        .args([
            "-c",
            &format!("sleep 1000 & echo $! > {}; wait", pid_file.display()),
        ])
        .build();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (leader, grandchild) = runtime.block_on(async {
        process.start().unwrap();
        (process.pid().unwrap(), read_pid(&pid_file).await)
    });

    drop(runtime);

    assert!(
        !process.is_running(),
        "forgotten, so a later trigger starts it again"
    );
    let checker = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    checker.block_on(async {
        eventually("the program is gone", || !alive(leader)).await;
        eventually("the grandchild is gone", || !alive(grandchild)).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_starts_again_after_the_program_exits_and_logs_the_exit() {
    record_logs();
    let dir = scratch("restart");
    let starts = dir.join("starts");
    let program = dir.join("exits-3");
    std::fs::write(
        &program,
        format!("#!/bin/sh\necho $$ >> {}\nexit 3\n", starts.display()),
    )
    .unwrap();
    make_executable(&program);
    let quitter = Process::builder(&program).service("restarts").build();

    quitter.trigger().await.unwrap();
    assert_eq!(quitter.exited().await.and_then(|s| s.code()), Some(3));
    assert!(!quitter.is_running());
    quitter.trigger().await.unwrap();
    quitter.exited().await;

    assert_eq!(lines(&starts).len(), 2);
    assert_eq!(quitter.starts(), 2);
    let exits: Vec<_> = logged_by(&program.display().to_string())
        .into_iter()
        .filter(|e| e.message.contains("exited"))
        .collect();
    assert_eq!(exits.len(), 2, "{exits:?}");
    assert!(
        exits
            .iter()
            .all(|e| e.field("status").is_some_and(|s| s.contains('3'))
                && e.field("service") == Some("restarts"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_shutdown_stops_every_program_and_leaves_no_process() {
    let dir = scratch("shutdown");
    let supervisor = Supervisor::new();
    let mut pids = Vec::new();
    let mut processes = Vec::new();
    for (i, script) in [
        "echo $$ > {pid}; exec sleep 1000",
        "sleep 1000 & echo $! > {pid}; wait",
        "trap '' TERM; echo $$ > {pid}; while :; do sleep 0.05; done",
    ]
    .into_iter()
    .enumerate()
    {
        let pid_file = dir.join(format!("pid{i}"));
        let script = script.replace("{pid}", &pid_file.display().to_string());
        let process = supervisor.supervise(Process::builder("sh").args(["-c", &script]));
        process.start().unwrap();
        pids.push(process.pid().unwrap());
        pids.push(read_pid(&pid_file).await);
        processes.push(process);
    }
    assert_eq!(supervisor.running().len(), 3);

    supervisor
        .shutdown(Duration::from_millis(300))
        .await
        .unwrap();

    for pid in &pids {
        eventually(&format!("{pid} is gone"), || !alive(*pid)).await;
    }
    assert!(supervisor.running().is_empty());
    let refused = processes[0].start().unwrap_err();
    assert!(
        matches!(refused, ProcessError::ShutDown { .. }),
        "{refused}"
    );
    assert!(processes[0].pid().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_kills_the_group() {
    let dir = scratch("drop");
    let pid_file = dir.join("pid");
    let process = Process::builder("sh")
        .args([
            "-c",
            &format!("sleep 1000 & echo $! > {}; wait", pid_file.display()),
        ])
        .build();
    process.start().unwrap();
    let leader = process.pid().unwrap();
    let grandchild = read_pid(&pid_file).await;

    drop(process);

    eventually("the program is gone", || !alive(leader)).await;
    eventually("the grandchild is gone", || !alive(grandchild)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_process_and_process_stop_share_the_program() {
    record_logs();
    let registry = TriggerRegistry::new();
    let start = registry
        .build_at(
            "services.cfg.on_down",
            &json!({ "type": "process", "command": "sh",
                     "args": ["-c", "echo config-process-4242; exec sleep 1000"],
                     "stop_grace": "2s", "env": { "GREETING": "hi" } }),
        )
        .unwrap();
    let stop = registry
        .build_at(
            "services.cfg.on_idle.trigger",
            &json!({ "type": "process_stop" }),
        )
        .unwrap();
    assert!(
        registry.supervisor().running().is_empty(),
        "building starts nothing"
    );

    start.trigger().await.unwrap();
    start.trigger().await.unwrap();
    let running = registry.supervisor().running();
    assert_eq!(running.len(), 1);
    eventually("its output is logged", || {
        logged_by("sh")
            .iter()
            .any(|e| e.message == "config-process-4242")
    })
    .await;
    stop.trigger().await.unwrap();

    assert!(registry.supervisor().running().is_empty());
    assert!(!alive(running[0]));
    let line = logged_by("sh")
        .into_iter()
        .find(|e| e.message == "config-process-4242")
        .unwrap();
    assert_eq!(line.level, Level::INFO);
    assert_eq!(line.field("service"), Some("cfg"));
    assert_eq!(line.field("stream"), Some("stdout"));
}

#[test]
fn config_errors_name_the_field_and_value() {
    let registry = TriggerRegistry::new();
    let err = |path: &str, value: serde_json::Value| {
        registry.build_at(path, &value).err().expect("rejected")
    };
    let e = err(
        "services.a.on_idle.trigger",
        json!({ "type": "process_stop" }),
    );
    assert_eq!(e.path(), "services.a.on_idle.trigger");
    assert!(e.message().contains("services.a"), "{e}");
    let e = err(
        "services.a.on_down",
        json!({ "type": "process", "command": "no-such-backend-77" }),
    );
    assert_eq!(e.path(), "services.a.on_down.command");
    assert!(e.message().contains("\"no-such-backend-77\""), "{e}");
    let e = err(
        "services.a.on_down",
        json!({ "type": "process", "command": "true", "current_dir": "/no/such/dir" }),
    );
    assert_eq!(e.path(), "services.a.on_down.current_dir");
    let e = err(
        "services.a.on_down",
        json!({ "type": "process", "command": "true", "stop_grace": "later" }),
    );
    assert_eq!(e.path(), "services.a.on_down.stop_grace");
    let e = err(
        "services.a.on_down",
        json!({ "type": "process", "command": "true", "output_level": "loud" }),
    );
    assert_eq!(e.path(), "services.a.on_down.output_level");
    assert!(e.message().contains("\"loud\""), "{e}");
    let e = err(
        "services.a.on_down",
        json!({ "type": "process", "command": "true", "env": { "A=B": "c" } }),
    );
    assert_eq!(e.path(), "services.a.on_down.env.A=B");
}

#[test]
fn a_bad_service_fails_the_whole_config_and_nothing_is_supervised() {
    let registry = TriggerRegistry::new();
    let json = r#"{ "services": {
        "a": { "url": "http://127.0.0.1:9/", "grace_period": "1s",
               "on_down": { "type": "process", "command": "sleep", "args": ["1000"] } },
        "b": { "url": "http://127.0.0.1:9/", "grace_period": "1s",
               "on_down": { "type": "process", "command": "no-such-backend-78" } } } }"#;
    let err = tower_monitor::MinMonitor::from_config_with(json, &registry).unwrap_err();
    assert_eq!(err.path(), "services.b.on_down.command");
    assert!(registry.supervisor().running().is_empty());
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn starting_outside_a_runtime_is_an_error_not_a_panic() {
    let process = Process::builder("sleep").arg("1000").build();
    let err = process.start().unwrap_err();
    assert!(matches!(err, ProcessError::Spawn { .. }), "{err}");
    assert!(!process.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_lock_file_two_supervisors_run_the_backend_once() {
    let dir = scratch("two-gateways");
    let starts = dir.join("starts");
    let lock_file = dir.join("backend.lock");
    let addr = free_addr().await;
    // Two supervisors stand for two gateways with the same configuration.
    let (first, second) = (Supervisor::new(), Supervisor::new());
    let backend =
        || booting_backend(&starts, Duration::from_millis(300), addr).lock_file(&lock_file);
    let (a, b) = (first.supervise(backend()), second.supervise(backend()));
    let triggers: Vec<_> = (0..32)
        .map(|i| {
            let process = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { process.trigger().await.map_err(|e| e.to_string()) })
        })
        .collect();
    for trigger in futures::future::join_all(triggers).await {
        trigger.unwrap().expect("every trigger is Ok");
    }
    let (owner, other) = if a.is_running() { (&a, &b) } else { (&b, &a) };
    assert!(owner.is_running() && !other.is_running());
    let pid = owner.pid().unwrap();
    assert_eq!(
        std::fs::read_to_string(&lock_file).unwrap().trim(),
        pid.to_string()
    );
    eventually("the backend accepts", || {
        std::net::TcpStream::connect(addr).is_ok()
    })
    .await;
    assert_eq!(
        lines(&starts).len(),
        1,
        "started once: {:?}",
        lines(&starts)
    );

    // Once its owner stops it, the other one may start it.
    owner.stop().await.unwrap();
    other.trigger().await.unwrap();
    assert!(other.is_running());
    let second_pid = other.pid().unwrap();
    first.shutdown(Duration::from_secs(5)).await.unwrap();
    second.shutdown(Duration::from_secs(5)).await.unwrap();

    assert_ne!(second_pid, pid);
    assert_eq!(a.starts() + b.starts(), 2);
    assert!(!alive(pid) && !alive(second_pid));
}

#[test]
fn a_lock_file_in_a_missing_directory_is_a_config_error() {
    let err = TriggerRegistry::new()
        .build_at(
            "services.a.on_down",
            &json!({ "type": "process", "command": "true", "lock_file": "/no/such/dir/x.lock" }),
        )
        .err()
        .expect("rejected");
    assert_eq!(err.path(), "services.a.on_down.lock_file");
    assert!(err.message().contains("\"/no/such/dir/x.lock\""), "{err}");
}
