//! A lock file, so that one supervisor at a time runs a program, across programs: of two
//! gateways with the same configuration, the second sees the backend the first started running
//! and does not start it again.
//!
//! The lock is an advisory `flock` held by the supervising program while the backend runs; the
//! kernel drops it when that program exits, however it exits, so a stale lock cannot remain.
//! The file also holds a [`Record`] of the running backend, which a clean stop clears: one
//! found in a file whose lock was free was left by a supervisor that died (see `leftover`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use tokio::time::Instant;

/// The most of the file that is read: a record is a few short lines.
const MOST: usize = 4096;

/// The lock, held: released (and the record in the file cleared, unless kept) when dropped.
pub(super) struct RunLock {
    file: Flock<File>,
    clear: bool,
}

/// Who may run the program.
pub(super) enum Claim {
    /// We do: the lock is ours.
    Ours(RunLock),
    /// Another supervisor holds the lock (or this one, in another part); what it wrote, if
    /// readable.
    Elsewhere(Option<Record>),
}

/// What the file says of the program: its process id (which is its group's id) on the first
/// line, alone, as people and earlier versions read it; then `key value` lines that tell its
/// group from a later one given the same id. A file of earlier versions has the id only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) pid: u32,
    /// When it started, in clock ticks after boot (`/proc/PID/stat` field 22).
    pub(super) start_time: Option<u64>,
    /// The boot it ran in (`/proc/sys/kernel/random/boot_id`): a start time means nothing in
    /// another.
    pub(super) boot_id: Option<String>,
    /// The run's own id, also in the program's environment, which what it starts inherits.
    pub(super) run_id: Option<String>,
    /// Written by a holder as it begins to stop the program (its own, or what a supervisor
    /// that died left): when it kills what is left at the latest, in milliseconds since the
    /// Unix epoch. Another supervisor's start waits for such a holder rather than take the
    /// program for running, unless others may write the file; in a file whose lock is free it
    /// means nothing.
    pub(super) stopping_until: Option<u64>,
}

impl Record {
    fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.starts_with('#'));
        let pid = lines.next()?.parse().ok()?;
        let mut record = Self {
            pid,
            ..Self::default()
        };
        for line in lines {
            let Some((key, value)) = line.split_once(' ') else {
                continue;
            };
            let value = value.trim();
            match key {
                "start_time" => record.start_time = value.parse().ok(),
                "boot_id" => record.boot_id = Some(value.to_string()),
                "run_id" => record.run_id = Some(value.to_string()),
                "stopping_until" => record.stopping_until = value.parse().ok(),
                // Written by a later version: what it adds is not needed here.
                _ => {}
            }
        }
        Some(record)
    }

    /// How long the holder that wrote it stops the program still, at most, if it says it does
    /// (zero once that is past).
    pub(super) fn stopping_for(&self) -> Option<Duration> {
        let until = Duration::from_millis(self.stopping_until?);
        // Too far to be a time here: as long as can be.
        let Some(until) = UNIX_EPOCH.checked_add(until) else {
            return Some(Duration::MAX);
        };
        Some(until.duration_since(SystemTime::now()).unwrap_or_default())
    }

    /// The record, saying that its holder stops the program and kills what is left by
    /// `deadline`.
    pub(super) fn stopping(&self, deadline: Instant) -> Self {
        let ahead = deadline.saturating_duration_since(Instant::now());
        // A deadline too far to write (a grace of years) is written as the farthest.
        let until = SystemTime::now()
            .checked_add(ahead)
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
            .map_or(u64::MAX, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        Self {
            stopping_until: Some(until),
            ..self.clone()
        }
    }

    fn to_text(&self) -> String {
        let mut text = format!("{}\n", self.pid);
        if let Some(start_time) = self.start_time {
            text.push_str(&format!("start_time {start_time}\n"));
        }
        if let Some(boot_id) = &self.boot_id {
            text.push_str(&format!("boot_id {boot_id}\n"));
        }
        if let Some(run_id) = &self.run_id {
            text.push_str(&format!("run_id {run_id}\n"));
        }
        if let Some(until) = self.stopping_until {
            text.push_str(&format!("stopping_until {until}\n"));
        }
        text
    }
}

/// Takes the lock at `path` (creating the file) unless another supervisor holds it.
pub(super) fn claim(path: &Path) -> io::Result<Claim> {
    use std::os::unix::fs::OpenOptionsExt;
    // Made writable by this user only whatever the umask (002 is common), or its record would
    // not be acted upon (`others_may_write`).
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(file) => Ok(Claim::Ours(RunLock { file, clear: true })),
        Err((file, Errno::EWOULDBLOCK)) => {
            let mut record = read(&file);
            // Believed, it holds a start back until the time it says: not from a file that
            // others may have written (as a record left by a dead holder is not acted upon).
            if others_may_write(&file) {
                record.iter_mut().for_each(|r| r.stopping_until = None);
            }
            Ok(Claim::Elsewhere(record))
        }
        Err((_, errno)) => Err(errno.into()),
    }
}

