//! What a supervisor that died without stopping its program left running, found through the
//! lock file's record and stopped before this supervisor runs the program, or when its stop
//! finds nothing of its own to stop.
//!
//! A killed supervisor's program gets SIGTERM from the kernel (`spawner`), but one that ignores
//! it survives, and what a program started in turn (a wrapper script's server) gets nothing.
//! Left running, either holds the backend's port: the next supervisor finds the backend up,
//! never started by it, and can never stop it.
//!
//! Only a group shown to be that run's is signalled: an id alone could be someone else's by
//! now. The group's id cannot be given to a new process while any member is left, so the group
//! is the run's if one of its live members is: its leader, with the start time and the boot
//! recorded, or any process of this user whose environment holds the run's id (what the
//! program started, its leader gone). A record that cannot show it (an id alone, as earlier
//! versions wrote it; a system without `/proc`) leads to no signal, only a warning. The check is made again
//! before the SIGKILL, as the group may empty during the grace. Left open: between a check and
//! its signal the group would have to empty and its id go to a new group, which takes the
//! system's process ids to wrap around within that moment (a pidfd names a process, not a
//! group, so it cannot close that).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::lock::{self, Claim, Record, RunLock};
use super::stop::{AFTER_KILL, GROUP_POLL, has_live_members};
use super::{ProcessError, Shared};
use crate::trigger::process_group as group;

/// The variable in the program's environment (with a lock file, on Linux) that holds its run's
/// id, so that what it starts can be told apart once it is gone.
pub(super) const RUN_ID_VAR: &str = "TOWER_MONITOR_RUN_ID";

/// What the record left in a lock file stands for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Without `/proc` every record is `Unknown`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) enum Verdict {
    /// That run's group, with this many live members.
    Left(usize),
    /// Nothing of that run is left (or it ran before the last boot).
    Gone,
    /// The group's id is someone else's now: nothing of that run is left.
    Reused,
    /// Whether it is that run's cannot be told (a record with an id alone): left alone.
    Unknown,
    /// Other users may have written the record: left alone.
    Untrusted,
}

/// A fresh id for a run, if one can be made (Linux, where the record's guards are read).
#[cfg(target_os = "linux")]
pub(super) fn new_run_id() -> Option<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let mut random = std::fs::File::open("/dev/urandom").ok()?;
    random.read_exact(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(not(target_os = "linux"))]
pub(super) fn new_run_id() -> Option<String> {
    None
}

/// The record of the program just started as `pid` (not reaped yet, so its id is its own).
pub(super) fn describe(pid: u32, run_id: Option<String>) -> Record {
    #[cfg(target_os = "linux")]
    let (start_time, boot_id) = (group::start_time(pid), boot_id());
    #[cfg(not(target_os = "linux"))]
    let (start_time, boot_id) = (None, None);
    Record {
        pid,
        start_time,
        boot_id,
        run_id,
        stopping_until: None,
    }
}

#[cfg(target_os = "linux")]
fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_string())
}

/// The record a supervisor that died left in the lock file, if any, and what it stands for.
pub(super) fn left(lock: &RunLock) -> Option<(Record, Verdict)> {
    let record = lock.left()?;
    let verdict = if lock.others_may_write() {
        Verdict::Untrusted
    } else {
        judge(&record)
    };
    Some((record, verdict))
}

