//! What the fleet tests share: a real `redis-server` per test on a free loopback port (no
//! persistence, killed by PID at the end, panics included), a backend that triggers start and
//! stop, and replicas (monitors that joined one fleet).
#![allow(dead_code)]

mod doomed;
mod keys;
mod outages;
mod owner;
mod relay;
mod replicas;
#[allow(unused_imports)] // each test binary uses its own subset
pub use doomed::Doomed;
#[allow(unused_imports)]
pub use outages::Outages;
#[allow(unused_imports)]
pub use owner::Owner;
#[allow(unused_imports)]
pub use relay::Relay;
#[allow(unused_imports)]
pub use replicas::*;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tower::{Layer, ServiceExt};
use tower_monitor::fleet::{Fleet, FleetConfig};
use tower_monitor::{BoxError, MinMonitor, MonitoredService, ServiceState, Url, trigger};

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

pub async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// A backend on a fixed loopback address that `start` makes listen and `stop` closes; counts
/// both. Its start takes `boot` (the time a VM or container would need).
pub struct Backend {
    pub addr: SocketAddr,
    boot: Duration,
    task: Mutex<Option<JoinHandle<()>>>,
    pub starts: AtomicUsize,
    pub stops: AtomicUsize,
    /// Connections accepted: each TCP probe is one.
    pub accepts: Arc<AtomicUsize>,
}

impl Backend {
    pub async fn new(boot: Duration) -> Arc<Self> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port().await).parse().unwrap();
        Arc::new(Self {
            addr,
            boot,
            task: Mutex::new(None),
            starts: AtomicUsize::new(0),
            stops: AtomicUsize::new(0),
            accepts: Arc::default(),
        })
    }

    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}/", self.addr)).unwrap()
    }

    /// Listens (after the boot time, in the background), unless it listens already.
    pub fn start(self: &Arc<Self>) {
        self.starts.fetch_add(1, Ordering::SeqCst);
        let me = Arc::clone(self);
        let accepts = Arc::clone(&self.accepts);
        let task = tokio::spawn(async move {
            tokio::time::sleep(me.boot).await;
            let listener = loop {
                match TcpListener::bind(me.addr).await {
                    Ok(listener) => break listener,
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            };
            while let Ok((stream, _)) = listener.accept().await {
                accepts.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        if let Some(old) = self.task.lock().unwrap().replace(task) {
            old.abort();
        }
    }

    /// Listens from now on, without counting a start (a backend running before the test).
    pub async fn start_now(self: &Arc<Self>) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        let accepts = Arc::clone(&self.accepts);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepts.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        if let Some(old) = self.task.lock().unwrap().replace(task) {
            old.abort();
        }
    }

    pub fn stop(&self) {
        self.stops.fetch_add(1, Ordering::SeqCst);
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }

    pub fn starts(&self) -> usize {
        self.starts.load(Ordering::SeqCst)
    }

    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    pub fn stops(&self) -> usize {
        self.stops.load(Ordering::SeqCst)
    }
}

/// The service every replica registers: probed over TCP, started and stopped through `backend`.
pub fn service(backend: &Arc<Backend>, idle: Duration, grace: Duration) -> MonitoredService {
    let (up, down) = (Arc::clone(backend), Arc::clone(backend));
    MonitoredService::new(backend.url(), grace)
        .on_down(trigger::from_fn(move || {
            let backend = Arc::clone(&up);
            async move {
                backend.start();
                Ok::<(), BoxError>(())
            }
        }))
        .on_idle(
            idle,
            trigger::from_fn(move || {
                let backend = Arc::clone(&down);
                async move {
                    backend.stop();
                    Ok::<(), BoxError>(())
                }
            }),
        )
        .probe_timeout(Duration::from_millis(500))
        .stop_timeout(Duration::from_secs(5))
}

/// A fleet replica for `redis`, with test-sized lease and timeouts.
pub fn fleet(redis: &str, prefix: &str, replica: &str) -> Fleet {
    Fleet::new(&FleetConfig::new(redis).prefix(prefix))
        .unwrap()
        .replica(replica)
        .lease_ttl(Duration::from_millis(1500))
}

/// A monitor with `service` as "app", joined to the fleet.
pub fn replica(fleet: Fleet, service: MonitoredService) -> Arc<MinMonitor> {
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).unwrap();
    monitor.join_fleet(fleet).unwrap();
    monitor
}

/// One replica per id in the fleet `prefix` on `redis`, each with `service(i)` as "app", once
/// every one listens for the fleet's announcements.
pub async fn replicas(
    redis: &RedisServer,
    prefix: &str,
    ids: &[&str],
    service: impl Fn(usize) -> MonitoredService,
) -> Vec<Arc<MinMonitor>> {
    let replicas = ids
        .iter()
        .enumerate()
        .map(|(i, id)| replica(fleet(&redis.url(), prefix, id), service(i)))
        .collect();
    redis.wait_for_listeners(prefix, ids.len()).await;
    replicas
}

/// A response whose body takes `chunks` × 100 ms to send.
pub type Body = http_body_util::StreamBody<
    futures::stream::BoxStream<'static, Result<http_body::Frame<Bytes>, std::io::Error>>,
>;

fn streaming(chunks: usize) -> Body {
    let frames = futures::stream::unfold(0, move |i| async move {
        if i == chunks {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some((
            Ok(http_body::Frame::data(Bytes::from_static(b"chunk\n"))),
            i + 1,
        ))
    });
    http_body_util::StreamBody::new(Box::pin(frames) as futures::stream::BoxStream<'static, _>)
}

/// One request through `monitor`'s layer (hold mode if `hold`), its body read to the end;
/// the inner service answers `chunks` chunks. Returns the status.
pub async fn request(monitor: &Arc<MinMonitor>, hold: Option<Duration>, chunks: usize) -> u16 {
    let mut layer = monitor.layer("app").unwrap();
    if let Some(max_wait) = hold {
        layer = layer.hold(max_wait);
    }
    let inner = tower::service_fn(move |_request: http::Request<String>| async move {
        Ok::<_, std::convert::Infallible>(http::Response::new(streaming(chunks)))
    });
    let response = layer
        .layer(inner)
        .oneshot(http::Request::new(String::new()))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

/// Waits (bounded) until `check` holds; false if it never did.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !check() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// `requests` requests held for the backend, round-robin over `replicas`, one every 5 ms (a
/// herd spread over time, as clients arrive), all answered 200.
pub async fn herd(replicas: &[Arc<MinMonitor>], requests: usize) {
    let mut herd = Vec::new();
    for i in 0..requests {
        let monitor = Arc::clone(&replicas[i % replicas.len()]);
        herd.push(tokio::spawn(
            async move { request(&monitor, HOLD, 1).await },
        ));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for answer in herd {
        assert_eq!(
            answer.await.unwrap(),
            200,
            "every held request is forwarded"
        );
    }
}

/// Waits (bounded) until every replica sees "app" `wanted`; false if one never did.
pub async fn all_reach(
    replicas: &[Arc<MinMonitor>],
    wanted: ServiceState,
    within: Duration,
) -> bool {
    eventually(within, || replicas.iter().all(|m| state(m) == wanted)).await
}

pub fn state(monitor: &MinMonitor) -> ServiceState {
    monitor.state("app").unwrap()
}
