//! A program that *is* the backend: started once, known to run, stopped with its group.

mod builder;
mod error;
mod leftover;
mod lock;
mod remains;
mod run;
mod spawner;
mod start;
mod stop;
mod supervisor;

pub use builder::ProcessBuilder;
pub use error::ProcessError;
pub use stop::ProcessStop;
pub use supervisor::Supervisor;

use std::ffi::OsString;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use tracing::Level;

use super::process_group as group;
use run::Running;

/// How long a stopping program may take after SIGTERM before it is killed, unless set otherwise.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// A supervised backend program (Unix only): as a trigger it starts the program unless it
/// already runs.
///
/// - **Started once.** Triggering it while the program runs (booting or serving) is `Ok` and
///   starts nothing, so a herd of requests, or a client polling while the backend boots, starts
///   it once. Once the program has exited, the next trigger starts it again; the exit is logged
///   with its status. A trigger while the program is being stopped (an idle stop, a start
///   given up, the processes it left in its group not gone yet) waits for that stop to end, at
///   most as long as the stop itself may take, and then starts it. As a service's `on_down`
///   it tells the monitor when the program ends
///   ([`Trigger::ended`](super::Trigger::ended)): one that exits before it comes up ends the
///   start at once (the service is down again) rather than at the start timeout; one still
///   not up when the start times out is stopped ([`Trigger::abandon`](super::Trigger::abandon)),
///   so that the next start runs it afresh. So the program must run in the foreground: one that daemonizes (starts its server in the background and exits, as
///   nginx does by default) looks like a start that failed, and its idle stop, with nothing to
///   stop, fails ([`ProcessError::NotRunning`]); run it with its "foreground" flag.
/// - **Stopped with its group.** The program runs in a process group of its own.
///   [`stop`](Self::stop) sends SIGTERM to the group and waits up to the stop grace (default
///   [`DEFAULT_STOP_GRACE`]) for the program and what it started to exit, then sends SIGKILL to
///   whatever is left, reaps the program, and waits for the rest of its group to die. Once the
///   program has exited, what it left in its group is stopped so even if the stop's caller
///   gives up on it (an idle stop cut short by the monitor's `trigger_timeout`): until then a
///   trigger waits, and [`start`](Self::start) fails. [`stopper`](Self::stopper) is the same as
///   a trigger, for `on_idle`.
/// - **Never orphaned.** When the last handle to it is dropped, or the runtime reaping it shuts
///   down, the group is killed (SIGKILL). A [`Supervisor`] stops all of its processes gracefully,
///   for a program's orderly exit. Should this process die without either (`kill -9`, the OOM
///   killer), on Linux the kernel sends the program SIGTERM (`PR_SET_PDEATHSIG`; each program
///   is started from a small thread of its own that lives until the program has exited, so
///   that no thread ending before it sets the signal off). That is all the kernel does: a
///   program that ignores SIGTERM outlives this process, and what the program started in
///   turn gets no signal (so a wrapper script should `exec` its server). With a
///   [`lock_file`](ProcessBuilder::lock_file), on Linux, the next supervisor on that file
///   stops what is left of that program's process group (SIGTERM, SIGKILL after the stop
///   grace) before it runs the program, and when its stop finds nothing of its own to stop,
///   once the file's record shows that group is that run's (see there); without one, or on
///   another system, what is left is the operator's to stop.
/// - **Once across programs, if asked.** With a [`lock_file`](ProcessBuilder::lock_file), of
///   several supervisors (two gateways sharing a configuration) only one runs the program.
/// - **Logged.** Its stdout and stderr go to `tracing` at info (see
///   [`output_level`](ProcessBuilder::output_level)), line by line with the `service`,
///   `program` and `stream` fields, each line cut at [`MAX_OUTPUT_LINE`](super::MAX_OUTPUT_LINE).
///
/// Starting does not wait for the program to accept connections: the monitor's probe tells
/// when it is up. Cloning gives another handle to the same program.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tower_monitor::{MinMonitor, MonitoredService, Url};
/// use tower_monitor::trigger::{Process, Supervisor};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let supervisor = Supervisor::new();
/// let backend = supervisor.supervise(
///     Process::builder("python3")
///         .args(["-m", "http.server", "--bind", "127.0.0.1", "8081"])
///         .stop_grace(Duration::from_secs(5)),
/// );
/// let service = MonitoredService::new(Url::parse("http://127.0.0.1:8081/")?, Duration::from_secs(30))
///     .on_down(backend.clone())
///     .on_idle(Duration::from_secs(15 * 60), backend.stopper());
/// let monitor = Arc::new(MinMonitor::new());
/// monitor.add("app", service)?;
/// // … serve; then, on the way out:
/// supervisor.shutdown(Duration::from_secs(10)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Process {
    shared: Arc<Shared>,
}

