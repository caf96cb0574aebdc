//! Log lines as an operator reads them. Every test of this binary reads the one global
//! subscriber's lines (see `common::logs`), each picking its own by its service's name or by
//! what only it logs.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceExt};
use tower_monitor::{MinMonitor, MonitoredService};

/// The level of this binary's subscriber: the lowest any of its tests reads.
const LEVEL: tracing::Level = tracing::Level::DEBUG;

#[tokio::test]
async fn a_probes_own_log_lines_name_the_service() {
    let logs = logs(LEVEL);
    let monitor = MinMonitor::new();
    let url = url_for(refused_addr().await);
    monitor
        .add("quiet-app", MonitoredService::new(url, Duration::ZERO))
        .unwrap();
    assert!(!monitor.status("quiet-app").await.unwrap());
    // Found by the service's name: without it, there is none.
    logs.line_with(&["connect failed", "quiet-app"]);
}

/// The bound's 503s are not the usual "starting" ones: reaching it is said at warn, once each
/// time it is reached (a herd beyond it must not fill the log), the rest at debug.
#[tokio::test(start_paused = true)]
async fn reaching_max_held_is_warned_once_each_time() {
    let logs = logs(LEVEL);
    let warned = || {
        logs.text()
            .lines()
            .filter(|l| {
                l.contains("WARN") && l.contains("requests held already") && l.contains("held-app")
            })
            .count()
    };
    let up = Arc::new(AtomicBool::new(false));
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .probe(switch_probe(up.clone()))
        .on_down(counting_trigger(counter(), false));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("held-app", service).unwrap();
    let layer = monitor
        .layer("held-app")
        .unwrap()
        .hold(Duration::from_secs(30))
        .max_held(1);
    let service = layer.layer(tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("app")))
    }));
    for episode in 1..=2 {
        let first = tokio::spawn(service.clone().oneshot(Request::get("/").body(()).unwrap()));
        // With the clock paused, this sleep ends only once every task is idle: it is held.
        tokio::time::sleep(Duration::from_millis(10)).await;
        for _ in 0..3 {
            let beyond = service
                .clone()
                .oneshot(Request::get("/").body(()).unwrap())
                .await
                .unwrap();
            assert_eq!(beyond.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        assert_eq!(warned(), episode, "{}", logs.text());
        up.store(true, Ordering::SeqCst);
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        // Down again: the next herd reaches the bound anew.
        up.store(false, Ordering::SeqCst);
        monitor.set_status_down("held-app").unwrap();
    }
}

/// A backend without `on_down` is answered 503 while down: why is said at info, once each
/// time it goes down, not once per request.
#[tokio::test]
async fn a_down_backend_that_nothing_starts_is_said_once_per_down_spell() {
    let logs = logs(LEVEL);
    let said = || {
        logs.text()
            .lines()
            .filter(|l| l.contains("INFO") && l.contains("watched is down and nothing starts it"))
            .inspect(|l| assert!(l.contains("service=watched"), "{l}"))
            .count()
    };
    let monitor = Arc::new(MinMonitor::new());
    let url = url_for(refused_addr().await);
    monitor
        .add(
            "watched",
            MonitoredService::new(url, Duration::from_secs(60)),
        )
        .unwrap();
    for spell in 1..=2 {
        for _ in 0..3 {
            wake(&monitor, "watched").await;
        }
        assert_eq!(said(), spell, "{}", logs.text());
        // Up (someone started it by hand), then down again: a new spell.
        monitor.set_status_up("watched").unwrap();
        monitor.set_status_down("watched").unwrap();
    }
}

/// A start that times out says where the backend was looked for: a URL whose port is not the
/// one the program listens on is the likely mistake, and the operator's only clue.
#[tokio::test(start_paused = true)]
async fn a_start_that_times_out_names_the_url_it_probed() {
    let logs = logs(LEVEL);
    let url = url_for(refused_addr().await);
    let service = MonitoredService::new(url.clone(), Duration::from_secs(60))
        .probe(switch_probe(Arc::new(AtomicBool::new(false))))
        .on_down(counting_trigger(counter(), false))
        .start_timeout(Duration::from_secs(1));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("late", service).unwrap();
    wake(&monitor, "late").await;
    // The clock is paused: each sleep ends once every task is idle, the poller's turns
    // included; 40 turns of 50 ms are twice the start timeout.
    for _ in 0..40 {
        if monitor.state("late").unwrap() == tower_monitor::ServiceState::Down {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("late did not come up"))
        .unwrap_or_else(|| panic!("no timed-out start in {text}"));
    assert!(
        line.contains(&format!("start timeout passed with {url} still down")),
        "{line}"
    );
}

/// Held requests answered 504 at `max_wait` while the backend still starts: said at info once
/// for the start, with how long it has lasted (a start longer than `max_wait` is the likely
/// cause), not once per request.
#[tokio::test(start_paused = true)]
async fn held_requests_that_time_out_are_said_once_per_start() {
    let logs = logs(LEVEL);
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .probe(switch_probe(Arc::new(AtomicBool::new(false))))
        .on_down(counting_trigger(counter(), false));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("slow", service).unwrap();
    let held = monitor
        .layer("slow")
        .unwrap()
        .hold(Duration::from_secs(1))
        .layer(tower::service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("slow")))
        }));
    let herd: Vec<_> = (0..3)
        .map(|_| tokio::spawn(held.clone().oneshot(Request::get("/").body(()).unwrap())))
        .collect();
    for request in herd {
        let answer = request.await.unwrap().unwrap();
        assert_eq!(answer.status(), StatusCode::GATEWAY_TIMEOUT);
    }
    let text = logs.text();
    let said: Vec<_> = text
        .lines()
        .filter(|l| {
            l.contains("INFO") && l.contains("held requests are answered 504") && l.contains("slow")
        })
        .collect();
    assert_eq!(said.len(), 1, "{text}");
    assert!(
        said[0].contains("slow did not come up within the hold's max_wait (1.00 s)")
            && said[0].contains("(it has been starting for ")
            && said[0].contains("service=slow"),
        "{}",
        said[0]
    );
}

