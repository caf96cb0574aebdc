//! A lock file's record left by a supervisor that died: only a process group shown to be that
//! run's (its leader's start time in the same boot, or the run's id in a member's environment)
//! is stopped; one gone, or whose id now belongs to someone else, or an id alone as earlier
//! versions wrote it, leads to no signal.

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use tower_monitor::Trigger;
use tower_monitor::trigger::Process;

use crate::process_support::{alive, eventually, log, record_logs, scratch};

const SERVICE: &str = "leftover-records";

/// `sleep 30` in a process group of its own, as a program a killed supervisor left would be;
/// killed and reaped when dropped.
struct Stray(std::process::Child);

impl Stray {
    fn start() -> Self {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        Self(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Stray {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// When `pid` started, in clock ticks after boot (`/proc/PID/stat` field 22).
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 1..];
    after_comm
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap()
}

fn boot_id() -> String {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    id.trim().to_string()
}

fn backend(lock: &Path) -> Process {
    Process::builder("sleep")
        .arg("30")
        .service(SERVICE)
        .lock_file(lock)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_group_the_record_shows_to_be_the_dead_supervisors_is_stopped() {
    record_logs();
    let lock = scratch("leftover-records").join("app.lock");
    let (stray, other) = (Stray::start(), Stray::start());
    let (pid, other_pid) = (stray.pid(), other.pid());
    let (start, boot) = (start_time(pid), boot_id());
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();

    // Each record leaves the stray group alone, and the program starts.
    let untouched = [
        (format!("{pid}\n"), "cannot show that this process group"),
        (
            format!(
                "{pid}\nstart_time {}\nboot_id {boot}\nrun_id 0123abcd\n",
                start + 1
            ),
            "now belongs to other processes",
        ),
        (
            format!("{pid}\nstart_time {start}\nboot_id another-boot\n"),
            "nothing of that run is left",
        ),
        (
            format!("{gone_pid}\nstart_time 1\nboot_id {boot}\n"),
            "nothing of that run is left",
        ),
    ];
    for (record, said) in &untouched {
        std::fs::write(&lock, record).unwrap();
        let process = backend(&lock);
        process.trigger().await.unwrap();
        assert!(process.is_running(), "{record:?}: the program starts");
        assert!(alive(pid), "{record:?}: the stray group was signalled");
        log().line_with(&[SERVICE, said]);
        process.stop().await.unwrap();
    }

    // A record that shows the group is the run's, in a file that anyone, or its group (which
    // may hold other users), may write: left alone.
    let matching = format!("{pid}\nstart_time {start}\nboot_id {boot}\n");
    for mode in [0o666, 0o664] {
        std::fs::write(&lock, &matching).unwrap();
        std::fs::set_permissions(&lock, Permissions::from_mode(mode)).unwrap();
        let process = backend(&lock);
        process.trigger().await.unwrap();
        assert!(
            alive(pid),
            "a record in a file of mode {mode:o} was acted upon"
        );
        log().line_with(&[SERVICE, "is not this user's alone to write"]);
        process.stop().await.unwrap();
    }
    std::fs::set_permissions(&lock, Permissions::from_mode(0o644)).unwrap();

    // The same in the user's own file: a start (not async) refuses, a trigger stops it.
    std::fs::write(&lock, &matching).unwrap();
    let process = backend(&lock);
    let refused = process.start().unwrap_err().to_string();
    assert!(
        refused.contains("a trigger or a stop stops it first"),
        "{refused}"
    );
    assert!(alive(pid) && !process.is_running());
    process.trigger().await.unwrap();
    assert!(
        !alive(pid),
        "the trigger stopped the leftover group before starting"
    );
    assert!(process.is_running());
    log().line_with(&[
        SERVICE,
        "left its process group running",
        &format!("pgid={pid}"),
    ]);
    process.stop().await.unwrap();

    // A stop that finds nothing of its own to stop stops it too (a gateway's shutdown).
    let other_start = start_time(other_pid);
    let record = format!("{other_pid}\nstart_time {other_start}\nboot_id {boot}\n");
    std::fs::write(&lock, record).unwrap();
    assert!(backend(&lock).stop().await.unwrap().is_none());
    eventually("the stop stopped the leftover group", || !alive(other_pid)).await;
}

/// Whether this test runs as root, who may start a process as another user.
fn root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_group_that_carries_the_run_id_is_left_alone() {
    const SERVICE: &str = "leftover-other-user";
    if !root() {
        eprintln!("skipped: only root starts a process as another user");
        return;
    }
    record_logs();
    let lock = scratch(SERVICE).join("app.lock");
    // Another user who read the run's id in the lock file and took its group's id.
    let mut theirs = std::process::Command::new("sleep")
        .arg("30")
        .env("TOWER_MONITOR_RUN_ID", "0123abcd")
        .process_group(0)
        .uid(65534)
        .gid(65534)
        .spawn()
        .unwrap();
    let pid = theirs.id();
    let record = format!("{pid}\nboot_id {}\nrun_id 0123abcd\n", boot_id());
    std::fs::write(&lock, record).unwrap();
    let process = Process::builder("sleep")
        .arg("30")
        .service(SERVICE)
        .lock_file(&lock)
        .build();
    process.trigger().await.unwrap();
    let signalled = !alive(pid);
    let _ = theirs.kill();
    let _ = theirs.wait();
    assert!(!signalled, "another user's group was taken for the run's");
    log().line_with(&[SERVICE, "now belongs to other processes"]);
    process.stop().await.unwrap();
}
