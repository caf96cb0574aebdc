//! CONFIG.md, the configuration reference, stays true: each of its ```json examples loads as
//! the gateway loads a file, and each of its tables names exactly the fields the parser
//! accepts in its section, which the parser itself lists: every section refuses an unknown
//! field with serde's "unknown field `x`, expected one of `a`, `b`, …".
//!
//! Unix only: the examples and the sections enumerated include the `process` trigger.
#![cfg(unix)]

use std::collections::BTreeSet;

use serde_json::{Value, json};
use tower_monitor::config::TriggerRegistry;
use tower_monitor::gateway::Gateway;

const REFERENCE: &str = include_str!("../CONFIG.md");

/// A field no section has: the error for it lists those the section has.
const UNKNOWN: &str = "zz_not_a_field";

/// A valid document whose every object the test puts an unknown field into is present.
fn document() -> Value {
    let mut document = json!({
        "gateway": {
            "listen": "127.0.0.1:8080",
            "routes": [ { "service": "app" } ],
            "services": { "app": {
                "hold": { "max_wait": "1s" }, "wake": {}, "limit": { "max_in_flight": 1 }
            } }
        },
        "admin": { "token": "t" },
        "services": { "app": {
            "url": "http://127.0.0.1:8081/",
            "grace_period": "30s",
            "on_idle": { "after": "15m", "trigger": { "type": "command", "command": "true" } }
        } }
    });
    if cfg!(feature = "fleet") {
        document["fleet"] = json!({ "redis": "redis://127.0.0.1:6379/" });
    }
    document
}

/// [`document`] with a `gateway.tls` section (whose files are not there: the parser refuses an
/// unknown field before it reads them).
fn with_tls() -> Value {
    let mut document = document();
    document["gateway"]["tls"] = json!({ "cert": "cert.pem", "key": "key.pem" });
    document
}

/// The smallest valid object of each trigger type (`process_stop` is put in `on_idle`).
fn trigger_example(kind: &str) -> Value {
    let command = json!({ "type": "command", "command": "true" });
    match kind {
        "command" => command,
        "compound" => json!({ "type": "compound", "triggers": [] }),
        "delay" => json!({ "type": "delay", "delay": "1s", "trigger": command }),
        "rate_limit" => {
            json!({ "type": "rate_limit", "max_runs": 1, "period": "1s", "trigger": command })
        }
        "webhook" => json!({ "type": "webhook", "url": "http://127.0.0.1:9/" }),
        "process" | "process_stop" => json!({ "type": "process", "command": "true" }),
        other => panic!(
            "a new trigger type, {other:?}: give it an example here and a table in CONFIG.md"
        ),
    }
}

/// The smallest valid probe of each kind.
fn probe_example(kind: &str) -> Value {
    match kind {
        "tcp" => json!({ "type": "tcp" }),
        "http" => json!({ "type": "http" }),
        "expect" => json!({ "type": "expect", "steps": [ { "send": "PING\r\n" } ] }),
        other => {
            panic!("a new probe type, {other:?}: give it an example here and a table in CONFIG.md")
        }
    }
}

fn load(document: &Value) -> Result<Gateway, String> {
    Gateway::from_config(&document.to_string(), &TriggerRegistry::new()).map_err(|e| e.to_string())
}

