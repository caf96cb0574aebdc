//! `Command` with real programs: process groups, the timeout over the whole run, bounded output
//! lines, and detached programs reaped.

mod process_support;

use std::time::Duration;

use process_support::*;
use tower_monitor::Trigger;
use tower_monitor::trigger::{CUT_MARKER, Command, CommandError, MAX_OUTPUT_LINE};
use tracing::Level;

fn sh(script: &str) -> Command {
    Command::new("sh").args(["-c", script])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_child_holding_stdout_does_not_hang_the_trigger() {
    let dir = scratch("daemon");
    let pid_file = dir.join("pid");
    // Before the fix this waited for stdout to close, which the sleep never does: the 30 s
    // timeout would pass and the result be a Timeout error.
    let result = sh(&format!(
        "sleep 1000 & echo $! > {}; echo started",
        pid_file.display()
    ))
    .timeout(Duration::from_secs(30))
    .trigger()
    .await;
    let daemon = read_pid(&pid_file).await;
    let still_running = alive(daemon);
    kill(daemon);
    result.expect("the program exited successfully");
    assert!(
        still_running,
        "a daemon the program left is not killed when it exits in time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_the_whole_group_grandchildren_included() {
    let dir = scratch("timeout-group");
    let pid_file = dir.join("pid");
    let err = sh(&format!(
        "sleep 1000 & echo $! > {}; wait",
        pid_file.display()
    ))
    .timeout(Duration::from_millis(500))
    .trigger()
    .await
    .expect_err("the program outlives its timeout");
    let grandchild = read_pid(&pid_file).await;
    eventually("the grandchild is gone", || !alive(grandchild)).await;
    assert!(matches!(
        *err.downcast::<CommandError>().unwrap(),
        CommandError::Timeout { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_trigger_future_kills_the_whole_group() {
    let dir = scratch("dropped-group");
    let pid_file = dir.join("pid");
    let run = sh(&format!(
        "sleep 1000 & echo $! > {}; wait",
        pid_file.display()
    ))
    .timeout(Duration::from_secs(600))
    .trigger();
    let pending = tokio::spawn(run);
    let grandchild = read_pid(&pid_file).await;
    assert!(alive(grandchild));
    pending.abort();
    let _ = pending.await;
    eventually("the grandchild is gone", || !alive(grandchild)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_line_without_newline_is_cut_in_the_log_and_in_the_error() {
    record_logs();
    // 8 MiB on stderr without a newline, then a failure whose error carries the stderr tail.
    let program = "huge-line-writer";
    let dir = scratch("huge-line");
    let script = dir.join(program);
    std::fs::write(
        &script,
        "#!/bin/sh\nhead -c 8388608 /dev/zero | tr '\\0' x >&2\nexit 1\n",
    )
    .unwrap();
    make_executable(&script);
    let err = Command::new(&script)
        .timeout(Duration::from_secs(60))
        .trigger()
        .await
        .expect_err("the program exits 1");
    let CommandError::Exit { stderr_tail, .. } = *err.downcast::<CommandError>().unwrap() else {
        panic!("not an exit error")
    };
    assert_eq!(stderr_tail.len(), MAX_OUTPUT_LINE + CUT_MARKER.len());
    assert!(stderr_tail.starts_with("xxxx") && stderr_tail.ends_with(CUT_MARKER));
    let logged = logged_by(&script.display().to_string());
    let lines: Vec<_> = logged
        .iter()
        .filter(|e| e.field("stream") == Some("stderr"))
        .collect();
    assert_eq!(lines.len(), 1, "one (cut) line logged: {logged:?}");
    assert_eq!(lines[0].message.len(), MAX_OUTPUT_LINE + CUT_MARKER.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_logged_at_info_naming_program_and_stream() {
    record_logs();
    let program = "/bin/sh";
    Command::new(program)
        .args(["-c", "echo to-stdout-4711; echo to-stderr-4711 >&2"])
        .trigger()
        .await
        .unwrap();
    let logged = logged_by(program);
    let find = |text: &str| {
        logged
            .iter()
            .find(|e| e.message == text)
            .unwrap_or_else(|| panic!("{text} not logged: {logged:?}"))
            .clone()
    };
    let out = find("to-stdout-4711");
    let err = find("to-stderr-4711");
    assert_eq!(
        (out.level, out.field("stream")),
        (Level::INFO, Some("stdout"))
    );
    assert_eq!(
        (err.level, err.field("stream")),
        (Level::INFO, Some("stderr"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_program_is_reaped_not_left_a_zombie() {
    let dir = scratch("detached-reaped");
    let pid_file = dir.join("pid");
    sh(&format!("echo $$ > {}", pid_file.display()))
        .detached()
        .trigger()
        .await
        .unwrap();
    let pid = read_pid(&pid_file).await;
    // A zombie keeps its /proc entry until its parent (this test process) reaps it.
    eventually("the detached program is reaped", || !exists(pid)).await;
}

fn make_executable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
