//! A randomized soak of the lifecycle on a multi-thread runtime: a real backend on 127.0.0.1
//! that `on_down` opens (after a random boot) and `on_idle` closes, clients sending requests
//! through the layer (held, answered at once, streaming) in bursts and pauses longer than the
//! idle time, and a chaos task that crashes the backend behind the monitor's back or calls
//! `set_status_down`, `stop` and `start`. Invariants that cannot depend on scheduling are
//! checked as it runs and once it has settled; a failure prints its seed and the last events.
//! A seed fixes the workload (every random choice), not how the threads interleave: a failure
//! may take a few runs of its seed to come back (`many_seeds` runs a hundred more).

mod soak_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use soak_support::{Door, Rng, World, inner};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};
use tower_monitor::layer::{BackendGone, FallbackReason};
use tower_monitor::{BoxError, MinMonitor, MonitoredService, ServiceState, Url, trigger};

const IDLE: Duration = Duration::from_millis(40);
const GRACE: Duration = Duration::from_millis(30);
const MAX_WAIT: Duration = Duration::from_millis(400);
const START_TIMEOUT: Duration = Duration::from_millis(300);
const STOP_TIMEOUT: Duration = Duration::from_millis(300);
const TRIGGER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the clients and the chaos task run, per seed.
const RUN_FOR: Duration = Duration::from_millis(2500);
/// What a time bound allows beyond what the code promises: the runtime's threads may be
/// descheduled for a long while on a loaded machine (the poller's 50 ms steps, a held request's
/// timer), and a bound missed by less than this is scheduling, not a bug. A lost wake-up or a
/// state that is never ended misses it by far more.
const MARGIN: Duration = Duration::from_millis(1500);
const CLIENTS: u64 = 4;

/// How one seed runs.
#[derive(Clone, Copy)]
struct Weather {
    /// Crashes, `set_status_down`, `stop`, `start`, slow boots and slow stops.
    stormy: bool,
}

fn service(world: &Arc<World>, weather: Weather) -> MonitoredService {
    let url = Url::parse(&format!("http://{}/", world.addr)).unwrap();
    let (up, down) = (Arc::clone(world), Arc::clone(world));
    let boots = Arc::new(std::sync::Mutex::new(Rng::new(world.seed ^ 0xB007)));
    let stops = Arc::new(std::sync::Mutex::new(Rng::new(world.seed ^ 0x5709)));
    MonitoredService::new(url, GRACE)
        .probe_timeout(Duration::from_millis(500))
        .start_timeout(START_TIMEOUT)
        .stop_timeout(STOP_TIMEOUT)
        .trigger_timeout(TRIGGER_TIMEOUT)
        .on_down(trigger::from_fn(move || {
            let world = Arc::clone(&up);
            let (boot, tail) = {
                let mut rng = boots.lock().unwrap();
                let slow = weather.stormy && rng.chance(3);
                let boot = if slow {
                    rng.millis(300, 400)
                } else {
                    rng.millis(5, 50)
                };
                // Now and then on_down returns well after the port opened (a start command
                // that waits for more than the port), for longer than the idle time.
                let tail = if rng.chance(10) {
                    rng.millis(40, 100)
                } else {
                    rng.millis(0, 3)
                };
                (boot, tail)
            };
            async move {
                let _running = world.on_down_begins();
                tokio::time::sleep(boot).await;
                world.open().await;
                tokio::time::sleep(tail).await;
                Ok::<(), BoxError>(())
            }
        }))
        .on_idle(
            IDLE,
            trigger::from_fn(move || {
                let world = Arc::clone(&down);
                // A stop closes the port at once or only after a while (an app that finishes
                // its work first), and returns at once or later (a process that takes a while
                // to exit).
                let (before, after) = {
                    let mut rng = stops.lock().unwrap();
                    let slow = weather.stormy && rng.chance(3);
                    let after = if slow {
                        rng.millis(300, 400)
                    } else {
                        rng.millis(0, 20)
                    };
                    (rng.millis(0, 20), after)
                };
                async move {
                    let (_running, who) = world.on_idle_begins();
                    tokio::time::sleep(before).await;
                    world.close(who).await;
                    tokio::time::sleep(after).await;
                    world.on_idle_finished();
                    Ok::<(), BoxError>(())
                }
            }),
        )
}

