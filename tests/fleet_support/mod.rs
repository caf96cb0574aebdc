//! What the fleet tests share: a real `redis-server` per test (`redis.rs`), a backend that
//! triggers start and stop, and replicas (monitors that joined one fleet).
#![allow(dead_code)]

mod doomed;
mod keys;
// The one subscriber of a binary's log, without the rest of `common`. A binary that has
// `common` as well loads it twice: it reads its log through one of the two only (the second to
// install its subscriber would panic, as a global one is there already).
#[allow(clippy::duplicate_mod)]
#[path = "../common/logs.rs"]
mod logs;
// Free ports, as `common` finds them (the same double load).
mod outages;
mod owner;
#[allow(clippy::duplicate_mod)]
#[path = "../common/ports.rs"]
mod ports;
mod redis;
mod relay;
mod replicas;
#[allow(unused_imports)] // each test binary uses its own subset
pub use doomed::Doomed;
#[allow(unused_imports)]
pub use outages::Outages;
#[allow(unused_imports)]
pub use owner::Owner;
#[allow(unused_imports)]
pub use redis::RedisServer;
#[allow(unused_imports)]
pub use relay::Relay;
#[allow(unused_imports)]
pub use replicas::*;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::{Layer, ServiceExt};
use tower_monitor::fleet::{Fleet, FleetConfig};
use tower_monitor::{BoxError, MinMonitor, MonitoredService, ServiceState, Url, trigger};

/// A port where nothing listens (see `refused_addr` in `tests/common/ports.rs`).
pub async fn free_port() -> u16 {
    ports::refused_addr().await.port()
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
