//! `Gateway::reloader` in this process: what a reload finds changed (the services that
//! depend on a changed one too), what it refuses, a gateway with no file to read, and a
//! reload beside what is under way (serving yet to begin, a connection yet to send its
//! first request, a start, an earlier reload's stop, a dependency held).

mod common;

use std::sync::Arc;

use tower_monitor::config::TriggerRegistry;
use tower_monitor::gateway::Gateway;

/// A configuration whose `db` is on `db_port`, `app` depending on it, `other` on its own.
fn three_services(db_port: u16, fleet: &str) -> String {
    format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0",
                           "routes": [ {{ "path_prefix": "/a/", "service": "app" }}, {{ "service": "other" }} ] }},{fleet}
             "services": {{
                 "db": {{ "url": "http://127.0.0.1:{db_port}/", "grace_period": "1s" }},
                 "app": {{ "url": "http://127.0.0.1:9002/", "grace_period": "1s", "depends_on": ["db"] }},
                 "other": {{ "url": "http://127.0.0.1:9003/", "grace_period": "1s" }} }} }}"#
    )
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_depends_on_a_changed_one_is_changed_too() {
    let config = common::TempFile::new("reload-api-deps", &three_services(9001, ""));
    let gateway =
        Gateway::from_config_file(config.path().as_ref(), &TriggerRegistry::new()).unwrap();
    let reloader = gateway.reloader();
    std::fs::write(config.path(), three_services(9004, "")).unwrap();
    let reloaded = reloader.reload().await.unwrap();
    assert_eq!(sorted(reloaded.changed.clone()), ["app", "db"]);
    assert_eq!(reloaded.kept, ["other"]);
    assert!(reloaded.added.is_empty() && reloaded.removed.is_empty());
    assert_eq!(reloaded.routes, 2);
    let url = gateway.monitor().url("db").unwrap();
    assert_eq!(url.port(), Some(9004));
}

#[cfg(feature = "fleet")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_fleet_a_reload_may_change_the_routes_not_the_services() {
    // Never served: no Redis is reached.
    let fleet = r#" "fleet": { "redis": "redis://127.0.0.1:1/", "prefix": "reload" },"#;
    let config = common::TempFile::new("reload-api-fleet", &three_services(9001, fleet));
    let gateway =
        Gateway::from_config_file(config.path().as_ref(), &TriggerRegistry::new()).unwrap();
    let reloader = gateway.reloader();

    let error = reloader
        .reload_from(&three_services(9004, fleet))
        .await
        .unwrap_err();
    assert_eq!(error.path(), "services");
    assert!(error.message().contains("restart"), "{error}");
    assert_eq!(gateway.monitor().url("db").unwrap().port(), Some(9001));

    let routes_only = three_services(9001, fleet).replace("/a/", "/app/");
    let reloaded = reloader.reload_from(&routes_only).await.unwrap();
    assert_eq!(reloaded.kept.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_made_from_text_reloads_text_only() {
    let gateway = Gateway::from_config(&three_services(9001, ""), &TriggerRegistry::new()).unwrap();
    let reloader = gateway.reloader();
    assert!(reloader.file().is_none());
    let error = reloader.reload().await.unwrap_err();
    assert!(error.to_string().contains("nothing to reload"), "{error}");
    let reloaded = reloader
        .reload_from(&three_services(9001, ""))
        .await
        .unwrap();
    assert_eq!(reloaded.kept.len(), 3);
    let error = reloader.reload_from("{").await.unwrap_err();
    assert!(error.to_string().contains("not valid JSON"), "{error}");
}

/// One route, of `prefix`, to `app` at `backend` (down, with nothing to start it: its
/// requests get the fallback's 503).
fn one_route(backend: std::net::SocketAddr, prefix: &str) -> String {
    format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0",
                           "routes": [ {{ "path_prefix": "{prefix}", "service": "app" }} ] }},
             "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "1s" }} }} }}"#
    )
}

