//! JSON configuration: every kind in one good file, triggers and probes it configures at work,
//! and what must not start from a bad one. Each bad case's error: `config_errors.rs`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use tokio::net::TcpListener;
use tower_monitor::config::{DEFAULT_GRACE_PERIOD, TriggerRegistry};
use tower_monitor::{BoxError, MinMonitor, trigger};

#[tokio::test]
async fn a_file_with_every_kind_loads() {
    let json = r#"{
      "services": {
        "app": {
          "url": "http://127.0.0.1:8081/",
          "grace_period": "30s",
          "probe_timeout": "1500ms",
          "on_down": { "type": "compound", "triggers": [
            { "type": "command", "command": "true", "args": ["a", "b"], "timeout": "5s" },
            { "type": "rate_limit", "max_runs": 3, "period": "1h",
              "trigger": { "type": "webhook", "url": "http://127.0.0.1:9000/start", "method": "PUT",
                           "headers": { "x-token": "t" }, "body": "go", "timeout": "2s" } }
          ] },
          "on_up": { "type": "command", "command": "true" },
          "always": { "type": "delay", "delay": "15m", "trigger": { "type": "command", "command": "true" } },
          "on_idle": { "after": "1m30s", "trigger": { "type": "command", "command": "true", "detached": true } }
        },
        "other": { "url": "http://[::1]:9/", "grace_period": "0s", "probe_on_add": false }
      }
    }"#;
    let monitor = MinMonitor::from_config(json).unwrap();
    let mut names = monitor.names();
    names.sort();
    assert_eq!(names, ["app", "other"]);
}

#[tokio::test]
async fn configured_triggers_run() {
    let marker = std::env::temp_dir().join(format!("tower-monitor-config-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let down = refused_addr().await;
    let json = format!(
        r#"{{ "services": {{ "app": {{ "url": "http://{down}/", "grace_period": "0s",
             "on_down": {{ "type": "command", "command": "touch", "args": [{:?}] }} }} }} }}"#,
        marker.display().to_string()
    );
    let monitor = Arc::new(MinMonitor::from_config(&json).unwrap());
    let router = axum::Router::new()
        .route("/", axum::routing::get(|| async { "up" }))
        .layer(monitor.layer("app").unwrap());
    let server = serve(router).await;
    assert_eq!(get(server.addr, "/", &[]).await.status, 503);
    assert!(marker.exists(), "on_down ran the configured command");
    let _ = std::fs::remove_file(&marker);
}

#[tokio::test]
async fn a_custom_trigger_type_can_be_registered_and_used() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let mut registry = TriggerRegistry::new();
    registry.register("count", move |spec| {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Count {
            by: usize,
        }
        let Count { by } = spec.parse()?;
        let counted = counted.clone();
        Ok(Arc::new(trigger::from_fn(move || {
            counted.fetch_add(by, Ordering::SeqCst);
            async { Ok::<(), BoxError>(()) }
        })))
    });
    let down = refused_addr().await;
    let json = format!(
        r#"{{ "services": {{ "app": {{ "url": "http://{down}/", "grace_period": "0s", "on_down": {{ "type": "count", "by": 5 }} }} }} }}"#
    );
    let monitor = Arc::new(MinMonitor::from_config_with(&json, &registry).unwrap());
    let router = axum::Router::new()
        .route("/", axum::routing::get(|| async { "up" }))
        .layer(monitor.layer("app").unwrap());
    let server = serve(router).await;
    assert_eq!(get(server.addr, "/", &[]).await.status, 503);
    assert_eq!(runs.load(Ordering::SeqCst), 5);

    let err = MinMonitor::from_config_with(&json.replace("\"by\": 5", "\"by\": -1"), &registry)
        .unwrap_err();
    assert_eq!(err.path(), "services.app.on_down.by");
    assert!(
        MinMonitor::from_config(&json).is_err(),
        "unknown without the registry"
    );
}

#[tokio::test]
async fn nothing_starts_when_any_part_is_wrong() {
    // "a" is valid and asks for an immediate probe; "b" is not. "a" sorts first, so a loader
    // that started services as it went would probe it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let json = format!(
        r#"{{ "services": {{
            "a": {{ "url": "http://{addr}/", "grace_period": "1s", "probe_on_add": true }},
            "b": {{ "url": "http://{addr}/", "grace_period": "never" }} }} }}"#
    );
    let err = MinMonitor::from_config(&json).unwrap_err();
    assert_eq!(err.path(), "services.b.grace_period");
    let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(
        accepted.is_err(),
        "service a was probed although the configuration was rejected"
    );
}

