//! The gateway's configuration: the per-service settings (hold mode, `Retry-After`, the waiting
//! page, the wake policy) shape the answers; the admin listener comes from the file; each bad
//! file `gateway.tls` names is said so. Its other errors are in `gateway_config_errors.rs`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Folder, SelfSigned, tls_config, tls_folder, with_gateway};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower_monitor::config::TriggerRegistry;
use tower_monitor::gateway::Gateway;

fn registry(runs: Arc<AtomicUsize>, backend: SocketAddr) -> TriggerRegistry {
    common::booting_backend_registry(runs, backend)
}

async fn serve(gateway: Gateway) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(gateway.serve(listener, async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// curl, with the answer's status line and headers.
async fn curl(args: &[&str]) -> String {
    common::curl(&[&["--include"], args].concat()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wake_policy_retry_after_and_waiting_page_come_from_the_file() {
    let backend = common::refused_addr().await;
    let page = std::env::temp_dir().join(format!("tower-monitor-page-{}.html", std::process::id()));
    std::fs::write(
        &page,
        "<!doctype html><title>wait</title><p>{service} is warming up</p>",
    )
    .unwrap();
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
               "services": {{ "app": {{ "retry_after": "7s", "waiting_page": {page:?},
                   "wake": {{ "never_paths": ["/healthz"], "never_user_agents": "(?i)bot" }} }} }} }},
             "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s",
                 "on_down": {{ "type": "start" }} }} }} }}"#,
        page = page.display().to_string()
    );
    let runs = Arc::new(AtomicUsize::new(0));
    let gateway = Gateway::from_config(&config, &registry(runs.clone(), backend)).unwrap();
    let (addr, _stop) = serve(gateway).await;
    let url = |path: &str| format!("http://{addr}{path}");

    // Also spelled as the backend would read it the same (compared as routes are).
    for quiet in ["/healthz", "/%68ealthz", "//healthz"] {
        let health = curl(&["--path-as-is", &url(quiet)]).await;
        assert!(health.starts_with("HTTP/1.1 503"), "{quiet}: {health}");
    }
    let bot = curl(&["-A", "Googlebot/2.1", &url("/")]).await;
    assert!(bot.starts_with("HTTP/1.1 503"), "{bot}");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "a quiet path or a bot woke the backend"
    );

    let person = curl(&["-H", "Accept: text/html", &url("/")]).await;
    assert!(person.starts_with("HTTP/1.1 503"), "{person}");
    assert!(
        person.to_ascii_lowercase().contains("retry-after: 7"),
        "{person}"
    );
    assert!(person.contains("app is warming up"), "{person}");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let _ = std::fs::remove_file(&page);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_mode_from_the_file_holds_the_first_request_until_the_backend_is_up() {
    let backend = common::refused_addr().await;
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
               "services": {{ "app": {{ "hold": {{ "max_wait": "8s", "max_held": 10 }} }} }} }},
             "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s",
                 "on_down": {{ "type": "start" }} }} }} }}"#
    );
    let runs = Arc::new(AtomicUsize::new(0));
    let gateway = Gateway::from_config(&config, &registry(runs.clone(), backend)).unwrap();
    let (addr, _stop) = serve(gateway).await;
    let reply = curl(&[&format!("http://{addr}/")]).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("x-cold-start: "), "{reply}");
    assert!(reply.ends_with("app answers"), "{reply}");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn every_gateway_configuration_in_the_readme_and_the_gateway_page_loads() {
    let docs = concat!(include_str!("../README.md"), include_str!("../GATEWAY.md"));
    let blocks: Vec<&str> = docs
        .split("```json\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .filter(|block| block.contains("\"gateway\""))
        .collect();
    assert!(
        blocks.len() >= 3,
        "the README and GATEWAY.md show gateway configurations"
    );
    for block in blocks {
        if let Err(error) = Gateway::from_config(block, &TriggerRegistry::new()) {
            panic!("{error}\n{block}");
        }
    }
}

