//! The look at a dependency that a probe of its up dependent sets off (a database crashed
//! under its app): what it says about a dependency it cannot start again, and that it starts
//! none for a dependent no longer up. A multi-thread runtime; each test's services have names
//! of their own, which pick its lines out of the binary's shared log.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use tokio::sync::Notify;
use tower_monitor::{BoxError, MinMonitor, MonitoredService, ServiceState, probe};

/// The binary's log, at the level that shows the lines said at debug after the first.
fn debug_logs() -> Captured {
    logs(tracing::Level::DEBUG)
}

/// The events about `dependency` whose message has `text`, by level.
fn said(logs: &Captured, dependency: &str, text: &str) -> Vec<tracing::Level> {
    let events = logs.events_with("dependency", dependency);
    let about = events.iter().filter(|event| event.message.contains(text));
    about.map(|event| event.level).collect()
}

/// A probe that finds its backend down; its first probe notifies `probing` as it begins, and
/// answers only once `go` is notified.
fn first_probe_held() -> (impl tower_monitor::Probe, Arc<Notify>, Arc<Notify>) {
    let (probing, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let first = Arc::new(AtomicBool::new(true));
    let (p, g) = (probing.clone(), go.clone());
    let held = probe::from_fn(move |_url| {
        let (p, g) = (p.clone(), g.clone());
        let first = first.swap(false, Ordering::SeqCst);
        async move {
            if first {
                p.notify_one();
                g.notified().await;
            }
            Ok::<bool, BoxError>(false)
        }
    });
    (held, probing, go)
}

/// Probes `app` (each probe finds it up, so its dependencies are looked at) until `done`,
/// bounded; a probe is made only once the look it set off may have ended.
async fn recheck_until(monitor: &MinMonitor, app: &str, what: &str, done: impl Fn() -> bool) {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(tokio::time::Instant::now() < give_up, "never {what}");
        assert!(monitor.status(app).await.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A dependency that nothing can start (no `on_down`) is found down at every look: that it
/// could not be started again is said at warn once per down spell, at debug after, and at
/// warn again once it has been up and gone down again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_that_cannot_be_started_is_warned_of_once_per_down_spell() {
    let logs = debug_logs();
    let monitor = MinMonitor::new();
    let db = MonitoredService::new(url_for(refused_addr().await), Duration::ZERO);
    monitor.add("warned-db", db).unwrap();
    let app = MonitoredService::new(url_for(refused_addr().await), Duration::ZERO)
        .probe(counting_probe(counter(), true))
        .depends_on("warned-db");
    monitor.add("warned-app", app).unwrap();
    monitor.set_status_up("warned-app").unwrap();

    let not_started = || said(&logs, "warned-db", "could not be started again");
    recheck_until(&monitor, "warned-app", "three looks", || {
        not_started().len() >= 3
    })
    .await;
    let levels = not_started();
    let warned = levels.iter().filter(|l| **l == tracing::Level::WARN);
    assert_eq!(warned.count(), 1, "{levels:?}");
    assert_eq!(levels[0], tracing::Level::WARN);
    let found = said(&logs, "warned-db", "was found down");
    assert_eq!(found, [tracing::Level::INFO], "the first look only at info");

    // Up, then down again (its grace period is zero: the next look probes it): a new spell.
    monitor.set_status_up("warned-db").unwrap();
    let warnings = || {
        let levels = not_started();
        levels
            .iter()
            .filter(|l| **l == tracing::Level::WARN)
            .count()
    };
    recheck_until(&monitor, "warned-app", "warned again", || warnings() == 2).await;
    assert_eq!(said(&logs, "warned-db", "was found down").len(), 2);
}

/// A look that began just before its dependent's stop (its probe of the dependency still
/// running as the stop begins) starts no dependency for a dependent that is stopping: the
/// dependency would otherwise run for nothing until its own idle stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_look_begun_before_the_dependents_stop_starts_no_dependency() {
    let logs = debug_logs();
    let (db_starts, app_stops) = (counter(), counter());
    // The first probe of db (the look's) finds it down only once the test says so.
    let (db_probe, probing, go) = first_probe_held();
    let monitor = Arc::new(MinMonitor::new());
    let db = MonitoredService::new(url_for(refused_addr().await), Duration::ZERO)
        .probe(db_probe)
        .on_down(counting_trigger(db_starts.clone(), false));
    monitor.add("stopped-db", db).unwrap();
    let app = MonitoredService::new(url_for(refused_addr().await), Duration::ZERO)
        .probe(counting_probe(counter(), true))
        .on_idle(
            Duration::from_secs(3600),
            counting_trigger(app_stops.clone(), false),
        )
        .depends_on("stopped-db");
    monitor.add("stopped-app", app).unwrap();
    monitor.set_status_up("stopped-app").unwrap();

    assert!(monitor.status("stopped-app").await.unwrap());
    let began = tokio::time::timeout(Duration::from_secs(5), probing.notified()).await;
    began.expect("the look never probed db");
    assert!(monitor.stop("stopped-app").await.unwrap());
    assert_eq!(
        monitor.state("stopped-app").unwrap(),
        ServiceState::Stopping
    );
    assert_eq!(count(&app_stops), 1);

    go.notify_one();
    let not_started = || said(&logs, "stopped-db", "is not started again").len();
    until(
        Duration::from_secs(5),
        "the look's end (db not started, or started)",
        || (not_started(), count(&db_starts)),
        |(said, starts)| *said > 0 || *starts > 0,
    )
    .await;
    assert_eq!(count(&db_starts), 0, "db was started for a stopping app");
    let line = logs.line_with(&["stopped-app: stopped-db is not started again"]);
    assert!(line.contains("stopped-app is stopping now"), "{line}");
}

/// A look that starts nothing because its dependent left Up as it looked does not use up the
/// dependency's down spell: once the dependent is up again, a start of the dependency that
/// fails is said at warn, as the first failure of that spell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_look_that_started_nothing_leaves_the_first_failure_at_warn() {
    let logs = debug_logs();
    let db_starts = counter();
    // The first probe of db (the first look's) finds it down only once the test says so.
    let (db_probe, probing, go) = first_probe_held();
    let monitor = Arc::new(MinMonitor::new());
    let db = MonitoredService::new(url_for(refused_addr().await), Duration::ZERO)
        .probe(db_probe)
        .on_down(counting_trigger(db_starts.clone(), true));
    monitor.add("respelled-db", db).unwrap();
    let app = MonitoredService::new(url_for(refused_addr().await), Duration::ZERO)
        .probe(counting_probe(counter(), true))
        .depends_on("respelled-db");
    monitor.add("respelled-app", app).unwrap();
    monitor.set_status_up("respelled-app").unwrap();

    // The first look finds db down while app is down: it starts nothing.
    assert!(monitor.status("respelled-app").await.unwrap());
    let began = tokio::time::timeout(Duration::from_secs(5), probing.notified()).await;
    began.expect("the look never probed db");
    monitor.set_status_down("respelled-app").unwrap();
    go.notify_one();
    until(
        Duration::from_secs(5),
        "the first look's end",
        || said(&logs, "respelled-db", "is not started again").len(),
        |said| *said > 0,
    )
    .await;
    assert_eq!(count(&db_starts), 0);

    // App up again, db still down (the same spell): the next look starts db, which fails.
    monitor.set_status_up("respelled-app").unwrap();
    let not_started = || said(&logs, "respelled-db", "could not be started again");
    recheck_until(&monitor, "respelled-app", "a failed start of db", || {
        !not_started().is_empty()
    })
    .await;
    assert_eq!(
        not_started()[0],
        tracing::Level::WARN,
        "{:?}",
        not_started()
    );
}
