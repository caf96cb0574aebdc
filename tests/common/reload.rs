//! The gateway program reloading its configuration on SIGHUP, for the reload tests: a
//! backend program started by its first request, configurations of it, and the gateway
//! program with its log.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROGRAM: &str = env!("CARGO_BIN_EXE_tower-monitor-gateway");

/// A backend program: answers `TAG PID` on any path, on `…/slow` 64 KiB in 16 pieces
/// 100 ms apart, and a WebSocket handshake with a `101`, after which it sends back what it
/// reads. Ends itself after 60 s, should a failing test leave it.
pub const BACKEND: &str = r#"
import base64, hashlib, os, sys, threading, time, http.server
threading.Timer(60, os._exit, [0]).start()
port, tag = int(sys.argv[1]), sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            key = self.headers["Sec-WebSocket-Key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", base64.b64encode(hashlib.sha1(key.encode()).digest()).decode())
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            while True:
                data = self.connection.recv(4096)
                if not data:
                    return
                self.connection.sendall(data)
        slow = self.path.endswith("/slow")
        body = bytes(range(256)) * 256 if slow else ("%s %d" % (tag, os.getpid())).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        step = 4096 if slow else len(body)
        for at in range(0, len(body), step):
            self.wfile.write(body[at:at + step])
            self.wfile.flush()
            if slow:
                time.sleep(0.1)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"#;

/// The 64 KiB `/slow` answers.
pub fn slow_body() -> Vec<u8> {
    (0..=255u8).cycle().take(256 * 256).collect()
}

/// A service of [`config`]: its name, its backend's address, the tag its program answers.
pub struct Service<'a>(pub &'a str, pub SocketAddr, pub &'a str);

/// A configuration of `routes` (path prefix, service) to `services`, each a [`BACKEND`]
/// program started by its first request (held until it answers).
pub fn config(script: &str, routes: &[(&str, &str)], services: &[Service<'_>]) -> String {
    let routes: Vec<String> = (routes.iter())
        .map(|(prefix, service)| {
            format!(r#"{{ "path_prefix": "{prefix}", "service": "{service}" }}"#)
        })
        .collect();
    let settings: Vec<String> = (services.iter())
        .map(|Service(name, _, _)| format!(r#""{name}": {{ "hold": {{ "max_wait": "15s" }} }}"#))
        .collect();
    let definitions: Vec<String> = (services.iter())
        .map(|Service(name, addr, tag)| {
            format!(
                r#""{name}": {{ "url": "http://{addr}/", "grace_period": "30s", "probe_timeout": "300ms",
                     "on_down": {{ "type": "process", "command": "python3", "stop_grace": "2s",
                                   "args": [{script:?}, "{port}", "{tag}"] }} }}"#,
                port = addr.port()
            )
        })
        .collect();
    format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {} ], "services": {{ {} }},
                           "shutdown_grace": "10s" }},
             "services": {{ {} }} }}"#,
        routes.join(", "),
        settings.join(", "),
        definitions.join(", ")
    )
}

