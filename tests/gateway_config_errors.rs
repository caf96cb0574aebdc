//! The gateway's configuration errors: each bad field is named with its value, in one line, and
//! a file valid before the per-service settings still is.

mod common;

use common::with_gateway;
use tower_monitor::config::TriggerRegistry;
use tower_monitor::gateway::Gateway;

#[test]
fn every_bad_field_is_named_with_its_value() {
    let route = r#""listen": "127.0.0.1:0", "routes": [ { "service": "app" } ]"#;
    let cases: &[(String, &str, &str)] = &[
        (
            with_gateway(r#"{ "listen": "127.0.0.1:0", "routes": [] }"#),
            "gateway.routes",
            "at least one",
        ),
        (
            with_gateway(r#"{ "routes": [ { "service": "app" } ] }"#),
            "gateway.listen",
            "missing field",
        ),
        (
            with_gateway(r#"{ "listen": ":80", "routes": [ { "service": "app" } ] }"#),
            "gateway.listen",
            "\":80\"",
        ),
        (
            with_gateway(r#"{ "listen": "127.0.0.1:0", "routes": [ { "service": "ghost" } ] }"#),
            "gateway.routes[0].service",
            "\"ghost\"",
        ),
        (
            with_gateway(r#"{ "listen": "127.0.0.1:0", "routes": [ { "servce": "app" } ] }"#),
            "gateway.routes[0].servce",
            "unknown field",
        ),
        (
            with_gateway(
                r#"{ "listen": "127.0.0.1:0", "routes": [ { "path_prefix": "api", "service": "app" } ] }"#,
            ),
            "gateway.routes[0].path_prefix",
            "\"api\"",
        ),
        (
            with_gateway(&format!(r#"{{ {route}, "shutdown_grace": "later" }}"#)),
            "gateway.shutdown_grace",
            "\"later\"",
        ),
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "ghost": {{}} }} }}"#
            )),
            "gateway.services.ghost",
            "\"ghost\"",
        ),
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "holdd": {{}} }} }} }}"#
            )),
            "gateway.services.app.holdd",
            "unknown field",
        ),
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "hold": {{ "max_wait": "1s", "max_held": 0 }} }} }} }}"#
            )),
            "gateway.services.app.hold.max_held",
            "at least 1",
        ),
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "retry_after": "-1s" }} }} }}"#
            )),
            "gateway.services.app.retry_after",
            "\"-1s\"",
        ),
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "waiting_page": "/nonexistent/page.html" }} }} }}"#
            )),
            "gateway.services.app.waiting_page",
            "/nonexistent/page.html",
        ),
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "wake": {{ "never_user_agents": "(bot" }} }} }} }}"#
            )),
            "gateway.services.app.wake.never_user_agents",
            "regular expression",
        ),
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "wake": {{ "never_paths": ["healthz"] }} }} }} }}"#
            )),
            "gateway.services.app.wake.never_paths[0]",
            "\"healthz\"",
        ),
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "protocol": "http3" }} }} }}"#
            )),
            "gateway.services.app.protocol",
            "http3",
        ),
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "forwarded": "sometimes" }} }} }}"#
            )),
            "gateway.services.app.forwarded",
            "sometimes",
        ),
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "connect_timeout": "fast" }} }} }}"#
            )),
            "gateway.services.app.connect_timeout",
            "\"fast\"",
        ),
        (
            with_gateway(&format!(r#"{{ {route}, "access_log": "yes" }}"#)),
            "gateway.access_log",
            "\"yes\"",
        ),
        // A zero timeout answered every request 504 at once (and may be meant as "none").
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "connect_timeout": "0s" }} }} }}"#
            )),
            "gateway.services.app.connect_timeout",
            "\"0s\"",
        ),
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "response_timeout": "0ms" }} }} }}"#
            )),
            "gateway.services.app.response_timeout",
            "more than \"0s\"",
        ),
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "body_read_timeout": "0s" }} }} }}"#
            )),
            "gateway.services.app.body_read_timeout",
            "more than \"0s\"",
        ),
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "response_body_timeout": "0s" }} }} }}"#
            )),
            "gateway.services.app.response_body_timeout",
            "more than \"0s\"",
        ),
        // Read as a bound on stalled uploads, it would bound nothing: an HTTP/2 backend's
        // uploads are not timed (a gRPC client stream may pause).
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "protocol": "http2", "body_read_timeout": "5s" }} }} }}"#
            )),
            "gateway.services.app.body_read_timeout",
            "applies to HTTP/1.1 backends only",
        ),
        // hyper would parse no header line at all; or allocate a huge array per answer.
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "max_response_headers": 0 }} }} }}"#
            )),
            "gateway.services.app.max_response_headers",
            "from 1 to 1000 header lines (default 100), not 0",
        ),
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "max_response_headers": 1000000 }} }} }}"#
            )),
            "gateway.services.app.max_response_headers",
            "not 1000000",
        ),
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "max_response_headers": "many" }} }} }}"#
            )),
            "gateway.services.app.max_response_headers",
            "\"many\"",
        ),
        // Read as raised, it would bound nothing: an HTTP/2 backend's answer is not counted.
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "protocol": "http2", "max_response_headers": 200 }} }} }}"#
            )),
            "gateway.services.app.max_response_headers",
            "applies to HTTP/1.1 backends only",
        ),
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "max_response_headers": -1 }} }} }}"#
            )),
            "gateway.services.app.max_response_headers",
            "-1",
        ),
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "hold": {{ "max_wait": "0s" }} }} }} }}"#
            )),
            "gateway.services.app.hold.max_wait",
            "\"0s\"",
        ),
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "limit": {{ "max_in_flight": 0 }} }} }} }}"#
            )),
            "gateway.services.app.limit.max_in_flight",
            "at least 1",
        ),
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "limit": {{ "max_wait": "1s" }} }} }} }}"#
            )),
            "gateway.services.app.limit.max_in_flight",
            "missing field",
        ),
        (
            with_gateway(&format!(
                r#"{{ {route}, "services": {{ "app": {{ "limit": {{ "max_in_flight": 2, "max_wait": "soon" }} }} }} }}"#
            )),
            "gateway.services.app.limit.max_wait",
            "\"soon\"",
        ),
        (
            with_gateway(&format!(r#"{{ {route}, "header_read_timeout": "0s" }}"#)),
            "gateway.header_read_timeout",
            "more than \"0s\"",
        ),
        // A misspelt section beside `gateway` is named with the sections there are.
        (
            format!(
                r#"{{ "gateway": {{ {route} }}, "admn": {{ "token": "t" }},
                     "services": {{ "app": {{ "url": "http://127.0.0.1:9/", "grace_period": "1s" }} }} }}"#
            ),
            "admn",
            "`gateway`, `admin`, `fleet`, `services`",
        ),
        // Given twice, the first was dropped unseen (a second `services` took every service).
        (
            with_gateway(
                r#"{ "listen": "127.0.0.1:0", "listen": "127.0.0.1:1", "routes": [ { "service": "app" } ] }"#,
            ),
            "gateway.listen",
            "twice",
        ),
        (
            format!(
                r#"{{ "gateway": {{ {route} }},
                     "services": {{ "app": {{ "url": "http://127.0.0.1:9/", "grace_period": "1s" }} }},
                     "services": {{ "b": {{ "url": "http://127.0.0.1:9/", "grace_period": "1s" }} }} }}"#
            ),
            "services",
            "twice",
        ),
    ];
    for (config, path, says) in cases {
        let error = Gateway::from_config(config, &TriggerRegistry::new()).unwrap_err();
        assert_eq!(error.path(), *path, "{error} for {config}");
        assert!(error.message().contains(says), "{error} for {config}");
        assert!(!error.message().contains('\n'), "one line: {error}");
    }
}

