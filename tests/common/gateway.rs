//! Helpers for tests of the gateway: the program run as a user runs it, or served in the test's
//! process; configuration files; one-shot requests.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Runs the gateway `program` on the configuration file `config` (stdout read to its end in the
/// background; stderr piped if asked) and returns it, killed when dropped, with the address it
/// prints that it listens on.
pub async fn spawn_gateway_program(
    program: &str,
    config: impl AsRef<std::path::Path>,
    pipe_stderr: bool,
) -> (tokio::process::Child, SocketAddr) {
    spawn_gateway_program_with(program, config, pipe_stderr, &[]).await
}

/// [`spawn_gateway_program`] with more command-line arguments.
pub async fn spawn_gateway_program_with(
    program: &str,
    config: impl AsRef<std::path::Path>,
    pipe_stderr: bool,
    args: &[&str],
) -> (tokio::process::Child, SocketAddr) {
    let mut command = tokio::process::Command::new(program);
    command
        .arg("--config")
        .arg(config.as_ref())
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    if pipe_stderr {
        command.stderr(std::process::Stdio::piped());
    }
    let mut gateway = command.spawn().unwrap();
    let addr = listening_addr(&mut gateway).await;
    (gateway, addr)
}

/// The gateway `program` on `config`, and its log (standard error), read to its end.
pub async fn gateway_with_log(
    program: &str,
    config: &TempFile,
) -> (tokio::process::Child, SocketAddr, JoinHandle<String>) {
    let (mut gateway, addr) = spawn_gateway_program(program, config.path(), true).await;
    let mut stderr = gateway.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    (gateway, addr, log)
}

/// The address a gateway program says it listens on (bounded wait); the rest of its standard
/// output is read and dropped, so that it never blocks on a full pipe.
pub async fn listening_addr(gateway: &mut tokio::process::Child) -> SocketAddr {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut lines = BufReader::new(gateway.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the gateway starts")
            .unwrap()
            .expect("the gateway prints its address");
        let addr = (line.strip_prefix("gateway: listening on http://"))
            .or_else(|| line.strip_prefix("gateway: listening on https://"));
        if let Some(addr) = addr {
            break addr.parse().unwrap();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    addr
}

/// The standard error of `program` (spawned with it piped), line by line as it comes.
pub fn stderr_lines(
    program: &mut tokio::process::Child,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut lines = BufReader::new(program.stderr.take().unwrap()).lines();
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = sender.send(line);
        }
    });
    receiver
}

/// A gateway served in the test's process until dropped.
pub struct InProcessGateway {
    pub addr: SocketAddr,
    pub monitor: std::sync::Arc<tower_monitor::MinMonitor>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<bool>,
}

impl InProcessGateway {
    /// Begins the shutdown, as a signal does.
    pub fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Whether serving ended within `within` and, if it did, whether every connection closed
    /// within the shutdown grace. (Once it said it ended, ask no more.)
    pub async fn ended_within(&mut self, within: Duration) -> Option<bool> {
        let ended = tokio::time::timeout(within, &mut self.task).await.ok()?;
        Some(ended.expect("the gateway's task ran to its end"))
    }
}

impl Drop for InProcessGateway {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        self.task.abort();
    }
}

/// Serves the gateway of `config` on 127.0.0.1:0 in this process.
pub async fn start_gateway(
    config: &str,
    registry: &tower_monitor::config::TriggerRegistry,
) -> InProcessGateway {
    let gateway = tower_monitor::gateway::Gateway::from_config(config, registry)
        .expect("a valid configuration");
    serve_in_process(gateway).await
}

/// Serves the gateway of the configuration file `path` (its relative paths from its folder)
/// on 127.0.0.1:0 in this process.
pub async fn start_gateway_from_file(path: &std::path::Path) -> InProcessGateway {
    let registry = tower_monitor::config::TriggerRegistry::new();
    let gateway = tower_monitor::gateway::Gateway::from_config_file(path, &registry)
        .expect("a valid configuration");
    serve_in_process(gateway).await
}

