//! A value of the wrong kind is said in the words of the JSON file's writer: what was written,
//! and what to write instead (an example), never a Rust type's name (`struct HoldSpec`, `usize`).

use tower_monitor::MinMonitor;
use tower_monitor::config::TriggerRegistry;
use tower_monitor::gateway::Gateway;

const SERVICES: &str =
    r#""services": { "app": { "url": "http://127.0.0.1:9/", "grace_period": "1s" } }"#;

/// The error of a gateway file whose `gateway` section is `gateway`, beside `services`.
fn gateway_error(gateway: &str) -> String {
    let json = format!(r#"{{ "gateway": {gateway}, {SERVICES} }}"#);
    match Gateway::from_config(&json, &TriggerRegistry::new()) {
        Ok(_) => panic!("accepted: {json}"),
        Err(error) => error.to_string(),
    }
}

fn gateway_with_app(settings: &str) -> String {
    gateway_error(&format!(
        r#"{{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
             "services": {{ "app": {settings} }} }}"#
    ))
}

fn service_error(fields: &str) -> String {
    let json =
        format!(r#"{{ "services": {{ "app": {{ "url": "http://127.0.0.1:9/", {fields} }} }} }}"#);
    match MinMonitor::from_config(&json) {
        Ok(_) => panic!("accepted: {json}"),
        Err(error) => error.to_string(),
    }
}

fn assert_says(error: &str, path: &str, words: &str) {
    assert!(
        error.starts_with(&format!("{path}: ")),
        "not at {path}: {error}"
    );
    assert!(error.contains(words), "not saying {words:?}: {error}");
    for rust in ["struct ", "Spec", "usize", "sequence", " map"] {
        assert!(!error.contains(rust), "Rust's words ({rust:?}) in: {error}");
    }
}

#[test]
fn an_object_of_the_wrong_kind_is_shown_as_the_object_to_write() {
    assert_says(
        &gateway_with_app(r#"{ "hold": "30s" }"#),
        "gateway.services.app.hold",
        r#"invalid type: string "30s", expected an object such as {"max_wait": "30s"}"#,
    );
    assert_says(
        &gateway_with_app(r#"{ "limit": 8 }"#),
        "gateway.services.app.limit",
        r#"expected an object such as {"max_in_flight": 8"#,
    );
    assert_says(
        &gateway_error(r#"{ "listen": "127.0.0.1:0", "routes": [ "app" ] }"#),
        "gateway.routes[0]",
        r#"expected an object such as {"path_prefix": "/", "service": "app"}"#,
    );
    assert_says(
        &service_error(r#""grace_period": "1s", "on_idle": "15m""#),
        "services.app.on_idle",
        r#"expected an object such as {"after": "15m""#,
    );
}

/// serde's derived structs read a list by position: one given for an object is the wrong type,
/// not a list of the wrong length.
#[test]
fn a_list_given_for_an_object_is_said_to_be_a_list() {
    assert_says(
        &gateway_with_app(r#"{ "hold": ["30s"] }"#),
        "gateway.services.app.hold",
        r#"invalid type: list, expected an object such as {"max_wait": "30s"}"#,
    );
    assert_says(
        &gateway_error(r#"{ "listen": "127.0.0.1:0", "routes": { "service": "app" } }"#),
        "gateway.routes",
        "invalid type: object, expected a list",
    );
}

#[test]
fn a_duration_of_the_wrong_kind_is_shown_as_a_duration_to_write() {
    assert_says(
        &service_error(r#""grace_period": 30"#),
        "services.app.grace_period",
        r#"invalid type: integer `30`, expected a duration such as "30s""#,
    );
}

#[test]
fn a_count_of_the_wrong_kind_asks_for_a_whole_number() {
    assert_says(
        &gateway_with_app(r#"{ "hold": { "max_wait": "30s", "max_held": "10" } }"#),
        "gateway.services.app.hold.max_held",
        r#"invalid type: string "10", expected a whole number"#,
    );
}

/// A file of `services` alone (what `MinMonitor::from_config` reads) given to the gateway.
#[test]
fn a_missing_gateway_section_is_shown_as_the_section_to_write() {
    let json = format!("{{ {SERVICES} }}");
    let error = match Gateway::from_config(&json, &TriggerRegistry::new()) {
        Ok(_) => panic!("accepted: {json}"),
        Err(error) => error.to_string(),
    };
    assert_says(
        &error,
        "gateway",
        r#""gateway": {"listen": "127.0.0.1:8080", "routes": [{"service": "app"}]}"#,
    );
}

/// A list with as many items as the object has fields was read by position (`["30s", 10]` as
/// `{"max_wait": "30s", "max_held": 10}`): refused as any other list, wherever an object is
/// expected.
#[test]
fn a_list_as_long_as_the_object_is_refused_too() {
    assert_says(
        &gateway_with_app(r#"{ "hold": ["30s", 10] }"#),
        "gateway.services.app.hold",
        r#"invalid type: list, expected an object such as {"max_wait": "30s"}"#,
    );
    assert_says(
        &service_error(r#""grace_period": "1s", "on_idle": ["15m", { "type": "process_stop" }]"#),
        "services.app.on_idle",
        r#"invalid type: list, expected an object such as {"after": "15m""#,
    );
    let json = r#"{ "services": { "app": ["http://127.0.0.1:9/", "1s"] } }"#;
    assert_says(
        &MinMonitor::from_config(json).unwrap_err().to_string(),
        "services.app",
        r#"invalid type: list, expected an object such as {"url": "#,
    );
    let json = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ] }},
             "admin": ["127.0.0.1:0", "a-token"], {SERVICES} }}"#
    );
    let error = match Gateway::from_config(&json, &TriggerRegistry::new()) {
        Ok(_) => panic!("accepted: {json}"),
        Err(error) => error.to_string(),
    };
    assert_says(
        &error,
        "admin",
        r#"invalid type: list, expected an object such as {"listen": "#,
    );
}

/// An address written without `http://` is the usual slip; the error shows the URL to write.
#[test]
fn a_url_without_its_scheme_is_shown_with_one() {
    let with_url = |url: &str| {
        format!(r#"{{ "services": {{ "app": {{ "url": "{url}", "grace_period": "1s" }} }} }}"#)
    };
    for (url, says) in [
        // Not a URL at all to the parser: "relative URL without a base".
        (
            "127.0.0.1:8081",
            r#"invalid URL "127.0.0.1:8081": relative URL without a base; write it with its scheme, e.g. "http://127.0.0.1:8081/""#,
        ),
        // A URL of the scheme `localhost`, with no host: it once passed as far as the probe.
        (
            "localhost:8081/",
            r#"invalid URL "localhost:8081/": no host; write it with its scheme, e.g. "http://localhost:8081/""#,
        ),
        // A scheme mistyped: no URL to suggest.
        (
            "http//127.0.0.1:8081",
            r#"invalid URL "http//127.0.0.1:8081": relative URL without a base"#,
        ),
    ] {
        let error = MinMonitor::from_config(&with_url(url))
            .unwrap_err()
            .to_string();
        assert_eq!(error, format!("services.app.url: {says}"), "{url}");
    }
    let webhook = r#"{ "services": { "app": { "url": "http://127.0.0.1:9/", "grace_period": "1s",
        "on_down": { "type": "webhook", "url": "orchestrator:9000" } } } }"#;
    assert_says(
        &MinMonitor::from_config(webhook).unwrap_err().to_string(),
        "services.app.on_down.url",
        r#"write it with its scheme, e.g. "http://orchestrator:9000/""#,
    );
}

/// `on_idle` written like `on_down`, as the trigger itself, is said to be that, not "unknown
/// field `command`, expected `after` or `trigger`".
#[test]
fn an_idle_trigger_without_its_after_is_said_to_need_one() {
    let error = service_error(
        r#""grace_period": "1s", "on_idle": { "type": "command", "command": "systemctl", "args": ["stop", "app"] }"#,
    );
    assert_eq!(
        error,
        r#"services.app.on_idle: a trigger given as on_idle itself: write {"after": "15m", "trigger": {"type": …}}, the idle time in "after" and the trigger in "trigger""#
    );
    // The gateway reads its services the same way.
    let json = r#"{ "gateway": { "listen": "127.0.0.1:0", "routes": [ { "service": "app" } ] },
        "services": { "app": { "url": "http://127.0.0.1:9/", "grace_period": "1s",
            "on_idle": { "type": "process_stop" } } } }"#;
    let error = Gateway::from_config(json, &TriggerRegistry::new()).unwrap_err();
    assert_eq!(error.path(), "services.app.on_idle");
}
