//! JSON configuration: every kind in one good file, and each bad case with its path and text.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use tokio::net::TcpListener;
use tower_monitor::config::{ConfigError, TriggerRegistry};
use tower_monitor::{BoxError, MinMonitor, trigger};

fn error(json: &str) -> ConfigError {
    MinMonitor::from_config(json).expect_err("the configuration must be rejected")
}

/// One service named "app" with the given extra fields.
fn app(fields: &str) -> String {
    format!(
        r#"{{ "services": {{ "app": {{ "url": "http://127.0.0.1:8081/", "grace_period": "30s"{fields} }} }} }}"#
    )
}

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

#[test]
fn empty_non_object_and_invalid_documents_are_rejected() {
    assert_eq!(error("  ").to_string(), "the configuration is empty");
    assert!(
        error("[1, 2]")
            .to_string()
            .contains("must be a JSON object")
    );
    assert!(
        error("{ \"services\": ")
            .to_string()
            .starts_with("not valid JSON")
    );
    let missing = error("{}");
    assert!(
        missing.to_string().contains("missing field `services`"),
        "{missing}"
    );
    let none = error(r#"{"services": {}}"#);
    assert_eq!(
        (none.path(), none.message()),
        ("services", "at least one service is required")
    );
}

#[test]
fn unknown_fields_are_named() {
    let err = error(&app(r#", "grace": "1s""#));
    assert_eq!(err.path(), "services.app.grace");
    assert!(err.message().contains("unknown field `grace`"), "{err}");

    let err = error(&app(
        r#", "on_down": { "type": "command", "command": "true", "colour": "red" }"#,
    ));
    assert_eq!(err.path(), "services.app.on_down.colour");

    let err = error(r#"{"services": {}, "extra": 1}"#);
    assert!(err.message().contains("unknown field `extra`"), "{err}");
}

#[test]
fn unknown_trigger_types_are_named_with_the_known_ones() {
    let err = error(&app(r#", "on_down": { "type": "teleport" }"#));
    assert_eq!(err.path(), "services.app.on_down.type");
    assert!(err.message().contains("\"teleport\""), "{err}");
    for known in ["command", "compound", "delay", "rate_limit", "webhook"] {
        assert!(err.message().contains(known), "{err}");
    }
    #[cfg(unix)]
    assert!(err.message().contains("process, process_stop"), "{err}");

    let err = error(&app(r#", "on_down": { "command": "true" }"#));
    assert_eq!(
        (err.path(), err.message()),
        ("services.app.on_down", "a trigger needs a \"type\"")
    );
}

#[test]
fn bad_urls_are_named_with_their_value() {
    let err = error(r#"{"services": {"app": {"url": "not a url", "grace_period": "1s"}}}"#);
    assert_eq!(err.path(), "services.app.url");
    assert!(err.message().contains("\"not a url\""), "{err}");

    let err =
        error(r#"{"services": {"app": {"url": "unix:/run/app.sock", "grace_period": "1s"}}}"#);
    assert_eq!(err.path(), "services.app.url");
    assert!(
        err.message().contains("unix:/run/app.sock") && err.message().contains("no host"),
        "{err}"
    );

    let err = error(&app(
        r#", "on_down": { "type": "webhook", "url": "ftp://hooks.test/x" }"#,
    ));
    assert_eq!(err.path(), "services.app.on_down.url");
    assert!(err.message().contains("only http:// and https://"), "{err}");
}

#[test]
fn bad_durations_are_named_with_their_value_even_when_nested() {
    let err = error(
        r#"{"services": {"app": {"url": "http://127.0.0.1:1/", "grace_period": "3 parsecs"}}}"#,
    );
    assert_eq!(err.path(), "services.app.grace_period");
    assert!(err.message().contains("\"3 parsecs\""), "{err}");

    let err = error(&app(r#", "on_down": { "type": "compound", "triggers": [
            { "type": "command", "command": "true" },
            { "type": "delay", "delay": "soonish", "trigger": { "type": "command", "command": "true" } } ] }"#));
    assert_eq!(err.path(), "services.app.on_down.triggers[1].delay");
    assert!(err.message().contains("\"soonish\""), "{err}");

    let err = error(&app(
        r#", "on_idle": { "after": 15, "trigger": { "type": "command", "command": "true" } }"#,
    ));
    assert_eq!(err.path(), "services.app.on_idle.after");
}

#[test]
fn bad_trigger_values_are_named() {
    let err = error(&app(
        r#", "on_down": { "type": "rate_limit", "max_runs": 0, "period": "1m", "trigger": { "type": "command", "command": "true" } }"#,
    ));
    assert_eq!(
        (err.path(), err.message()),
        ("services.app.on_down.max_runs", "must be at least 1, not 0")
    );
    let err = error(&app(r#", "on_down": { "type": "command", "command": "" }"#));
    assert_eq!(err.path(), "services.app.on_down.command");
    let err = error(&app(
        r#", "on_down": { "type": "webhook", "url": "http://127.0.0.1:1/", "method": "P O S T" }"#,
    ));
    assert_eq!(err.path(), "services.app.on_down.method");
    // No program can be given a NUL: each run would fail, each request would be a 500.
    for kind in ["command", "process"] {
        let err = error(&app(&format!(
            r#", "on_down": {{ "type": "{kind}", "command": "true", "args": ["ok", "a\u0000b"] }}"#
        )));
        assert_eq!(err.path(), "services.app.on_down.args[1]", "{kind}: {err}");
    }
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

#[test]
fn bad_probes_are_named() {
    let err = error(&app(r#", "probe": { "type": "ping" }"#));
    assert_eq!(err.path(), "services.app.probe.type");
    assert!(err.message().contains("\"ping\""), "{err}");
    let err = error(&app(
        r#", "probe": { "type": "http", "body_matches": "(unclosed" }"#,
    ));
    assert_eq!(err.path(), "services.app.probe.body_matches");
    assert!(err.message().contains("\"(unclosed\""), "{err}");
    assert!(!err.message().contains('\n'), "one line: {err}");
    let err = error(&app(
        r#", "probe": { "type": "http", "accept": [200, "9xx0"] }"#,
    ));
    assert_eq!(err.path(), "services.app.probe.accept[1]");
    assert!(err.message().contains("\"9xx0\""), "{err}");
    // No status accepted is a backend never up, woken by every request: refused.
    let err = error(&app(r#", "probe": { "type": "http", "accept": [] }"#));
    assert_eq!(err.path(), "services.app.probe.accept");
    let err = error(&app(r#", "probe": { "type": "http", "verb": "GET" }"#));
    assert!(err.message().contains("unknown field `verb`"), "{err}");
    let err = error(&app(
        r#", "probe": { "type": "expect", "steps": [ { "send": "a", "expect": "b" } ] }"#,
    ));
    assert_eq!(err.path(), "services.app.probe.steps[0]");
    let err = error(&app(
        r#", "probe": { "type": "http" }, "ready_after": "later""#,
    ));
    assert_eq!(err.path(), "services.app.ready_after");
    let err = error(
        r#"{"services": {"app": {"url": "redis://127.0.0.1:6379/", "grace_period": "1s", "probe": {"type": "http"}}}}"#,
    );
    assert_eq!(err.path(), "services.app.url");
}

#[test]
fn a_name_or_field_given_twice_is_named() {
    // JSON parsers keep the last of two equal keys: the first service was dropped unseen.
    let err = error(
        r#"{ "services": { "a": { "url": "http://127.0.0.1:1/", "grace_period": "1s" },
                           "a": { "url": "http://127.0.0.1:2/", "grace_period": "1s" } } }"#,
    );
    assert_eq!(err.path(), "services.a");
    assert!(err.message().contains("twice"), "{err}");
    let err = error(&app(r#", "probe_timeout": "1s", "probe_timeout": "2s""#));
    assert_eq!(err.path(), "services.app.probe_timeout");
    let err = error(&app(
        r#", "on_down": { "type": "compound", "triggers": [ { "type": "command", "command": "true", "command": "false" } ] }"#,
    ));
    assert_eq!(err.path(), "services.app.on_down.triggers[0].command");
}

#[test]
fn a_probe_path_that_is_no_request_target_is_named() {
    // Accepted, each would make every probe an error, and so every request a 500.
    for path in ["/a b", "healthz", "", "/\\u0001"] {
        let err = error(&app(&format!(
            r#", "probe": {{ "type": "http", "path": "{path}" }}"#
        )));
        assert_eq!(err.path(), "services.app.probe.path", "{path:?}: {err}");
    }
    assert!(
        MinMonitor::from_config(&app(
            r#", "probe": { "type": "http", "path": "/healthz?deep=1" }"#
        ))
        .is_ok()
    );
}

#[test]
fn durations_past_the_maximum_are_rejected_with_the_field_and_the_limit() {
    let err = error(
        r#"{"services": {"app": {"url": "http://127.0.0.1:1/", "grace_period": "9300000000000000000s"}}}"#,
    );
    assert_eq!(err.path(), "services.app.grace_period");
    assert!(err.message().contains("\"9300000000000000000s\""), "{err}");
    assert!(err.message().contains("\"100years\""), "{err}");

    for (fields, path) in [
        (
            r#", "probe_timeout": "101years""#,
            "services.app.probe_timeout",
        ),
        (
            r#", "ready_after": "18446744073709551615s""#,
            "services.app.ready_after",
        ),
        (
            r#", "on_idle": { "after": "200years", "trigger": { "type": "command", "command": "true" } }"#,
            "services.app.on_idle.after",
        ),
        (
            r#", "on_down": { "type": "rate_limit", "max_runs": 1, "period": "999999999999s", "trigger": { "type": "command", "command": "true" } }"#,
            "services.app.on_down.period",
        ),
        (
            r#", "on_down": { "type": "webhook", "url": "http://127.0.0.1:1/", "timeout": "5000years" }"#,
            "services.app.on_down.timeout",
        ),
    ] {
        let err = error(&app(fields));
        assert_eq!(err.path(), path, "{err}");
        assert!(err.message().contains("maximum"), "{err}");
    }
    assert_eq!(
        tower_monitor::config::MAX_DURATION,
        Duration::from_secs(3_155_760_000)
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

#[test]
fn missing_fields_are_named_even_at_the_top() {
    let err = error("{}");
    assert_eq!(err.path(), "services", "{err}");
    let err = error(r#"{"services": {"app": {"url": "http://127.0.0.1:1/"}}}"#);
    assert_eq!(err.path(), "services.app.grace_period", "{err}");
    let err = error(&app(r#", "on_idle": { "after": "1s" }"#));
    assert_eq!(err.path(), "services.app.on_idle.trigger", "{err}");
}

#[test]
fn odd_keys_are_quoted_in_paths() {
    let err = error(r#"{"services": {}, "": 1}"#);
    assert_eq!(err.path(), r#""""#, "{err}");
    let err = error(
        r#"{"services": {"my.app": {"url": "http://127.0.0.1:1/", "grace_period": "soon"}}}"#,
    );
    assert_eq!(err.path(), r#"services."my.app".grace_period"#, "{err}");
}

#[test]
fn a_service_name_with_a_newline_is_named() {
    let err =
        error(r#"{"services": {"a\nb": {"url": "http://127.0.0.1:1/", "grace_period": "1s"}}}"#);
    assert_eq!(err.path(), r#"services."a\nb""#, "{err}");
    assert!(err.to_string().contains("control characters"), "{err}");
}

#[test]
fn url_credentials_never_show_in_errors() {
    for json in [
        r#"{"services": {"app": {"url": "http://alice:s3cret@127.0.0.1:99999/", "grace_period": "1s"}}}"#,
        r#"{"services": {"app": {"url": "ftp://alice:s3cret@127.0.0.1:1/", "grace_period": "1s", "probe": {"type": "http"}}}}"#,
        &app(r#", "on_down": { "type": "webhook", "url": "ftp://alice:s3cret@127.0.0.1:1/" }"#),
        &app(r#", "on_down": { "type": "webhook", "url": "http://alice:s3cret@127.0.0.1:1:2/" }"#),
        // A token in the query string, in a URL that does not parse and in one that parses.
        r#"{"services": {"app": {"url": "http://127.0.0.1:99999/?token=s3cret", "grace_period": "1s"}}}"#,
        r#"{"services": {"app": {"url": "ftp://127.0.0.1:1/?api_key=s3cret", "grace_period": "1s", "probe": {"type": "http"}}}}"#,
    ] {
        let err = error(json);
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("alice"),
            "{shown}"
        );
        assert!(
            shown.contains("***@127.0.0.1") || shown.contains("=***"),
            "{shown}"
        );
    }
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
