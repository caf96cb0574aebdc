//! A real `redis-server` per test on a free loopback port: no persistence, killed by PID at
//! the end, panics included.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::free_port;

/// A `redis-server` child process on 127.0.0.1.
pub struct RedisServer {
    pub port: u16,
    program: String,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one, or returns `None` (after saying so loudly) when no server program is
    /// installed; under `CI=true` a missing server fails the test instead.
    pub async fn start() -> Option<Self> {
        let Some(program) = ["redis-server", "valkey-server"]
            .into_iter()
            .find(|program| on_path(program))
        else {
            if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                panic!("redis-server (or valkey-server) is not installed; .ci/run installs it");
            }
            eprintln!("SKIPPED: redis-server (or valkey-server) is not installed");
            return None;
        };
        let port = free_port().await;
        let mut server = Self {
            port,
            program: program.to_string(),
            child: None,
        };
        server.spawn().await;
        Some(server)
    }

    async fn spawn(&mut self) {
        let child = Command::new(&self.program)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self
                .command(&["PING"])
                .await
                .is_some_and(|r| r.contains("PONG"))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL, by PID): everything it held is lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers, as with a
    /// Redis that is too slow.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self
            .child
            .as_ref()
            .expect("the server runs")
            .id()
            .to_string();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// A fresh, empty server on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// One command over a plain connection (RESP by hand); the raw reply, `None` if unreachable.
    pub async fn command(&self, args: &[&str]) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await.ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut reply = Vec::new();
        let mut buffer = [0_u8; 16 * 1024];
        // Reads until the reply is complete (a bulk string's announced length, or one line).
        loop {
            let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&reply);
            if let Some(rest) = text.strip_prefix('$') {
                let Some((len, body)) = rest.split_once("\r\n") else {
                    continue;
                };
                // `$-1`: nil, complete as it is.
                if len.parse::<usize>().is_ok_and(|len| body.len() < len + 2) {
                    continue;
                }
                break;
            } else if text.ends_with("\r\n") {
                break;
            }
        }
        Some(String::from_utf8_lossy(&reply).into_owned())
    }

    /// Waits (bounded) until `n` replicas listen on the fleet `prefix`'s channel, so that none
    /// misses the announcements a test makes happen next.
    pub async fn wait_for_listeners(&self, prefix: &str, n: usize) {
        let channel = format!("{prefix}:events");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reply = self
                .command(&["PUBSUB", "NUMSUB", &channel])
                .await
                .unwrap_or_default();
            let count = reply
                .lines()
                .find_map(|line| line.strip_prefix(':')?.parse().ok());
            if count.unwrap_or(0_usize) >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the replicas did not subscribe: {reply:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Calls per command since the server started (`INFO commandstats`).
    pub async fn command_counts(&self) -> Vec<(String, u64)> {
        let info = self
            .command(&["INFO", "commandstats"])
            .await
            .unwrap_or_default();
        info.lines()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest
                    .split(',')
                    .next()?
                    .strip_prefix("calls=")?
                    .parse()
                    .ok()?;
                Some((name.to_string(), calls))
            })
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