/// A gateway service that no route names is reached by no request: valid, but warned of, as
/// a route forgotten when the service was added; unless another service needs it up (its
/// database, say), which is what it is there for.
#[test]
fn a_gateway_service_without_a_route_is_warned_of() {
    let logs = logs(LEVEL);
    let json = r#"{ "gateway": { "listen": "127.0.0.1:0", "routes": [ { "service": "app" } ] },
        "services": { "app": { "url": "http://127.0.0.1:9/", "grace_period": "1s", "depends_on": ["db"] },
                      "db": { "url": "tcp://127.0.0.1:11", "grace_period": "1s" },
                      "orphan": { "url": "http://127.0.0.1:10/", "grace_period": "1s" } } }"#;
    let registry = tower_monitor::config::TriggerRegistry::new();
    tower_monitor::gateway::Gateway::from_config(json, &registry).unwrap();
    let text = logs.text();
    // Of every service without a route (db is needed by app: not warned of).
    let warned: Vec<_> = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("no route in gateway.routes"))
        .collect();
    assert_eq!(warned.len(), 1, "{text}");
    assert!(
        warned[0].contains("no route in gateway.routes names \"orphan\"")
            && warned[0].contains("service=orphan"),
        "{}",
        warned[0]
    );
}

/// A request through a layer whose backend is down, to run its `on_down`.
async fn wake(monitor: &Arc<MinMonitor>, name: &str) {
    let service =
        monitor
            .layer(name)
            .unwrap()
            .layer(tower::service_fn(|_req: Request<()>| async {
                Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("app")))
            }));
    let answer = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// A backend program built without `ProcessBuilder::service`, as its docs show it, logs its
/// start and its output with the name of the service whose `on_down` ran it.
#[cfg(unix)]
#[tokio::test]
async fn a_process_names_the_service_that_started_it() {
    use tower_monitor::trigger::Process;
    let logs = logs(LEVEL);
    let program = Process::builder("sh")
        .args(["-c", "echo hello-from-program; exec sleep 30"])
        .build();
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .probe(switch_probe(Arc::new(AtomicBool::new(false))))
        .on_down(program.clone());
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("py-app", service).unwrap();
    wake(&monitor, "py-app").await;
    let said = |what: &str| logs.lines_with(&[what, "py-app"]).into_iter().next();
    let output = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(line) = said("hello-from-program") {
                return line;
            }
            // The program's output comes through a pipe: there is no event to await.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no output line in {}", logs.text()));
    let started = said("started the backend program").expect("a start line");
    program.stop().await.unwrap();
    assert!(output.contains("py-app"), "{output}");
    assert!(started.contains("py-app"), "{started}");
}

