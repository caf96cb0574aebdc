//! Gateway configurations that load but could never work as written: a route an earlier one
//! hides, and settings of a service no route names, checked all the same.

use tower_monitor::config::TriggerRegistry;
use tower_monitor::gateway::Gateway;

#[test]
fn a_route_that_an_earlier_one_hides_is_named() {
    let two = |routes: &str| {
        format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": {routes} }},
                 "services": {{ "app": {{ "url": "http://127.0.0.1:9/", "grace_period": "1s" }},
                               "docs": {{ "url": "http://127.0.0.1:9/", "grace_period": "1s" }} }} }}"#
        )
    };
    // Routes are tried in order: nginx's longest-prefix habit puts the catch-all first.
    for (routes, earlier) in [
        (
            r#"[ { "service": "app" }, { "path_prefix": "/docs/", "service": "docs" } ]"#,
            "gateway.routes[0] (host any, path_prefix \"/\")",
        ),
        (
            r#"[ { "service": "app" }, { "service": "app" } ]"#,
            "gateway.routes[0] (host any, path_prefix \"/\")",
        ),
        (
            r#"[ { "host": "a.localhost", "path_prefix": "/d", "service": "app" },
                 { "host": "A.localhost:8080", "path_prefix": "/docs/", "service": "docs" } ]"#,
            "gateway.routes[0] (host \"a.localhost\", path_prefix \"/d\")",
        ),
    ] {
        let error = Gateway::from_config(&two(routes), &TriggerRegistry::new()).unwrap_err();
        assert_eq!(error.path(), "gateway.routes[1]", "{error}");
        assert!(error.message().contains("never reached"), "{error}");
        assert!(error.message().contains(earlier), "{error}");
    }
    // More specific first, or on another host: each route serves some requests.
    for routes in [
        r#"[ { "path_prefix": "/docs/", "service": "docs" }, { "service": "app" } ]"#,
        r#"[ { "host": "a.localhost", "service": "app" }, { "path_prefix": "/docs/", "service": "docs" } ]"#,
        r#"[ { "host": "a.localhost", "service": "app" }, { "host": "b.localhost", "service": "docs" } ]"#,
    ] {
        let built = Gateway::from_config(&two(routes), &TriggerRegistry::new());
        assert!(built.is_ok(), "{routes}: {:?}", built.err());
    }
}

#[test]
fn the_settings_of_a_service_no_route_names_are_checked_too() {
    let config = |settings: &str| {
        format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                              "services": {{ "docs": {settings} }} }},
                 "services": {{ "app": {{ "url": "http://127.0.0.1:9/", "grace_period": "1s" }},
                               "docs": {{ "url": "http://127.0.0.1:9/", "grace_period": "1s" }} }} }}"#
        )
    };
    for (settings, field) in [
        (
            r#"{ "connect_timeout": "0s" }"#,
            "gateway.services.docs.connect_timeout",
        ),
        (
            r#"{ "waiting_page": "no-such-page.html" }"#,
            "gateway.services.docs.waiting_page",
        ),
        (
            r#"{ "wake": { "never_user_agents": "((" } }"#,
            "gateway.services.docs.wake.never_user_agents",
        ),
    ] {
        let error = Gateway::from_config(&config(settings), &TriggerRegistry::new()).unwrap_err();
        assert_eq!(error.path(), field, "{error}");
    }
    let fine = config(r#"{ "hold": { "max_wait": "5s" } }"#);
    assert!(Gateway::from_config(&fine, &TriggerRegistry::new()).is_ok());
}