/// Whether the file at `path` holds a record, read without the lock (no file holds none).
pub(super) fn holds_record(path: &Path) -> bool {
    File::open(path).is_ok_and(|file| read(&file).is_some())
}

/// See [`RunLock::others_may_write`].
fn others_may_write(file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = file.metadata() else {
        return true;
    };
    meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o022 != 0
}

fn read(file: &File) -> Option<Record> {
    let mut text = vec![0u8; MOST];
    let read = file.read_at(&mut text, 0).ok()?;
    Record::parse(std::str::from_utf8(&text[..read]).ok()?)
}

impl RunLock {
    /// Writes the running program's record into the file.
    pub(super) fn record(&self, record: &Record) {
        // Written over the last one, then cut to length: emptied first, it would read as no
        // record to another supervisor's start meanwhile, which takes the program for running.
        let text = record.to_text();
        let _ = self.file.write_all_at(text.as_bytes(), 0);
        let _ = self.file.set_len(text.len() as u64);
    }

    /// The record in the file as the lock was taken: left by a holder that died, as a clean
    /// stop clears it.
    pub(super) fn left(&self) -> Option<Record> {
        read(&self.file)
    }

    /// Whether users other than this one may have written the record (the file is theirs, or
    /// its group or anyone may write it): then it is not acted upon, or they could have any of
    /// this user's process groups (all of them, as root) stopped, as a start time and the boot
    /// id are readable by all. Its group may hold other users, even this user's own group (a
    /// shared `users`, root's `root`): which it holds is not known here.
    pub(super) fn others_may_write(&self) -> bool {
        others_may_write(&self.file)
    }

    /// Releases the lock leaving the record in the file, for the next holder to deal with.
    pub(super) fn release_keeping_record(mut self) {
        self.clear = false;
    }

    /// Leaves the record in the file when the lock goes, unless [`clear_record`] comes first:
    /// what it records is being dealt with, which a holder dropped halfway (its runtime shut
    /// down) leaves to the next.
    ///
    /// [`clear_record`]: Self::clear_record
    pub(super) fn keep_record(&mut self) {
        self.clear = false;
    }

    /// Clears the record now: what it recorded is dealt with.
    pub(super) fn clear_record(&self) {
        let _ = self.file.set_len(0);
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Cleared before the lock goes (with the file, right after): a record in an unlocked
        // file tells the next holder that its program may still run. A file that holds
        // something else (a lock_file set to the wrong file) is a stop's to look at only.
        if self.clear && read(&self.file).is_some() {
            let _ = self.file.set_len(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_sees_the_first_and_its_id_until_it_is_released() {
        let path = std::env::temp_dir().join(format!("tower-monitor-lock-{}", std::process::id()));
        let Claim::Ours(first) = claim(&path).unwrap() else {
            panic!("a fresh lock file is taken")
        };
        let record = Record {
            pid: 4242,
            start_time: Some(77),
            boot_id: Some("b00t".into()),
            run_id: Some("c0ffee".into()),
            stopping_until: Some(1_700_000_000_000),
        };
        first.record(&record);
        assert!(matches!(
            claim(&path).unwrap(),
            Claim::Elsewhere(Some(seen)) if seen == record
        ));
        drop(first);
        let Claim::Ours(second) = claim(&path).unwrap() else {
            panic!("a released lock is taken")
        };
        assert_eq!(second.left(), None, "a clean release clears the record");
        second.record(&record);
        second.release_keeping_record();
        let Claim::Ours(third) = claim(&path).unwrap() else {
            panic!("a released lock is taken")
        };
        assert_eq!(third.left(), Some(record));
        drop(third);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_record_said_stopping_tells_for_how_long_still() {
        let record = Record {
            pid: 4242,
            ..Record::default()
        };
        assert_eq!(record.stopping_for(), None);
        let ahead = Duration::from_secs(10);
        let said = Record::parse(&record.stopping(Instant::now() + ahead).to_text()).unwrap();
        let left = said.stopping_for().unwrap();
        assert!(
            left <= ahead && left > ahead - Duration::from_secs(5),
            "{left:?}"
        );
        let past = record.stopping(Instant::now());
        assert_eq!(past.stopping_for(), Some(Duration::ZERO));
        let far = Record {
            stopping_until: Some(u64::MAX),
            ..record
        };
        let century = Duration::from_secs(100 * 365 * 24 * 3600);
        assert!(far.stopping_for().is_some_and(|left| left > century));
    }

    #[test]
    fn reads_an_id_alone_as_earlier_versions_wrote_it() {
        let old = Record::parse("4242\n").unwrap();
        assert_eq!((old.pid, old.start_time, old.run_id), (4242, None, None));
        assert_eq!(Record::parse(""), None);
        assert_eq!(Record::parse("not a pid\n"), None);
        let text = "17\nstart_time 5\nnew_field x\nboot_id b\n";
        let new = Record::parse(text).unwrap();
        assert_eq!(new.start_time, Some(5));
        assert_eq!(new.boot_id.as_deref(), Some("b"));
    }
}
