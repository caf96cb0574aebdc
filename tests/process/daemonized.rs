//! A program that forks into the background and exits, as nginx and redis-server do unless
//! told otherwise: the idle stop finds nothing of its to stop, says so, and the service stays
//! up instead of Stopping (holding every request) until its stop timeout.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use tower::ServiceExt;
use tower_monitor::trigger::{Process, Supervisor};
use tower_monitor::{MinMonitor, MonitoredService, ServiceState, Url};

use crate::free_addr;
use crate::process_support::*;

/// Listens on the port given, forks, and exits 0 once the child's PID is in the file given;
/// the child, in a session of its own, accepts connections until killed.
const DAEMON: &str = r#"
import os, socket, sys
port, pid_file = int(sys.argv[1]), sys.argv[2]
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen(64)
child = os.fork()
if child:
    with open(pid_file, "w") as f:
        f.write(str(child))
    os._exit(0)
os.setsid()
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
while True:
    conn, _ = server.accept()
    conn.close()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_stop_with_nothing_of_its_running_keeps_a_daemonized_backend_up() {
    record_logs();
    let dir = scratch("daemonized");
    let pid_file = dir.join("pid");
    let addr = free_addr().await;
    let supervisor = Supervisor::new();
    let backend = supervisor.supervise(Process::builder("python3").args([
        "-c".to_string(),
        DAEMON.to_string(),
        addr.port().to_string(),
        pid_file.display().to_string(),
    ]));
    let monitor = Arc::new(MinMonitor::new());
    let url = Url::parse(&format!("http://{addr}/")).unwrap();
    monitor
        .add(
            "app",
            MonitoredService::new(url, Duration::from_secs(30))
                .stop_timeout(Duration::from_secs(30))
                .on_down(backend.clone())
                .on_idle(Duration::from_millis(300), backend.stopper()),
        )
        .unwrap();
    let app = tower::ServiceBuilder::new()
        .layer(monitor.layer("app").unwrap().hold(Duration::from_secs(20)))
        .service_fn(|_: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::from("ok")))
        });
    let get = || Request::get("/").body(Body::empty()).unwrap();

    // The first request starts the program, which leaves its daemon serving and exits.
    let first = tokio::time::timeout(Duration::from_secs(10), app.clone().oneshot(get()))
        .await
        .expect("answered once the daemon serves")
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    // Its body ends the request in flight.
    drop(first);
    let daemon = Killed(read_pid(&pid_file).await);
    backend.exited().await;

    // No request for the idle time: the idle stop runs, with no program of its to stop.
    eventually("the idle stop ran", || {
        let failures = monitor.snapshot()[0].counters.trigger_failures;
        failures > 0 || monitor.state("app").unwrap() == ServiceState::Stopping
    })
    .await;
    // The daemon still serves, and so does the service: a request is not held until the
    // stop timeout.
    let second = tokio::time::timeout(Duration::from_secs(5), app.oneshot(get())).await;
    let failures = monitor.snapshot()[0].counters.trigger_failures;
    let state = monitor.state("app").unwrap();
    drop(daemon);
    supervisor.shutdown(Duration::from_secs(5)).await.unwrap();
    let second = second
        .expect("answered at once, not held while Stopping")
        .unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    assert!(failures > 0, "the idle stop said it had nothing to stop");
    assert_ne!(state, ServiceState::Stopping);
}

/// Kills the daemon, by its PID, however the test ends: it is no child of the supervisor's.
struct Killed(u32);

impl Drop for Killed {
    fn drop(&mut self) {
        kill(self.0);
    }
}

/// A program that crashed while its service was up has nothing left to stop: its idle stop is
/// no failure, and the service ends Down (its port closed), not up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_stop_after_a_crash_ends_down() {
    record_logs();
    let dir = scratch("crashed");
    let addr = free_addr().await;
    let supervisor = Supervisor::new();
    let backend = supervisor.supervise(crate::booting_backend(
        &dir.join("starts"),
        Duration::ZERO,
        addr,
    ));
    let monitor = Arc::new(MinMonitor::new());
    let url = Url::parse(&format!("http://{addr}/")).unwrap();
    monitor
        .add(
            "app",
            MonitoredService::new(url, Duration::from_secs(30))
                .on_down(backend.clone())
                .on_idle(Duration::from_millis(300), backend.stopper()),
        )
        .unwrap();
    monitor.start("app").await.unwrap();
    eventually("the backend is up", || {
        monitor.state("app").unwrap() == ServiceState::Up
    })
    .await;

    kill(backend.pid().expect("running"));
    backend.exited().await;
    eventually("the idle stop ran and found it down", || {
        monitor.state("app").unwrap() == ServiceState::Down
    })
    .await;
    supervisor.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!(monitor.snapshot()[0].counters.trigger_failures, 0);
}

/// A backend answered by a program this supervisor never started (one an earlier gateway,
/// killed, left running): every idle time its stop has nothing to stop. That is said at warn
/// once while the backend stays up, telling the operator to stop the program themselves, and
/// at warn again only once it has been down and up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_to_stop_is_warned_of_once_per_up_spell() {
    record_logs();
    let supervisor = Supervisor::new();
    let backend = supervisor.supervise(Process::builder("sleep").arg("60"));
    let monitor = Arc::new(MinMonitor::new());
    let url = Url::parse("http://127.0.0.1:9/").unwrap();
    let up =
        tower_monitor::probe::from_fn(|_url| async { Ok::<bool, tower_monitor::BoxError>(true) });
    monitor
        .add(
            "leftover",
            MonitoredService::new(url, Duration::from_secs(60))
                .probe(up)
                .on_down(backend.clone())
                .on_idle(Duration::from_millis(50), backend.stopper()),
        )
        .unwrap();
    let failures = || monitor.snapshot()[0].counters.trigger_failures;
    let warned = || log().lines_with(&["WARN", "leftover", "nothing to stop"]);

    monitor.set_status_up("leftover").unwrap();
    eventually("three idle stops failed", || failures() >= 3).await;
    let once = warned();
    assert_eq!(once.len(), 1, "warned of at every idle time: {once:#?}");
    assert!(
        once[0].contains("never started it") && once[0].contains("stop that program yourself"),
        "the warning does not tell the operator what to do: {}",
        once[0]
    );

    // Down, then up again (the operator stopped it, and something started it once more): a
    // new spell, warned of anew.
    monitor.set_status_down("leftover").unwrap();
    eventually("the backend is down", || {
        monitor.state("leftover").unwrap() == ServiceState::Down
    })
    .await;
    let before = failures();
    monitor.set_status_up("leftover").unwrap();
    eventually("two more idle stops failed", || failures() >= before + 2).await;
    supervisor.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!(warned().len(), 2, "{:#?}", warned());
    assert_eq!(backend.starts(), 0);
}
