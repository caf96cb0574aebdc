//! The README's and GATEWAY.md's JSON documents are real: each loads (the gateway's after its
//! own section).

use tower_monitor::MinMonitor;
use tower_monitor::config::TriggerRegistry;

/// The README and GATEWAY.md, the gateway program's page, which goes on from it.
const DOCS: &str = concat!(include_str!("../README.md"), include_str!("../GATEWAY.md"));

fn json_blocks() -> Vec<String> {
    DOCS.split("```json\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn every_json_block_in_the_readme_is_a_loadable_configuration() {
    let blocks = json_blocks();
    assert!(
        blocks.len() >= 3,
        "the README and GATEWAY.md show configurations"
    );
    for block in blocks {
        let mut document: serde_json::Value = serde_json::from_str(&block).unwrap();
        // The gateway's own sections; the gateway tests load those.
        for section in ["gateway", "admin", "fleet"] {
            document.as_object_mut().unwrap().remove(section);
        }
        let monitor = MinMonitor::from_config_value_with(document, &TriggerRegistry::new());
        assert!(monitor.is_ok(), "{:?}\n{block}", monitor.err());
    }
}

#[test]
fn the_readme_error_example_is_what_the_loader_says() {
    let readme = include_str!("../README.md");
    let json = r#"{ "services": { "app": { "url": "http://127.0.0.1:8081/", "grace_period": "30s",
        "on_down": { "type": "rate_limit", "max_runs": 3, "period": "1h", "trigger": { "type": "comand" } } } } }"#;
    let err = MinMonitor::from_config(json).unwrap_err().to_string();
    let shown: String = readme
        .split("naming the field and the value, e.g.\n`")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(shown, err);
}

#[test]
fn the_readme_names_every_built_in_trigger_type() {
    let readme = include_str!("../README.md");
    let json = r#"{ "services": { "app": { "url": "http://127.0.0.1:8081/", "grace_period": "30s",
        "on_down": { "type": "no-such-type" } } } }"#;
    let err = MinMonitor::from_config(json).unwrap_err().to_string();
    let known = err
        .split("known types: ")
        .nth(1)
        .expect("the types are listed");
    let listed = readme
        .split("trigger types are ")
        .nth(1)
        .and_then(|rest| rest.split("any you add").next())
        .expect("the Configuration section lists the trigger types");
    for name in known.split(", ") {
        assert!(
            listed.contains(&format!("`{name}`")),
            "{name} missing from: {listed}"
        );
    }
}

#[cfg(feature = "gateway")]
#[test]
fn the_gateway_page_error_example_is_what_the_gateway_says() {
    use tower_monitor::gateway::Gateway;

    let shown: String = include_str!("../GATEWAY.md")
        .split("Errors are one sentence naming the field (`")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .expect("the Command line section quotes an error")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let err = Gateway::from_config(
        r#"{ "gateway": { "listen": "127.0.0.1:8080", "routes": [] },
             "services": { "app": { "url": "http://127.0.0.1:8081/", "grace_period": "30s" } } }"#,
        &TriggerRegistry::new(),
    )
    .unwrap_err();
    assert_eq!(shown, err.to_string());
}

/// The demo's proxied answer, as the README shows it: its `content-length` is its body's.
#[test]
fn the_readme_demo_answer_has_the_length_it_says() {
    let readme = include_str!("../README.md");
    let answer = readme
        .split("HTTP/1.1 200 OK\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the README shows the demo's 200");
    let (head, body) = answer.split_once("\n\n").expect("a head and a body");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .expect("a content-length")
        .parse()
        .unwrap();
    assert_eq!(length, body.len(), "{body:?}");
    assert!(
        body.contains(": GET /\n"),
        "the same request as the curl before it: {body}"
    );
}
