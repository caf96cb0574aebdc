//! A start asked for while the program is being stopped, by this supervisor or by another that
//! holds its lock file: it waits for that stop to end and then starts the program, rather than
//! take it for running (here, or under the lock's holder) and start nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use tower_monitor::Trigger;
use tower_monitor::trigger::{Process, ProcessBuilder};

use crate::leftover_races::Deaf;
use crate::process_support::{alive, eventually, log, read_pid, record_logs, scratch};

/// The stop grace of these programs: what a start waits for, SIGKILL included.
const GRACE: Duration = Duration::from_secs(1);

/// Ample for a start that waits for a stop of [`GRACE`], on a loaded machine.
const WITHIN: Duration = Duration::from_secs(15);

/// A program whose leader SIGTERM ends, while its child, deaf to it, lingers in its group
/// until the SIGKILL; the child writes its pid in `child`.
fn leaving_a_child(service: &str, child: &Path) -> ProcessBuilder {
    let script = format!(
        "(trap '' TERM; exec sleep 30) & echo $! > {:?}; wait",
        child.display().to_string()
    );
    Process::builder("sh")
        .args(["-c", &script])
        .service(service)
        .stop_grace(GRACE)
}

/// A program deaf to SIGTERM, which only a SIGKILL ends; it writes its pid in `pid_file`.
fn deaf(service: &str, pid_file: &Path) -> ProcessBuilder {
    let script = format!(
        "trap '' TERM; echo $$ > {:?}; while :; do sleep 0.05; done",
        pid_file.display().to_string()
    );
    Process::builder("sh")
        .args(["-c", &script])
        .service(service)
        .stop_grace(GRACE)
}

/// The pid of the child in `file` once it ignores SIGTERM (it has become `sleep`); the file
/// is removed, for the next run to write.
async fn deaf_child(file: &Path) -> u32 {
    let child = read_pid(file).await;
    let comm = format!("/proc/{child}/comm");
    eventually("the child ignores SIGTERM", || {
        std::fs::read_to_string(&comm).is_ok_and(|c| c == "sleep\n")
    })
    .await;
    std::fs::remove_file(file).unwrap();
    child
}

fn stop_spawned(
    process: &Process,
) -> tokio::task::JoinHandle<
    Result<Option<std::process::ExitStatus>, tower_monitor::trigger::ProcessError>,
> {
    let process = process.clone();
    tokio::spawn(async move { process.stop().await })
}

/// Whether the lock file's record says its holder is stopping the program.
fn says_stopping(lock: &Path) -> bool {
    std::fs::read_to_string(lock).is_ok_and(|text| text.contains("\nstopping_until "))
}

/// Whether `service` logged a line that contains `text`.
fn said(service: &str, text: &str) -> bool {
    !log()
        .lines_with(&[&format!("service={service} "), text])
        .is_empty()
}

