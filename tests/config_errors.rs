//! JSON configuration errors: each bad case named with its path and text, before anything
//! starts.

use std::time::Duration;

use tower_monitor::MinMonitor;
use tower_monitor::config::{ConfigError, TriggerRegistry};

fn error(json: &str) -> ConfigError {
    MinMonitor::from_config(json).expect_err("the configuration must be rejected")
}

/// One service named "app" with the given extra fields.
fn app(fields: &str) -> String {
    format!(
        r#"{{ "services": {{ "app": {{ "url": "http://127.0.0.1:8081/", "grace_period": "30s"{fields} }} }} }}"#
    )
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

/// A field name mistyped (a letter, `-` for `_`, a capital) is answered with the one meant,
/// before the list of every field the object has.
#[test]
fn a_mistyped_field_is_answered_with_the_one_meant() {
    let service = |fields: &str| {
        format!(r#"{{ "services": {{ "app": {{ "url": "http://127.0.0.1:8081/"{fields} }} }} }}"#)
    };
    for (fields, path, meant) in [
        (
            r#", "grace_perod": "30s""#,
            "services.app.grace_perod",
            "grace_period",
        ),
        (
            r#", "Grace-Period": "30s""#,
            "services.app.Grace-Period",
            "grace_period",
        ),
        (
            r#", "grace_period": "30s", "on_idle": { "afer": "1m", "trigger": { "type": "command", "command": "true" } }"#,
            "services.app.on_idle.afer",
            "after",
        ),
    ] {
        let err = error(&service(fields));
        assert_eq!(err.path(), path, "{err}");
        let unknown = path.rsplit('.').next().unwrap_or_default();
        assert!(
            err.message().starts_with(&format!(
                "unknown field `{unknown}` (did you mean `{meant}`?), expected "
            )),
            "{err}"
        );
    }
    // Nothing close: no guess, the list alone.
    let err = error(&app(r#", "colour": "red""#));
    assert!(
        err.message()
            .starts_with("unknown field `colour`, expected one of `url`"),
        "{err}"
    );
    // The gateway's sections are read the same way.
    let json = r#"{ "gateway": { "listen": "127.0.0.1:0", "route": [ { "service": "app" } ] },
        "services": { "app": { "url": "http://127.0.0.1:8081/", "grace_period": "30s" } } }"#;
    let err =
        tower_monitor::gateway::Gateway::from_config(json, &TriggerRegistry::new()).unwrap_err();
    assert_eq!(err.path(), "gateway.route");
    assert!(err.message().contains("(did you mean `routes`?)"), "{err}");
}

#[test]
fn a_mistyped_trigger_or_probe_type_is_answered_with_the_one_meant() {
    let err = error(&app(
        r#", "on_down": { "type": "Command", "command": "true" }"#,
    ));
    assert_eq!(err.path(), "services.app.on_down.type");
    assert!(
        err.message().starts_with(
            "unknown trigger type \"Command\" (did you mean \"command\"?); known types: "
        ),
        "{err}"
    );
    let err = error(&app(r#", "on_down": { "type": "rate-limit" }"#));
    assert!(
        err.message().contains("(did you mean \"rate_limit\"?)"),
        "{err}"
    );
    let err = error(&app(r#", "probe": { "type": "htp" }"#));
    assert_eq!(
        err.message(),
        "unknown probe type \"htp\" (did you mean \"http\"?); known types: tcp, http, expect"
    );
    // Nothing close: no guess.
    let err = error(&app(r#", "on_down": { "type": "systemd" }"#));
    assert!(!err.message().contains("did you mean"), "{err}");
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

#[test]
fn missing_fields_are_named_even_at_the_top() {
    let err = error("{}");
    assert_eq!(err.path(), "services", "{err}");
    let err = error(r#"{"services": {"app": {"grace_period": "30s"}}}"#);
    assert_eq!(err.path(), "services.app.url", "{err}");
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
