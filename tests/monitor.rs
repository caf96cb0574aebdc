//! MinMonitor over real sockets on 127.0.0.1.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::sync::Notify;
use tower_monitor::{BoxError, MinMonitor, MonitorError, MonitoredService, Url, probe};

const GRACE: Duration = Duration::from_millis(300);

fn tcp_service(url: Url, grace: Duration) -> MonitoredService {
    MonitoredService::new(url, grace).probe_timeout(Duration::from_secs(1))
}

/// A monitor with one TCP-probed service, "app".
fn app_at(url: Url, grace: Duration) -> MinMonitor {
    let monitor = MinMonitor::new();
    monitor.add("app", tcp_service(url, grace)).unwrap();
    monitor
}

#[tokio::test]
async fn up_service_is_up() {
    let backend = Backend::start().await;
    let monitor = app_at(backend.url(), GRACE);
    assert!(monitor.status("app").await.unwrap());
}

#[tokio::test]
async fn down_service_is_down() {
    let monitor = app_at(url_for(refused_addr().await), GRACE);
    assert!(!monitor.status("app").await.unwrap());
}

#[tokio::test]
async fn up_then_reprobe_after_it_stopped_is_down() {
    let mut backend = Backend::start().await;
    let monitor = app_at(backend.url(), Duration::from_secs(60));
    assert!(monitor.status("app").await.unwrap());
    backend.stop().await;
    assert!(monitor.status("app").await.unwrap(), "still cached up");
    assert!(!monitor.reprobe("app").await.unwrap());
    assert!(
        !monitor.status("app").await.unwrap(),
        "the down cleared the cached up"
    );
}

#[tokio::test]
async fn down_then_reprobe_after_it_started_is_up() {
    let addr = refused_addr().await;
    let monitor = app_at(url_for(addr), Duration::from_secs(60));
    assert!(!monitor.status("app").await.unwrap());
    let _backend = Backend::start_on(addr).await;
    assert!(monitor.reprobe("app").await.unwrap());
}

#[tokio::test]
async fn set_status_up_on_a_down_service_holds_for_the_grace_period_only() {
    let monitor = app_at(url_for(refused_addr().await), GRACE);
    assert!(!monitor.status("app").await.unwrap());
    monitor.set_status_up("app").unwrap();
    assert!(
        monitor.status("app").await.unwrap(),
        "within the grace period"
    );
    tokio::time::sleep(GRACE + Duration::from_millis(100)).await;
    assert!(
        !monitor.status("app").await.unwrap(),
        "after the grace period a probe runs"
    );
}

#[tokio::test]
async fn a_service_that_goes_down_within_the_grace_period_is_still_reported_up() {
    let mut backend = Backend::start().await;
    let monitor = app_at(backend.url(), Duration::from_secs(60));
    assert!(monitor.status("app").await.unwrap());
    backend.stop().await;
    // A false positive, by design: the up is trusted for the grace period.
    assert!(monitor.status("app").await.unwrap());
}

#[tokio::test]
async fn with_zero_grace_a_service_that_goes_down_is_down_at_once() {
    let mut backend = Backend::start().await;
    let monitor = app_at(backend.url(), Duration::ZERO);
    assert!(monitor.status("app").await.unwrap());
    backend.stop().await;
    assert!(!monitor.status("app").await.unwrap());
}

/// A monitor whose "app" is probed by a counting probe that answers `up`.
async fn counted(up: bool) -> (MinMonitor, Arc<std::sync::atomic::AtomicUsize>) {
    let runs = counter();
    let monitor = MinMonitor::new();
    let url = url_for(refused_addr().await);
    monitor
        .add(
            "app",
            MonitoredService::new(url, GRACE).probe(counting_probe(runs.clone(), up)),
        )
        .unwrap();
    (monitor, runs)
}

#[tokio::test]
async fn up_expires_after_the_grace_period_and_is_probed_again() {
    let (monitor, runs) = counted(true).await;
    assert!(monitor.status("app").await.unwrap());
    assert!(monitor.status("app").await.unwrap());
    assert_eq!(
        count(&runs),
        1,
        "the second status was answered from the cache"
    );
    tokio::time::sleep(GRACE + Duration::from_millis(100)).await;
    assert!(monitor.status("app").await.unwrap());
    assert_eq!(count(&runs), 2);
}

#[tokio::test]
async fn up_expires_with_its_grace_period_on_a_runtime_too_busy_to_run_its_timer() {
    let (monitor, runs) = counted(true).await;
    assert!(monitor.status("app").await.unwrap());
    // The runtime's only thread is blocked past the grace period: the task that clears the
    // cached up has had no chance to run, yet the grace period is over.
    std::thread::sleep(GRACE + Duration::from_millis(50));
    assert!(monitor.status("app").await.unwrap());
    assert_eq!(count(&runs), 2, "the status after the grace period probed");
}

