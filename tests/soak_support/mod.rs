//! The soak test's world: a seeded RNG, a real backend on 127.0.0.1 that `on_down` opens and
//! `on_idle` closes, an inner service that checks it is open when a request reaches it, and
//! the record of what happened (counts, an event log, broken invariants).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower_monitor::layer::BackendGone;

/// A tiny xorshift64*: enough randomness for a soak, reproducible from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // Never zero (xorshift's fixed point), and seeds 1, 2, 3 far apart.
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// `true` with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A duration between `low` and `high` milliseconds.
    pub fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.below(high - low + 1))
    }
}

/// Who closed the backend last (or that it is open).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    NeverOpened,
    Open,
    /// `on_idle`, run by the idle watch (no operator's stop was under way).
    IdleStop,
    /// `on_idle`, while an operator's `stop` was under way (it may be that stop's run).
    OperatorStop,
    /// The chaos task, behind the monitor's back.
    Crash,
}

/// Everything the tasks of one seed share.
pub struct World {
    pub seed: u64,
    pub addr: SocketAddr,
    t0: Instant,
    door: Mutex<Door>,
    accept: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    pub on_down_running: AtomicUsize,
    pub on_idle_running: AtomicUsize,
    pub on_down_runs: AtomicUsize,
    pub on_idle_runs: AtomicUsize,
    /// An `on_idle` run finished since the last `on_down` began.
    stopped_since_start: AtomicBool,
    /// Operator stops under way (the chaos task's `MinMonitor::stop`).
    pub operator_stopping: AtomicUsize,
    /// Forwarded requests whose response body has not ended.
    pub bodies_open: AtomicUsize,
    /// How many of each outcome, for the summary: what the seed exercised.
    tally: Mutex<std::collections::BTreeMap<String, usize>>,
    violations: Mutex<Vec<String>>,
    events: Mutex<Vec<(Duration, String)>>,
}

impl World {
    pub async fn new(seed: u64) -> Arc<Self> {
        let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        Arc::new(Self {
            seed,
            addr,
            t0: Instant::now(),
            door: Mutex::new(Door::NeverOpened),
            accept: tokio::sync::Mutex::new(None),
            on_down_running: AtomicUsize::new(0),
            on_idle_running: AtomicUsize::new(0),
            on_down_runs: AtomicUsize::new(0),
            on_idle_runs: AtomicUsize::new(0),
            stopped_since_start: AtomicBool::new(false),
            operator_stopping: AtomicUsize::new(0),
            bodies_open: AtomicUsize::new(0),
            tally: Mutex::default(),
            violations: Mutex::new(Vec::new()),
            events: Mutex::new(Vec::new()),
        })
    }

    pub fn event(&self, what: impl Into<String>) {
        let at = self.t0.elapsed();
        self.events.lock().unwrap().push((at, what.into()));
    }

    pub fn count(&self, what: impl Into<String>) {
        *self.tally.lock().unwrap().entry(what.into()).or_default() += 1;
    }

    /// What the seed exercised, in one line.
    pub fn summary(&self) -> String {
        format!(
            "seed {}: {} starts, {} stops, {:?}",
            self.seed,
            self.on_down_runs.load(Ordering::SeqCst),
            self.on_idle_runs.load(Ordering::SeqCst),
            self.tally.lock().unwrap()
        )
    }

    pub fn violation(&self, what: impl Into<String>) {
        let what = what.into();
        self.event(format!("VIOLATION: {what}"));
        self.violations.lock().unwrap().push(what);
    }

    pub fn door(&self) -> Door {
        *self.door.lock().unwrap()
    }

