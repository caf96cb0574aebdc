//! The `tower-monitor-gateway` program reloading its configuration file on SIGHUP, and what
//! it does to the services: kept (their program too), removed (their program stopped once
//! their requests in flight are answered) and changed (the new program once the old one has
//! stopped).

mod common;

use common::reload::{
    Gateway, Service, config, finish_download, get, metrics, pid_in, slow_download, status_of,
    with_admin,
};
use std::time::Duration;

use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_service_keeps_its_running_program() {
    let (backend, admin) = (common::refused_addr().await, common::refused_addr().await);
    let v1 = |script: &str| {
        let text = config(script, &[("/a/", "app")], &[Service("app", backend, "one")]);
        with_admin(&text, admin)
    };
    let mut gateway = Gateway::start("reload-kept", v1).await;
    let (status, before) = get(gateway.addr, "/a/").await;
    assert_eq!(status, 200, "{before}");
    let entry = status_of(admin, "app").await.expect("app in /status");
    assert!(entry.contains(r#""state":"up""#), "{entry}");

    // A route more, the service as it was.
    let v2 = config(
        gateway.script(),
        &[("/a/", "app"), ("/b/", "app")],
        &[Service("app", backend, "one")],
    );
    gateway.reload(&with_admin(&v2, admin)).await;
    // Up still, since the same time, its probes and counters its own: no probe since.
    assert_eq!(status_of(admin, "app").await.as_ref(), Some(&entry));
    // Answered by the same program, with no second start.
    assert_eq!(get(gateway.addr, "/b/").await, (200, before.clone()));
    assert_eq!(get(gateway.addr, "/a/").await, (200, before));
    let log = gateway.stop().await;
    assert_eq!(
        log.matches("started the backend program").count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("is starting").count(), 1, "{log}");
    assert_eq!(log.matches("backend program stopped").count(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_service_is_stopped_once_its_download_in_flight_is_whole() {
    let (one, two) = (common::refused_addr().await, common::refused_addr().await);
    let admin = common::refused_addr().await;
    let v1 = |script: &str| {
        let text = config(
            script,
            &[("/a/", "a"), ("/b/", "b")],
            &[Service("a", one, "one"), Service("b", two, "two")],
        );
        with_admin(&text, admin)
    };
    let mut gateway = Gateway::start("reload-removed", v1).await;
    assert_eq!(get(gateway.addr, "/a/").await.0, 200);
    assert!(metrics(admin).await.contains(r#"service="a""#));
    let (client, body) = slow_download(gateway.addr, "/a/").await;

    let v2 = config(
        gateway.script(),
        &[("/b/", "b")],
        &[Service("b", two, "two")],
    );
    let line = gateway.reload(&with_admin(&v2, admin)).await;
    assert!(line.contains("removed: a;"), "{line}");
    assert_eq!(status_of(admin, "a").await, None);
    let scrape = metrics(admin).await;
    assert!(!scrape.contains(r#"service="a""#), "{scrape}");
    // Its route is gone at once; its download goes on to its end.
    assert_eq!(get(gateway.addr, "/a/").await.0, 404);
    finish_download(client, body).await;
    // Then its program is stopped, as a shutdown stops it.
    let stopped = gateway
        .until(|l| l.contains("backend program stopped"))
        .await;
    assert!(stopped.contains("service=a"), "{stopped}");
    assert!(
        TcpStream::connect(one).await.is_err(),
        "a's program still runs"
    );
    assert_eq!(get(gateway.addr, "/b/").await.0, 200);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_service_runs_its_new_program_once_the_old_one_has_stopped() {
    let backend = common::refused_addr().await;
    let v1 = |script: &str| config(script, &[("/a/", "app")], &[Service("app", backend, "one")]);
    let mut gateway = Gateway::start("reload-changed", v1).await;
    let (status, before) = get(gateway.addr, "/a/").await;
    assert!(status == 200 && before.starts_with("one "), "{before}");
    let (client, body) = slow_download(gateway.addr, "/a/").await;

    // New arguments: the same port.
    let v2 = config(
        gateway.script(),
        &[("/a/", "app")],
        &[Service("app", backend, "two")],
    );
    let line = gateway.reload(&v2).await;
    assert!(line.contains("changed: app;"), "{line}");
    finish_download(client, body).await;
    let stopped = gateway
        .until(|l| l.contains("backend program stopped"))
        .await;
    let old = pid_in(&stopped).to_string();
    assert_eq!(before, format!("one {old}"));

    // Its next request finds the port closed, is held, and the new program starts.
    let (status, after) = get(gateway.addr, "/a/").await;
    assert!(status == 200 && after.starts_with("two "), "{after}");
    let log = gateway.seen.join("\n");
    let starts: Vec<_> = (gateway.seen.iter().enumerate())
        .filter(|(_, l)| l.contains("started the backend program"))
        .collect();
    assert_eq!(
        starts.len(),
        1,
        "the new program's start comes after the old one's stop:\n{log}"
    );
    assert!(!log.contains("exited by itself"), "{log}");
    let started = gateway
        .until(|l| l.contains("started the backend program"))
        .await;
    assert_eq!(after, format!("two {}", pid_in(&started)));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_service_s_first_start_waits_for_the_old_program_s_stop() {
    let (one, two) = (common::refused_addr().await, common::refused_addr().await);
    let v1 = |script: &str| config(script, &[("/a/", "app")], &[Service("app", one, "one")]);
    let mut gateway = Gateway::start("reload-gated", v1).await;
    assert_eq!(get(gateway.addr, "/a/").await.0, 200);
    let (client, body) = slow_download(gateway.addr, "/a/").await;

    // Moved to another port: the new definition finds its backend down at once, and its
    // start (a request held for it) waits for the old program, still busy, to be stopped.
    let v2 = config(
        gateway.script(),
        &[("/a/", "app")],
        &[Service("app", two, "two")],
    );
    let line = gateway.reload(&v2).await;
    assert!(line.contains("changed: app;"), "{line}");
    let addr = gateway.addr;
    let held = tokio::spawn(async move { get(addr, "/a/").await });
    gateway
        .until(|l| l.contains("start waits for the programs"))
        .await;
    finish_download(client, body).await;
    let (status, after) = tokio::time::timeout(Duration::from_secs(15), held)
        .await
        .expect("answered once the new program is up")
        .unwrap();
    assert!(status == 200 && after.starts_with("two "), "{after}");
    let log = gateway.stop().await;
    let stopped = log
        .find("backend program stopped")
        .expect("the old program stopped");
    let started = log.rfind("started the backend program").unwrap();
    assert!(stopped < started, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_service_s_limit_counts_its_requests_in_flight_across_a_reload() {
    let backend = common::refused_addr().await;
    let limited = |text: String| {
        text.replace(
            r#""hold": { "max_wait": "15s" }"#,
            r#""hold": { "max_wait": "15s" }, "limit": { "max_in_flight": 1, "max_wait": "0s" }"#,
        )
    };
    let v1 = |script: &str| {
        limited(config(
            script,
            &[("/a/", "app")],
            &[Service("app", backend, "one")],
        ))
    };
    let mut gateway = Gateway::start("reload-limit", v1).await;
    assert_eq!(get(gateway.addr, "/a/").await.0, 200);
    let (client, body) = slow_download(gateway.addr, "/a/").await;

    let v2 = config(
        gateway.script(),
        &[("/a/", "app"), ("/b/", "app")],
        &[Service("app", backend, "one")],
    );
    gateway.reload(&limited(v2)).await;
    // The download holds the one turn: a request through the new routes finds it taken.
    assert_eq!(get(gateway.addr, "/b/").await.0, 503);
    finish_download(client, body).await;
    assert_eq!(get(gateway.addr, "/b/").await.0, 200);
    gateway.stop().await;
}

/// A kept service's held requests count against its `max_held` across a reload: one that
/// comes in the middle of a cold start does not let as many more be held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_service_s_held_requests_count_against_its_max_held_across_a_reload() {
    let backend = common::refused_addr().await;
    // One request held at most; the program is up 2 s after it is started.
    let one_held_slow_start = |text: String| {
        text.replace(
            r#""hold": { "max_wait": "15s" }"#,
            r#""hold": { "max_wait": "15s", "max_held": 1 }"#,
        )
        .replace(r#""command": "python3""#, r#""command": "sh""#)
        .replace(
            r#""args": ["#,
            r#""args": ["-c", "sleep 2 && exec python3 \"$0\" \"$@\"", "#,
        )
    };
    let v1 = |script: &str| {
        one_held_slow_start(config(
            script,
            &[("/a/", "app")],
            &[Service("app", backend, "one")],
        ))
    };
    let mut gateway = Gateway::start("reload-held", v1).await;
    let addr = gateway.addr;
    let first = tokio::spawn(async move { get(addr, "/a/").await });
    gateway
        .until(|l| l.contains("started the backend program"))
        .await;

    let v2 = config(
        gateway.script(),
        &[("/a/", "app"), ("/b/", "app")],
        &[Service("app", backend, "one")],
    );
    let line = gateway.reload(&one_held_slow_start(v2)).await;
    assert!(line.contains("kept: app;"), "{line}");
    // The first request holds the one place: the next, through the new routes, is refused
    // at once rather than held beside it.
    let (status, body) = get(addr, "/b/").await;
    assert_eq!(status, 503, "{body}");
    let first = tokio::time::timeout(Duration::from_secs(15), first).await;
    let (status, body) = first.expect("answered once up").unwrap();
    assert!(status == 200 && body.starts_with("one "), "{body}");
    gateway.stop().await;
}
