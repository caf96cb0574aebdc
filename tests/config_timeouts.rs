//! The lifecycle's timeouts from a configuration file, and a supervised program that exits
//! before it comes up.

mod common;

use std::time::Duration;

use common::*;
use tower_monitor::{MinMonitor, ServiceState};

fn service(down: std::net::SocketAddr, fields: &str) -> String {
    format!(
        r#"{{ "services": {{ "app": {{ "url": "http://{down}/", "grace_period": "30s",
             "on_down": {{ "type": "command", "command": "true" }}{fields} }} }} }}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_timeout_from_the_file_ends_starting() {
    let json = service(refused_addr().await, r#", "start_timeout": "300ms""#);
    let monitor = MinMonitor::from_config(&json).unwrap();
    monitor.start("app").await.unwrap();
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Starting);
    // The default start timeout is a minute; the file's ends the start well before that.
    wait_for_state(&monitor, "app", ServiceState::Down, Duration::from_secs(20)).await;
}

/// `probe_timeout` too: "0s" was taken, and a live HTTP backend was then up or down by chance
/// (a probe is up only if it finishes at its first poll).
#[test]
fn a_zero_timeout_is_named() {
    for field in [
        "probe_timeout",
        "start_timeout",
        "stop_timeout",
        "trigger_timeout",
    ] {
        let json = service(
            "127.0.0.1:9".parse().unwrap(),
            &format!(r#", "{field}": "0s""#),
        );
        let err = MinMonitor::from_config(&json).expect_err("zero is refused");
        assert_eq!(err.path(), format!("services.app.{field}"));
        assert!(err.message().contains("more than \"0s\""), "{err}");
    }
    // A trigger's own bound too: a command or webhook with "0s" was taken, and each run not
    // done at its first poll was then killed (a `systemctl start` always).
    for trigger in [
        r#"{ "type": "delay", "delay": "1s", "timeout": "0s", "trigger": { "type": "command", "command": "true" } }"#,
        r#"{ "type": "command", "command": "true", "timeout": "0s" }"#,
        r#"{ "type": "webhook", "url": "http://127.0.0.1:9/", "timeout": "0s" }"#,
    ] {
        let json = service("127.0.0.1:9".parse().unwrap(), "")
            .replace(r#"{ "type": "command", "command": "true" }"#, trigger);
        let err = MinMonitor::from_config(&json).expect_err(trigger);
        assert_eq!(err.path(), "services.app.on_down.timeout");
        assert!(err.message().contains("more than \"0s\""), "{err}");
    }
    // A rate limit over no time at all forgot each run at once: it never limited.
    let json = service("127.0.0.1:9".parse().unwrap(), "").replace(
        r#"{ "type": "command", "command": "true" }"#,
        r#"{ "type": "rate_limit", "max_runs": 1, "period": "0s", "trigger": { "type": "command", "command": "true" } }"#,
    );
    let err = MinMonitor::from_config(&json).expect_err("a zero period is refused");
    assert_eq!(err.path(), "services.app.on_down.period");
    assert!(err.message().contains("more than \"0s\""), "{err}");
    // An idle time of zero stopped the backend after each request, so every one was a cold
    // start; some read it as "never stop".
    let json = service(
        "127.0.0.1:9".parse().unwrap(),
        r#", "on_idle": { "after": "0s", "trigger": { "type": "command", "command": "true" } }"#,
    );
    let err = MinMonitor::from_config(&json).expect_err("zero is refused");
    assert_eq!(err.path(), "services.app.on_idle.after");
    assert!(err.message().contains("leave on_idle out"), "{err}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_program_that_exits_at_once_ends_its_start_then() {
    let json = service(refused_addr().await, r#", "start_timeout": "1h" "#).replace(
        r#"{ "type": "command", "command": "true" }"#,
        r#"{ "type": "process", "command": "sh", "args": ["-c", "exit 3"] }"#,
    );
    let monitor = MinMonitor::from_config(&json).unwrap();
    monitor.start("app").await.unwrap();
    // Not an hour: the program's exit ends the start.
    wait_for_state(&monitor, "app", ServiceState::Down, Duration::from_secs(20)).await;
}