/// `gateway` served on a port of its own until told to stop: its address, the word that
/// stops it, and the serving task (whether it drained).
async fn serve(
    gateway: Gateway,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<bool>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(gateway.serve(listener, async move {
        let _ = stopped.await;
    }));
    (addr, stop, serving)
}

/// `GET path` from the gateway at `addr`: the status code.
async fn status(addr: std::net::SocketAddr, path: &str) -> u16 {
    let request = format!("GET {path} HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n");
    let reply = common::exchange(addr, &request).await;
    reply.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_made_before_serving_is_what_the_gateway_serves() {
    let backend = common::refused_addr().await;
    let text = |prefix: &str| one_route(backend, prefix);
    let gateway = Gateway::from_config(&text("/a/"), &TriggerRegistry::new()).unwrap();
    let reloaded = gateway.reloader().reload_from(&text("/b/")).await.unwrap();
    assert_eq!(reloaded.kept, ["app"]);
    let (addr, stop, serving) = serve(gateway).await;
    // `/b/` reaches `app` (down, with nothing to start it: 503), `/a/` no route.
    let (b, a) = (status(addr, "/b/").await, status(addr, "/a/").await);
    let _ = stop.send(());
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), serving).await;
    assert!(ended.expect("the gateway stops").unwrap());
    assert_eq!((b, a), (503, 404));
}

/// A connection on which no request has come yet at a reload is answered before it closes,
/// by the routes of the last reload, however many reloads come meanwhile: only the shutdown
/// closes it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_request_yet_is_answered_across_two_reloads() {
    let backend = common::refused_addr().await;
    let text = |prefix: &str| one_route(backend, prefix);
    let gateway = Gateway::from_config(&text("/a/"), &TriggerRegistry::new()).unwrap();
    let reloader = gateway.reloader();
    let (addr, stop, serving) = serve(gateway).await;
    let mut early = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Accepted in order: once a later connection is answered, the gateway has this one.
    assert_eq!(status(addr, "/a/").await, 503);
    // Each reload seen by the gateway once a later connection has its routes.
    for prefix in ["/b/", "/c/"] {
        reloader.reload_from(&text(prefix)).await.unwrap();
        assert_eq!(status(addr, prefix).await, 503, "{prefix}");
    }
    let answer = common::first_request_once_kept_open(&mut early, "/c/").await;
    // Accepted before the reloads, its request after them takes the last one's routes, as a
    // new connection's does: `/c/` reaches `app` (no route in those it was accepted under).
    assert!(answer.starts_with("http/1.1 503"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    let _ = stop.send(());
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), serving).await;
    assert!(ended.expect("the gateway stops").unwrap());
}

