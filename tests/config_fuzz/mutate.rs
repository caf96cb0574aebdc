//! How the property test changes a valid configuration: JSON values replaced, removed, added
//! or nested; bytes of its text set, cut or repeated; with the values most likely to break
//! something (numbers at their limits, huge and unicode strings, known names).

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};

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
pub enum Mutation {
    Replace(Index, Value),
    Remove(Index),
    Insert(Index, String, Value),
    /// Wraps a value this many times (the JSON parser allows 128 levels).
    Nest(Index, usize, Wrap),
}

#[derive(Debug, Clone, Copy)]
pub enum Wrap {
    Array,
    Object,
    /// In `delay` triggers: each level is one more trigger for the registry to build.
    Delay,
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
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

pub fn apply(document: &mut Value, mutation: Mutation) {
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
pub enum ByteEdit {
    Set(Index, u8),
    Cut(Index, usize),
    Repeat(Index, usize, usize),
}

pub fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(at, b)| ByteEdit::Set(at, b)),
        (any::<Index>(), 1..64_usize).prop_map(|(at, n)| ByteEdit::Cut(at, n)),
        (any::<Index>(), 1..64_usize, 1..2000_usize)
            .prop_map(|(at, n, t)| ByteEdit::Repeat(at, n, t)),
    ]
}

pub fn edit_bytes(text: &str, edits: &[ByteEdit]) -> String {
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
