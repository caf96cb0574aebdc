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

/// The names the configuration knows: a mutation that uses them gets past `deny_unknown_fields`
/// and reaches the checks behind it.
const FIELDS: &[&str] = &[
    "services",
    "url",
    "grace_period",
    "probe_timeout",
    "probe_on_add",
    "probe",
    "ready_after",
    "on_down",
    "on_up",
    "always",
    "on_idle",
    "after",
    "trigger",
    "triggers",
    "type",
    "command",
    "args",
    "timeout",
    "detached",
    "current_dir",
    "delay",
    "max_runs",
    "period",
    "method",
    "headers",
    "body",
    "path",
    "accept",
    "body_matches",
    "body_excludes",
    "max_body_bytes",
    "root_certificate_pem",
    "steps",
    "send",
    "expect",
];

const TYPES: &[&str] = &[
    "command",
    "compound",
    "delay",
    "rate_limit",
    "webhook",
    "tcp",
    "http",
    "expect",
];

fn number_at_a_limit() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(u64::from(u32::MAX) + 1)),
        Just(json!(38_007_346_618_u64)),
        Just(json!(f64::MAX)),
        Just(json!(f64::MIN_POSITIVE)),
        Just(json!(0.5)),
        Just(json!(1e300)),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
    ]
}

fn duration_text() -> impl Strategy<Value = String> {
    let unit =
        prop::sample::select(&["ns", "us", "ms", "s", "m", "h", "d", "w", "M", "y", "years"][..]);
    prop_oneof![
        (any::<u64>(), unit.clone()).prop_map(|(n, unit)| format!("{n}{unit}")),
        (0..1000_u64, unit).prop_map(|(n, unit)| format!("{n}{unit}")),
        prop::sample::select(
            &[
                "9300000000000000000s",
                "18446744073709551615s",
                "18446744073709551616ns",
                "100years",
                "101years",
                "0s",
                "",
                " ",
                "-1s",
                "1s 2s",
                "1.5s",
                "∞",
            ][..]
        )
        .prop_map(str::to_string),
    ]
}

fn huge_string() -> impl Strategy<Value = String> {
    (any::<char>(), 1..200_000_usize).prop_map(|(c, n)| c.to_string().repeat(n))
}

fn url_text() -> impl Strategy<Value = String> {
    prop::sample::select(
        &[
            "http://127.0.0.1:0/",
            "http://127.0.0.1:65535/",
            "http://127.0.0.1:65536/",
            "http://[::1]:1/",
            "http://user:pw@127.0.0.1:1/",
            "https://127.0.0.1:1/",
            "tcp://127.0.0.1:1",
            "file:///",
            "http://",
            "mailto:a@b",
            "http://127.0.0.1:1/\u{0}",
        ][..],
    )
    .prop_map(str::to_string)
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        duration_text(),
        huge_string(),
        url_text(),
        prop::sample::select(FIELDS).prop_map(str::to_string),
        prop::sample::select(TYPES).prop_map(str::to_string),
        Just("(((((((((((((((((((((((((((((((((((((((((a*)*)*)*)*)*)*".to_string()),
        Just("[".to_string()),
        Just("\\".to_string()),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number_at_a_limit(),
        text().prop_map(Value::String),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(FIELDS).prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

fn any_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(Index, Value),
    Remove(Index),
    Insert(Index, String, Value),
    /// Wraps a value this many times (the JSON parser allows 128 levels).
    Nest(Index, usize, Wrap),
}

#[derive(Debug, Clone, Copy)]
enum Wrap {
    Array,
    Object,
    /// In `delay` triggers: each level is one more trigger for the registry to build.
    Delay,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), any_value()).prop_map(|(at, with)| Mutation::Replace(at, with)),
        2 => any::<Index>().prop_map(Mutation::Remove),
        2 => (any::<Index>(), key(), any_value()).prop_map(|(at, k, v)| Mutation::Insert(at, k, v)),
        1 => (any::<Index>(), 1..126_usize, prop::sample::select(&[Wrap::Array, Wrap::Object, Wrap::Delay][..]))
            .prop_map(|(at, n, wrap)| Mutation::Nest(at, n, wrap)),
    ]
}

/// JSON pointers to every value in `value`, itself first.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointers(item, format!("{at}/{i}"), out);
            }
        }
        Value::Object(fields) => {
            for (name, item) in fields {
                let escaped = name.replace('~', "~0").replace('/', "~1");
                pointers(item, format!("{at}/{escaped}"), out);
            }
        }
        _ => {}
    }
}

fn apply(document: &mut Value, mutation: Mutation) {
    let mut all = Vec::new();
    pointers(document, String::new(), &mut all);
    let pick = |at: &Index| all[at.index(all.len())].clone();
    match mutation {
        Mutation::Replace(at, with) => *document.pointer_mut(&pick(&at)).unwrap() = with,
        Mutation::Remove(at) => {
            let target = pick(&at);
            let Some((parent, last)) = target.rsplit_once('/') else {
                return;
            };
            let last = last.replace("~1", "/").replace("~0", "~");
            match document.pointer_mut(parent).unwrap() {
                Value::Object(fields) => drop(fields.remove(&last)),
                Value::Array(items) => drop(items.remove(last.parse::<usize>().unwrap())),
                _ => unreachable!("a parent holds values"),
            }
        }
        Mutation::Insert(at, name, with) => {
            if let Value::Object(fields) = document.pointer_mut(&pick(&at)).unwrap() {
                fields.insert(name, with);
            }
        }
        Mutation::Nest(at, depth, wrap) => {
            let slot = document.pointer_mut(&pick(&at)).unwrap();
            let mut nested = slot.take();
            for _ in 0..depth {
                nested = match wrap {
                    Wrap::Array => json!([nested]),
                    Wrap::Object => json!({ "trigger": nested }),
                    Wrap::Delay => json!({ "type": "delay", "delay": "1s", "trigger": nested }),
                };
            }
            *slot = nested;
        }
    }
}

#[derive(Debug, Clone)]
enum ByteEdit {
    Set(Index, u8),
    Cut(Index, usize),
    Repeat(Index, usize, usize),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(at, b)| ByteEdit::Set(at, b)),
        (any::<Index>(), 1..64_usize).prop_map(|(at, n)| ByteEdit::Cut(at, n)),
        (any::<Index>(), 1..64_usize, 1..2000_usize)
            .prop_map(|(at, n, t)| ByteEdit::Repeat(at, n, t)),
    ]
}

fn edit_bytes(text: &str, edits: &[ByteEdit]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for edit in edits {
        let len = bytes.len().max(1);
        match *edit {
            ByteEdit::Set(ref at, b) => {
                let i = at.index(len);
                if i < bytes.len() {
                    bytes[i] = b;
                }
            }
            ByteEdit::Cut(ref at, n) => {
                let i = at.index(len).min(bytes.len());
                bytes.drain(i..(i + n).min(bytes.len()));
            }
            ByteEdit::Repeat(ref at, n, times) => {
                let i = at.index(len).min(bytes.len());
                let piece = bytes[i..(i + n).min(bytes.len())].to_vec();
                for _ in 0..times {
                    bytes.splice(i..i, piece.iter().copied());
                }
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
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
