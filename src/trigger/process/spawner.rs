//! The thread that starts the backend programs, so that they end with this process.
//!
//! A supervisor that dies without stopping its programs (`kill -9`, an OOM kill, a crash)
//! leaves them running with nobody to stop them: their backend never sleeps again, and the
//! supervisor started next finds their port taken by a program it cannot stop. On Linux a
//! program can ask the kernel for a signal when its parent dies (`PR_SET_PDEATHSIG`), but
//! "parent" there is the *thread* that started it: a program started from a thread that ends
//! first (a blocking-pool thread, a runtime's worker after `block_in_place`) would be stopped
//! for nothing. So every program is started from this one thread, which lives as long as the
//! process.

use std::io;
use std::sync::OnceLock;
use std::sync::mpsc::{self, Sender};

use tokio::process::{Child, Command};
use tokio::runtime::Handle;

/// What a program gets when this process dies: it may stop gracefully (nobody follows up
/// with SIGKILL).
#[cfg(target_os = "linux")]
const ON_PARENT_DEATH: nix::sys::signal::Signal = nix::sys::signal::Signal::SIGTERM;

type Job = Box<dyn FnOnce() + Send>;

/// Starts `command` from the spawner thread, in the runtime of `runtime` (which reaps it and
/// reads its output). On Linux the program gets SIGTERM when this process dies.
pub(super) fn spawn(mut command: Command, runtime: Handle) -> io::Result<Child> {
    ask_parent_death_signal(&mut command);
    let (reply, answer) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _runtime = runtime.enter();
        // Tokio registers the program's pipes with the runtime only after the fork: a runtime
        // that cannot (no IO driver: a panic; shut down: an error) would fail the start with
        // the program left running, unwatched and unstoppable. So it is asked first.
        let watchable = tokio::net::unix::pipe::pipe().map(drop);
        let _ = reply.send(watchable.and_then(|()| command.spawn()));
    });
    match thread() {
        Some(thread) if thread.send(job).is_ok() => answer
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("starting it panicked"))),
        _ => Err(io::Error::other("could not start the spawner thread")),
    }
}

/// The spawner thread's queue, starting it on first use.
fn thread() -> Option<&'static Sender<Job>> {
    static SPAWNER: OnceLock<Option<Sender<Job>>> = OnceLock::new();
    SPAWNER
        .get_or_init(|| {
            let (jobs, queue) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("tower-monitor-spawner".into())
                .spawn(move || {
                    for job in queue {
                        // A panic fails that start only (its reply is dropped), not the next.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })
                .ok()
                .map(|_| jobs)
        })
        .as_ref()
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