/// An HTTP/2 connection that had a request before a reload is sent a `GOAWAY`, yet takes the
/// streams its client opens until it has read it (for ever, if it never answers the `PING`
/// that follows): those take the routes of the last reload, however many come meanwhile, not
/// those of the first, whose services a later reload may have retired and stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_opened_after_two_reloads_takes_the_last_one_s_routes() {
    let backend = common::serve(axum::Router::new().fallback(|| async { "ok" })).await;
    let text = |prefix: &str| one_route(backend.addr, prefix);
    let gateway = Gateway::from_config(&text("/a/"), &TriggerRegistry::new()).unwrap();
    let reloader = gateway.reloader();
    let (addr, stop, serving) = serve(gateway).await;
    let mut client = common::H2Client::connect(addr).await;
    client.send(&common::h2_get(1, "/a/")).await;
    let answer = client.next(common::H2_HEADERS, 1).await.expect("an answer");
    assert_eq!(answer.static_status(), Some(200));
    reloader.reload_from(&text("/b/")).await.unwrap();
    let goaway = client.next(common::H2_GOAWAY, 0).await;
    assert!(
        goaway.is_some(),
        "the reload closes the connection gracefully"
    );
    reloader.reload_from(&text("/c/")).await.unwrap();
    // Seen by the gateway once a later connection has its routes.
    assert_eq!(status(addr, "/c/").await, 200);
    client.send(&common::h2_get(3, "/c/")).await;
    let answer = client.next(common::H2_HEADERS, 3).await.expect("an answer");
    // 404 with the routes of the first reload, which has no `/c/`.
    assert_eq!(answer.static_status(), Some(200), "{:x?}", answer.payload);
    drop(client);
    let _ = stop.send(());
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), serving).await;
    assert!(ended.expect("the gateway stops").unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_under_way_when_a_reload_removes_its_service_runs_no_on_down() {
    use std::sync::Mutex;
    use tokio::sync::Notify;
    use tower_monitor::{BoxError, trigger};

    let (db, app) = (common::refused_addr().await, common::refused_addr().await);
    // `db`'s start begins, then waits for `go` before it listens; `app` counts its starts.
    let (asked, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let listening = Arc::new(Mutex::new(None::<std::net::TcpListener>));
    let app_runs = common::counter();
    let mut registry = TriggerRegistry::new();
    let (a, g, l) = (asked.clone(), go.clone(), listening.clone());
    registry.register("gated", move |_| {
        let (asked, go, listening) = (a.clone(), g.clone(), l.clone());
        Ok(Arc::new(trigger::from_fn(move || {
            let (asked, go, listening) = (asked.clone(), go.clone(), listening.clone());
            async move {
                asked.notify_one();
                go.notified().await;
                *listening.lock().unwrap() = Some(std::net::TcpListener::bind(db)?);
                Ok::<(), BoxError>(())
            }
        })))
    });
    let runs = app_runs.clone();
    registry.register("counted", move |_| {
        Ok(Arc::new(common::counting_trigger(runs.clone(), false)))
    });
    let text = |routed: &str, app_section: &str| {
        format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "{routed}" }} ] }},
                 "services": {{
                     "db": {{ "url": "http://{db}/", "grace_period": "30s", "on_down": {{ "type": "gated" }} }}{app_section} }} }}"#
        )
    };
    let app_section = format!(
        r#", "app": {{ "url": "http://{app}/", "grace_period": "30s", "depends_on": ["db"],
                      "on_down": {{ "type": "counted" }} }}"#
    );
    let gateway = Gateway::from_config(&text("app", &app_section), &registry).unwrap();
    let monitor = Arc::clone(gateway.monitor());
    let start = tokio::spawn(async move { monitor.start("app").await });
    // `app`'s start waits for `db`, whose start has begun.
    tokio::time::timeout(std::time::Duration::from_secs(5), asked.notified())
        .await
        .expect("db's start begins");

    let reloaded = gateway.reloader().reload_from(&text("db", "")).await;
    assert_eq!(reloaded.unwrap().removed, ["app"]);
    go.notify_one();
    // `db` comes up: the removed `app`'s start must not start its program now that the
    // reload has retired it (no stop would come for it).
    let started = tokio::time::timeout(std::time::Duration::from_secs(10), start).await;
    let started = started.expect("app's start ends").unwrap();
    assert_eq!(
        common::count(&app_runs),
        0,
        "app's on_down ran: {started:?}"
    );
    assert!(started.is_err());
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_put_back_starts_once_the_program_an_earlier_reload_removed_has_stopped() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    let (a, b) = (common::refused_addr().await, common::refused_addr().await);
    // `a`'s program never listens: its start lasts, a request held for it.
    let text = |with_a: bool| {
        let (route, settings, service) = match with_a {
            true => (
                r#"{ "path_prefix": "/a/", "service": "a" }, "#,
                r#", "services": { "a": { "hold": { "max_wait": "15s" } } }"#,
                format!(
                    r#", "a": {{ "url": "http://{a}/", "grace_period": "30s",
                         "on_down": {{ "type": "process", "command": "sleep", "args": ["30"],
                                       "stop_grace": "1s" }} }}"#
                ),
            ),
            false => ("", "", String::new()),
        };
        format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "shutdown_grace": "2s",
                               "routes": [ {route}{{ "service": "b" }} ]{settings} }},
                 "services": {{ "b": {{ "url": "http://{b}/", "grace_period": "1s" }}{service} }} }}"#
        )
    };
    let registry = TriggerRegistry::new();
    let supervisor = registry.supervisor().clone();
    let gateway = Gateway::from_config(&text(true), &registry).unwrap();
    let (monitor, reloader) = (Arc::clone(gateway.monitor()), gateway.reloader());
    let (addr, stop, serving) = serve(gateway).await;
    // Open before the reloads, held for `a`: its program's stop waits for it (at most the grace).
    let mut held = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = b"GET /a/ HTTP/1.1\r\nhost: app\r\n\r\n";
    held.write_all(request).await.unwrap();
    let within = Duration::from_secs(5);
    common::until(
        within,
        "a's program runs",
        || supervisor.running(),
        |r| r.len() == 1,
    )
    .await;
    let old = supervisor.running();

    let removed = reloader.reload_from(&text(false)).await.unwrap();
    assert_eq!(removed.removed, ["a"]);
    let put_back = reloader.reload_from(&text(true)).await.unwrap();
    assert_eq!(put_back.added, ["a"]);
    // Its start waits for the old program's stop: one program on its port at a time.
    let started = tokio::time::timeout(Duration::from_secs(10), monitor.start("a")).await;
    started.expect("a's start ends").unwrap();
    let running = supervisor.running();
    assert!(
        running.len() == 1 && running != old,
        "{old:?} then {running:?}"
    );
    let _ = stop.send(());
    let ended = tokio::time::timeout(Duration::from_secs(10), serving).await;
    ended.expect("the gateway stops").unwrap();
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_dependency_of_a_changed_service_idles_once_the_old_definition_is_retired() {
    use std::sync::Mutex;
    use std::time::Duration;
    use tower_monitor::{BoxError, trigger};

    let (db, app) = (common::refused_addr().await, common::refused_addr().await);
    // Each start listens on its service's port (a probe finds it up); `db`'s idle stop counts.
    let listening = Arc::new(Mutex::new(Vec::<std::net::TcpListener>::new()));
    let mut registry = TriggerRegistry::new();
    let l = Arc::clone(&listening);
    registry.register("listen", move |spec| {
        let port: u16 = spec.parse::<serde_json::Value>()?["port"]
            .as_u64()
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| spec.error("port", "a port"))?;
        let listening = Arc::clone(&l);
        Ok(Arc::new(trigger::from_fn(move || {
            let listening = Arc::clone(&listening);
            async move {
                let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
                listening.lock().unwrap().push(listener);
                Ok::<(), BoxError>(())
            }
        })))
    });
    let idle_stops = common::counter();
    let stops = Arc::clone(&idle_stops);
    registry.register("counted", move |_| {
        Ok(Arc::new(common::counting_trigger(
            Arc::clone(&stops),
            false,
        )))
    });
    let text = |app_grace: &str| {
        format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ] }},
                 "services": {{
                     "db": {{ "url": "http://{db}/", "grace_period": "30s",
                              "on_down": {{ "type": "listen", "port": {} }},
                              "on_idle": {{ "after": "300ms", "trigger": {{ "type": "counted" }} }} }},
                     "app": {{ "url": "http://{app}/", "grace_period": "{app_grace}", "depends_on": ["db"],
                               "on_down": {{ "type": "listen", "port": {} }} }} }} }}"#,
            db.port(),
            app.port()
        )
    };
    let gateway = Gateway::from_config(&text("30s"), &registry).unwrap();
    let monitor = Arc::clone(gateway.monitor());
    let within = Duration::from_secs(5);
    tokio::time::timeout(within, monitor.start("app"))
        .await
        .unwrap()
        .unwrap();
    common::wait_for_state(&monitor, "app", tower_monitor::ServiceState::Up, within).await;
    // Up, `app` holds `db` from its idle stop.
    let reloaded = gateway.reloader().reload_from(&text("31s")).await.unwrap();
    assert_eq!(reloaded.changed, ["app"]);
    // The new `app` is not up: nothing holds `db` any more, which stops once idle.
    let stopped = || common::count(&idle_stops);
    common::until(within, "db idle-stopped", stopped, |n| *n == 1).await;
}
