//! Two services on one backend that both start or stop it are a configuration error naming
//! the second one's `url`; services that only watch a backend may share it.

use tower_monitor::MinMonitor;

fn config(app2: &str) -> String {
    format!(
        r#"{{ "services": {{
             "app": {{ "url": "http://127.0.0.1:18090/", "grace_period": "10s",
                       "on_down": {{ "type": "command", "command": "true" }} }},
             "app2": {{ "grace_period": "10s", {app2} }} }} }}"#
    )
}

#[test]
fn two_services_that_both_start_one_backend_are_an_error_naming_the_second_url() {
    // Another path of the same backend is still the same backend.
    let Err(error) = MinMonitor::from_config(&config(
        r#""url": "http://127.0.0.1:18090/api/",
           "on_idle": { "after": "1m", "trigger": { "type": "command", "command": "true" } }"#,
    )) else {
        panic!("accepted");
    };
    assert_eq!(error.path(), "services.app2.url");
    let said = error.to_string();
    assert!(
        said.contains("127.0.0.1:18090 is also the backend of service \"app\""),
        "{said}"
    );
    assert!(!said.contains('\n'), "one line: {said}");
}

#[test]
fn a_service_that_only_watches_a_backend_may_share_it() {
    MinMonitor::from_config(&config(r#""url": "http://127.0.0.1:18090/status/""#))
        .expect("a watcher without triggers");
    // Another port is another backend.
    MinMonitor::from_config(&config(
        r#""url": "http://127.0.0.1:18091/", "on_down": { "type": "command", "command": "true" }"#,
    ))
    .expect("another port");
}