struct Shared {
    spec: ProcessBuilder,
    program: Arc<str>,
    /// Without [`ProcessBuilder::service`], the service whose trigger started it first.
    learned_service: OnceLock<Arc<str>>,
    supervisor: Option<Arc<supervisor::Inner>>,
    state: Mutex<State>,
    /// Held while what a dead supervisor left is dealt with (see `leftover`).
    reclaiming: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    running: Option<Running>,
    /// The exit of the program started last, running or not.
    latest: Option<tokio::sync::watch::Receiver<run::Exit>>,
    /// The stops of the program started last, which may outlast its exit (what it left in its
    /// group), holding the lock file meanwhile.
    stops: Option<Arc<stop::Stops>>,
    /// The last start found the program running under another supervisor (its lock file).
    elsewhere: bool,
    /// The lock file is held by this supervisor's cleanup of what a dead one left (`leftover`).
    cleaning: bool,
    /// The earliest SIGKILL deadline of the stops waiting for that cleanup: it kills by then.
    kill_leftover_by: Option<tokio::time::Instant>,
    starts: u64,
}

impl Process {
    /// Starts describing the process that runs `program` (looked up in `PATH` if it has no
    /// slash).
    ///
    /// ```
    /// let backend = tower_monitor::trigger::Process::builder("my-server").build();
    /// assert_eq!(backend.starts(), 0);
    /// ```
    pub fn builder(program: impl Into<OsString>) -> ProcessBuilder {
        ProcessBuilder {
            program: program.into(),
            args: Vec::new(),
            current_dir: None,
            env: Vec::new(),
            stop_grace: DEFAULT_STOP_GRACE,
            service: None,
            output_level: Level::INFO,
            lock_file: None,
        }
    }