/// Serves `gateway` on 127.0.0.1:0 in this process.
async fn serve_in_process(gateway: tower_monitor::gateway::Gateway) -> InProcessGateway {
    let monitor = gateway.monitor().clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(gateway.serve(listener, async move {
        let _ = stopped.await;
    }));
    InProcessGateway {
        addr,
        monitor,
        stop: Some(stop),
        task,
    }
}

/// A file in the temporary folder (a configuration, say), removed when dropped.
pub struct TempFile(std::path::PathBuf);

impl TempFile {
    /// Writes `text` to a file named after `tag` and this test process.
    pub fn new(tag: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "tower-monitor-test-{tag}-{}.json",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary folder")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `GET /` for host `app` on a connection of its own; the whole reply as text.
pub async fn get_once(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply).await;
    reply
}

/// Sends SIGTERM to `program`, a child of the test that is still running.
pub async fn sigterm(program: &tokio::process::Child) {
    signal(program, "TERM").await;
}

/// Sends the signal `name` (`TERM`, `HUP`…) to `program`, a child of the test that is still
/// running.
pub async fn signal(program: &tokio::process::Child, name: &str) {
    let pid = program.id().expect("still running").to_string();
    let sent = tokio::process::Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .await
        .unwrap();
    assert!(sent.success(), "kill -{name} {pid}");
}

/// Sends SIGTERM to the gateway program and waits (bounded) for it to exit 0.
pub async fn sigterm_then_exits_0(gateway: &mut tokio::process::Child) {
    sigterm(gateway).await;
    let status = tokio::time::timeout(Duration::from_secs(15), gateway.wait())
        .await
        .expect("the gateway exits")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// SIGTERM to `gateway`, its exit with 0, then what it wrote to standard error (`log`, from
/// [`gateway_with_log`]), read to its end (bounded).
pub async fn stop_and_read_log(
    gateway: &mut tokio::process::Child,
    log: JoinHandle<String>,
) -> String {
    sigterm_then_exits_0(gateway).await;
    tokio::time::timeout(Duration::from_secs(5), log)
        .await
        .expect("stderr closes")
        .unwrap()
}

/// A gateway configuration (listening on port 0) whose one service, "app" on `backend`, is a
/// Python HTTP server started by a `process` trigger; `gateway_fields` (each with a leading
/// comma) go into the `gateway` section.
pub fn process_backend_config(backend: SocketAddr, gateway_fields: &str) -> String {
    format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ]{gateway_fields} }},
             "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s", "probe_timeout": "300ms",
                 "on_down": {{ "type": "process", "command": "python3",
                               "args": ["-m", "http.server", "{port}", "--bind", "127.0.0.1"],
                               "current_dir": {dir:?}, "stop_grace": "3s" }} }} }} }}"#,
        port = backend.port(),
        dir = std::env::temp_dir().display().to_string()
    )
}

/// Waits (bounded by `within`) until the server closes `client`, having answered nothing.
pub async fn closed_without_answer(client: &mut TcpStream, within: Duration) {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(within, client.read(&mut buffer))
        .await
        .expect("the connection stayed open");
    assert!(matches!(read, Ok(0) | Err(_)), "answered: {read:?}");
}

/// Sends SIGTERM to the gateway, which must exit 0 having stopped the program on `backend`.
pub async fn terminate_gateway_then_backend_is_gone(
    mut gateway: tokio::process::Child,
    backend: std::net::SocketAddr,
) {
    sigterm(&gateway).await;
    let status = tokio::time::timeout(Duration::from_secs(15), gateway.wait())
        .await
        .expect("the gateway exits")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        TcpStream::connect(backend).await.is_err(),
        "the backend program outlived the gateway"
    );
}

