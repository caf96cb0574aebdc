//! The `tower-monitor-gateway` program reloading its configuration file on SIGHUP: routes
//! added and removed, services kept (their program too), removed (their program stopped once
//! their requests in flight are answered) and changed (the new program once the old one has
//! stopped), files refused whole, and connections open across the reload.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROGRAM: &str = env!("CARGO_BIN_EXE_tower-monitor-gateway");

/// A backend program: answers `TAG PID` on any path, and on `…/slow` 64 KiB in 16 pieces
/// 100 ms apart. Ends itself after 60 s, should a failing test leave it.
const BACKEND: &str = r#"
import os, sys, threading, time, http.server
threading.Timer(60, os._exit, [0]).start()
port, tag = int(sys.argv[1]), sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
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
fn slow_body() -> Vec<u8> {
    (0..=255u8).cycle().take(256 * 256).collect()
}

/// A service of [`config`]: its name, its backend's address, the tag its program answers.
struct Service<'a>(&'a str, SocketAddr, &'a str);

/// A configuration of `routes` (path prefix, service) to `services`, each a [`BACKEND`]
/// program started by its first request (held until it answers).
fn config(script: &str, routes: &[(&str, &str)], services: &[Service<'_>]) -> String {
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
fn with_admin(config: &str, admin: SocketAddr) -> String {
    config.replacen(
        '{',
        &format!(r#"{{ "admin": {{ "listen": "{admin}", "token": "t" }},"#),
        1,
    )
}

/// The admin's `/status` entry of the service `name`, if it has one.
async fn status_of(admin: SocketAddr, name: &str) -> Option<String> {
    let reply = common::exchange(
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
async fn metrics(admin: SocketAddr) -> String {
    let request = "GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n";
    let reply = common::exchange(admin, request).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    reply
}

/// A gateway program on a configuration file, and its log line by line.
struct Gateway {
    program: tokio::process::Child,
    addr: SocketAddr,
    log: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Every line read so far.
    seen: Vec<String>,
    config: common::TempFile,
    _script: common::TempFile,
}

impl Gateway {
    async fn start(tag: &str, text: impl Fn(&str) -> String) -> Self {
        Self::start_with(tag, text, &[]).await
    }

    /// [`start`](Self::start) with more command-line arguments.
    async fn start_with(tag: &str, text: impl Fn(&str) -> String, args: &[&str]) -> Self {
        let script = common::TempFile::new(&format!("{tag}-backend"), BACKEND);
        let config = common::TempFile::new(tag, &text(script.path()));
        let (mut program, addr) =
            common::spawn_gateway_program_with(PROGRAM, config.path(), true, args).await;
        let log = common::stderr_lines(&mut program);
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
    fn script(&self) -> &str {
        self._script.path()
    }

    /// Writes `text` to the configuration file and sends SIGHUP; answers the reload's log
    /// line (applied or refused).
    async fn reload(&mut self, text: &str) -> String {
        std::fs::write(self.config.path(), text).unwrap();
        common::signal(&self.program, "HUP").await;
        self.until(|line| {
            line.contains("configuration reloaded") || line.contains("reload refused")
        })
        .await
    }

    /// The first line from now on that `wanted` accepts (bounded wait).
    async fn until(&mut self, wanted: impl Fn(&str) -> bool) -> String {
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
    async fn stop(mut self) -> String {
        common::sigterm_then_exits_0(&mut self.program).await;
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
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let reply = common::exchange(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_added_serves_and_a_route_removed_answers_404() {
    let backend = common::refused_addr().await;
    let v1 = |script: &str| config(script, &[("/a/", "app")], &[Service("app", backend, "one")]);
    let mut gateway = Gateway::start("reload-routes", v1).await;
    assert_eq!(get(gateway.addr, "/a/").await.0, 200);
    assert_eq!(get(gateway.addr, "/b/").await.0, 404);

    let v2 = config(
        gateway.script(),
        &[("/b/", "app")],
        &[Service("app", backend, "one")],
    );
    let line = gateway.reload(&v2).await;
    assert!(line.contains("kept: app; 1 routes"), "{line}");
    assert_eq!(get(gateway.addr, "/b/").await.0, 200);
    assert_eq!(get(gateway.addr, "/a/").await.0, 404);
    gateway.stop().await;
}

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

/// Sends `GET {prefix}slow` on a kept-alive connection and reads its head; answers the
/// connection and what came after the head.
async fn slow_download(addr: SocketAddr, prefix: &str) -> (TcpStream, Vec<u8>) {
    let mut client = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {prefix}slow HTTP/1.1\r\nhost: app\r\n\r\n");
    client.write_all(request.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let head = common::read_head(&mut client, &mut pending).await;
    let head = head.expect("an answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    (client, pending)
}

/// Reads the rest of a [`slow_download`]: its body must be whole, and the connection then
/// closed by the gateway (not kept for another request).
async fn finish_download(mut client: TcpStream, mut body: Vec<u8>) {
    let read = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut body)).await;
    read.expect("the body, then the connection closed").unwrap();
    assert!(
        body == slow_body(),
        "{} bytes, not the 65536 sent",
        body.len()
    );
}

/// The `pid=` of a log line.
fn pid_in(line: &str) -> &str {
    let pid = line.split_whitespace().find_map(|f| f.strip_prefix("pid="));
    pid.unwrap_or_else(|| panic!("no pid in {line}"))
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
async fn an_invalid_file_or_a_new_listen_address_changes_nothing() {
    let backend = common::refused_addr().await;
    let v1 = |script: &str| config(script, &[("/a/", "app")], &[Service("app", backend, "one")]);
    let mut gateway = Gateway::start("reload-refused", v1).await;
    let (status, before) = get(gateway.addr, "/a/").await;
    assert_eq!(status, 200);
    let valid = config(
        gateway.script(),
        &[("/b/", "app")],
        &[Service("app", backend, "one")],
    );

    let no_routes = config(gateway.script(), &[], &[Service("app", backend, "one")]);
    let line = gateway.reload(&no_routes).await;
    assert!(
        line.contains("reload refused") && line.contains("gateway.routes:"),
        "{line}"
    );
    let moved = valid.replace("127.0.0.1:0", "127.0.0.1:1");
    let line = gateway.reload(&moved).await;
    assert!(
        line.contains("reload refused") && line.contains("gateway.listen:"),
        "{line}"
    );
    assert!(line.contains("restart"), "{line}");
    let admin = valid.replacen('{', r#"{ "admin": { "token": "t" },"#, 1);
    let line = gateway.reload(&admin).await;
    assert!(
        line.contains("reload refused") && line.contains("admin:"),
        "{line}"
    );

    // The configuration in use serves as before: /a/, not /b/, and the same program.
    assert_eq!(get(gateway.addr, "/a/").await, (200, before));
    assert_eq!(get(gateway.addr, "/b/").await.0, 404);
    gateway.stop().await;
}

/// With `--listen`, the file's `gateway.listen` is not where the gateway listens: a reload may
/// change it, and checks the services against the address `--listen` gave (a service there
/// would be the gateway itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_listen_given_a_reload_checks_the_services_against_it_not_the_file() {
    let (backend, flag) = (common::refused_addr().await, common::refused_addr().await);
    let v1 = |script: &str| config(script, &[("/a/", "app")], &[Service("app", backend, "one")]);
    let args = ["--listen", &flag.to_string()];
    let mut gateway = Gateway::start_with("reload-listen-flag", v1, &args).await;
    assert_eq!(gateway.addr, flag);

    let moved = config(
        gateway.script(),
        &[("/b/", "app")],
        &[Service("app", backend, "one")],
    )
    .replace("127.0.0.1:0", "127.0.0.1:1");
    let line = gateway.reload(&moved).await;
    assert!(line.contains("configuration reloaded"), "{line}");
    assert_eq!(get(flag, "/b/").await.0, 200);

    let looped = config(
        gateway.script(),
        &[("/a/", "app")],
        &[Service("app", flag, "one")],
    );
    let line = gateway.reload(&looped).await;
    assert!(
        line.contains("reload refused") && line.contains("--listen"),
        "{line}"
    );
    assert_eq!(
        get(flag, "/b/").await.0,
        200,
        "the configuration in use goes on"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_at_a_reload_and_the_gateway_serves_on() {
    let backend = common::refused_addr().await;
    let v1 = |script: &str| config(script, &[("/a/", "app")], &[Service("app", backend, "one")]);
    let mut gateway = Gateway::start("reload-idle", v1).await;
    let mut client = TcpStream::connect(gateway.addr).await.unwrap();
    client
        .write_all(b"GET /a/ HTTP/1.1\r\nhost: app\r\n\r\n")
        .await
        .unwrap();
    let mut pending = Vec::new();
    let head = common::read_head(&mut client, &mut pending).await;
    assert!(head.is_some_and(|h| h.starts_with("HTTP/1.1 200")));

    let v2 = config(
        gateway.script(),
        &[("/b/", "app")],
        &[Service("app", backend, "one")],
    );
    gateway.reload(&v2).await;
    // Kept alive, it would serve the old routes: closed, its answer having been sent whole.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest)).await;
    read.expect("closed at the reload").unwrap();
    pending.extend_from_slice(&rest);
    assert!(
        pending.starts_with(b"one "),
        "{:?}",
        String::from_utf8_lossy(&pending)
    );
    assert_eq!(get(gateway.addr, "/b/").await.0, 200);
    gateway.stop().await;
}

/// A client that has connected but not yet sent its request when a reload comes (a browser's
/// preconnection, or one that connected in the same instant) gets its answer, then the close:
/// closed at once, as a shutdown closes it, it would get none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_request_yet_at_a_reload_is_answered_then_closed() {
    let backend = common::refused_addr().await;
    let v1 = |script: &str| config(script, &[("/a/", "app")], &[Service("app", backend, "one")]);
    let mut gateway = Gateway::start("reload-fresh", v1).await;
    let mut early = TcpStream::connect(gateway.addr).await.unwrap();
    // Accepted in order: once a later connection is answered, the gateway has this one.
    assert_eq!(get(gateway.addr, "/a/").await.0, 200);

    let v2 = config(
        gateway.script(),
        &[("/b/", "app")],
        &[Service("app", backend, "one")],
    );
    gateway.reload(&v2).await;
    let answer = common::first_request_once_kept_open(&mut early, "/a/").await;
    // Accepted before the reload, it was served by the routes of then.
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert_eq!(get(gateway.addr, "/b/").await.0, 200);
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
async fn an_http2_connection_gets_a_goaway_at_a_reload() {
    let backend = common::refused_addr().await;
    let v1 = |script: &str| config(script, &[("/a/", "app")], &[Service("app", backend, "one")]);
    let mut gateway = Gateway::start("reload-h2", v1).await;
    let (mut sender, connection) =
        common::http2_connection::<http_body_util::Empty<bytes::Bytes>>(gateway.addr).await;
    let request = http::Request::get(format!("http://{}/a/", gateway.addr))
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);

    let v2 = config(
        gateway.script(),
        &[("/b/", "app")],
        &[Service("app", backend, "one")],
    );
    gateway.reload(&v2).await;
    // Told to go (GOAWAY), with no stream open: the connection ends, cleanly.
    let ended = tokio::time::timeout(Duration::from_secs(5), connection).await;
    ended.expect("the connection ends").unwrap().unwrap();
    assert_eq!(get(gateway.addr, "/b/").await.0, 200);
    gateway.stop().await;
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