/// A program that is the backend of two services (a web port and an admin port) is started
/// and stopped for each in turn: each line names the service it is done for, not the first.
#[cfg(unix)]
#[tokio::test]
async fn a_process_shared_by_two_services_names_the_one_it_acts_for() {
    use tower_monitor::trigger::Process;
    let logs = logs(LEVEL);
    let program = Process::builder("sh").args(["-c", "exec sleep 30"]).build();
    let monitor = Arc::new(MinMonitor::new());
    for name in ["web-app", "admin-app"] {
        let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
            .probe(switch_probe(Arc::new(AtomicBool::new(false))))
            .on_down(program.clone())
            .on_idle(Duration::from_secs(3600), program.stopper());
        monitor.add(name, service).unwrap();
    }
    // Each run ends once its lines are written.
    monitor.start("web-app").await.unwrap();
    monitor.start("admin-app").await.unwrap();
    monitor.set_status_up("admin-app").unwrap();
    monitor.stop("admin-app").await.unwrap();
    // Each found by the service it must name (another program's lines name their own).
    logs.line_with(&["started the backend program", "web-app"]);
    logs.line_with(&["runs already", "admin-app"]);
    logs.line_with(&["stopping the backend program", "admin-app"]);
    program.stop().await.unwrap();
}

/// The same for a `Command`'s output, and its success.
#[tokio::test]
async fn a_commands_output_names_its_service() {
    use tower_monitor::trigger::Command;
    let logs = logs(LEVEL);
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .probe(switch_probe(Arc::new(AtomicBool::new(false))))
        .on_down(Command::new("sh").args(["-c", "echo hello-from-command"]));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("cmd-app", service).unwrap();
    // A waited-for command's output is read to its end before its run ends.
    wake(&monitor, "cmd-app").await;
    let output = logs.line_with(&["hello-from-command"]);
    assert!(output.contains("cmd-app"), "{output}");
    logs.line_with(&["command succeeded", "cmd-app"]);
}

/// A `Delay`'s run comes when no request is there to name the service; its failure still does.
#[tokio::test(start_paused = true)]
async fn a_delayed_triggers_failure_names_its_service() {
    use tower_monitor::trigger::{Delay, from_fn};
    let logs = logs(LEVEL);
    let failing = from_fn(|| async { Err::<(), _>("the stop failed") });
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .probe(switch_probe(Arc::new(AtomicBool::new(false))))
        .always(Delay::new(Duration::from_secs(5), failing));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("delayed-app", service).unwrap();
    wake(&monitor, "delayed-app").await;
    // With the clock paused, this sleep ends once the delay's run has had its turn.
    tokio::time::sleep(Duration::from_secs(6)).await;
    logs.line_with(&["delayed trigger failed", "delayed-app"]);
}

/// A backend program started before the monitor runs anything of it (at boot, so that the
/// first request finds it up) and stopped by its service's `on_idle`: the stop's lines name
/// the service, as the monitor runs that stop for it.
#[cfg(unix)]
#[tokio::test]
async fn a_process_started_outside_the_monitor_names_the_service_that_stops_it() {
    use tower_monitor::trigger::Process;
    let logs = logs(LEVEL);
    let program = Process::builder("sleep").arg("30").build();
    program.start().unwrap();
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .probe(switch_probe(Arc::new(AtomicBool::new(true))))
        .on_down(program.clone())
        .on_idle(Duration::from_secs(600), program.stopper());
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("boot-app", service).unwrap();
    monitor.set_status_up("boot-app").unwrap();
    // The idle stop resolves once the program has exited and been reaped.
    assert!(monitor.stop("boot-app").await.unwrap());
    assert!(!program.is_running());
    for what in ["stopping the backend program", "backend program stopped"] {
        logs.line_with(&[what, "boot-app"]);
    }
}

/// The service's name is written as operators grep for it, `service=form-app`, not quoted (as
/// tracing writes a `&str` or Debug field): on a transition's line as on the proxy's.
#[tokio::test]
async fn the_service_is_written_unquoted_on_transition_and_proxy_lines() {
    let logs = logs(LEVEL);
    let monitor = MinMonitor::new();
    let url = url_for(refused_addr().await);
    monitor
        .add(
            "form-app",
            MonitoredService::new(url, Duration::from_secs(60)),
        )
        .unwrap();
    // Down to up: a transition, said at info.
    monitor.set_status_up("form-app").unwrap();
    let proxy = tower_monitor::proxy::Proxy::builder(url_for(refused_addr().await))
        .service_name("form-proxy")
        .build::<Full<Bytes>>()
        .unwrap();
    let request = Request::get("http://form/").body(Full::default()).unwrap();
    let answer = proxy.oneshot(request).await.unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_GATEWAY);
    for (what, name) in [("form-app is up after", "form-app"), ("WARN", "form-proxy")] {
        let line = logs.line_with(&[what, name]);
        assert!(
            line.contains(&format!(" service={name}")) && !line.contains(&format!("\"{name}\"")),
            "{line}"
        );
    }
}
