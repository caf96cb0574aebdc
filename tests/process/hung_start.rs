//! A backend program that hangs at boot is stopped when its start times out, so that the next
//! request starts it afresh (as systemd stops a service whose start timed out), instead of
//! finding it "running already" and starting nothing, for ever.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tower_monitor::trigger::{Process, Supervisor};
use tower_monitor::{MinMonitor, MonitoredService, ServiceState, Url};

use crate::process_support::{eventually, record_logs, scratch};
use crate::{free_addr, lines};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_hung_at_boot_is_stopped_at_the_start_timeout_and_started_afresh() {
    record_logs();
    let dir = scratch("hung-start");
    let starts = dir.join("starts");
    let supervisor = Supervisor::new();
    // Notes its start, then never listens.
    let hung = supervisor.supervise(Process::builder("sh").args([
        "-c".to_string(),
        format!("echo started >> '{}'; exec sleep 60", starts.display()),
    ]));
    let url = Url::parse(&format!("http://{}/", free_addr().await)).unwrap();
    let monitor = Arc::new(MinMonitor::new());
    monitor
        .add(
            "app",
            MonitoredService::new(url, Duration::from_secs(30))
                .on_down(hung.clone())
                .start_timeout(Duration::from_secs(1)),
        )
        .unwrap();

    monitor.start("app").await.unwrap();
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Starting);
    let first = hung.pid().expect("started");
    // Bounded look at the state (no event to await from outside): the start times out at 1 s.
    let give_up = Instant::now() + Duration::from_secs(10);
    while monitor.state("app").unwrap() != ServiceState::Down {
        assert!(Instant::now() < give_up, "still {:?}", monitor.state("app"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eventually("the hung program stopped", || !hung.is_running()).await;

    // The next start runs a new program.
    monitor.start("app").await.unwrap();
    assert_eq!(
        hung.starts(),
        2,
        "the next start found the hung one running"
    );
    assert_ne!(hung.pid(), Some(first));
    eventually("the new program noted its start", || {
        lines(&starts).len() == 2
    })
    .await;
    supervisor.shutdown(Duration::from_secs(5)).await.unwrap();
}