#[test]
fn a_waiting_page_path_is_taken_from_the_configuration_files_folder() {
    let dir = std::env::temp_dir().join(format!("tower-monitor-gw-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gateway.json");
    std::fs::write(
        &config,
        with_gateway(
            r#"{ "listen": "127.0.0.1:0", "routes": [ { "service": "app" } ],
                 "services": { "app": { "waiting_page": "page.html" } } }"#,
        ),
    )
    .unwrap();
    let registry = TriggerRegistry::new();
    let error = Gateway::from_config_file(&config, &registry).unwrap_err();
    assert_eq!(error.path(), "gateway.services.app.waiting_page");
    assert!(error.message().contains("page.html"), "{error}");
    std::fs::write(dir.join("page.html"), "<p>{service} wakes</p>").unwrap();
    let loaded = Gateway::from_config_file(&config, &registry);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(loaded.is_ok(), "{:?}", loaded.err());
}

#[test]
fn a_configuration_file_saved_with_a_byte_order_mark_is_read() {
    // As Notepad saves UTF-8: the mark is invisible in an editor.
    let text = format!(
        "\u{feff}{}",
        with_gateway(r#"{ "listen": "127.0.0.1:0", "routes": [ { "service": "app" } ] }"#)
    );
    let config = common::TempFile::new("bom", &text);
    let loaded = Gateway::from_config_file(config.path().as_ref(), &TriggerRegistry::new());
    assert!(loaded.is_ok(), "{:?}", loaded.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_gone_while_cached_up_is_a_503_and_a_wake_not_a_502() {
    let backend = common::refused_addr().await;
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ] }},
             "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "60s",
                 "on_down": {{ "type": "start" }} }} }} }}"#
    );
    let runs = Arc::new(AtomicUsize::new(0));
    let gateway = Gateway::from_config(&config, &registry(runs.clone(), backend)).unwrap();
    let monitor = gateway.monitor().clone();
    // The monitor believes the backend up (for a whole minute), but nothing listens there.
    monitor.set_status_up("app").unwrap();
    let (addr, _stop) = serve(gateway).await;
    let grpc = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "content-type: application/grpc",
        &format!("http://{addr}/pkg.Service/Call"),
    ])
    .await;
    assert!(
        grpc.starts_with("HTTP/2 200"),
        "a gRPC status, not a 502: {grpc}"
    );
    assert!(grpc.contains("grpc-status: 14"), "{grpc}");
    assert_ne!(
        monitor.state("app").unwrap(),
        tower_monitor::ServiceState::Up
    );
    let reply = curl(&[&format!("http://{addr}/")]).await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "woken once");
}

