//! What a supervisor that died left, stopped while other things happen: the caller giving up
//! on the trigger (its `trigger_timeout`), the runtime or the supervisor shutting down (with
//! no grace too), a start meanwhile, its leader gone during the grace; and a lock file that
//! holds no record.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use tower_monitor::Trigger;
use tower_monitor::trigger::{Process, Supervisor};

use crate::process_support::{alive, eventually, log, record_logs, scratch};

/// `sleep 30` deaf to SIGTERM, in a process group of its own, as a program a killed supervisor
/// left would be; killed and reaped when dropped.
pub(crate) struct Deaf(std::process::Child);

impl Deaf {
    /// Once it ignores SIGTERM (the shell set it, then became `sleep`).
    pub(crate) fn start() -> Self {
        let child = std::process::Command::new("sh")
            .args(["-c", "trap '' TERM; exec sleep 30"])
            .process_group(0)
            .spawn()
            .unwrap();
        let deaf = Self(child);
        let comm = format!("/proc/{}/comm", deaf.pid());
        let give_up = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&comm).unwrap_or_default() != "sleep\n" {
            assert!(
                Instant::now() < give_up,
                "the deaf stray never became sleep"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        deaf
    }

    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }

    /// The record a supervisor that ran it and died would have left.
    pub(crate) fn record(&self) -> String {
        let pid = self.pid();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let start = stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .nth(19)
            .unwrap()
            .to_string();
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        format!("{pid}\nstart_time {start}\nboot_id {}\n", boot.trim())
    }
}

