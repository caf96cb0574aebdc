//! Gateway configurations that load but could never work as written: a route an earlier one
//! hides, a route no request could match, and settings of a service no route names, checked
//! all the same.

mod common;

use axum::Router;
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

#[test]
fn a_route_no_request_could_match_is_an_error_naming_its_field() {
    let config = |route: &str| {
        format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {route} ] }},
                 "services": {{ "app": {{ "url": "http://127.0.0.1:9/", "grace_period": "1s" }} }} }}"#
        )
    };
    for (route, field, says) in [
        (
            r#"{ "host": "*.app.localhost", "service": "app" }"#,
            "gateway.routes[0].host",
            "wildcards are not supported",
        ),
        (
            r#"{ "host": "::1", "service": "app" }"#,
            "gateway.routes[0].host",
            "\"[::1]\"",
        ),
        (
            r#"{ "path_prefix": "/search?q=", "service": "app" }"#,
            "gateway.routes[0].path_prefix",
            "no query",
        ),
    ] {
        let error = Gateway::from_config(&config(route), &TriggerRegistry::new())
            .err()
            .unwrap_or_else(|| panic!("{route} was accepted"));
        assert_eq!(error.path(), field, "{error}");
        assert!(error.message().contains(says), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_host_in_unicode_takes_the_requests_clients_send_for_it() {
    let books = common::serve(Router::new().fallback(|| async { "books" })).await;
    let other = common::serve(Router::new().fallback(|| async { "other" })).await;
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [
               {{ "host": "bücher.localhost", "service": "books" }}, {{ "service": "other" }} ] }},
             "services": {{ "books": {{ "url": "http://{}/", "grace_period": "30s" }},
                           "other": {{ "url": "http://{}/", "grace_period": "30s" }} }} }}"#,
        books.addr, other.addr
    );
    let gateway = common::start_gateway(&config, &TriggerRegistry::new()).await;
    let port = gateway.addr.port();
    // curl sends the name's ASCII form (xn--bcher-kva.localhost), as browsers do.
    let reply = common::curl(&[
        "--resolve",
        &format!("bücher.localhost:{port}:127.0.0.1"),
        &format!("http://bücher.localhost:{port}/"),
    ])
    .await;
    assert_eq!(reply, "books");
}

#[test]
fn a_query_in_a_backend_url_is_an_error_not_dropped() {
    for url in [
        "http://127.0.0.1:9/base?api_key=s3cret",
        "http://127.0.0.1:9/#top",
    ] {
        let config = format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ] }},
                 "services": {{ "app": {{ "url": "{url}", "grace_period": "1s" }} }} }}"#
        );
        let error = Gateway::from_config(&config, &TriggerRegistry::new())
            .err()
            .unwrap_or_else(|| panic!("{url} was accepted"));
        assert_eq!(error.path(), "services.app.url", "{error}");
        assert!(error.message().contains("query or fragment"), "{error}");
        assert!(!error.message().contains("s3cret"), "{error}");
    }
}