    fn new(spec: ProcessBuilder, supervisor: Option<Arc<supervisor::Inner>>) -> Self {
        let program = Arc::from(spec.program.to_string_lossy().as_ref());
        Self {
            shared: Arc::new(Shared {
                spec,
                program,
                learned_service: OnceLock::new(),
                supervisor,
                state: Mutex::new(State::default()),
                reclaiming: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Starts the program unless it runs already (then this does nothing). `Ok` once it has
    /// been started, not once it is ready. Must be called within a Tokio runtime (which reaps
    /// the program and logs its output); outside one it fails with [`ProcessError::Spawn`].
    /// It fails so too while what a supervisor that died left of the program runs (known
    /// through its [`lock_file`](ProcessBuilder::lock_file)), or while this supervisor stops
    /// that, as it cannot wait for that to stop: the process as a trigger, or a
    /// [`stop`](Self::stop), stops that first; and while a stop holds the lock file (this
    /// supervisor's, what the program left in its group not gone yet, or another supervisor's
    /// whose record says it stops the program), or, without one, while this supervisor stops
    /// what the program left in its group, which the process as a trigger waits for.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let sleeper = tower_monitor::trigger::Process::builder("sleep").arg("60").build();
    /// sleeper.start().unwrap();
    /// sleeper.start().unwrap();
    /// assert_eq!(sleeper.starts(), 1);
    /// sleeper.stop().await.unwrap();
    /// # }
    /// ```
    pub fn start(&self) -> Result<(), ProcessError> {
        run::start(&self.shared)
    }

    /// Stops the program: SIGTERM to its group, SIGKILL to what is left after the stop grace.
    /// Resolves, with the program's exit status, once it has exited and been reaped, and what
    /// it left in its group is gone; `Ok(None)` if it was not running here, after what it left
    /// in its group is gone (a stop given up on still stops that: this one waits for it, and
    /// kills it by its own deadline at the latest), and after stopping what a supervisor that
    /// died left of it, if
    /// its [`lock_file`](ProcessBuilder::lock_file) shows any (a gateway's shutdown stops
    /// that too). A stop while another runs (an idle stop and a shutdown) sends no
    /// second SIGTERM: it waits for the exit, and sends the SIGKILL at its own deadline or the
    /// other's, whichever comes first, unless the other has; so too while this supervisor
    /// stops what a dead one left (a trigger's cleanup, with the stop grace).
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let sleeper = tower_monitor::trigger::Process::builder("sleep").arg("60").build();
    /// sleeper.start().unwrap();
    /// let status = sleeper.stop().await.unwrap().expect("it was running");
    /// assert!(!status.success());
    /// assert!(sleeper.stop().await.unwrap().is_none());
    /// # }
    /// ```
    pub async fn stop(&self) -> Result<Option<ExitStatus>, ProcessError> {
        self.stop_with(self.shared.spec.stop_grace).await
    }

    /// Like [`stop`](Self::stop), with this grace instead of the configured one.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// # use std::time::Duration;
    /// let sleeper = tower_monitor::trigger::Process::builder("sleep").arg("60").build();
    /// sleeper.start().unwrap();
    /// sleeper.stop_with(Duration::from_secs(1)).await.unwrap();
    /// # }
    /// ```
    pub async fn stop_with(&self, grace: Duration) -> Result<Option<ExitStatus>, ProcessError> {
        let status = stop::stop(&self.shared, grace).await?;
        if status.is_none() {
            leftover::reclaim(&self.shared, grace).await?;
        }
        Ok(status)
    }

    /// Resolves once the program started last has exited and been reaped (at once if it has
    /// already), with its exit status; `None` if it was never started, or its status could not
    /// be read.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let quick = tower_monitor::trigger::Process::builder("sh").args(["-c", "exit 3"]).build();
    /// quick.start().unwrap();
    /// assert_eq!(quick.exited().await.and_then(|status| status.code()), Some(3));
    /// assert!(!quick.is_running());
    /// # }
    /// ```
    pub async fn exited(&self) -> Option<ExitStatus> {
        let latest = self.shared.lock().latest.clone()?;
        run::exited(latest).await
    }

    /// A trigger that stops this process, for `on_idle` (see [`ProcessStop`]).
    ///
    /// ```
    /// use tower_monitor::trigger::Process;
    ///
    /// let backend = Process::builder("my-server").build();
    /// let idle_stop = backend.stopper();
    /// # let _ = idle_stop;
    /// ```
    pub fn stopper(&self) -> ProcessStop {
        ProcessStop::new(self.clone())
    }

    /// Whether the program is running (started, and its exit not yet seen).
    ///
    /// ```
    /// assert!(!tower_monitor::trigger::Process::builder("my-server").build().is_running());
    /// ```
    pub fn is_running(&self) -> bool {
        self.shared.lock().running.is_some()
    }

    /// The process id (which is also its process group id) of the running program.
    ///
    /// ```
    /// assert_eq!(tower_monitor::trigger::Process::builder("my-server").build().pid(), None);
    /// ```
    pub fn pid(&self) -> Option<u32> {
        self.shared.lock().running.as_ref().map(Running::pid)
    }

    /// How many times the program has been started.
    ///
    /// ```
    /// assert_eq!(tower_monitor::trigger::Process::builder("my-server").build().starts(), 0);
    /// ```
    pub fn starts(&self) -> u64 {
        self.shared.lock().starts
    }

    /// A handle that does not keep the program alive.
    pub(crate) fn downgrade(&self) -> WeakProcess {
        WeakProcess(Arc::downgrade(&self.shared))
    }
}

/// A [`Process`] that may be gone: held by whoever must not keep it alive.
#[derive(Clone)]
pub(crate) struct WeakProcess(Weak<Shared>);

impl WeakProcess {
    pub(crate) fn upgrade(&self) -> Option<Process> {
        self.0.upgrade().map(|shared| Process { shared })
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent between statements, so a panic elsewhere cannot spoil it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn service(&self) -> Option<&str> {
        let learned = || self.learned_service.get().map(|name| &**name);
        self.spec.service.as_deref().or_else(learned)
    }

    /// The service to name for what a start or a stop does now: the one given at build time,
    /// else the one whose trigger the monitor runs now (a program that is the backend of two
    /// services is started and stopped for each in turn), else the first one learned.
    fn asker(&self) -> Option<Arc<str>> {
        match &self.spec.service {
            Some(name) => Some(Arc::from(name.as_str())),
            None => crate::trigger::running_for().or_else(|| self.learned_service.get().cloned()),
        }
    }

    /// Takes the name of the service the monitor runs this start for, if none was given.
    fn learn_service(&self) {
        if self.spec.service.is_none() && self.learned_service.get().is_none() {
            if let Some(name) = crate::trigger::running_for() {
                let _ = self.learned_service.set(name);
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = state.running.take() {
            tracing::info!(service = self.service().map(tracing::field::display), program = %self.program, pid = running.pid(),
                "the last handle is gone: killing the program's group");
            let _ = group::signal(running.pid(), group::SIGKILL);
        } else if state.stops.as_deref().is_some_and(remains::kill_now) {
            tracing::info!(service = self.service().map(tracing::field::display), program = %self.program,
                "the last handle is gone: killing what the program left in its group");
        }
    }
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("program", &self.shared.program)
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}
