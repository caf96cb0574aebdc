//! The threads that start the backend programs, so that they end with this process.
//!
//! A supervisor that dies without stopping its programs (`kill -9`, an OOM kill, a crash)
//! leaves them running with nobody to stop them: their backend never sleeps again, and the
//! supervisor started next finds their port taken by a program it cannot stop. On Linux a
//! program can ask the kernel for a signal when its parent dies (`PR_SET_PDEATHSIG`), but
//! "parent" there is the *thread* that started it: a program started from a thread that ends
//! first (a blocking-pool thread, a runtime's worker after `block_in_place`) would be stopped
//! for nothing. So each program is started from a thread of its own, which lives until the
//! program has exited ([`ParentThread`]). One thread per program, not one for all: a start
//! whose exec hangs (a program on a hung network mount) holds up its own start only.

use std::io;
use std::sync::mpsc;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::runtime::Handle;

/// What a program gets when this process dies: it may stop gracefully (nobody follows up
/// with SIGKILL).
#[cfg(target_os = "linux")]
const ON_PARENT_DEATH: nix::sys::signal::Signal = nix::sys::signal::Signal::SIGTERM;

/// The thread a program was started from, kept until the program has exited and been reaped:
/// dropping it ends the thread, which (on Linux) sends SIGTERM to a program still running.
pub(super) struct ParentThread {
    _keep: mpsc::Sender<()>,
}

/// How long a start may take to fork and exec the program: far more than either takes, so
/// that only a hung exec (a program on a network mount that does not answer) reaches it.
const EXEC_BOUND: Duration = Duration::from_secs(10);

/// The least stack a thread that only forks and then waits needs, with room to spare.
const STACK: usize = 256 * 1024;

/// Starts `command` from a thread of its own, in the runtime of `runtime` (which reaps it and
/// reads its output). On Linux the program gets SIGTERM when this process dies, or when the
/// returned [`ParentThread`] is dropped while it still runs.
pub(super) fn spawn(mut command: Command, runtime: Handle) -> io::Result<(Child, ParentThread)> {
    ask_parent_death_signal(&mut command);
    let (reply, answer) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("tower-monitor-program".into())
        .stack_size(STACK)
        .spawn(move || {
            let (keep, kept) = mpsc::channel::<()>();
            let started = {
                let _runtime = runtime.enter();
                // Tokio registers the program's pipes with the runtime only after the fork: a
                // runtime that cannot (no IO driver: a panic; shut down: an error) would fail
                // the start with the program left running, unwatched. So it is asked first.
                tokio::net::unix::pipe::pipe()
                    .map(drop)
                    .and_then(|()| command.spawn())
            };
            let parent = ParentThread { _keep: keep };
            // Should the start have been given up (its caller gone), the program goes with
            // this thread's end.
            if reply.send(started.map(|child| (child, parent))).is_ok() {
                // Ends once the `ParentThread` is dropped (or at once if the start failed).
                let _ = kept.recv();
            }
        })?;
    // A panic in the thread (Tokio's, say) drops the reply: that start fails, and what it may
    // have started goes with the thread. So does a start given up for taking too long: the
    // caller (a runtime's worker, holding the program's state) is not held for ever.
    match answer.recv_timeout(EXEC_BOUND) {
        Ok(started) => started,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("it did not start within {EXEC_BOUND:?} (its exec hangs)"),
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(io::Error::other("starting it panicked")),
    }
}

#[cfg(target_os = "linux")]
fn ask_parent_death_signal(command: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the child between fork and exec; it calls only `signal`,
    // `prctl` and `getppid`, which are async-signal-safe system calls, and allocates nothing
    // (an error from an errno is not allocated), as a child of a multi-threaded parent must not.
    unsafe {
        command.pre_exec(move || {
            // The signal's default action, set first: ignored here (and so after the exec too)
            // it would be lost, and caught by a handler inherited from this process (the
            // gateway's for shutdown) it would be spent before the exec.
            nix::sys::signal::signal(ON_PARENT_DEATH, nix::sys::signal::SigHandler::SigDfl)?;
            nix::sys::prctl::set_pdeathsig(ON_PARENT_DEATH)?;
            // The parent died before the request took effect: nobody would send the signal.
            if nix::unistd::getppid() != parent {
                return Err(nix::errno::Errno::ESRCH.into());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn ask_parent_death_signal(_command: &mut Command) {}
