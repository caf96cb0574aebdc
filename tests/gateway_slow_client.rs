//! A client that sends half a request head and waits (by accident or as an attack) is closed
//! after a bound, so it neither stays open for ever nor holds a shutdown for its whole grace.

mod common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

const PROGRAM: &str = env!("CARGO_BIN_EXE_tower-monitor-gateway");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_request_head_is_closed_and_holds_no_shutdown() {
    // A grace longer than the test's bound: a connection that held the shutdown fails it.
    let config = common::TempFile::new(
        "half-head",
        r#"{ "gateway": { "listen": "127.0.0.1:0", "routes": [ { "service": "app" } ],
                          "shutdown_grace": "120s", "header_read_timeout": "1s" },
             "services": { "app": { "url": "http://127.0.0.1:9/", "grace_period": "30s" } } }"#,
    );
    let (mut gateway, addr) = common::spawn_gateway_program(PROGRAM, config.path(), false).await;

    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: app\r\n")
        .await
        .unwrap();
    let pid = gateway.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());

    let status = tokio::time::timeout(Duration::from_secs(30), gateway.wait())
        .await
        .expect("the half-sent head held the shutdown")
        .unwrap();
    assert_eq!(status.code(), Some(0), "every connection closed in time");
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buffer))
        .await
        .expect("the connection is closed");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "nothing answered to half a head"
    );
}