#[tokio::test]
async fn configured_probes_probe() {
    let router =
        axum::Router::new().route("/healthz", axum::routing::get(|| async { "status: ok" }));
    let server = serve(router).await;
    let json = format!(
        r#"{{ "services": {{
            "web": {{ "url": "http://{addr}/", "grace_period": "0s", "ready_after": "0s",
                      "probe": {{ "type": "http", "path": "/healthz", "accept": ["2xx", 401, "300-302"], "body_matches": "ok$" }} }},
            "strict": {{ "url": "http://{addr}/", "grace_period": "0s",
                      "probe": {{ "type": "http", "path": "/healthz", "body_excludes": "ok" }} }},
            "plain": {{ "url": "http://{addr}/", "grace_period": "0s", "probe": {{ "type": "tcp" }} }},
            "chat": {{ "url": "http://{addr}/", "grace_period": "0s",
                      "probe": {{ "type": "expect", "steps": [ {{ "send": "GET /healthz HTTP/1.0\r\n\r\n" }}, {{ "expect": "status: ok" }} ] }} }}
        }} }}"#,
        addr = server.addr
    );
    let monitor = MinMonitor::from_config(&json).unwrap();
    assert!(monitor.status("web").await.unwrap());
    assert!(!monitor.status("strict").await.unwrap());
    assert!(monitor.status("plain").await.unwrap());
    assert!(monitor.status("chat").await.unwrap());
}

/// A service that does not write `grace_period` trusts an up for the documented default: no
/// probe before it ends, one once it has.
#[tokio::test]
async fn a_service_without_a_grace_period_trusts_an_up_for_the_default_one() {
    assert_eq!(
        DEFAULT_GRACE_PERIOD,
        Duration::from_secs(10),
        "as CONFIG.md says"
    );
    let down = refused_addr().await;
    let monitor = MinMonitor::from_config(&format!(
        r#"{{ "services": {{ "app": {{ "url": "http://{down}/" }} }} }}"#
    ))
    .unwrap();
    // The backend is down: a status that probed would say so.
    tokio::time::pause();
    monitor.set_status_up("app").unwrap();
    tokio::time::advance(DEFAULT_GRACE_PERIOD - Duration::from_millis(1)).await;
    assert!(
        monitor.status("app").await.unwrap(),
        "cached up within the default grace period"
    );
    tokio::time::advance(Duration::from_millis(2)).await;
    // Real time again for the probe's connect and its timeout.
    tokio::time::resume();
    assert!(
        !monitor.status("app").await.unwrap(),
        "probed once the default grace period is over"
    );
}

#[tokio::test]
async fn the_maximum_duration_itself_is_accepted_and_safe() {
    let monitor = MinMonitor::from_config(
        r#"{ "services": { "app": { "url": "http://127.0.0.1:1/", "grace_period": "100years",
            "probe_timeout": "100years",
            "on_idle": { "after": "100years", "trigger": { "type": "delay", "delay": "100years",
                "trigger": { "type": "command", "command": "true" } } } } } }"#,
    )
    .unwrap();
    // Every Instant + this duration in the monitor must hold: a cached up for a century.
    monitor.set_status_up("app").unwrap();
    assert!(monitor.status("app").await.unwrap());
}

#[cfg(unix)]
#[test]
fn a_relative_lock_file_counts_from_the_configuration_folder_and_its_error_says_where() {
    let config = r#"{ "services": { "app": { "url": "http://127.0.0.1:8081/", "grace_period": "30s",
        "on_down": { "type": "process", "command": "sleep", "args": ["1"],
                     "lock_file": "no-such-folder/app.lock" } } } }"#;
    let mut registry = TriggerRegistry::new();
    let error = MinMonitor::from_config_with(config, registry.relative_to("/etc")).unwrap_err();
    assert_eq!(error.path(), "services.app.on_down.lock_file");
    assert_eq!(
        error.message(),
        "\"no-such-folder/app.lock\" (at \"/etc/no-such-folder/app.lock\") cannot be created: its directory does not exist"
    );
    // Without a configuration folder it is named as written.
    let error = MinMonitor::from_config(config).unwrap_err();
    assert_eq!(
        error.message(),
        "\"no-such-folder/app.lock\" cannot be created: its directory does not exist"
    );
}
