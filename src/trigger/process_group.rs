//! Signals to a whole process group: a program started in a group of its own (its id is the
//! group's id) is stopped with everything it started, unless they left the group themselves.

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

pub(crate) use nix::sys::signal::Signal::SIGKILL;

/// Sends `signal` to the group `pgid`; a group that no longer exists is not an error.
pub(crate) fn signal(pgid: u32, signal: Signal) -> std::io::Result<()> {
    match killpg(group(pgid)?, signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}

fn group(pgid: u32) -> std::io::Result<Pid> {
    // Zero or a negative id would signal our own group or every process we may signal.
    match i32::try_from(pgid) {
        Ok(id) if id > 1 => Ok(Pid::from_raw(id)),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{pgid} is not a process group of a child"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_groups_that_would_signal_too_much() {
        assert!(signal(0, SIGKILL).is_err());
        assert!(signal(1, SIGKILL).is_err());
        assert!(signal(u32::MAX, SIGKILL).is_err());
    }
}