#[tokio::test]
async fn down_is_never_cached() {
    let (monitor, runs) = counted(false).await;
    for expected in 1..=3 {
        assert!(!monitor.status("app").await.unwrap());
        assert_eq!(count(&runs), expected);
    }
}

#[tokio::test]
async fn unknown_names_are_errors_for_every_operation() {
    let monitor = MinMonitor::new();
    let is_unknown =
        |e: MonitorError| matches!(e, MonitorError::UnknownService(ref n) if n == "ghost");
    assert!(is_unknown(monitor.status("ghost").await.unwrap_err()));
    assert!(is_unknown(monitor.reprobe("ghost").await.unwrap_err()));
    assert!(is_unknown(monitor.set_status_up("ghost").unwrap_err()));
}

#[tokio::test]
async fn names_are_case_sensitive() {
    let monitor = MinMonitor::new();
    monitor
        .add("App", tcp_service(url_for(refused_addr().await), GRACE))
        .unwrap();
    assert!(matches!(
        monitor.set_status_up("app"),
        Err(MonitorError::UnknownService(_))
    ));
}

#[tokio::test]
async fn adding_a_taken_name_fails_and_keeps_the_first() {
    let backend = Backend::start().await;
    let monitor = app_at(backend.url(), GRACE);
    let err = monitor
        .add("app", tcp_service(url_for(refused_addr().await), GRACE))
        .unwrap_err();
    assert!(matches!(err, MonitorError::DuplicateServiceRegistration(ref n) if n == "app"));
    assert!(
        monitor.status("app").await.unwrap(),
        "the first definition is still the one used"
    );
}

#[tokio::test]
async fn an_empty_name_or_one_with_a_control_character_is_refused() {
    let monitor = MinMonitor::new();
    let url = url_for(refused_addr().await);
    for name in ["", "two\nlines", "tab\there", "bell\u{7}"] {
        let err = monitor
            .add(name, tcp_service(url.clone(), GRACE))
            .unwrap_err();
        assert!(
            matches!(err, MonitorError::InvalidServiceName(ref n) if n == name),
            "{err:?}"
        );
        assert!(matches!(
            monitor.state(name),
            Err(MonitorError::UnknownService(_))
        ));
    }
    // Any other character is a name: logs and metrics escape quotes, the admin decodes `%XX`.
    monitor
        .add("caf\u{e9} \"quoted\" / app", tcp_service(url, GRACE))
        .unwrap();
}

#[tokio::test]
async fn a_url_that_cannot_be_probed_is_rejected_naming_it() {
    let monitor = MinMonitor::new();
    let url = Url::parse("gopher-ish://backend.test/").unwrap();
    let err = monitor
        .add("app", MonitoredService::new(url, GRACE))
        .unwrap_err();
    assert!(matches!(err, MonitorError::InvalidUrl { .. }));
    assert!(
        err.to_string().contains("gopher-ish://backend.test/"),
        "{err}"
    );
    assert!(monitor.names().is_empty(), "nothing was added");
}

#[tokio::test]
async fn an_unanswered_connect_is_down_within_the_probe_timeout() {
    let (listener, _fillers) = blackhole().await;
    let timeout = Duration::from_millis(300);
    let monitor = MinMonitor::new();
    let service = MonitoredService::new(url_for(listener.local_addr().unwrap()), GRACE)
        .probe_timeout(timeout);
    monitor.add("app", service).unwrap();
    let started = Instant::now();
    assert!(!monitor.status("app").await.unwrap());
    let elapsed = started.elapsed();
    // It really hung (not refused), and the timeout cut it off.
    assert!(
        elapsed >= timeout,
        "answered after {elapsed:?}: the connect did not hang"
    );
    assert!(elapsed < timeout * 10, "answered after {elapsed:?}");
}

#[tokio::test]
async fn a_probe_that_never_answers_is_down_after_the_timeout() {
    let monitor = MinMonitor::new();
    let service = MonitoredService::new(url_for(refused_addr().await), GRACE)
        .probe_timeout(Duration::from_millis(50))
        .probe(probe::from_fn(|_url| {
            futures::future::pending::<Result<bool, BoxError>>()
        }));
    monitor.add("app", service).unwrap();
    assert!(!monitor.status("app").await.unwrap());
}

#[tokio::test]
async fn a_custom_probe_error_is_a_probe_error() {
    let monitor = MinMonitor::new();
    let service = MonitoredService::new(url_for(refused_addr().await), GRACE).probe(
        probe::from_fn(|_url| async { Err::<bool, BoxError>("bad credentials".into()) }),
    );
    monitor.add("app", service).unwrap();
    let err = monitor.status("app").await.unwrap_err();
    assert!(matches!(err, MonitorError::Probe { ref service, .. } if service == "app"));
    assert!(err.to_string().contains("bad credentials"), "{err}");
}