/// The names between backticks in `text`.
fn quoted(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The fields the parser accepts in the object at `pointer` (shown in errors as `path`), as
/// the error for an unknown field there lists them.
fn accepted(mut document: Value, pointer: &str, path: &str) -> BTreeSet<String> {
    document
        .pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no object at {pointer}"))
        .insert(UNKNOWN.into(), json!(1));
    let error = load(&document).expect_err("an unknown field is refused");
    let at = if path.is_empty() {
        UNKNOWN.to_string()
    } else {
        format!("{path}.{UNKNOWN}")
    };
    let rest = error
        .strip_prefix(&format!("{at}: unknown field `{UNKNOWN}`"))
        .unwrap_or_else(|| panic!("not the unknown-field error of {at}: {error}"));
    if rest.contains("there are no fields") {
        return BTreeSet::new();
    }
    let names: BTreeSet<String> = quoted(rest).into_iter().collect();
    assert!(!names.is_empty(), "no field names in {error:?}");
    names
}

/// The values the parser accepts for `field` of `gateway.services.<name>` (a string that
/// names one of a set).
fn variants(field: &str) -> Vec<String> {
    let mut document = document();
    document["gateway"]["services"]["app"][field] = json!(UNKNOWN);
    let error = load(&document).expect_err("an unknown value is refused");
    let rest = error
        .split_once(&format!("unknown variant `{UNKNOWN}`"))
        .unwrap_or_else(|| panic!("not an unknown-variant error: {error}"))
        .1;
    quoted(rest)
}

/// The names a "…; known types: a, b, c" error lists.
fn known_types(error: &str) -> Vec<String> {
    let (_, list) = error
        .split_once("known types: ")
        .expect("the types are listed");
    list.split(", ").map(str::to_string).collect()
}

/// The rows of the table under the heading that starts with `heading`, up to the next heading,
/// by their first cell (the field's name, between backticks).
fn table(heading: &str) -> Vec<(String, &'static str)> {
    let mut lines = REFERENCE
        .lines()
        .skip_while(|line| !line.starts_with(heading));
    assert!(
        lines.next().is_some(),
        "CONFIG.md has no heading {heading:?}"
    );
    let rows: Vec<(String, &str)> = lines
        .take_while(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with("| `"))
        .map(|row| {
            let cell = row.split('|').nth(1).unwrap_or_default().trim();
            let name = cell.strip_prefix('`').and_then(|c| c.strip_suffix('`'));
            let name =
                name.unwrap_or_else(|| panic!("a field's name alone in its first cell: {row}"));
            (name.to_string(), row)
        })
        .collect();
    assert!(!rows.is_empty(), "no table under {heading:?}");
    rows
}

/// One table of CONFIG.md and what the parser accepts there: the fields of each object
/// (document, pointer to it, its path in errors), each named in the table after a prefix.
struct Section {
    heading: String,
    objects: Vec<(Value, String, String, &'static str)>,
    /// The `type` that picks a probe or a trigger, taken out before the other fields are read.
    typed: bool,
}

impl Section {
    fn new(heading: &str) -> Self {
        Self {
            heading: heading.into(),
            objects: Vec::new(),
            typed: false,
        }
    }

    fn object(mut self, document: Value, pointer: &str, path: &str, prefix: &'static str) -> Self {
        self.objects
            .push((document, pointer.into(), path.into(), prefix));
        self
    }

    fn fields(&self) -> BTreeSet<String> {
        let mut fields: BTreeSet<String> =
            self.typed.then(|| "type".to_string()).into_iter().collect();
        for (document, pointer, path, prefix) in &self.objects {
            let names = accepted(document.clone(), pointer, path);
            fields.extend(names.into_iter().map(|name| format!("{prefix}{name}")));
        }
        fields
    }
}

fn sections() -> Vec<Section> {
    let doc = document;
    let mut sections = vec![
        Section::new("## Top level").object(doc(), "", "", ""),
        Section::new("## `services.<name>`")
            .object(doc(), "/services/app", "services.app", "")
            .object(
                doc(),
                "/services/app/on_idle",
                "services.app.on_idle",
                "on_idle.",
            ),
        Section::new("## `gateway`")
            .object(doc(), "/gateway", "gateway", "")
            .object(with_tls(), "/gateway/tls", "gateway.tls", "tls."),
        Section::new("## `gateway.routes[]`").object(
            doc(),
            "/gateway/routes/0",
            "gateway.routes[0]",
            "",
        ),
        Section::new("## `gateway.services.<name>`")
            .object(doc(), "/gateway/services/app", "gateway.services.app", "")
            .object(
                doc(),
                "/gateway/services/app/hold",
                "gateway.services.app.hold",
                "hold.",
            )
            .object(
                doc(),
                "/gateway/services/app/wake",
                "gateway.services.app.wake",
                "wake.",
            )
            .object(
                doc(),
                "/gateway/services/app/limit",
                "gateway.services.app.limit",
                "limit.",
            ),
        Section::new("## `admin`").object(doc(), "/admin", "admin", ""),
    ];
    if cfg!(feature = "fleet") {
        sections.push(Section::new("## `fleet`").object(doc(), "/fleet", "fleet", ""));
    }
    for kind in probe_kinds() {
        let mut with = doc();
        with["services"]["app"]["probe"] = probe_example(&kind);
        let mut section = Section::new(&format!("### Probe `{kind}`")).object(
            with.clone(),
            "/services/app/probe",
            "services.app.probe",
            "",
        );
        if kind == "expect" {
            section = section.object(
                with,
                "/services/app/probe/steps/0",
                "services.app.probe.steps[0]",
                "steps[].",
            );
        }
        section.typed = true;
        sections.push(section);
    }
    for kind in trigger_types() {
        let mut with = doc();
        with["services"]["app"]["on_down"] = trigger_example(&kind);
        let (pointer, path) = if kind == "process_stop" {
            with["services"]["app"]["on_idle"]["trigger"] = json!({ "type": "process_stop" });
            (
                "/services/app/on_idle/trigger",
                "services.app.on_idle.trigger",
            )
        } else {
            ("/services/app/on_down", "services.app.on_down")
        };
        let mut section =
            Section::new(&format!("### Trigger `{kind}`")).object(with, pointer, path, "");
        section.typed = true;
        sections.push(section);
    }
    sections
}

fn probe_kinds() -> Vec<String> {
    let mut with = document();
    with["services"]["app"]["probe"] = json!({ "type": UNKNOWN });
    known_types(&load(&with).expect_err("an unknown probe type is refused"))
}

fn trigger_types() -> Vec<String> {
    let mut with = document();
    with["services"]["app"]["on_down"] = json!({ "type": UNKNOWN });
    known_types(&load(&with).expect_err("an unknown trigger type is refused"))
}

#[test]
fn the_document_the_test_builds_on_loads() {
    if let Err(error) = load(&document()) {
        panic!("{error}");
    }
}

#[test]
fn every_table_names_exactly_the_fields_its_section_accepts() {
    let mut wrong = Vec::new();
    for section in sections() {
        let accepted = section.fields();
        let named: BTreeSet<String> = table(&section.heading)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let missing: Vec<_> = accepted.difference(&named).collect();
        let invented: Vec<_> = named.difference(&accepted).collect();
        if !missing.is_empty() || !invented.is_empty() {
            wrong.push(format!(
                "{}: missing {missing:?}, not accepted {invented:?}",
                section.heading
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "CONFIG.md's tables:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_probe_and_trigger_type_has_a_table_and_no_other_does() {
    for (kind, known) in [("Probe", probe_kinds()), ("Trigger", trigger_types())] {
        let prefix = format!("### {kind} `");
        let documented: BTreeSet<String> = REFERENCE
            .lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .filter_map(|rest| rest.split('`').next())
            .map(str::to_string)
            .collect();
        assert_eq!(
            documented,
            known.into_iter().collect::<BTreeSet<_>>(),
            "{kind} tables"
        );
    }
}

#[test]
fn the_rows_of_enumerated_fields_name_every_value() {
    let rows = table("## `gateway.services.<name>`");
    for field in ["forwarded", "protocol"] {
        let (_, row) = rows
            .iter()
            .find(|(name, _)| name == field)
            .expect("the field's row");
        let values = variants(field);
        assert!(values.len() >= 2, "{field}: {values:?}");
        for value in values {
            assert!(
                row.contains(&format!("`\"{value}\"`")),
                "{field} does not name {value:?}: {row}"
            );
        }
    }
}

#[test]
fn every_json_example_loads_as_the_gateway_loads_a_file() {
    let blocks: Vec<&str> = REFERENCE
        .split("```json\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap_or_default())
        .collect();
    assert!(blocks.len() >= 2, "a complete and a minimal example");
    for (i, block) in blocks.iter().enumerate() {
        let mut document: Value =
            serde_json::from_str(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
        if !cfg!(feature = "fleet") {
            // A gateway built without the feature refuses the section, as it should.
            document.as_object_mut().map(|doc| doc.remove("fleet"));
        }
        let dir = std::env::temp_dir().join(format!(
            "tower-monitor-reference-{}-{i}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        // The complete example's waiting page and TLS files, beside the file as it says.
        std::fs::write(dir.join("waiting.html"), "<p>{service} is starting</p>").unwrap();
        let certificate =
            rcgen::generate_simple_self_signed(vec!["app.example.com".into()]).unwrap();
        std::fs::write(dir.join("fullchain.pem"), certificate.cert.pem()).unwrap();
        std::fs::write(
            dir.join("privkey.pem"),
            certificate.signing_key.serialize_pem(),
        )
        .unwrap();
        let file = dir.join("gateway.json");
        std::fs::write(&file, document.to_string()).unwrap();
        let loaded = Gateway::from_config_file(&file, &TriggerRegistry::new());
        std::fs::remove_dir_all(&dir).unwrap();
        if let Err(error) = loaded {
            panic!("example {i} does not load: {error}\n{block}");
        }
    }
}