/// What `record` stands for now.
#[cfg(target_os = "linux")]
pub(super) fn judge(record: &Record) -> Verdict {
    if record.pid <= 1 || (record.start_time.is_none() && record.run_id.is_none()) {
        return Verdict::Unknown;
    }
    let boot = boot_id();
    if record.boot_id.is_some() && boot.is_some() && record.boot_id != boot {
        return Verdict::Gone;
    }
    let Some(members) = group::live_members(record.pid) else {
        return Verdict::Unknown;
    };
    if members.is_empty() {
        return Verdict::Gone;
    }
    // A start time tells a process only within its boot.
    let same_boot = record.boot_id.is_some() && record.boot_id == boot;
    let leader = |m: &group::Member| {
        same_boot && m.pid == record.pid && Some(m.start_time) == record.start_time
    };
    let carrier = |m: &group::Member| {
        record
            .run_id
            .as_deref()
            .is_some_and(|id| carries_run_id(m.pid, id))
    };
    if members.iter().any(|m| leader(m) || carrier(m)) {
        Verdict::Left(members.len())
    } else {
        Verdict::Reused
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn judge(_record: &Record) -> Verdict {
    Verdict::Unknown
}

/// Whether process `pid`, this user's, was started with the run's id in its environment
/// (unreadable counts as no). Another user's is not the run's whatever it holds: the id is
/// readable in the lock file, and a root supervisor reads every environment, so another user
/// could take a free group id, put the run's id in its environment, and have its group (and
/// what it put there, a setuid program say) signalled by root.
#[cfg(target_os = "linux")]
fn carries_run_id(pid: u32, run_id: &str) -> bool {
    if real_uid(pid) != Some(nix::unistd::getuid().as_raw()) {
        return false;
    }
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("{RUN_ID_VAR}={run_id}");
    environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes())
}

/// The real user of process `pid` (`/proc/PID/status`), if it runs.
#[cfg(target_os = "linux")]
fn real_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Says what a record found in the lock file stands for, unless it is `Left` (its stop says).
pub(super) fn report(
    shared: &Shared,
    service: Option<&str>,
    path: &Path,
    record: &Record,
    verdict: Verdict,
) {
    let service = service.map(tracing::field::display);
    let (program, pid, lock_file) = (&shared.program, record.pid, path.display());
    match verdict {
        Verdict::Left(_) => {}
        Verdict::Gone => tracing::info!(service, %program, pid, %lock_file,
            "the supervisor that ran the program last died without stopping it, but nothing \
             of that run is left: starting afresh"),
        Verdict::Reused => tracing::warn!(service, %program, pid, %lock_file,
            "the supervisor that ran the program last died without stopping it; its process \
             group id now belongs to other processes, which are left alone"),
        Verdict::Unknown => tracing::warn!(service, %program, pid, %lock_file,
            "the supervisor that ran the program last died without stopping it; its lock file \
             cannot show that this process group is still that run's (it holds an id alone, \
             as earlier versions wrote it, or this system has no /proc), so nothing is \
             signalled: if that program still runs, stop it yourself"),
        Verdict::Untrusted => tracing::warn!(service, %program, pid, %lock_file,
            "the supervisor that ran the program last died without stopping it; its lock file \
             is not this user's alone to write, so its record is not acted upon: if that \
             program still runs, stop it yourself, and make the file writable by this user \
             only"),
    }
}

/// Stops what a supervisor that died left of the program, if the lock file (free) records a
/// run whose group still has live members: SIGTERM to the group, SIGKILL to what is left after
/// `grace`. Whether it stopped something; clears the record once dealt with. Nothing is done
/// while the program runs here, or without a lock file, or when another supervisor holds it;
/// the lock is not even taken when the file holds no record.
///
/// It runs on a task of its own, one at a time: a caller that gives up (a trigger's timeout)
/// does not cut it short between the SIGTERM and the SIGKILL, leaving what ignores SIGTERM
/// running and its record gone; a runtime that shuts down meanwhile leaves the record. A
/// caller whose `grace` ends first (a shutdown's) has the SIGKILL sent by then.
pub(super) async fn reclaim(shared: &Arc<Shared>, grace: Duration) -> Result<bool, ProcessError> {
    if shared.spec.lock_file.is_none() {
        return Ok(false);
    }
    // Here, not in the task: which service asks is known in the caller's task only.
    shared.learn_service();
    let service = shared.asker();
    // A cleanup under way kills by this caller's deadline at the latest (a shutdown with no
    // grace, the gateway's third signal), as a stop of a running program does.
    let own = crate::deadline::saturating_after(Instant::now(), grace);
    {
        let mut state = shared.lock();
        state.kill_leftover_by = Some(state.kill_leftover_by.map_or(own, |at| at.min(own)));
    }
    let shared = Arc::clone(shared);
    let cleanup = tokio::spawn(async move {
        let _one = shared.reclaiming.lock().await;
        let _held = Held::new(&shared);
        reclaim_now(&shared, service.as_deref(), grace).await
    });
    match cleanup.await {
        Ok(result) => result,
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Cancelled: the runtime shuts down, dropping this caller's task too.
            Err(_) => std::future::pending().await,
        },
    }
}