/// One client: requests at random gaps until `until`, each checked as it ends.
async fn client(world: Arc<World>, monitor: Arc<MinMonitor>, id: u64, until: Instant) {
    let mut rng = Rng::new(world.seed ^ (id << 32));
    let layer = monitor
        .layer("app")
        .unwrap()
        .backend_gone_when(BackendGone::in_response);
    let held = layer
        .clone()
        .hold(MAX_WAIT)
        .layer(inner(Arc::clone(&world)));
    let at_once = layer.layer(inner(Arc::clone(&world)));
    while Instant::now() < until {
        let hold = rng.chance(50);
        let mut request = Request::builder().header("accept", "application/json");
        if rng.chance(20) {
            request = request.header("x-stream", rng.below(150).to_string());
        }
        let request = request.body(()).unwrap();
        let sent = Instant::now();
        let response = if hold {
            held.clone().oneshot(request).await
        } else {
            at_once.clone().oneshot(request).await
        };
        let Ok(response) = response;
        let (status, waited) = (response.status(), sent.elapsed());
        let reason = response.extensions().get::<FallbackReason>().copied();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        world.count(format!(
            "{} {}",
            if hold { "held" } else { "at once" },
            status.as_u16()
        ));
        if body.contains("internal_error") {
            world.violation(format!("client {id}: answered 500 internal error"));
        }
        if hold {
            // Forwarded (200; a 503 in place of a crashed backend's 502), or 504 at max_wait;
            // or the "could not be started" 500 at once, when the pause after failed starts
            // (a crash counts) outlasts max_wait.
            let expected = [StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE];
            let paused = status == StatusCode::INTERNAL_SERVER_ERROR
                && reason == Some(FallbackReason::StartFailed);
            if !expected.contains(&status) && status != StatusCode::GATEWAY_TIMEOUT && !paused {
                world.violation(format!("client {id}: a held request answered {status}"));
            }
            if waited > MAX_WAIT + MARGIN {
                world.violation(format!("client {id}: a held request took {waited:?}"));
            }
        } else if waited > TRIGGER_TIMEOUT + MARGIN {
            world.violation(format!("client {id}: a request took {waited:?} ({status})"));
        }
        let gap = if rng.chance(70) {
            rng.millis(0, 5)
        } else {
            rng.millis(60, 160)
        };
        tokio::time::sleep(gap).await;
    }
}

/// Crashes the backend, or asks the monitor to mark it down, stop it or start it.
async fn chaos(world: Arc<World>, monitor: Arc<MinMonitor>, until: Instant) {
    let mut rng = Rng::new(world.seed ^ 0xC4A05);
    while Instant::now() < until {
        tokio::time::sleep(rng.millis(50, 300)).await;
        match rng.below(4) {
            0 if world.door() == Door::Open => {
                world.count("chaos crash");
                world.event("chaos: crash");
                world.close(Door::Crash).await;
            }
            1 => {
                world.count("chaos set_status_down");
                world.event("chaos: set_status_down");
                monitor.set_status_down("app").unwrap();
            }
            2 => {
                world.operator_stopping.fetch_add(1, Ordering::SeqCst);
                let stopped = monitor.stop("app").await;
                world.operator_stopping.fetch_sub(1, Ordering::SeqCst);
                world.count(format!(
                    "chaos stop {:?}",
                    stopped.as_ref().is_ok_and(|s| *s)
                ));
                world.event(format!("chaos: stop: {stopped:?}"));
            }
            3 => {
                let started = monitor.start("app").await;
                world.count(format!("chaos start {}", started.is_ok()));
                world.event(format!("chaos: start: {started:?}"));
            }
            _ => {}
        }
    }
}

