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

/// Whether the group `pgid` has a member, zombies included: one signal, no blocking I/O.
pub(crate) fn has_members(pgid: u32) -> bool {
    group(pgid).is_ok_and(|id| killpg(id, None).is_ok())
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
    // The first one found is enough: a stop asks this every few milliseconds.
    let mut any = false;
    each_live_member(pgid, |_| {
        any = true;
        false
    })?;
    Some(any)
}

#[cfg(not(target_os = "linux"))]
fn live_member_in_proc(_pgid: u32) -> Option<bool> {
    None
}

/// A process of a group that is not a zombie, and when it started.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) pid: u32,
    /// In clock ticks after boot (`/proc/PID/stat` field 22): with the boot, it tells a
    /// process from a later one given the same id.
    pub(crate) start_time: u64,
}

/// The processes of group `pgid` that are not zombies; `None` if `/proc` cannot be read.
#[cfg(target_os = "linux")]
pub(crate) fn live_members(pgid: u32) -> Option<Vec<Member>> {
    let mut members = Vec::new();
    each_live_member(pgid, |member| {
        members.push(member);
        true
    })?;
    Some(members)
}

/// Calls `each` with the processes of group `pgid` that are not zombies, while it returns
/// true; `None` if `/proc` cannot be read.
#[cfg(target_os = "linux")]
fn each_live_member(pgid: u32, mut each: impl FnMut(Member) -> bool) -> Option<()> {
    let entries = std::fs::read_dir("/proc").ok()?;
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(stat) = Stat::parse(&stat) {
            let member = Member {
                pid,
                start_time: stat.start_time,
            };
            if stat.group == pgid && !matches!(stat.state, "Z" | "X") && !each(member) {
                break;
            }
        }
    }
    Some(())
}

/// When process `pid` started, in clock ticks after boot; `None` if it is gone.
#[cfg(target_os = "linux")]
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Stat::parse(&stat).map(|stat| stat.start_time)
}

/// What is read from a `/proc/PID/stat` line: `pid (comm) state ppid pgrp …`, where `comm`
/// may itself hold spaces and parentheses.
#[cfg(target_os = "linux")]
struct Stat<'a> {
    state: &'a str,
    group: u32,
    start_time: u64,
}

#[cfg(target_os = "linux")]
impl<'a> Stat<'a> {
    fn parse(stat: &'a str) -> Option<Self> {
        let after_comm = &stat[stat.rfind(')')? + 1..];
        let mut fields = after_comm.split_whitespace();
        let state = fields.next()?;
        let _parent = fields.next()?;
        let group = fields.next()?.parse().ok()?;
        // Field 22 of the line, counted from `pid` as 1: the 17th after the group (field 5).
        let start_time = fields.nth(16)?.parse().ok()?;
        Some(Self {
            state,
            group,
            start_time,
        })
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn reads_state_group_and_start_time_past_an_odd_command_name() {
        let stat = "4242 (my (odd) name) S 1 4240 4240 0 -1 4194560 \
                    10 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100";
        let read = Stat::parse(stat).unwrap();
        assert_eq!(
            (read.state, read.group, read.start_time),
            ("S", 4240, 987654)
        );
        assert!(Stat::parse("4242 (short) S 1 4240 4240 0").is_none());
        assert!(Stat::parse("garbage").is_none());
    }

    #[test]
    fn reads_this_process_start_time_and_group() {
        let me = std::process::id();
        let started = start_time(me).expect("this process runs");
        let group = nix::unistd::getpgrp().as_raw() as u32;
        let members = live_members(group).expect("/proc is readable");
        assert!(members.contains(&Member {
            pid: me,
            start_time: started
        }));
    }

    #[test]
    fn refuses_groups_that_would_signal_too_much() {
        assert!(signal(0, SIGTERM).is_err());
        assert!(signal(1, SIGTERM).is_err());
        assert!(signal(u32::MAX, SIGTERM).is_err());
    }
}