fn taken_for_another_supervisor(service: &str) -> bool {
    said(service, "another supervisor")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_while_a_stop_waits_for_what_the_program_left_starts_it_after() {
    const SERVICE: &str = "start-after-own-stop";
    record_logs();
    let dir = scratch(SERVICE);
    let child_file = dir.join("child");
    let process = leaving_a_child(SERVICE, &child_file)
        .lock_file(dir.join("app.lock"))
        .build();
    process.trigger().await.unwrap();
    let child = deaf_child(&child_file).await;
    let stopping = stop_spawned(&process);
    tokio::time::timeout(WITHIN, process.exited())
        .await
        .expect("the leader ends on SIGTERM");
    assert!(
        alive(child),
        "the stop waits for the deaf child until its SIGKILL"
    );

    tokio::time::timeout(WITHIN, process.trigger())
        .await
        .expect("the start waits for the stop, which is bounded")
        .unwrap();

    assert!(process.is_running(), "not started once the stop ended");
    assert_eq!(process.starts(), 2);
    assert!(
        !taken_for_another_supervisor(SERVICE),
        "its own stop was taken for another's"
    );
    eventually("the SIGKILL reached the deaf child", || !alive(child)).await;
    assert!(stopping.await.unwrap().unwrap().is_some(), "it was running");
    let next_child = deaf_child(&child_file).await;
    process.stop().await.unwrap();
    eventually("the second run's child is killed", || !alive(next_child)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_while_a_stop_waits_for_the_program_starts_it_after() {
    const SERVICE: &str = "start-after-own-stop-no-lock";
    record_logs();
    let dir = scratch(SERVICE);
    let pid_file = dir.join("pid");
    let process = deaf(SERVICE, &pid_file).build();
    process.trigger().await.unwrap();
    let first = read_pid(&pid_file).await;
    std::fs::remove_file(&pid_file).unwrap();
    let stopping = stop_spawned(&process);
    eventually("the stop began", || {
        said(SERVICE, "stopping the backend program")
    })
    .await;

    tokio::time::timeout(WITHIN, process.trigger())
        .await
        .expect("the start waits for the stop, which is bounded")
        .unwrap();

    assert_eq!(
        process.starts(),
        2,
        "taken for running as it was being stopped"
    );
    assert!(stopping.await.unwrap().unwrap().is_some(), "it was running");
    assert!(!alive(first));
    let second = read_pid(&pid_file).await;
    assert_ne!(second, first);
    assert!(process.is_running() && alive(second));
    process.stop_with(Duration::ZERO).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_while_the_lock_holder_stops_the_program_waits_and_starts_it() {
    const SERVICE: &str = "start-after-holders-stop";
    record_logs();
    let dir = scratch(SERVICE);
    let (lock, child_file) = (dir.join("app.lock"), dir.join("child"));
    let gateway = || {
        leaving_a_child(SERVICE, &child_file)
            .lock_file(&lock)
            .build()
    };
    let (holder, other) = (gateway(), gateway());
    holder.trigger().await.unwrap();
    let child = deaf_child(&child_file).await;
    let stopping = stop_spawned(&holder);
    eventually("the holder's stop began", || {
        said(SERVICE, "stopping the backend program")
    })
    .await;
    let triggered = tokio::spawn(other.trigger());
    // Not async: it cannot wait, and says why.
    let refused = other.start();

    tokio::time::timeout(WITHIN, triggered)
        .await
        .expect("the start waits for the holder's stop, which its record bounds")
        .unwrap()
        .unwrap();

    assert!(other.is_running(), "taken for running under the holder");
    // Said so, or that its own trigger's look for a leftover holds the lock file meanwhile.
    let refused = refused.unwrap_err().to_string();
    assert!(
        refused.contains("a trigger starts it once that is done"),
        "{refused}"
    );
    assert_eq!((holder.starts(), other.starts()), (1, 1));
    assert!(stopping.await.unwrap().unwrap().is_some(), "it was running");
    eventually("the SIGKILL reached the deaf child", || !alive(child)).await;
    assert!(!says_stopping(&lock), "the new holder's record");
    let next_child = deaf_child(&child_file).await;
    other.stop().await.unwrap();
    eventually("the second run's child is killed", || !alive(next_child)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_while_the_lock_holder_stops_a_leftover_waits_and_starts_it() {
    const SERVICE: &str = "start-after-holders-cleanup";
    record_logs();
    let lock = scratch(SERVICE).join("app.lock");
    let deaf = Deaf::start();
    std::fs::write(&lock, deaf.record()).unwrap();
    let gateway = || {
        Process::builder("sleep")
            .arg("30")
            .service(SERVICE)
            .lock_file(&lock)
            .stop_grace(GRACE)
            .build()
    };
    let (cleaner, other) = (gateway(), gateway());
    // A stop with nothing of its own to stop, as a gateway's idle stop or shutdown.
    let cleaning = stop_spawned(&cleaner);
    let pgid = format!("pgid={}", deaf.pid());
    let began = [
        &format!("service={SERVICE} ") as &str,
        "left its process group running",
        &pgid,
    ];
    eventually("the cleaner's stop began", || {
        !log().lines_with(&began).is_empty()
    })
    .await;

    tokio::time::timeout(WITHIN, other.trigger())
        .await
        .expect("the start waits for the cleanup, which its record bounds")
        .unwrap();

    assert!(other.is_running(), "taken for running under the cleaner");
    assert!(
        !alive(deaf.pid()),
        "started beside what the dead supervisor left"
    );
    assert!(cleaning.await.unwrap().unwrap().is_none());
    other.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_given_up_on_leaves_the_program_to_its_holder_for_others() {
    const SERVICE: &str = "start-after-stop-given-up";
    record_logs();
    let dir = scratch(SERVICE);
    let (lock, pid_file) = (dir.join("app.lock"), dir.join("pid"));
    let gateway = || {
        deaf(SERVICE, &pid_file)
            .lock_file(&lock)
            .stop_grace(Duration::from_secs(30))
            .build()
    };
    let (holder, other) = (gateway(), gateway());
    holder.trigger().await.unwrap();
    read_pid(&pid_file).await;
    // As an idle stop cut short by its trigger_timeout: its SIGTERM is ignored.
    let given_up = tokio::time::timeout(Duration::from_millis(300), holder.stop()).await;
    assert!(given_up.is_err() && holder.is_running());
    assert!(
        !says_stopping(&lock),
        "the record still says it is being stopped"
    );

    let began = Instant::now();
    tokio::time::timeout(WITHIN, other.trigger())
        .await
        .expect("the start waited for a stop given up on")
        .unwrap();

    assert!(began.elapsed() < Duration::from_secs(5), "it waited");
    assert_eq!(other.starts(), 0, "started beside the holder's program");
    assert!(!other.is_running());
    holder.stop_with(Duration::ZERO).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_after_one_given_up_on_says_so_too_and_a_start_elsewhere_waits_for_it() {
    const SERVICE: &str = "start-after-stop-after-one-given-up";
    record_logs();
    let dir = scratch(SERVICE);
    let (lock, pid_file) = (dir.join("app.lock"), dir.join("pid"));
    let gateway = || deaf(SERVICE, &pid_file).lock_file(&lock).build();
    let (holder, other) = (gateway(), gateway());
    holder.trigger().await.unwrap();
    let pid = read_pid(&pid_file).await;
    std::fs::remove_file(&pid_file).unwrap();
    // Its SIGTERM is ignored, and its SIGKILL due in 3 s: cut short before that, as an idle
    // stop by its trigger_timeout.
    let given_up =
        tokio::time::timeout(Duration::from_millis(300), holder.stop_with(3 * GRACE)).await;
    assert!(given_up.is_err() && holder.is_running());
    // A second stop (the gateway's shutdown, the next idle stop): it kills at the first one's
    // deadline. Polled once, it has joined.
    let second = holder.clone();
    let mut second = Box::pin(async move { second.stop().await });
    assert!(futures::poll!(&mut second).is_pending());
    let stopping = tokio::spawn(second);

    tokio::time::timeout(WITHIN, other.trigger())
        .await
        .expect("the start waits for the holder's stop, which its record bounds")
        .unwrap();

    assert_eq!(
        other.starts(),
        1,
        "taken for running under the holder as its second stop ran"
    );
    assert!(!alive(pid));
    assert!(stopping.await.unwrap().unwrap().is_some(), "it was running");
    assert!(!says_stopping(&lock), "the new holder's record");
    other.stop_with(Duration::ZERO).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_others_may_have_written_saying_stopping_is_not_waited_for() {
    use std::os::unix::fs::PermissionsExt;
    const SERVICE: &str = "start-after-untrusted-stopping";
    record_logs();
    let lock = scratch(SERVICE).join("app.lock");
    let gateway = || {
        Process::builder("sleep")
            .arg("30")
            .service(SERVICE)
            .lock_file(&lock)
            .build()
    };
    let (holder, other) = (gateway(), gateway());
    holder.trigger().await.unwrap();
    // What anyone its group holds could write: a stop that would end in an hour.
    let hour_ahead = std::time::SystemTime::now() + Duration::from_secs(3600);
    let until = hour_ahead.duration_since(std::time::UNIX_EPOCH).unwrap();
    let record = std::fs::read_to_string(&lock).unwrap();
    let forged = format!("{record}stopping_until {}\n", until.as_millis());
    std::fs::write(&lock, forged).unwrap();
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o664)).unwrap();

    tokio::time::timeout(WITHIN, other.trigger())
        .await
        .expect("waited for a stop that a record others may write says runs")
        .unwrap();

    assert_eq!(other.starts(), 0);
    assert!(taken_for_another_supervisor(SERVICE));
    holder.stop().await.unwrap();
}