/// A program that logs its gateway (`{gateway:?}`) must not write the admin token with it:
/// anyone who reads the log could then start and stop the backends.
#[test]
fn the_admin_token_is_not_in_the_gateways_debug_text() {
    let config = r#"{ "gateway": { "listen": "127.0.0.1:0", "routes": [ { "service": "app" } ] },
                      "admin": { "listen": "127.0.0.1:0", "token": "s3cret-admin-token" },
                      "services": { "app": { "url": "http://127.0.0.1:9/", "grace_period": "1s" } } }"#;
    let gateway = Gateway::from_config(config, &TriggerRegistry::new()).unwrap();
    let text = format!("{gateway:?}");
    assert!(text.contains("127.0.0.1:0"), "{text}");
    assert!(!text.contains("s3cret-admin-token"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_from_the_file_serves_status_and_guards_the_actions() {
    let backend = common::refused_addr().await;
    let admin = common::refused_addr().await;
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ] }},
             "admin": {{ "listen": "{admin}", "token": "s3cret", "hosts": ["gateway-1"] }},
             "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s",
                 "on_down": {{ "type": "start" }} }} }} }}"#
    );
    let runs = Arc::new(AtomicUsize::new(0));
    let gateway = Gateway::from_config(&config, &registry(runs.clone(), backend)).unwrap();
    assert_eq!(gateway.admin_listen(), Some(admin));
    let (_addr, _stop) = serve(gateway).await;
    // The admin listener starts with the gateway: wait until it accepts.
    let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(admin).await.is_err() {
        assert!(
            tokio::time::Instant::now() < give_up,
            "the admin service never listened"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = curl(&[&format!("http://{admin}/status")]).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(
        status.contains(r#""app""#) && status.contains(r#""down""#),
        "{status}"
    );
    let refused = curl(&["-X", "POST", &format!("http://{admin}/services/app/start")]).await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let started = curl(&[
        "-X",
        "POST",
        "-H",
        "authorization: Bearer s3cret",
        &format!("http://{admin}/services/app/start"),
    ])
    .await;
    assert!(started.starts_with("HTTP/1.1 200"), "{started}");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // A listed name is answered; another (a page's own name re-pointed at the admin's
    // address: DNS rebinding) is refused.
    let status_as = |host: &'static str| {
        let url = format!("http://{admin}/status");
        async move { curl(&["-H", host, &url]).await }
    };
    let listed = status_as("host: gateway-1:9901").await;
    assert!(listed.starts_with("HTTP/1.1 200"), "{listed}");
    let rebound = status_as("host: attacker.example:9901").await;
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    assert!(rebound.contains("attacker.example"), "{rebound}");
    assert!(!rebound.contains(r#""app""#), "{rebound}");
}

/// The error of the configuration in `folder` (its `gateway.json` as [`tls_folder`] made it).
fn error_of(folder: &Folder) -> String {
    let loaded = Gateway::from_config_file(&folder.path("gateway.json"), &TriggerRegistry::new());
    loaded
        .expect_err("a bad gateway.tls is refused")
        .to_string()
}

#[test]
fn each_bad_file_is_named_with_its_field_and_what_is_wrong() {
    let backend: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (one, other) = (SelfSigned::new(), SelfSigned::new());
    let folder = tls_folder("errors", &one, backend, "");
    let at = |name: &str| format!("(at {:?})", folder.path(name).display().to_string());
    let cases: [(&str, &str, &str, String); 6] = [
        (
            "cert.pem",
            "",
            "gateway.tls.cert",
            format!("cannot read \"cert.pem\" {}", at("cert.pem")),
        ),
        (
            "key.pem",
            "",
            "gateway.tls.key",
            format!("cannot read \"key.pem\" {}", at("key.pem")),
        ),
        (
            "cert.pem",
            &one.key,
            "gateway.tls.cert",
            "are `cert` and `key` swapped?".into(),
        ),
        (
            "key.pem",
            &one.cert,
            "gateway.tls.key",
            "it holds a certificate".into(),
        ),
        (
            "key.pem",
            &other.key,
            "gateway.tls.key",
            "does not match the certificate".into(),
        ),
        (
            "cert.pem",
            "-----BEGIN CERTIFICATE-----\n!!\n",
            "gateway.tls.cert",
            "not valid PEM".into(),
        ),
    ];
    for (file, text, field, said) in cases {
        folder.certificate(&one);
        if text.is_empty() {
            std::fs::remove_file(folder.path(file)).unwrap();
        } else {
            folder.write(file, text);
        }
        let error = error_of(&folder);
        assert!(error.starts_with(&format!("{field}: ")), "{file}: {error}");
        assert!(error.contains(&said), "{file}: {error}");
    }
    folder.certificate(&one);
    let unknown = r#", "tls": { "cert": "cert.pem", "certificate": "cert.pem" }"#;
    folder.write("gateway.json", &tls_config(backend, unknown, ""));
    assert!(error_of(&folder).starts_with("gateway.tls.certificate: unknown field"));

    // `--check` reads the files as the startup does.
    folder.write("gateway.json", &tls_config(backend, common::TLS, ""));
    let check = |folder: &Folder| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tower-monitor-gateway"))
            .arg("--config")
            .arg(folder.path("gateway.json"))
            .arg("--check")
            .output()
            .unwrap()
    };
    assert!(check(&folder).status.success());
    folder.write("key.pem", &other.key);
    let checked = check(&folder);
    assert_eq!(checked.status.code(), Some(1));
    let said = String::from_utf8_lossy(&checked.stderr);
    assert!(
        said.contains("configuration error: gateway.tls.key: the private key in"),
        "{said}"
    );
}