    /// Opens the backend (a listener that accepts and drops connections) if it is closed. The
    /// port was free a moment ago; binding again may fail for a moment (the kernel may still
    /// hold it), so it is retried, bounded.
    pub async fn open(&self) {
        let mut accept = self.accept.lock().await;
        if accept.is_some() {
            return;
        }
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(_) if tries < 200 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(error) => panic!(
                    "seed {}: cannot bind {} again: {error}",
                    self.seed, self.addr
                ),
            }
        };
        *accept = Some(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        }));
        *self.door.lock().unwrap() = Door::Open;
        self.event("backend open");
    }

    /// Closes the backend: from the return on, connections are refused. `who` is recorded
    /// first, so a request that reaches the inner service meanwhile sees it closed.
    pub async fn close(&self, who: Door) {
        let mut accept = self.accept.lock().await;
        *self.door.lock().unwrap() = who;
        if let Some(task) = accept.take() {
            task.abort();
            let _ = task.await;
            self.event(format!("backend closed ({who:?})"));
        }
    }

    /// Called as `on_down` begins: no `on_idle` and no other `on_down` may be running.
    pub fn on_down_begins(&self) -> RunGuard<'_> {
        let others = self.on_down_running.fetch_add(1, Ordering::SeqCst);
        let stops = self.on_idle_running.load(Ordering::SeqCst);
        let n = self.on_down_runs.fetch_add(1, Ordering::SeqCst) + 1;
        self.stopped_since_start.store(false, Ordering::SeqCst);
        self.event(format!("on_down #{n} begins"));
        if others > 0 {
            self.violation(format!("on_down #{n} began while {others} on_down ran"));
        }
        if stops > 0 {
            self.violation(format!("on_down #{n} began while on_idle ran"));
        }
        RunGuard(&self.on_down_running)
    }

    /// Called as `on_idle` begins: no other `on_idle` may be running, nor `on_down` (for any
    /// stop), and no forwarded body may be open (unless an operator's stop is under way: it
    /// stops whatever requests are in flight); the last stop must have been followed by a start. Answers who this stop
    /// counts as.
    pub fn on_idle_begins(&self) -> (RunGuard<'_>, Door) {
        let others = self.on_idle_running.fetch_add(1, Ordering::SeqCst);
        let starts = self.on_down_running.load(Ordering::SeqCst);
        let n = self.on_idle_runs.fetch_add(1, Ordering::SeqCst) + 1;
        let operator = self.operator_stopping.load(Ordering::SeqCst) > 0;
        let who = if operator {
            Door::OperatorStop
        } else {
            Door::IdleStop
        };
        self.event(format!("on_idle #{n} begins ({who:?})"));
        if others > 0 {
            self.violation(format!("on_idle #{n} began while another on_idle ran"));
        }
        // An operator's stop waits for a start's on_down to end, as an idle stop is called off.
        if starts > 0 {
            self.violation(format!("on_idle #{n} began while on_down ran"));
        }
        let open = self.bodies_open.load(Ordering::SeqCst);
        if !operator && open > 0 {
            self.violation(format!(
                "idle stop #{n} began with {open} forwarded bodies still streaming"
            ));
        }
        if self.stopped_since_start.load(Ordering::SeqCst) {
            self.violation(format!(
                "on_idle #{n} began with no on_down since the last stop"
            ));
        }
        (RunGuard(&self.on_idle_running), who)
    }

    pub fn on_idle_finished(&self) {
        self.stopped_since_start.store(true, Ordering::SeqCst);
    }

    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }

    /// The seed, the broken invariants and the last events, for a failure message.
    pub fn report(&self) -> String {
        let events = self.events.lock().unwrap();
        let tail: Vec<String> = events
            .iter()
            .skip(events.len().saturating_sub(80))
            .map(|(at, what)| format!("  {:>8.1} ms  {what}", at.as_secs_f64() * 1000.0))
            .collect();
        format!(
            "seed {}: {:?}\nlast events:\n{}",
            self.seed,
            self.violations(),
            tail.join("\n")
        )
    }
}

/// Counts a trigger run while it lives, however it ends (cut at its timeout included).
pub struct RunGuard<'a>(&'a AtomicUsize);

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The inner service: what a request reaches once the layer forwards it. It checks the backend
/// is open; a request with `x-stream: <ms>` gets a body that stays open that long.
pub fn inner(
    world: Arc<World>,
) -> impl tower::Service<Request<()>, Response = Response<Body>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    tower::service_fn(move |request: Request<()>| {
        let world = Arc::clone(&world);
        // Checked at the call, not when its future is polled: the call is the forward.
        let door = world.door();
        let answer = match door {
            Door::Open => Ok(streaming(&world, &request)),
            closed => Err(closed),
        };
        async move {
            match answer {
                Ok(response) => Ok(response),
                Err(closed) => {
                    if matches!(closed, Door::IdleStop | Door::NeverOpened) {
                        world.violation(format!("a request was forwarded to a backend {closed:?}"));
                    }
                    // As a proxy answers a refused connection.
                    let mut response = Response::new(Body::default());
                    *response.status_mut() = StatusCode::BAD_GATEWAY;
                    let gone = BackendGone::for_request(request.headers()).sent_at(Instant::now());
                    response.extensions_mut().insert(gone);
                    Ok(response)
                }
            }
        }
    })
}

/// A 200 whose body sends a chunk every 10 ms for as long as `x-stream` says (none: at once).
fn streaming(world: &Arc<World>, request: &Request<()>) -> Response<Body> {
    let millis: u64 = request
        .headers()
        .get("x-stream")
        .and_then(|value| value.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    world.bodies_open.fetch_add(1, Ordering::SeqCst);
    let open = OpenBody(Some(Arc::clone(world)));
    let until = Instant::now() + Duration::from_millis(millis);
    let chunks = futures::stream::unfold(open, move |mut open| async move {
        if Instant::now() >= until {
            // Ended here, before the layer sees the end: the layer's count outlives ours.
            open.end();
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        Some((Ok(Frame::data(Bytes::from_static(b"chunk\n"))), open))
    });
    Response::new(StreamBody::new(chunks).boxed_unsync())
}

/// A forwarded body not ended yet.
struct OpenBody(Option<Arc<World>>);

impl OpenBody {
    fn end(&mut self) {
        if let Some(world) = self.0.take() {
            world.bodies_open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for OpenBody {
    fn drop(&mut self) {
        self.end();
    }
}