impl Drop for Deaf {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn backend(lock: &Path, service: &str, grace: Duration) -> Process {
    Process::builder("sleep")
        .arg("30")
        .service(service)
        .lock_file(lock)
        .stop_grace(grace)
        .build()
}

fn stopping_logged(service: &str, pgid: u32) -> bool {
    let pgid = format!("pgid={pgid}");
    !log()
        .lines_with(&[service, "left its process group running", &pgid])
        .is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_given_up_on_still_kills_what_ignores_sigterm() {
    const SERVICE: &str = "leftover-given-up";
    record_logs();
    let lock = scratch(SERVICE).join("app.lock");
    let deaf = Deaf::start();
    std::fs::write(&lock, deaf.record()).unwrap();
    let process = backend(&lock, SERVICE, Duration::from_secs(1));
    // As the monitor's trigger_timeout does, shorter than the stop grace.
    let given_up = tokio::time::timeout(Duration::from_millis(300), process.trigger()).await;
    assert!(given_up.is_err(), "the trigger outwaits the stop grace");
    eventually("the SIGKILL reached what ignores SIGTERM", || {
        !alive(deaf.pid())
    })
    .await;
    eventually("the record is cleared once dealt with", || {
        std::fs::read_to_string(&lock).is_ok_and(|text| text.is_empty())
    })
    .await;
    process.trigger().await.unwrap();
    assert!(process.is_running());
    process.stop().await.unwrap();
}

#[test]
fn a_runtime_shut_down_during_the_stop_leaves_the_record_for_the_next() {
    const SERVICE: &str = "leftover-shut-down";
    record_logs();
    let lock = scratch(SERVICE).join("app.lock");
    let deaf = Deaf::start();
    let record = deaf.record();
    std::fs::write(&lock, &record).unwrap();
    let process = backend(&lock, SERVICE, Duration::from_secs(30));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let trigger = process.trigger();
    runtime.spawn(trigger);
    let give_up = Instant::now() + Duration::from_secs(10);
    while !stopping_logged(SERVICE, deaf.pid()) {
        assert!(Instant::now() < give_up, "the leftover's stop never began");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(runtime);
    assert!(alive(deaf.pid()), "SIGTERM is ignored and no SIGKILL came");
    // As it was, but for the word that its stop had begun (which a free lock makes moot).
    let left = std::fs::read_to_string(&lock).unwrap();
    assert!(
        left.starts_with(&record) && left[record.len()..].starts_with("stopping_until "),
        "the record of what still runs was cleared: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_during_a_stops_cleanup_is_refused_not_taken_for_another_supervisor() {
    const SERVICE: &str = "leftover-start-meanwhile";
    record_logs();
    let lock = scratch(SERVICE).join("app.lock");
    let deaf = Deaf::start();
    std::fs::write(&lock, deaf.record()).unwrap();
    let process = backend(&lock, SERVICE, Duration::from_secs(1));
    let stopping = tokio::spawn({
        let process = process.clone();
        async move { process.stop().await }
    });
    eventually("the stop deals with the leftover", || {
        stopping_logged(SERVICE, deaf.pid())
    })
    .await;
    let refused = process.start().unwrap_err().to_string();
    assert!(refused.contains("being stopped"), "{refused}");
    assert!(
        log()
            .lines_with(&[SERVICE, "another supervisor"])
            .is_empty(),
        "its own cleanup was taken for another supervisor"
    );
    assert!(stopping.await.unwrap().unwrap().is_none());
    assert!(!alive(deaf.pid()));
    process.trigger().await.unwrap();
    assert!(process.is_running());
    process.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_no_longer_shown_the_runs_after_the_grace_is_not_said_stopped() {
    const SERVICE: &str = "leftover-leader-gone";
    record_logs();
    let dir = scratch(SERVICE);
    let (lock, child_file) = (dir.join("app.lock"), dir.join("child"));
    // A leader that SIGTERM ends, and a child deaf to it that cleared the run's id.
    let script = format!(
        "(trap '' TERM; exec sleep 30) & echo $! > {:?}; wait",
        child_file.display().to_string()
    );
    let leader = std::process::Command::new("sh")
        .args(["-c", &script])
        .process_group(0)
        .spawn()
        .unwrap();
    let leader = Deaf(leader);
    let child = crate::process_support::read_pid(&child_file).await;
    let comm = format!("/proc/{child}/comm");
    eventually("the child ignores SIGTERM", || {
        std::fs::read_to_string(&comm).is_ok_and(|c| c == "sleep\n")
    })
    .await;
    std::fs::write(&lock, leader.record()).unwrap();
    // Long enough for the leader to have ended on its SIGTERM on a loaded machine: the
    // grace is all the stop waits (the deaf child outlives it) before judging the group again.
    let process = backend(&lock, SERVICE, Duration::from_millis(1500));
    let stopped = process.stop().await;
    let child_left = alive(child);
    crate::process_support::kill(child);
    assert!(
        child_left,
        "the child, no longer shown the run's, was killed"
    );
    let error = stopped.unwrap_err().to_string();
    assert!(error.contains("left alone"), "{error}");
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), "", "said once");
    assert!(
        log()
            .lines_with(&[SERVICE, "stopped what the dead supervisor left"])
            .is_empty(),
        "what still runs was said stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_leaves_a_lock_file_that_holds_no_record_as_it_was() {
    const SERVICE: &str = "leftover-not-a-record";
    record_logs();
    // A lock_file set to a file of something else (a typo, a symlink): a stop that finds
    // nothing running looks at it, and must not empty it.
    let lock = scratch(SERVICE).join("notes.txt");
    std::fs::write(&lock, "not a record\n").unwrap();
    let process = backend(&lock, SERVICE, Duration::from_secs(1));
    assert!(process.stop().await.unwrap().is_none());
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), "not a record\n");
}

/// A supervised program with `grace` to stop, whose trigger (spawned) is under way stopping
/// the SIGTERM-deaf leftover its lock file records.
async fn cleaning(
    service: &'static str,
    grace: Duration,
) -> (
    Deaf,
    Supervisor,
    Process,
    tokio::task::JoinHandle<Result<(), tower_monitor::BoxError>>,
) {
    record_logs();
    let lock = scratch(service).join("app.lock");
    let deaf = Deaf::start();
    std::fs::write(&lock, deaf.record()).unwrap();
    let supervisor = Supervisor::new();
    let process = supervisor.supervise(
        Process::builder("sleep")
            .arg("30")
            .service(service)
            .lock_file(&lock)
            .stop_grace(grace),
    );
    let starting = tokio::spawn(process.trigger());
    eventually("the trigger deals with the leftover", || {
        stopping_logged(service, deaf.pid())
    })
    .await;
    (deaf, supervisor, process, starting)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_shut_down_during_a_triggers_cleanup_waits_for_it_and_starts_nothing() {
    const SERVICE: &str = "leftover-supervisor-shut-down";
    let (deaf, supervisor, process, starting) = cleaning(SERVICE, Duration::from_secs(1)).await;
    supervisor.shutdown(Duration::from_secs(1)).await.unwrap();
    assert!(
        !alive(deaf.pid()),
        "the shutdown returned before the cleanup ended"
    );
    let refused = starting.await.unwrap().unwrap_err().to_string();
    assert!(refused.contains("shut down"), "{refused}");
    assert!(!process.is_running() && supervisor.running().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_with_no_grace_kills_what_a_triggers_cleanup_gives_its_stop_grace() {
    const SERVICE: &str = "leftover-killed-at-once";
    let (deaf, supervisor, _process, starting) = cleaning(SERVICE, Duration::from_secs(60)).await;
    // As the gateway's third signal does.
    let at_once = supervisor.shutdown(Duration::ZERO);
    let shut_down = tokio::time::timeout(Duration::from_secs(15), at_once).await;
    assert!(
        shut_down.is_ok(),
        "the shutdown waited for the cleanup's 60 s grace"
    );
    shut_down.unwrap().unwrap();
    assert!(!alive(deaf.pid()), "what ignores SIGTERM was not killed");
    let refused = starting.await.unwrap().unwrap_err().to_string();
    assert!(refused.contains("shut down"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_nothing_to_stop_takes_no_lock_when_the_file_holds_no_record() {
    const SERVICE: &str = "leftover-no-look";
    let dir = scratch(SERVICE);
    // Taking the lock opens the file to create it: none made shows none was taken, for the
    // moment that another gateway's start would have found it held and started nothing.
    let lock = dir.join("app.lock");
    let process = backend(&lock, SERVICE, Duration::from_secs(1));
    assert!(process.stop().await.unwrap().is_none());
    assert!(process.stopper().trigger().await.is_err(), "nothing runs");
    assert!(!lock.exists(), "a stop took the lock to look at no record");
}