async fn reclaim_now(
    shared: &Shared,
    service: Option<&str>,
    grace: Duration,
) -> Result<bool, ProcessError> {
    let Some(path) = shared.spec.lock_file.as_deref() else {
        return Ok(false);
    };
    if shared.lock().running.is_some() {
        return Ok(false);
    }
    let file = path.to_path_buf();
    let found = off_runtime(move || {
        // Taken for a look at an empty file, the lock would make another supervisor's start
        // meanwhile (another gateway's) take the program for running here, and start nothing.
        if !lock::holds_record(&file) {
            return None;
        }
        match lock::claim(&file) {
            Ok(Claim::Ours(mut lock)) => left(&lock).map(|(record, verdict)| {
                // Kept from here: a runtime that shuts down before this result is taken drops
                // the lock unseen, and the record of a group still running must outlive that.
                if matches!(verdict, Verdict::Left(_)) {
                    lock.keep_record();
                }
                (lock, record, verdict)
            }),
            _ => None,
        }
    })
    .await;
    let Some((lock, record, verdict)) = found else {
        return Ok(false);
    };
    let Verdict::Left(members) = verdict else {
        report(shared, service, path, &record, verdict);
        return Ok(false);
    };
    stop_group(shared, service, (path, &lock), &record, members, grace).await?;
    lock.clear_record();
    Ok(true)
}

/// Marks the lock file as held by this supervisor's own cleanup while it is: a start then
/// fails, rather than taking the lock for another supervisor's. Its end forgets the deadlines
/// of the stops that waited for it: each makes its own cleanup next.
struct Held<'a>(&'a Shared);

impl<'a> Held<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.lock().cleaning = true;
        Self(shared)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.cleaning = false;
        state.kill_leftover_by = None;
    }
}

/// Runs `work` (reading a file, or every process's `/proc` entry, which takes long with many
/// processes) on the blocking pool, not on a runtime worker.
pub(super) async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Cancelled: the runtime shuts down, dropping this task too.
            Err(_) => std::future::pending().await,
        },
    }
}

/// SIGTERM to the group of `record`, SIGKILL after `grace` to what is left, if still the run's.
async fn stop_group(
    shared: &Shared,
    service: Option<&str>,
    (path, lock): (&Path, &RunLock),
    record: &Record,
    members: usize,
    grace: Duration,
) -> Result<(), ProcessError> {
    let service = service.map(tracing::field::display);
    let (program, pgid, lock_file) = (&shared.program, record.pid, path.display());
    let failed = |reason: String| ProcessError::Stop {
        program: program.to_string(),
        pid: pgid,
        reason,
    };
    let own = crate::deadline::saturating_after(Instant::now(), grace);
    let kill_at = || shared.lock().kill_leftover_by.map_or(own, |at| at.min(own));
    // Another supervisor's start meanwhile waits for this stop rather than take the program
    // for running under this one; should this one die halfway, the next judges the record
    // as before, which this leaves as it was but for the word.
    lock.record(&record.stopping(kill_at()));
    tracing::warn!(service, %program, pgid, members, %lock_file, ?grace,
        "the supervisor that ran the program last died without stopping it, and left its \
         process group running: stopping that group (SIGTERM)");
    group::signal(pgid, group::SIGTERM).map_err(|e| failed(format!("SIGTERM: {e}")))?;
    while has_live_members(pgid).await && Instant::now() < kill_at() {
        tokio::time::sleep(GROUP_POLL).await;
    }
    // Judged again: emptied during the grace, the group's id may have been given out since.
    let again = record.clone();
    let verdict = off_runtime(move || judge(&again)).await;
    if verdict == Verdict::Reused {
        // Its leader ended on the SIGTERM, and what it left in the group does not carry the
        // run's id: not said stopped, as it runs, nor left for the next to say again.
        lock.clear_record();
        return Err(failed(
            "what is left in its process group is no longer shown to be that run's (its \
             leader is gone and no member carries the run's id), so it is left alone: stop it \
             yourself"
                .to_string(),
        ));
    }
    if let Verdict::Left(left) = verdict {
        tracing::warn!(service, %program, pgid, members = left, ?grace,
            "what the dead supervisor left did not stop within the grace: SIGKILL");
        group::signal(pgid, group::SIGKILL).map_err(|e| failed(format!("SIGKILL: {e}")))?;
        let deadline = Instant::now() + AFTER_KILL;
        while has_live_members(pgid).await {
            if Instant::now() >= deadline {
                return Err(failed(format!(
                    "still running {AFTER_KILL:?} after SIGKILL"
                )));
            }
            tokio::time::sleep(GROUP_POLL).await;
        }
    }
    tracing::warn!(service, %program, pgid, %lock_file,
        "stopped what the dead supervisor left of the program");
    Ok(())
}
