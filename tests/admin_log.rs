//! The admin actions' log lines, as an operator auditing who started or stopped what reads
//! them: the service, the action and the client's address; refusals at warn; never the token.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower_monitor::{MinMonitor, MonitoredService};

const TOKEN: &str = "audit-token-never-logged";

/// Sends `POST path` from its own connection; answers the status line and the client's
/// address, as the admin service saw it.
async fn post(admin: std::net::SocketAddr, path: &str, token: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
    let local = stream.local_addr().unwrap().to_string();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    (answer.lines().next().unwrap_or_default().to_owned(), local)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_are_logged_with_who_asked_and_what_came_of_them() {
    let logs = logs(tracing::Level::INFO);
    let monitor = Arc::new(MinMonitor::new());
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::ZERO)
        .on_down(counting_trigger(counter(), false));
    monitor.add("audited-app", service).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = listener.local_addr().unwrap();
    tokio::spawn(tower_monitor::admin::serve(listener, monitor, TOKEN));

    // Refused: at warn, with the client and the name as sent (escaped: it is not a service's).
    let (status, refused_from) = post(admin, "/services/audited-app%0Aforged/start", "wrong").await;
    assert!(status.contains(" 401 "), "{status}");
    let line = logs.line_with(&["admin action refused", &refused_from]);
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(r#"service="audited-app%0Aforged""#), "{line}");
    assert!(line.contains(r#"action="start""#), "{line}");

    // Done: at info, asked and done, each with the service, the action and the client.
    let (status, asked_from) = post(admin, "/services/audited-app/start", TOKEN).await;
    assert!(status.contains(" 200 "), "{status}");
    for what in ["admin action asked", "admin action done"] {
        let line = logs.line_with(&[what, &asked_from]);
        assert!(line.contains("INFO"), "{line}");
        assert!(line.contains("service=audited-app"), "{line}");
        assert!(line.contains(r#"action="start""#), "{line}");
    }
    assert!(
        logs.line_with(&["admin action done", &asked_from])
            .contains("acted=true")
    );
    assert!(!logs.text().contains(TOKEN), "the token is never logged");
}

/// Anyone who reaches the admin port can ask without the token, as often as they like: the
/// first refusal is at warn, the flood after it at debug (at most one warn line a minute), so
/// that it cannot fill the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_actions_is_one_warning() {
    let logs = logs(tracing::Level::INFO);
    let monitor = Arc::new(MinMonitor::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = listener.local_addr().unwrap();
    tokio::spawn(tower_monitor::admin::serve(listener, monitor, TOKEN));
    for _ in 0..20 {
        let (status, _) = post(admin, "/services/flooded-app/stop", "wrong").await;
        assert!(status.contains(" 401 "), "{status}");
    }
    let warned = logs.lines_with(&["admin action refused", "flooded-app"]);
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert!(warned[0].contains("WARN"), "{}", warned[0]);
    assert!(warned[0].contains("refused_quietly=0"), "{}", warned[0]);
}

/// An action asked of a service without the trigger for it (409) has its outcome logged, as
/// every asked action does: one line, with the client, after the "asked" one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_without_its_trigger_is_logged_as_refused() {
    let logs = logs(tracing::Level::INFO);
    let monitor = Arc::new(MinMonitor::new());
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::ZERO);
    monitor.add("triggerless-app", service).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = listener.local_addr().unwrap();
    tokio::spawn(tower_monitor::admin::serve(listener, monitor, TOKEN));
    for (action, trigger) in [("start", "on_down"), ("stop", "on_idle")] {
        let path = format!("/services/triggerless-app/{action}");
        let (status, from) = post(admin, &path, TOKEN).await;
        assert!(status.contains(" 409 "), "{status}");
        let lines = logs.lines_with(&["admin action", &from]);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].contains("admin action asked"), "{}", lines[0]);
        let outcome = &lines[1];
        assert!(outcome.contains("admin action refused"), "{outcome}");
        assert!(outcome.contains(&format!("no {trigger}")), "{outcome}");
        assert!(outcome.contains("service=triggerless-app"), "{outcome}");
        assert!(
            outcome.contains(&format!(r#"action="{action}""#)),
            "{outcome}"
        );
    }
}
