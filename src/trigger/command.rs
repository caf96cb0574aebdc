use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use tokio::process::Child;
use tokio::time::Instant;
use tracing::Level;

use super::Trigger;
use super::output::{self, Source, Stream, Tail};
use crate::BoxError;

/// How long a waited-for command may run unless set otherwise.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// How many of the last stderr lines a failure reports.
const STDERR_TAIL_LINES: usize = 10;

/// How long, once the program has exited, its output is still awaited before the trigger
/// returns. Only a process it left running (a daemon it started) can keep the output open
/// longer; that output keeps being logged in the background.
const OUTPUT_DRAIN: Duration = Duration::from_millis(250);

/// Runs a program with arguments, without a shell: nothing from a request ever reaches it.
///
/// By default the trigger waits for the program to exit, bounded by a timeout (default 60 s):
/// a non-zero exit is a failure that carries the exit status and the last lines of stderr.
/// [`detached`](Self::detached) instead returns as soon as the program has started.
///
/// Its stdout and stderr go to `tracing` at info, line by line with the `program` and `stream`
/// fields, each line cut at [`MAX_OUTPUT_LINE`](super::MAX_OUTPUT_LINE) bytes (then marked with
/// [`CUT_MARKER`](super::CUT_MARKER)), so a huge line never sits in memory.
///
/// On Unix the program (unless detached) runs in a process group of its own. The timeout bounds the whole run:
/// the wait for the program *and* for its output. When it passes (or when the trigger's future is
/// dropped before the program exits), the whole group is killed, whatever the program started
/// included. A program that exits in time but leaves a process running that still holds its
/// output (a start script that launches a daemon) is done once it exits: the daemon is left
/// running and its output keeps being logged.
///
/// For a program that *is* the backend, prefer [`Process`](super::Process) (Unix): it is started
/// once, known to run, and stopped with its group.
///
/// ```
/// use std::time::Duration;
/// use tower_monitor::trigger::Command;
///
/// let start = Command::new("systemctl").args(["start", "app"]).timeout(Duration::from_secs(30));
/// # let _ = start;
/// ```
#[derive(Debug, Clone)]
pub struct Command {
    program: OsString,
    args: Vec<OsString>,
    current_dir: Option<PathBuf>,
    timeout: Duration,
    detached: bool,
}

/// Why a [`Command`] trigger failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The program could not be started.
    #[error("could not start {program:?}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The program exited unsuccessfully.
    #[error("{program:?} failed ({status}){}", stderr_suffix(.stderr_tail))]
    Exit {
        /// The program.
        program: String,
        /// Its exit status.
        status: ExitStatus,
        /// The last lines it wrote to stderr.
        stderr_tail: String,
    },
    /// The program ran longer than its timeout and was killed.
    #[error("{program:?} did not finish within {timeout:?} and was killed")]
    Timeout {
        /// The program.
        program: String,
        /// The timeout.
        timeout: Duration,
    },
}

fn stderr_suffix(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; stderr: {tail}")
    }
}