#[test]
fn a_file_that_was_valid_before_the_per_service_settings_still_is() {
    let old = with_gateway(
        r#"{ "listen": "127.0.0.1:8080", "routes": [ { "host": "a.localhost", "service": "app" }, { "path_prefix": "/b/", "service": "app" } ] }"#,
    );
    assert!(Gateway::from_config(&old, &TriggerRegistry::new()).is_ok());
}

#[test]
fn admin_settings_are_checked_with_their_field_named() {
    let with_admin = |admin: &str| {
        format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:8080", "routes": [ {{ "service": "app" }} ] }},
                 "admin": {admin},
                 "services": {{ "app": {{ "url": "http://127.0.0.1:9/", "grace_period": "30s" }} }} }}"#
        )
    };
    let cases = [
        (r#"{ "token": "" }"#, "admin.token"),
        // No client can present them: a header's ends are trimmed, and it has no line breaks.
        (r#"{ "token": "s3cret " }"#, "admin.token"),
        (r#"{ "token": "s3\ncret" }"#, "admin.token"),
        (r#"{ "listen": "nowhere", "token": "t" }"#, "admin.listen"),
        (r#"{ "listen": "127.0.0.1:9901" }"#, "admin.token"),
        (r#"{ "token": "t", "port": 1 }"#, "admin.port"),
        (
            r#"{ "token": "t", "hosts": ["ok", "http://gw:9901"] }"#,
            "admin.hosts[1]",
        ),
        (r#"{ "token": "t", "hosts": [""] }"#, "admin.hosts[0]"),
        (r#"{ "token": "t", "hosts": "gw" }"#, "admin.hosts"),
        // The gateway's own address: --check said valid, and serving failed.
        (
            r#"{ "listen": "127.0.0.1:8080", "token": "t" }"#,
            "admin.listen",
        ),
        (
            r#"{ "listen": "0.0.0.0:8080", "token": "t" }"#,
            "admin.listen",
        ),
    ];
    for (admin, field) in cases {
        let err = Gateway::from_config(&with_admin(admin), &TriggerRegistry::new()).unwrap_err();
        assert_eq!(err.path(), field, "{admin}: {err}");
    }
    // A Docker Compose service name has underscores.
    let hosts =
        with_admin(r#"{ "token": "t", "hosts": ["compose_service", "gw-1.example", "*"] }"#);
    Gateway::from_config(&hosts, &TriggerRegistry::new()).unwrap();
    let ok =
        Gateway::from_config(&with_admin(r#"{ "token": "t" }"#), &TriggerRegistry::new()).unwrap();
    assert_eq!(ok.admin_listen(), Some("127.0.0.1:9901".parse().unwrap()));
}

/// An empty file (a failed copy, a template not filled in) is said to be empty, as the
/// monitor's loader says, not "not valid JSON: EOF while parsing a value at line 1 column 0".
#[test]
fn an_empty_configuration_is_said_to_be_empty() {
    for text in ["", "  ", "\n", "\u{feff}\n"] {
        let error =
            Gateway::from_config(text.trim_start_matches('\u{feff}'), &TriggerRegistry::new())
                .unwrap_err();
        assert_eq!(error.to_string(), "the configuration is empty", "{text:?}");
        let file = common::TempFile::new("empty", text);
        let error =
            Gateway::from_config_file(file.path().as_ref(), &TriggerRegistry::new()).unwrap_err();
        assert_eq!(error.to_string(), "the configuration is empty", "{text:?}");
    }
}

/// A section's name misspelt is said to be that, with the one meant, not the section missing.
#[test]
fn a_misspelt_section_is_named_not_taken_for_a_missing_one() {
    let json = r#"{ "gatway": { "listen": "127.0.0.1:0", "routes": [ { "service": "app" } ] },
        "services": { "app": { "url": "http://127.0.0.1:9/", "grace_period": "1s" } } }"#;
    let error = Gateway::from_config(json, &TriggerRegistry::new()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "gatway: unknown field `gatway` (did you mean `gateway`?), expected one of `gateway`, `admin`, `fleet`, `services`"
    );
    let json = with_gateway(r#"{ "listen": "127.0.0.1:0", "routes": [ { "service": "app" } ] }"#)
        .replacen("\"services\"", "\"Services\"", 1);
    let error = Gateway::from_config(&json, &TriggerRegistry::new()).unwrap_err();
    assert_eq!(error.path(), "Services", "{error}");
    assert!(
        error.message().contains("(did you mean `services`?)"),
        "{error}"
    );
}
