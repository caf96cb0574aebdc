//! A lock file, so that one supervisor at a time runs a program, across programs: of two
//! gateways with the same configuration, the second sees the backend the first started running
//! and does not start it again.
//!
//! The lock is an advisory `flock` held by the supervising program while the backend runs; the
//! kernel drops it when that program exits, however it exits, so a stale lock cannot remain.
//! The file also holds the backend's process id, for people (the lock decides, not the id).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The lock, held: released (and the id in the file cleared) when dropped.
pub(super) struct RunLock(Flock<File>);

/// Who may run the program.
pub(super) enum Claim {
    /// We do: the lock is ours.
    Ours(RunLock),
    /// Another supervisor runs it; the id it wrote, if readable.
    Elsewhere(Option<u32>),
}

/// Takes the lock at `path` (creating the file) unless another supervisor holds it.
pub(super) fn claim(path: &Path) -> io::Result<Claim> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Claim::Ours(RunLock(lock))),
        Err((file, Errno::EWOULDBLOCK)) => {
            let mut text = [0u8; 16];
            let read = file.read_at(&mut text, 0).unwrap_or(0);
            let pid = std::str::from_utf8(&text[..read])
                .ok()
                .and_then(|t| t.trim().parse().ok());
            Ok(Claim::Elsewhere(pid))
        }
        Err((_, errno)) => Err(errno.into()),
    }
}

impl RunLock {
    /// Writes the running program's id into the file.
    pub(super) fn record(&self, pid: u32) {
        let _ = self.0.set_len(0);
        let _ = self.0.write_all_at(format!("{pid}\n").as_bytes(), 0);
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Cleared before the lock goes (with the file, right after): an id in an unlocked file
        // would only mislead a reader.
        let _ = self.0.set_len(0);
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
        first.record(4242);
        assert!(matches!(
            claim(&path).unwrap(),
            Claim::Elsewhere(Some(4242))
        ));
        drop(first);
        assert!(matches!(claim(&path).unwrap(), Claim::Ours(_)));
        let _ = std::fs::remove_file(&path);
    }
}
