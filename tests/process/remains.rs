//! What a program left in its process group as it exited under a stop (children deaf to
//! SIGTERM): killed at the stop's deadline even when its caller gave up on it, waited for
//! until gone before the stop ends, and the lock file held, and a start held back, until then.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tower_monitor::Trigger;
use tower_monitor::trigger::{Process, ProcessBuilder, Supervisor};

use crate::process_support::{alive, eventually, record_logs, scratch};

/// Ample for a stop of a few seconds, SIGKILL included, on a loaded machine.
const WITHIN: Duration = Duration::from_secs(15);

/// A program whose leader SIGTERM ends, leaving `children` processes deaf to it in its group
/// (until a SIGKILL, or 30 s); each child's pid is a line of `pids`.
fn leaving_children(service: &str, children: usize, pids: &Path) -> ProcessBuilder {
    let script = format!(
        "for i in $(seq {children}); do (trap '' TERM; exec sleep 30) & echo $! >> {:?}; done; wait",
        pids.display().to_string()
    );
    Process::builder("sh")
        .args(["-c", &script])
        .service(service)
        .stop_grace(Duration::from_secs(1))
}

/// The pids of the `children` in `file`, once each ignores SIGTERM (it has become `sleep`);
/// the file is removed, for the next run to write.
async fn deaf_children(file: &Path, children: usize) -> Vec<u32> {
    let read = || -> Vec<u32> {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect()
    };
    eventually("the children ignore SIGTERM", || {
        let pids = read();
        pids.len() == children
            && pids.iter().all(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "sleep\n")
            })
    })
    .await;
    let pids = read();
    std::fs::remove_file(file).unwrap();
    pids
}

/// Whether `pid` runs, as `/proc` says now (a zombie does not): read at once, with no program
/// started to ask, as a process SIGKILL reached a moment ago may not have died yet.
fn runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        !state.is_some_and(|s| s.starts_with('Z') || s.starts_with('X'))
    })
}

fn says_stopping(lock: &Path) -> bool {
    std::fs::read_to_string(lock).is_ok_and(|text| text.contains("\nstopping_until "))
}

/// Stops `process`, and gives that stop up as soon as the program (its group's leader) has
/// exited, as the monitor does an idle stop at its `trigger_timeout`.
async fn stop_given_up_once_it_exited(process: &Process) {
    let stop = process.stop();
    tokio::select! {
        ended = stop => panic!("the stop ended before its SIGKILL was due: {ended:?}"),
        _ = tokio::time::timeout(WITHIN, process.exited()) => {}
    }
    assert!(!process.is_running(), "the program ends on SIGTERM");
}

async fn given_up_then_started(service: &str, lock: Option<PathBuf>) {
    record_logs();
    let pids = scratch(service).join("children");
    // What it checks between the program's exit and the SIGKILL must fit in the grace, on
    // a loaded machine too.
    let mut builder = leaving_children(service, 1, &pids).stop_grace(Duration::from_secs(3));
    if let Some(lock) = &lock {
        builder = builder.lock_file(lock);
    }
    let process = builder.build();
    process.trigger().await.unwrap();
    let children = deaf_children(&pids, 1).await;
    stop_given_up_once_it_exited(&process).await;
    assert!(alive(children[0]), "killed before its stop's deadline");
    if let Some(lock) = &lock {
        assert!(
            says_stopping(lock),
            "the lock file was let go while what the program left runs"
        );
    }
    // Not async: it cannot wait, and says why.
    let refused = process.start().unwrap_err().to_string();
    assert!(
        refused.contains("a trigger starts it once that is done"),
        "{refused}"
    );

    tokio::time::timeout(WITHIN, process.trigger())
        .await
        .expect("the start waits for that stop, which is bounded")
        .unwrap();

    assert!(!alive(children[0]), "started beside what its last run left");
    assert_eq!(process.starts(), 2);
    let next = deaf_children(&pids, 1).await;
    process.stop().await.unwrap();
    assert!(!alive(next[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_given_up_on_once_the_program_exited_still_kills_what_it_left_and_holds_the_lock() {
    const SERVICE: &str = "remains-given-up-lock";
    given_up_then_started(SERVICE, Some(scratch(SERVICE).join("app.lock"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_given_up_on_once_the_program_exited_still_kills_what_it_left() {
    given_up_then_started("remains-given-up", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_while_what_the_program_left_is_stopped_kills_it_at_once_and_waits() {
    const SERVICE: &str = "remains-shutdown";
    record_logs();
    let dir = scratch(SERVICE);
    let (pids, lock) = (dir.join("children"), dir.join("app.lock"));
    let supervisor = Supervisor::new();
    // Its stop would wait 30 s before its SIGKILL.
    let process = supervisor.supervise(
        leaving_children(SERVICE, 1, &pids)
            .lock_file(&lock)
            .stop_grace(Duration::from_secs(30)),
    );
    process.trigger().await.unwrap();
    let children = deaf_children(&pids, 1).await;
    stop_given_up_once_it_exited(&process).await;

    // The gateway's third signal.
    tokio::time::timeout(Duration::from_secs(5), supervisor.shutdown(Duration::ZERO))
        .await
        .expect("the shutdown with no grace does not wait for the stop's")
        .unwrap();

    assert!(
        !runs(children[0]),
        "the shutdown ended with what the program left running"
    );
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), "", "its record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_kills_what_the_program_left_ends_once_it_is_gone() {
    const SERVICE: &str = "remains-killed";
    const CHILDREN: usize = 20;
    record_logs();
    let pids = scratch(SERVICE).join("children");
    let process = leaving_children(SERVICE, CHILDREN, &pids)
        .stop_grace(Duration::from_millis(300))
        .build();
    process.start().unwrap();
    let children = deaf_children(&pids, CHILDREN).await;

    tokio::time::timeout(WITHIN, process.stop())
        .await
        .expect("the stop is bounded")
        .unwrap();

    let running: Vec<u32> = children.iter().copied().filter(|pid| runs(*pid)).collect();
    assert!(
        running.is_empty(),
        "{running:?} ran still as the stop ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_handle_dropped_while_what_the_program_left_is_stopped_kills_it() {
    const SERVICE: &str = "remains-dropped";
    record_logs();
    let pids = scratch(SERVICE).join("children");
    // Its stop would wait 30 s before its SIGKILL; nothing waits for that stop once the
    // process is dropped (a supervisor's shutdown no longer sees it).
    let process = leaving_children(SERVICE, 1, &pids)
        .stop_grace(Duration::from_secs(30))
        .build();
    process.trigger().await.unwrap();
    let children = deaf_children(&pids, 1).await;
    stop_given_up_once_it_exited(&process).await;

    drop(process);

    eventually(
        "what the program left is killed with its last handle",
        || !runs(children[0]),
    )
    .await;
}