impl Command {
    /// A command running `program` (looked up in `PATH` if it has no slash).
    ///
    /// ```
    /// let wake = tower_monitor::trigger::Command::new("wake-backend");
    /// # let _ = wake;
    /// ```
    pub fn new(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            current_dir: None,
            timeout: DEFAULT_COMMAND_TIMEOUT,
            detached: false,
        }
    }

    /// Adds one argument.
    ///
    /// ```
    /// let start = tower_monitor::trigger::Command::new("systemctl").arg("start").arg("app");
    /// # let _ = start;
    /// ```
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    ///
    /// ```
    /// let start = tower_monitor::trigger::Command::new("systemctl").args(["start", "app"]);
    /// # let _ = start;
    /// ```
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs the program in `dir`.
    ///
    /// ```
    /// let build = tower_monitor::trigger::Command::new("make").current_dir("/srv/app");
    /// # let _ = build;
    /// ```
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// How long a waited-for program may run before it is killed (default 60 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let start = tower_monitor::trigger::Command::new("start-vm").timeout(Duration::from_secs(10));
    /// # let _ = start;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Returns as soon as the program has started, leaving it running (it is reaped, and its
    /// output logged, in the background). It stays in the caller's process group, and is started
    /// on every trigger: for a program that is the backend itself, [`Process`](super::Process)
    /// (Unix) starts it once and stops it.
    ///
    /// ```
    /// let backend = tower_monitor::trigger::Command::new("my-server").arg("--port=8081").detached();
    /// # let _ = backend;
    /// ```
    pub fn detached(mut self) -> Self {
        self.detached = true;
        self
    }

    fn name(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    fn spawn(&self) -> Result<Child, CommandError> {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(!self.detached);
        // A detached program stays in our group: nothing here times it out, and a Ctrl-C in
        // the terminal then ends it with us instead of leaving it running.
        #[cfg(unix)]
        if !self.detached {
            command.process_group(0);
        }
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        command.spawn().map_err(|source| CommandError::Spawn {
            program: self.name(),
            source,
        })
    }

    async fn run(self) -> Result<(), CommandError> {
        let name = self.name();
        let deadline = crate::deadline::saturating_after(Instant::now(), self.timeout);
        let mut child = self.spawn()?;
        let service = super::running_for();
        let source = Source {
            program: Arc::from(name.as_str()),
            service: service.clone(),
            level: Level::INFO,
        };
        let stderr_tail = Tail::new(STDERR_TAIL_LINES);
        let stdout = child
            .stdout
            .take()
            .map(|out| output::forward(out, source.clone(), Stream::Stdout, None));
        let stderr = child.stderr.take().map(|err| {
            output::forward(
                err,
                source.clone(),
                Stream::Stderr,
                Some(stderr_tail.clone()),
            )
        });
        if self.detached {
            reap_in_background(child, name, service.clone());
            return Ok(());
        }
        let group = GroupGuard::new(&child, service.clone());
        let status = match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(status) => status.map_err(|source| CommandError::Spawn {
                program: name.clone(),
                source,
            })?,
            Err(_) => {
                group.kill();
                let _ = child.kill().await;
                return Err(CommandError::Timeout {
                    program: name,
                    timeout: self.timeout,
                });
            }
        };
        group.disarm();
        let drained = deadline.min(Instant::now() + OUTPUT_DRAIN);
        let readers = stdout.into_iter().chain(stderr);
        let _ = tokio::time::timeout_at(drained, futures::future::join_all(readers)).await;
        if status.success() {
            tracing::debug!(service = service.as_deref().map(tracing::field::display), program = %name, "command succeeded");
            Ok(())
        } else {
            Err(CommandError::Exit {
                program: name,
                status,
                stderr_tail: stderr_tail.text(),
            })
        }
    }
}

impl Trigger for Command {
    fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        let command = self.clone();
        async move { command.run().await.map_err(BoxError::from) }.boxed()
    }
}

/// Waits for a detached program in the background, so that it never lingers as a zombie.
fn reap_in_background(mut child: Child, name: String, service: Option<Arc<str>>) {
    let pid = child.id();
    tracing::info!(service = service.as_deref().map(tracing::field::display), program = %name, pid, "started detached");
    tokio::spawn(async move {
        let service = service.as_deref();
        match child.wait().await {
            Ok(status) => {
                tracing::info!(service = service.map(tracing::field::display), program = %name, %status, "detached program exited");
            }
            Err(error) => {
                tracing::warn!(service = service.map(tracing::field::display), program = %name, %error, "detached program lost");
            }
        }
    });
}

/// Kills the program's whole process group if dropped before [`disarm`](Self::disarm): when
/// the run times out or its future is dropped, nothing the program started is left behind.
struct GroupGuard {
    #[cfg(unix)]
    pgid: Option<u32>,
    /// For its log line.
    #[cfg(unix)]
    service: Option<Arc<str>>,
}

impl GroupGuard {
    fn new(child: &Child, service: Option<Arc<str>>) -> Self {
        #[cfg(not(unix))]
        let _ = (child, service);
        Self {
            #[cfg(unix)]
            pgid: child.id(),
            #[cfg(unix)]
            service,
        }
    }

    fn kill(mut self) {
        self.kill_now();
    }

    fn disarm(mut self) {
        #[cfg(unix)]
        {
            self.pgid = None;
        }
        #[cfg(not(unix))]
        let _ = &mut self;
    }

    fn kill_now(&mut self) {
        #[cfg(unix)]
        if let Some(pgid) = self.pgid.take() {
            if let Err(error) = super::process_group::signal(pgid, super::process_group::SIGKILL) {
                let service = self.service.as_deref();
                tracing::warn!(service = service.map(tracing::field::display), pgid, %error, "could not kill the process group");
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill_now();
    }
}
