//! Started once, stopped with SIGTERM then SIGKILL, started again after an exit.

use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tower_monitor::Trigger;
use tower_monitor::trigger::{Process, ProcessError, Supervisor};

use crate::process_support::*;
use crate::{booting_backend, free_addr, lines, make_executable};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_triggers_while_it_boots_start_it_once() {
    record_logs();
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
    record_logs();
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
    record_logs();
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
    record_logs();
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
    record_logs();
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

#[test]
fn starting_outside_a_runtime_is_an_error_not_a_panic() {
    record_logs();
    let process = Process::builder("sleep").arg("1000").build();
    let err = process.start().unwrap_err();
    assert!(matches!(err, ProcessError::Spawn { .. }), "{err}");
    assert!(!process.is_running());
}
