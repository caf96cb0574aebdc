//! [`ProcessError`]: why a [`Process`](super::Process) could not be started or stopped.

/// Why a [`Process`](super::Process) could not be started or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The program could not be started.
    #[error("could not start {program:?}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// Its [`Supervisor`](super::Supervisor) is shut down: nothing is started any more.
    #[error("{program:?} is not started: its supervisor is shut down")]
    ShutDown {
        /// The program.
        program: String,
    },
    /// An idle stop ([`ProcessStop`](super::ProcessStop)) found the program not running under
    /// this supervisor, so it had nothing to stop, though the backend was up: what answers was
    /// started elsewhere, or the program forked into the background and exited.
    #[error("nothing to stop: {program:?} is not running here: {why}")]
    NotRunning {
        /// The program.
        program: String,
        /// What is known of it (never started, exited by itself, or run by another
        /// supervisor), and what the operator can do about it.
        why: String,
    },
    /// The program could not be signalled, or was still there after SIGKILL.
    #[error("could not stop {program:?} (pid {pid}): {reason}")]
    Stop {
        /// The program.
        program: String,
        /// Its process id (and group id).
        pid: u32,
        /// Why.
        reason: String,
    },
}
