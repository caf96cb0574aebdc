//! The gateway program under a low limit of open files (`ulimit -n`), as a flood of client
//! connections finds it, and its log read line by line as it comes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedReceiver;

use super::{TempFile, listening_addr, read_head};

/// A gateway program with at most `nofile` descriptors open, killed (by its PID) when dropped.
pub struct LowNofile {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    lines: UnboundedReceiver<String>,
    /// The lines read so far.
    pub log: Vec<String>,
}

/// The gateway program on `config`, one worker, with at most `nofile` descriptors open, and
/// its log at info.
pub async fn gateway_with_nofile(config: &TempFile, nofile: u32) -> LowNofile {
    let mut child = tokio::process::Command::new("sh")
        .args([
            "-c",
            &format!(r#"ulimit -n {nofile} && exec "$0" --config "$1" --workers 1"#),
        ])
        .args([env!("CARGO_BIN_EXE_tower-monitor-gateway"), config.path()])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = listening_addr(&mut child).await;
    let lines = super::stderr_lines(&mut child);
    LowNofile {
        child,
        addr,
        lines,
        log: Vec::new(),
    }
}

impl LowNofile {
    /// Waits (at most 20 s) for a line of the log that `wanted` accepts, and answers it;
    /// fails the test, naming `what`, if none comes.
    pub async fn logged(&mut self, wanted: impl Fn(&str) -> bool, what: &str) -> String {
        let found = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = self.lines.recv().await {
                self.log.push(line.clone());
                if wanted(&line) {
                    return line;
                }
            }
            panic!("the gateway's log ended: {:#?}", self.log);
        })
        .await;
        found.unwrap_or_else(|_| panic!("the gateway never logged {what}: {:#?}", self.log))
    }
}

/// `GET /` for host `app` on `client`, a connection kept open for the next request (so that
/// none frees a descriptor the gateway could take for another), `pending` holding what was
/// read past the last answer; the answer's head, lowercased, and its body (bounded waits).
pub async fn get_kept_alive(client: &mut TcpStream, pending: &mut Vec<u8>) -> String {
    let request = b"GET / HTTP/1.1\r\nhost: app\r\n\r\n";
    client.write_all(request).await.unwrap();
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(client, pending))
        .await
        .expect("an answer in time")
        .expect("an answer")
        .to_ascii_lowercase();
    let length = head.split("\r\n").find_map(|line| {
        let length = line.strip_prefix("content-length: ")?;
        length.parse::<usize>().ok()
    });
    let length = length.unwrap_or_else(|| panic!("no length: {head}"));
    while pending.len() < length {
        let mut buffer = [0u8; 1024];
        let read = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buffer));
        let n = read.await.expect("the body in time").unwrap();
        assert!(n > 0, "closed within the body: {head}");
        pending.extend_from_slice(&buffer[..n]);
    }
    let body: Vec<u8> = pending.drain(..length).collect();
    head + &String::from_utf8_lossy(&body)
}