/// `config` with an admin listener on `admin`.
pub fn with_admin(config: &str, admin: SocketAddr) -> String {
    config.replacen(
        '{',
        &format!(r#"{{ "admin": {{ "listen": "{admin}", "token": "t" }},"#),
        1,
    )
}

/// The admin's `/status` entry of the service `name`, if it has one.
pub async fn status_of(admin: SocketAddr, name: &str) -> Option<String> {
    let reply = super::exchange(
        admin,
        "GET /status HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let at = reply.find(&format!(r#"{{"name":"{name}""#))?;
    let entry = &reply[at..];
    // Up to its counters' end.
    let end = entry.find("}}").map_or(entry.len(), |end| end + 2);
    Some(entry[..end].to_string())
}

/// The admin's `/metrics`.
pub async fn metrics(admin: SocketAddr) -> String {
    let request = "GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n";
    let reply = super::exchange(admin, request).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    reply
}

/// A gateway program on a configuration file, and its log line by line.
pub struct Gateway {
    pub program: tokio::process::Child,
    pub addr: SocketAddr,
    log: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
    config: super::TempFile,
    _script: super::TempFile,
}

impl Gateway {
    pub async fn start(tag: &str, text: impl Fn(&str) -> String) -> Self {
        Self::start_with(tag, text, &[]).await
    }

    /// [`start`](Self::start) with more command-line arguments.
    pub async fn start_with(tag: &str, text: impl Fn(&str) -> String, args: &[&str]) -> Self {
        let script = super::TempFile::new(&format!("{tag}-backend"), BACKEND);
        let config = super::TempFile::new(tag, &text(script.path()));
        let (mut program, addr) =
            super::spawn_gateway_program_with(PROGRAM, config.path(), true, args).await;
        let log = super::stderr_lines(&mut program);
        Self {
            program,
            addr,
            log,
            seen: Vec::new(),
            config,
            _script: script,
        }
    }

    /// The script's path, for configurations written later.
    pub fn script(&self) -> &str {
        self._script.path()
    }

    /// Writes `text` to the configuration file and sends SIGHUP; answers the reload's log
    /// line (applied or refused).
    pub async fn reload(&mut self, text: &str) -> String {
        std::fs::write(self.config.path(), text).unwrap();
        super::signal(&self.program, "HUP").await;
        self.until(|line| {
            line.contains("configuration reloaded") || line.contains("reload refused")
        })
        .await
    }

    /// The first line from now on that `wanted` accepts (bounded wait).
    pub async fn until(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let found = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = self.log.recv().await {
                self.seen.push(line.clone());
                if wanted(&line) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            _ => panic!("not in the log:\n{}", self.seen.join("\n")),
        }
    }

    /// SIGTERM, and the exit (0) of the gateway, its programs stopped; answers its whole log.
    pub async fn stop(mut self) -> String {
        super::sigterm_then_exits_0(&mut self.program).await;
        let rest = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(line) = self.log.recv().await {
                self.seen.push(line);
            }
        });
        rest.await.expect("its log ends");
        self.seen.join("\n")
    }
}

/// `GET path` on a connection of its own: the status and the body.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let reply = super::exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n"),
    )
    .await;
    let status = reply.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = reply
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// Sends `GET {prefix}slow` on a kept-alive connection and reads its head; answers the
/// connection and what came after the head.
pub async fn slow_download(addr: SocketAddr, prefix: &str) -> (TcpStream, Vec<u8>) {
    let mut client = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {prefix}slow HTTP/1.1\r\nhost: app\r\n\r\n");
    client.write_all(request.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let head = super::read_head(&mut client, &mut pending).await;
    let head = head.expect("an answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    (client, pending)
}

/// Reads the rest of a [`slow_download`]: its body must be whole, and the connection then
/// closed by the gateway (not kept for another request).
pub async fn finish_download(mut client: TcpStream, mut body: Vec<u8>) {
    let read = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut body)).await;
    read.expect("the body, then the connection closed").unwrap();
    assert!(
        body == slow_body(),
        "{} bytes, not the 65536 sent",
        body.len()
    );
}

/// The `pid=` of a log line.
pub fn pid_in(line: &str) -> &str {
    let pid = line.split_whitespace().find_map(|f| f.strip_prefix("pid="));
    pid.unwrap_or_else(|| panic!("no pid in {line}"))
}

/// `config` with `shutdown_grace` `grace` in place of 10 s.
pub fn with_grace(config: &str, grace: &str) -> String {
    config.replace(
        r#""shutdown_grace": "10s""#,
        &format!(r#""shutdown_grace": "{grace}""#),
    )
}

/// Opens a WebSocket to `{prefix}ws` through the gateway at `addr`: the connection once its
/// `101` has come (the backend then sends back what it reads, see [`echoed`]).
pub async fn websocket(addr: SocketAddr, prefix: &str) -> TcpStream {
    let mut client = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {prefix}ws HTTP/1.1\r\nhost: app\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    );
    client.write_all(request.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let head = super::read_head(&mut client, &mut pending).await;
    let head = head.expect("an answer");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(pending.is_empty(), "{pending:?}");
    client
}

/// Sends `bytes` on an open [`websocket`] and reads them back (bounded wait).
pub async fn echoed(socket: &mut TcpStream, bytes: &[u8]) {
    socket.write_all(bytes).await.unwrap();
    let mut back = vec![0; bytes.len()];
    let read = tokio::time::timeout(Duration::from_secs(5), socket.read_exact(&mut back)).await;
    read.expect("sent back").expect("sent back");
    assert_eq!(back, bytes);
}
