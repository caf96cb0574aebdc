//! Signals to a whole process group: a program started in a group of its own (its id is the
//! group's id) is stopped with everything it started, unless they left the group themselves.

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

pub(crate) use nix::sys::signal::Signal::{SIGKILL, SIGTERM};

/// Sends `signal` to the group `pgid`; a group that no longer exists is not an error.
pub(crate) fn signal(pgid: u32, signal: Signal) -> std::io::Result<()> {
    match killpg(group(pgid)?, signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}

/// Whether the group `pgid` still has a member that runs (zombies waiting for their parent to
/// reap them do not count: on Linux they are told apart through `/proc`).
pub(crate) fn has_live_members(pgid: u32) -> bool {
    let Ok(id) = group(pgid) else { return false };
    match killpg(id, None) {
        Err(_) => false,
        Ok(()) => live_member_in_proc(pgid).unwrap_or(true),
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

/// `Some(whether a process of group pgid is not a zombie)`, or `None` where `/proc` cannot say.
#[cfg(target_os = "linux")]
fn live_member_in_proc(pgid: u32) -> Option<bool> {
    let entries = std::fs::read_dir("/proc").ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((state, group)) = state_and_group(&stat) {
            if group == pgid && !matches!(state, "Z" | "X") {
                return Some(true);
            }
        }
    }
    Some(false)
}

#[cfg(not(target_os = "linux"))]
fn live_member_in_proc(_pgid: u32) -> Option<bool> {
    None
}

/// The state and process group from a `/proc/PID/stat` line: `pid (comm) state ppid pgrp …`,
/// where `comm` may itself hold spaces and parentheses.
#[cfg(target_os = "linux")]
fn state_and_group(stat: &str) -> Option<(&str, u32)> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace();
    let state = fields.next()?;
    let _parent = fields.next()?;
    let group = fields.next()?.parse().ok()?;
    Some((state, group))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn reads_state_and_group_past_an_odd_command_name() {
        let stat = "4242 (my (odd) name) S 1 4240 4240 0 -1 4194560";
        assert_eq!(state_and_group(stat), Some(("S", 4240)));
        assert_eq!(state_and_group("garbage"), None);
    }

    #[test]
    fn refuses_groups_that_would_signal_too_much() {
        assert!(signal(0, SIGTERM).is_err());
        assert!(signal(1, SIGTERM).is_err());
        assert!(signal(u32::MAX, SIGTERM).is_err());
    }
}
