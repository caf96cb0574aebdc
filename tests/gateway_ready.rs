//! What the `tower-monitor-gateway` program says once it serves, as a script that waits for
//! its "listening" line reads it: everything it listens on (the admin listener too) is bound
//! by then, and a gateway that cannot serve never says it listens.

mod common;

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

const PROGRAM: &str = env!("CARGO_BIN_EXE_tower-monitor-gateway");

/// A configuration with one service and an admin listener on `admin`.
fn config_with_admin(tag: &str, admin: &str) -> common::TempFile {
    common::TempFile::new(
        tag,
        &format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ] }},
                 "admin": {{ "listen": "{admin}", "token": "t" }},
                 "services": {{ "app": {{ "url": "http://127.0.0.1:9/", "grace_period": "1s" }} }} }}"#
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_admin_cannot_listen_never_says_it_listens() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = config_with_admin("ready-taken", &taken.local_addr().unwrap().to_string());
    let run = Command::new(PROGRAM)
        .args(["--config", config.path()])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the program exits by itself")
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let said = String::from_utf8_lossy(&output.stdout);
    // A script waiting for this line would go on to use a gateway that is exiting.
    assert!(!said.contains("listening on"), "said it listens: {said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_answers_as_soon_as_the_gateway_says_it_listens() {
    // Port 0: the program says which port it got, or the operator cannot reach it.
    let config = config_with_admin("ready-admin", "127.0.0.1:0");
    let mut gateway = Command::new(PROGRAM)
        .args(["--config", config.path()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(gateway.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the gateway starts")
            .unwrap()
            .expect("the gateway prints its addresses")
    };
    let first = next_line().await;
    assert!(
        first.starts_with("gateway: listening on http://"),
        "{first}"
    );
    let second = next_line().await;
    let admin: std::net::SocketAddr = second
        .strip_prefix("gateway: admin on http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("no admin address: {second}"))
        .parse()
        .unwrap();
    // At once, with no retry: a refused connection here is the race the line must not have.
    let mut stream = TcpStream::connect(admin).await.expect("the admin listens");
    stream
        .write_all(b"GET /status HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut reply))
        .await
        .expect("the admin answers")
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"app\""), "{reply}");
    common::sigterm_then_exits_0(&mut gateway).await;
}
