//! How to start a [`Process`](super::Process).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use tracing::Level;

use super::Process;

/// How to start a [`Process`]: the program, its arguments, directory and environment, and how
/// it is stopped and logged.
///
/// ```
/// use std::time::Duration;
/// use tower_monitor::trigger::Process;
///
/// let backend = Process::builder("my-server")
///     .arg("--port=8081")
///     .current_dir("/srv/app")
///     .env("RUST_LOG", "info")
///     .stop_grace(Duration::from_secs(20))
///     .service("app")
///     .build();
/// assert!(!backend.is_running());
/// ```
#[derive(Debug, Clone)]
pub struct ProcessBuilder {
    pub(super) program: OsString,
    pub(super) args: Vec<OsString>,
    pub(super) current_dir: Option<PathBuf>,
    pub(super) env: Vec<(OsString, OsString)>,
    pub(super) stop_grace: Duration,
    pub(super) service: Option<String>,
    pub(super) output_level: Level,
    pub(super) lock_file: Option<PathBuf>,
}

impl ProcessBuilder {
    /// Adds one argument.
    ///
    /// ```
    /// let b = tower_monitor::trigger::Process::builder("my-server").arg("--port=8081");
    /// # let _ = b;
    /// ```
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    ///
    /// ```
    /// let b = tower_monitor::trigger::Process::builder("my-server").args(["--port", "8081"]);
    /// # let _ = b;
    /// ```
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs the program in `dir`.
    ///
    /// ```
    /// let b = tower_monitor::trigger::Process::builder("./server").current_dir("/srv/app");
    /// # let _ = b;
    /// ```
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Sets an environment variable for the program (it inherits the others).
    ///
    /// ```
    /// let b = tower_monitor::trigger::Process::builder("my-server").env("PORT", "8081");
    /// # let _ = b;
    /// ```
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// How long a stop waits after SIGTERM before SIGKILL (default
    /// [`DEFAULT_STOP_GRACE`](super::DEFAULT_STOP_GRACE)).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = tower_monitor::trigger::Process::builder("my-server").stop_grace(Duration::from_secs(3));
    /// # let _ = b;
    /// ```
    pub fn stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    /// The service name its log lines carry (the `service` field). Without it, they carry the
    /// name of the service whose trigger first runs it through a monitor (its `on_down`, or
    /// its [`stopper`](super::Process::stopper) as `on_idle`); a program started before that
    /// logs its output without one.
    ///
    /// ```
    /// let b = tower_monitor::trigger::Process::builder("my-server").service("app");
    /// # let _ = b;
    /// ```
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.service = Some(name.into());
        self
    }

    /// The level its output lines are logged at (default info; debug for a chatty backend).
    ///
    /// ```
    /// let b = tower_monitor::trigger::Process::builder("my-server").output_level(tracing::Level::DEBUG);
    /// # let _ = b;
    /// ```
    pub fn output_level(mut self, level: Level) -> Self {
        self.output_level = level;
        self
    }

    /// A lock file, so that only one supervisor at a time runs the program, even in different
    /// programs (two gateways sharing a configuration): while this process runs its program it
    /// holds an advisory lock (`flock`) on the file, and writes the program's id in it. A start
    /// that finds the lock held by another supervisor is `Ok` and starts nothing (the program
    /// runs, elsewhere; the monitor's probe sees it). The lock is released when the program
    /// has exited, and, if it exited under a stop, once what it left in its group has too (a
    /// stop given up on by its caller still kills that at its deadline, and holds the lock
    /// until it is gone); and by the kernel when the holder exits, however it exits. A stop (of the program, or of what a supervisor that
    /// died left) writes `stopping_until`, when it kills what is left at the latest, in
    /// milliseconds since the Unix epoch, into the record: the process as a trigger, finding
    /// the lock so held, waits for it (until then, and the few seconds a SIGKILL may take),
    /// takes it and starts the program; [`Process::start`](super::Process::start) fails then.
    /// In a file that other users may write (see below) that word is not believed: the
    /// program is taken for running under the holder.
    ///
    /// The file also records the running program for the next holder, should this process
    /// die without stopping it (`kill -9`, the OOM killer): its id (its process group's) alone
    /// on the first line, for people, then `start_time` (`/proc/PID/stat` field 22), `boot_id`
    /// and `run_id`, an id of this run that the program gets in its environment as
    /// `TOWER_MONITOR_RUN_ID` (and so, unless they clear it, what it starts). Its exit or a stop
    /// clears the record; one found as the lock is taken was left by a supervisor that died,
    /// and is cleared once what it records is stopped (not before: a supervisor that stops
    /// halfway leaves it to the next). On Linux, what is left of that run's process group is
    /// then stopped as a stop does (SIGTERM to the group, SIGKILL after the stop grace to what
    /// is left; said at warn): by a trigger before it starts the program, and by a stop that
    /// finds nothing of its own to stop (the idle stop, [`Process::stop`](super::Process::stop),
    /// a supervisor's shutdown), so that a backend that a killed gateway left answering
    /// sleeps at the next one's idle stop. That stop goes on should its caller give up (a
    /// `trigger_timeout` shorter than the stop grace and the few seconds a SIGKILL may take:
    /// that start fails), and the next trigger or stop waits for it; one with an earlier
    /// deadline (a shutdown with a shorter grace) has the SIGKILL sent by then.
    ///
    /// Only a group shown to be that run's is signalled: one with a live member that is the
    /// program itself (its id, start time and boot) or is this user's and has that run's id in
    /// its environment. A run of which nothing is left, a group whose id now belongs to other
    /// processes, a record that cannot show it (an id alone, as earlier versions wrote; a
    /// system without `/proc`), and one that other users may have written (the file is not
    /// this user's, or its group or others may write it; a file this creates is `0644`) lead
    /// to no signal, only a log line. Out of reach too: what left the group (`setsid`, a
    /// daemon), what a program killed before its record was written left, and a group whose
    /// leader is gone and whose members all cleared or overwrote their environment or became
    /// another user.
    ///
    /// ```
    /// let b = tower_monitor::trigger::Process::builder("my-server").lock_file("/run/my-server.lock");
    /// # let _ = b;
    /// ```
    pub fn lock_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.lock_file = Some(path.into());
        self
    }

    /// The process, not supervised: stopped by [`Process::stop`], or killed when its last
    /// handle is dropped. See [`Supervisor::supervise`](super::Supervisor::supervise) for a
    /// supervised one.
    ///
    /// ```
    /// let backend = tower_monitor::trigger::Process::builder("my-server").build();
    /// # let _ = backend;
    /// ```
    pub fn build(self) -> Process {
        Process::new(self, None)
    }
}
