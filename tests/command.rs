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
    record_logs();
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
    record_logs();
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
    record_logs();
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
    record_logs();
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

fn config_error(on_down: &str) -> tower_monitor::config::ConfigError {
    let json = format!(
        r#"{{ "services": {{ "app": {{ "url": "http://127.0.0.1:9/", "grace_period": "1s",
             "on_down": {on_down} }} }} }}"#
    );
    match tower_monitor::MinMonitor::from_config(&json) {
        Ok(_) => panic!("accepted: {on_down}"),
        Err(err) => err,
    }
}

#[test]
fn the_config_rejects_a_program_not_on_path_naming_field_and_value() {
    record_logs();
    let err = config_error(r#"{ "type": "command", "command": "no-such-program-0815" }"#);
    assert_eq!(err.path(), "services.app.on_down.command");
    assert!(err.message().contains("\"no-such-program-0815\""), "{err}");
    assert!(err.message().contains("PATH"), "{err}");
}

#[test]
fn the_config_rejects_a_program_path_that_is_missing_or_not_executable() {
    record_logs();
    let dir = scratch("config-program");
    let missing = dir.join("missing");
    let err = config_error(&format!(
        r#"{{ "type": "command", "command": {:?} }}"#,
        missing.display().to_string()
    ));
    assert_eq!(err.path(), "services.app.on_down.command");
    assert!(err.message().contains("does not exist"), "{err}");

    let plain = dir.join("plain-file");
    std::fs::write(&plain, "not a program").unwrap();
    let err = config_error(&format!(
        r#"{{ "type": "compound", "triggers": [{{ "type": "command", "command": {:?} }}] }}"#,
        plain.display().to_string()
    ));
    assert_eq!(err.path(), "services.app.on_down.triggers[0].command");
    assert!(err.message().contains("is not executable"), "{err}");
}

#[test]
fn the_config_rejects_a_current_dir_that_is_not_a_directory() {
    record_logs();
    let dir = scratch("config-dir");
    let file = dir.join("file");
    std::fs::write(&file, "").unwrap();
    for bad in [dir.join("missing"), file] {
        let bad = bad.display().to_string();
        let err = config_error(&format!(
            r#"{{ "type": "command", "command": "true", "current_dir": {bad:?} }}"#
        ));
        assert_eq!(err.path(), "services.app.on_down.current_dir");
        assert!(err.message().contains(&format!("{bad:?}")), "{err}");
    }
}

#[test]
fn the_config_accepts_programs_on_path_by_path_and_relative_to_current_dir() {
    record_logs();
    let dir = scratch("config-ok");
    let script = dir.join("start.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    make_executable(&script);
    let dir_text = dir.display().to_string();
    for on_down in [
        r#"{ "type": "command", "command": "true" }"#.to_string(),
        format!(
            r#"{{ "type": "command", "command": {:?} }}"#,
            script.display().to_string()
        ),
        format!(r#"{{ "type": "command", "command": "./start.sh", "current_dir": {dir_text:?} }}"#),
    ] {
        let json = format!(
            r#"{{ "services": {{ "app": {{ "url": "http://127.0.0.1:9/", "grace_period": "1s",
                 "on_down": {on_down} }} }} }}"#
        );
        tower_monitor::MinMonitor::from_config(&json)
            .unwrap_or_else(|e| panic!("{on_down} rejected: {e}"));
    }
}
