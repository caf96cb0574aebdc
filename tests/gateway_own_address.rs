//! A service whose URL is where the gateway itself listens is a configuration error: the
//! gateway would proxy every request to itself until it ran out of file descriptors.

use tower_monitor::config::TriggerRegistry;
use tower_monitor::gateway::Gateway;

fn load(listen: &str, url: &str) -> Result<Gateway, tower_monitor::config::ConfigError> {
    let json = format!(
        r#"{{ "gateway": {{ "listen": "{listen}", "routes": [ {{ "service": "app" }} ] }},
             "services": {{ "app": {{ "url": "{url}", "grace_period": "30s" }} }} }}"#
    );
    Gateway::from_config(&json, &TriggerRegistry::new())
}

#[test]
fn a_service_at_the_gateways_own_address_is_named_with_both() {
    for (listen, url) in [
        ("127.0.0.1:8080", "http://127.0.0.1:8080/"),
        ("127.0.0.1:8080", "http://localhost:8080/api/"),
        ("0.0.0.0:8080", "http://127.0.0.1:8080/"),
        ("127.0.0.1:80", "http://127.0.0.1/"),
        ("[::1]:8080", "http://[::1]:8080/"),
        ("127.0.0.1:8080", "http://0.0.0.0:8080/"),
    ] {
        let error = match load(listen, url) {
            Ok(_) => panic!("{url} behind {listen} accepted"),
            Err(error) => error,
        };
        assert_eq!(error.path(), "services.app.url", "{error}");
        assert!(
            error
                .message()
                .contains(&format!("gateway.listen: {listen}"))
                && error.message().contains("to itself"),
            "{error}"
        );
    }
}

#[test]
fn a_service_elsewhere_is_not_taken_for_the_gateway() {
    for (listen, url) in [
        ("127.0.0.1:8080", "http://127.0.0.1:8081/"),
        ("127.0.0.1:8080", "http://127.0.0.2:8080/"),
        ("127.0.0.1:8080", "http://backend.internal:8080/"),
        // Port 0 picks a free port, never the service's.
        ("127.0.0.1:0", "http://127.0.0.1:0/"),
    ] {
        if let Err(error) = load(listen, url) {
            panic!("{url} behind {listen}: {error}");
        }
    }
}