/// A gateway with one service, "chat", in front of `backend`, whose `on_idle` (after 300 ms)
/// counts its runs in `idle_runs`.
pub async fn gateway_counting_idle_stops(
    backend: SocketAddr,
    idle_runs: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> InProcessGateway {
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "chat" }} ] }},
             "services": {{ "chat": {{ "url": "http://{backend}/", "grace_period": "30s",
                 "on_idle": {{ "after": "300ms", "trigger": {{ "type": "count" }} }} }} }} }}"#
    );
    start_gateway(&config, &super::counting_registry(idle_runs.clone())).await
}

/// A gateway with one service, "h2app", in front of `backend`, spoken to over HTTP/2.
pub async fn gateway_to_http2_backend(backend: SocketAddr) -> InProcessGateway {
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "h2app" }} ],
                           "services": {{ "h2app": {{ "protocol": "http2" }} }} }},
             "services": {{ "h2app": {{ "url": "http://{backend}/", "grace_period": "30s" }} }} }}"#
    );
    start_gateway(&config, &tower_monitor::config::TriggerRegistry::new()).await
}

/// Runs curl (at most 10 s) with `args`; returns what it printed, or panics with its error.
pub async fn curl(args: &[&str]) -> String {
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(args)
        .output()
        .await
        .expect("curl is installed (.ci/run installs it)");
    assert!(
        output.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Reads one message head (up to its blank line) from `stream`, keeping what follows it in
/// `pending`; `None` once the stream ends.
pub async fn read_head(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    pending: &mut Vec<u8>,
) -> Option<String> {
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = pending.drain(..end + 4).collect();
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        let mut buffer = [0u8; 4096];
        match tokio::io::AsyncReadExt::read(stream, &mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => pending.extend_from_slice(&buffer[..n]),
        }
    }
}

/// An HTTP/2 (prior knowledge) connection to `addr`: its sender, and the task driving it.
pub async fn http2_connection<B>(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    JoinHandle<hyper::Result<()>>,
)
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    (sender, tokio::spawn(connection))
}

/// The process id of the backend program the gateway logs that it started (read from its
/// piped stderr, bounded); the rest of its log is read in the background.
pub async fn started_program_pid(gateway: &mut tokio::process::Child) -> String {
    use tokio::io::AsyncBufReadExt;
    let stderr = gateway
        .stderr
        .take()
        .expect("the gateway's stderr is piped");
    let mut log = tokio::io::BufReader::new(stderr).lines();
    let pid = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let line = log.next_line().await.unwrap().expect("the gateway logs");
            if line.contains("started the backend program") {
                let pid = line.split_whitespace().find_map(|f| f.strip_prefix("pid="));
                break pid.expect("its pid").to_string();
            }
        }
    })
    .await
    .expect("the program is started");
    tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
    pid
}

/// Sends `request` (raw HTTP/1.1, `connection: close`) to `addr` and reads the whole reply.
pub async fn exchange(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut reply))
        .await
        .expect("a reply in time")
        .unwrap();
    reply
}

/// A configuration with this `gateway` section and one service, "app", on a port nothing
/// listens on.
pub fn with_gateway(gateway: &str) -> String {
    format!(
        r#"{{ "gateway": {gateway},
             "services": {{ "app": {{ "url": "http://127.0.0.1:9/", "grace_period": "1s" }} }} }}"#
    )
}

/// Sends `GET path` on `early`, a connection to a gateway that has sent nothing yet, once it has
/// stayed open for a second (a close without an answer would come within milliseconds: that it
/// stays open can only be seen for a while), and answers what the gateway sent, lowercased, up
/// to its close of the connection (bounded waits).
pub async fn first_request_once_kept_open(early: &mut TcpStream, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut byte = [0; 1];
    let closed = tokio::time::timeout(Duration::from_secs(1), early.read(&mut byte)).await;
    assert!(closed.is_err(), "closed without an answer: {closed:?}");
    let request = format!("GET {path} HTTP/1.1\r\nhost: app\r\n\r\n");
    early.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), early.read_to_end(&mut answer)).await;
    read.expect("closed after its answer").unwrap();
    String::from_utf8_lossy(&answer).to_ascii_lowercase()
}
