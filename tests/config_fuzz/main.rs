//! Property test of the configuration: valid documents, mutated (JSON values replaced, removed,
//! added or nested deeply; numbers at their limits, huge and unicode strings; bytes of the text
//! flipped, cut or repeated), never make `from_config` panic or hang, and every error about a
//! JSON object names a field path.
//!
//! CI runs a fixed number of cases (proptest's default, 256: a few seconds). To search longer:
//!
//! ```text
//! PROPTEST_CASES=20000 cargo test --release --test config_fuzz
//! ```
//!
//! Nothing here starts a runtime, so no probe or trigger runs and nothing is contacted.

use std::sync::mpsc;
use std::time::Duration;

mod mutate;

use mutate::{apply, byte_edit, edit_bytes, mutation};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};
use tower_monitor::MinMonitor;
use tower_monitor::config::{ConfigError, TriggerRegistry};

/// Far longer than any configuration takes to load; past it the case counts as a hang.
const HANG_LIMIT: Duration = Duration::from_secs(20);

/// Valid documents using every field, probe and built-in trigger type.
fn seeds() -> Vec<Value> {
    let command =
        json!({ "type": "command", "command": "true", "args": ["a", "é"], "timeout": "5s" });
    let webhook = json!({ "type": "webhook", "url": "http://127.0.0.1:9/start", "method": "PUT",
        "headers": { "x-token": "t" }, "body": "go", "timeout": "2s" });
    vec![
        json!({ "services": { "app": { "url": "http://127.0.0.1:8081/", "grace_period": "30s" } } }),
        json!({ "services": {
            "app": {
                "url": "http://127.0.0.1:8081/",
                "grace_period": "30s",
                "probe_timeout": "1500ms",
                "probe_on_add": false,
                "ready_after": "2s",
                "probe": { "type": "http", "method": "GET", "path": "/healthz",
                    "headers": { "accept": "text/plain" }, "body": "",
                    "accept": ["2xx", 401, "500-503"], "body_matches": "ok", "body_excludes": "fail",
                    "max_body_bytes": 4096 },
                "on_down": { "type": "compound", "triggers": [
                    command,
                    { "type": "rate_limit", "max_runs": 3, "period": "1h", "trigger": webhook }
                ] },
                "on_up": { "type": "command", "command": "true" },
                "always": { "type": "delay", "delay": "15m", "trigger": command },
                "on_idle": { "after": "1m30s", "trigger": { "type": "command", "command": "true", "detached": true } }
            },
            "other": {
                "url": "http://[::1]:9/", "grace_period": "0s",
                "probe": { "type": "expect", "steps": [ { "send": "PING\r\n" }, { "expect": "^\\+PONG" } ] }
            },
            "plain": { "url": "http://127.0.0.1:1/", "grace_period": "1h", "probe": { "type": "tcp" } }
        } }),
    ]
}

/// Loads `json` on a thread of its own (as big a stack as a main thread), within `HANG_LIMIT`.
fn load(json: String, as_value: Option<Value>) -> Result<Result<usize, ConfigError>, String> {
    let (done, result) = mpsc::channel();
    let loader = std::thread::Builder::new()
        .name("config-fuzz".into())
        .stack_size(8 << 20)
        .spawn(move || {
            let loaded = match as_value {
                Some(document) => {
                    MinMonitor::from_config_value_with(document, &TriggerRegistry::new())
                }
                None => MinMonitor::from_config(&json),
            };
            let _ = done.send(loaded.map(|monitor| monitor.names().len()));
        })
        .unwrap();
    match result.recv_timeout(HANG_LIMIT) {
        Ok(loaded) => {
            loader.join().unwrap();
            Ok(loaded)
        }
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("no answer within {HANG_LIMIT:?}")),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let panic = loader.join().unwrap_err();
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(format!("panicked: {message}"))
        }
    }
}

/// The properties, for one document given as text (and, when it is JSON, as a value too).
fn check(text: String) -> Result<(), TestCaseError> {
    let parsed = serde_json::from_str::<Value>(&text).ok();
    let is_object = parsed.as_ref().is_some_and(Value::is_object);
    let shown = |text: &str| text.chars().take(600).collect::<String>();
    for as_value in [None, parsed.filter(|_| is_object)] {
        let loaded = load(text.clone(), as_value);
        let loaded = loaded.map_err(|failure| {
            TestCaseError::fail(format!("from_config {failure} on {}", shown(&text)))
        })?;
        if let Err(error) = loaded {
            prop_assert!(!error.message().is_empty(), "an error with no message");
            prop_assert!(
                !is_object || !error.path().is_empty(),
                "an error naming no field: {error} on {}",
                shown(&text)
            );
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn mutated_values_never_panic_or_hang_and_errors_name_a_field(
        seed in any::<Index>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let seeds = seeds();
        let mut document = seeds[seed.index(seeds.len())].clone();
        for mutation in mutations {
            apply(&mut document, mutation);
        }
        check(document.to_string())?;
    }

    #[test]
    fn mutated_bytes_never_panic_or_hang_and_errors_name_a_field(
        seed in any::<Index>(),
        edits in prop::collection::vec(byte_edit(), 1..6),
    ) {
        let seeds = seeds();
        let text = serde_json::to_string_pretty(&seeds[seed.index(seeds.len())]).unwrap();
        check(edit_bytes(&text, &edits))?;
    }
}

#[test]
fn the_seeds_are_valid() {
    for seed in seeds() {
        let loaded = load(seed.to_string(), None).unwrap();
        assert!(loaded.is_ok(), "{:?}", loaded.err());
    }
}

/// The deepest trigger chain the JSON parser lets through loads, on a test thread's stack
/// (2 MiB, as small as a Tokio worker's).
#[test]
fn the_deepest_trigger_chain_loads() {
    let mut trigger = json!({ "type": "command", "command": "true" });
    for _ in 0..120 {
        trigger = json!({ "type": "delay", "delay": "1s", "trigger": trigger });
    }
    let document = json!({ "services": { "app": {
        "url": "http://127.0.0.1:1/", "grace_period": "1s", "on_down": trigger } } });
    let monitor = MinMonitor::from_config(&document.to_string()).unwrap();
    assert_eq!(monitor.names(), ["app"]);
}
