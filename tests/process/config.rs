//! The `process` and `process_stop` config types, and a Process behind the layer.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tower_monitor::Trigger;
use tower_monitor::config::TriggerRegistry;
use tower_monitor::trigger::Supervisor;
use tracing::Level;

use crate::process_support::*;
use crate::{booting_backend, free_addr, lines};

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
    record_logs();
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
    let e = err(
        "services.a.on_down",
        json!({ "type": "process", "command": "true", "env": { "A": "x\0y" } }),
    );
    assert_eq!(e.path(), "services.a.on_down.env.A");
    assert!(e.message().contains("NUL"), "{e}");
}

#[test]
fn a_bad_service_fails_the_whole_config_and_nothing_is_supervised() {
    record_logs();
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

#[test]
fn a_lock_file_in_a_missing_directory_is_a_config_error() {
    record_logs();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_through_the_layer_while_it_boots_start_the_backend_once_then_idle_stops_it() {
    record_logs();
    use axum::body::Body;
    use http::{Request, StatusCode};
    use tower::ServiceExt;
    use tower_monitor::{MinMonitor, MonitoredService, Url};

    let dir = scratch("layer");
    let starts = dir.join("starts");
    let addr = free_addr().await;
    let supervisor = Supervisor::new();
    let backend = supervisor.supervise(booting_backend(&starts, Duration::from_millis(800), addr));
    let monitor = Arc::new(MinMonitor::new());
    let url = Url::parse(&format!("http://{addr}/")).unwrap();
    monitor
        .add(
            "app",
            MonitoredService::new(url, Duration::from_secs(30))
                .on_down(backend.clone())
                .on_idle(Duration::from_millis(300), backend.stopper()),
        )
        .unwrap();
    let app = tower::ServiceBuilder::new()
        .layer(monitor.layer("app").unwrap())
        .service_fn(|_: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::from("ok")))
        });
    // 32 clients, each asking until it gets through: one poll every 50 ms during the boot.
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                loop {
                    let request = Request::get("/").body(Body::empty()).unwrap();
                    let status = app.clone().oneshot(request).await.unwrap().status();
                    if status == StatusCode::OK {
                        return;
                    }
                    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(20), futures::future::join_all(clients))
        .await
        .expect("every client got through");
    let pid = backend.pid().expect("running");
    // No request any more: the idle stop ends the program (SIGTERM, noted by it).
    let stopped = tokio::time::timeout(Duration::from_secs(10), backend.exited()).await;
    supervisor.shutdown(Duration::from_secs(5)).await.unwrap();

    let lines = lines(&starts);
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("started")).count(),
        1,
        "{lines:?}"
    );
    assert!(
        stopped
            .expect("stopped when idle")
            .is_some_and(|s| s.success())
    );
    assert_eq!(lines.last().map(String::as_str), Some("SIGTERM"));
    assert!(!alive(pid));
}