/// Samples the state: nothing stays Starting or Stopping longer than its timeout allows.
async fn watch_states(world: Arc<World>, monitor: Arc<MinMonitor>, done: Arc<AtomicBool>) {
    // Stopping is not ended by its timeout while `on_idle` still runs (bounded by the trigger
    // timeout): see the poller.
    let starting_max = START_TIMEOUT + MARGIN;
    let stopping_max = STOP_TIMEOUT.max(TRIGGER_TIMEOUT) + MARGIN;
    let mut last = None;
    while !done.load(Ordering::SeqCst) {
        let snapshot = monitor.snapshot().remove(0);
        let lasted = SystemTime::now()
            .duration_since(snapshot.since)
            .unwrap_or_default();
        if last != Some(snapshot.state) {
            world.event(format!("state {}", snapshot.state));
            last = Some(snapshot.state);
        }
        let bound = match snapshot.state {
            ServiceState::Starting => Some(starting_max),
            ServiceState::Stopping => Some(stopping_max),
            _ => None,
        };
        if bound.is_some_and(|bound| lasted > bound) {
            world.violation(format!("{} for {lasted:?}", snapshot.state));
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Once the clients and the chaos task are done: the service ends Down with the backend
/// closed, nothing in flight or held, no trigger running.
async fn settle(world: &World, monitor: &MinMonitor) {
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let state = monitor.state("app").unwrap();
        let running = world.on_down_running.load(Ordering::SeqCst)
            + world.on_idle_running.load(Ordering::SeqCst);
        let open = world.door() == Door::Open;
        if state == ServiceState::Down && !open && running == 0 {
            break;
        }
        if Instant::now() > give_up {
            world.violation(format!(
                "never settled: {state}, open {open}, {running} running"
            ));
            return;
        }
        if state == ServiceState::Down && running == 0 {
            // Down with the backend open (marked down, or started too late): nothing probes
            // a Down service by itself; a status request does, then the idle stop follows.
            let _ = monitor.status("app").await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let snapshot = monitor.snapshot().remove(0);
    if snapshot.requests_in_flight != Some(0) || snapshot.requests_held != 0 {
        world.violation(format!(
            "settled with {:?} in flight, {} held",
            snapshot.requests_in_flight, snapshot.requests_held
        ));
    }
}

async fn soak(seed: u64, weather: Weather) {
    let world = World::new(seed).await;
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service(&world, weather)).unwrap();
    let until = Instant::now() + RUN_FOR;
    let mut tasks = Vec::new();
    for id in 0..CLIENTS {
        tasks.push(tokio::spawn(client(
            world.clone(),
            monitor.clone(),
            id,
            until,
        )));
    }
    if weather.stormy {
        tasks.push(tokio::spawn(chaos(world.clone(), monitor.clone(), until)));
    }
    let done = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch_states(world.clone(), monitor.clone(), done.clone()));
    for task in tasks {
        // A panic in a task is a failure of its own, with the seed.
        if let Err(error) = task.await {
            world.violation(format!("a task panicked: {error}"));
        }
    }
    settle(&world, &monitor).await;
    done.store(true, Ordering::SeqCst);
    if watcher.await.is_err() {
        world.violation("the state watcher panicked");
    }
    let (starts, stops) = (
        world.on_down_runs.load(Ordering::SeqCst),
        world.on_idle_runs.load(Ordering::SeqCst),
    );
    world.event(format!("settled: {starts} starts, {stops} stops"));
    // Calm: every start opens a closed backend and every stop closes an open one, and it ends
    // closed. Stormy: crashes and operators' starts make starts without stops.
    if !weather.stormy && starts != stops {
        world.violation(format!("{starts} starts but {stops} stops"));
    }
    if starts == 0 {
        world.violation("the backend was never started: the soak tested nothing");
    }
    eprintln!("{}", world.summary());
    assert!(world.violations().is_empty(), "{}", world.report());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calm_seed_1() {
    soak(1, Weather { stormy: false }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stormy_seed_2() {
    soak(2, Weather { stormy: true }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stormy_seed_3() {
    soak(3, Weather { stormy: true }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stormy_seed_4() {
    soak(4, Weather { stormy: true }).await;
}

/// More seeds, for a longer hunt: `SOAK_SEEDS=100 cargo test --test lifecycle_soak -- --ignored`
/// runs seeds 100..200, stormy but for every fourth, two at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a long hunt, run by hand"]
async fn many_seeds() {
    let first: u64 = std::env::var("SOAK_SEEDS")
        .ok()
        .and_then(|first| first.parse().ok())
        .unwrap_or(100);
    for pair in (first..first + 100).step_by(2) {
        let weather = |seed: u64| Weather {
            stormy: seed % 4 != 0,
        };
        let (a, b) = tokio::join!(
            tokio::spawn(soak(pair, weather(pair))),
            tokio::spawn(soak(pair + 1, weather(pair + 1)))
        );
        a.unwrap();
        b.unwrap();
    }
}