#[tokio::test]
async fn a_panicking_probe_is_a_probe_error_and_the_next_probe_runs() {
    let runs = counter();
    let counted = runs.clone();
    let monitor = MinMonitor::new();
    let service = MonitoredService::new(url_for(refused_addr().await), GRACE).probe(
        probe::from_fn(move |_url| {
            let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n == 0 {
                    panic!("probe bug");
                }
                Ok::<bool, BoxError>(true)
            }
        }),
    );
    monitor.add("app", service).unwrap();
    assert!(matches!(
        monitor.status("app").await,
        Err(MonitorError::Probe { .. })
    ));
    assert!(monitor.status("app").await.unwrap());
}

#[tokio::test]
async fn ipv6_loopback_literal_is_probed() {
    let backend = match tokio::net::TcpListener::bind("[::1]:0").await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("skipped: this machine has no IPv6 loopback ({err})");
            return;
        }
    };
    let port = backend.local_addr().unwrap().port();
    let monitor = MinMonitor::new();
    let url = Url::parse(&format!("http://[::1]:{port}/")).unwrap();
    monitor.add("v6", tcp_service(url, GRACE)).unwrap();
    assert!(monitor.status("v6").await.unwrap());
    drop(backend);
    assert!(!monitor.reprobe("v6").await.unwrap());
}

#[tokio::test]
async fn a_host_name_is_resolved() {
    let backend = Backend::start().await;
    let monitor = MinMonitor::new();
    let url = Url::parse(&format!("http://localhost:{}/", backend.addr.port())).unwrap();
    monitor.add("named", tcp_service(url, GRACE)).unwrap();
    // localhost may resolve to ::1 first, where nothing listens: each address is tried.
    assert!(monitor.status("named").await.unwrap());
}

#[tokio::test]
async fn probe_on_add_probes_in_the_background() {
    let started = Arc::new(Notify::new());
    let s = started.clone();
    let monitor = MinMonitor::new();
    let url = url_for(refused_addr().await);
    let service = MonitoredService::new(url, Duration::from_secs(60))
        .probe_on_add(true)
        .probe(probe::from_fn(move |_url| {
            s.notify_one();
            async { Ok::<bool, BoxError>(true) }
        }));
    monitor.add("eager", service).unwrap();
    tokio::time::timeout(Duration::from_secs(5), started.notified())
        .await
        .expect("the first probe started without any status request");
}

#[tokio::test]
async fn the_first_probe_waits_for_a_status_request_by_default() {
    let runs = counter();
    let monitor = MinMonitor::new();
    let url = url_for(refused_addr().await);
    monitor
        .add(
            "lazy",
            MonitoredService::new(url, GRACE).probe(counting_probe(runs.clone(), true)),
        )
        .unwrap();
    tokio::task::yield_now().await;
    assert_eq!(count(&runs), 0);
    assert!(monitor.status("lazy").await.unwrap());
    assert_eq!(count(&runs), 1);
}

#[tokio::test(start_paused = true)]
async fn ready_after_holds_back_an_up_that_follows_a_down() {
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let monitor = MinMonitor::new();
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::ZERO)
        .probe(switch_probe(up.clone()))
        .ready_after(Duration::from_secs(3));
    monitor.add("app", service).unwrap();
    assert!(!monitor.status("app").await.unwrap());
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(
        !monitor.status("app").await.unwrap(),
        "answering, but still settling"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!monitor.status("app").await.unwrap());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(monitor.status("app").await.unwrap(), "settled");
    // A new down starts the settling over.
    up.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(!monitor.status("app").await.unwrap());
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(!monitor.status("app").await.unwrap());
}

#[tokio::test]
async fn ready_after_does_not_delay_a_service_up_from_the_start() {
    let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let monitor = MinMonitor::new();
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::ZERO)
        .probe(switch_probe(up))
        .ready_after(Duration::from_secs(3600));
    monitor.add("app", service).unwrap();
    assert!(monitor.status("app").await.unwrap());
}

#[test]
fn the_public_types_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<MinMonitor>();
    shareable::<MonitoredService>();
    shareable::<tower_monitor::MonitorLayer>();
    shareable::<
        tower_monitor::MonitorService<
            tower::util::BoxCloneSyncService<
                http::Request<()>,
                http::Response<()>,
                std::convert::Infallible,
            >,
        >,
    >();
    shareable::<MonitorError>();
    shareable::<tower_monitor::config::TriggerRegistry>();
    let _default: MinMonitor = Default::default();
}
