use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;

use super::Trigger;
use crate::BoxError;

/// How long a waited-for command may run unless set otherwise.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// How many of the last stderr lines a failure reports.
const STDERR_TAIL_LINES: usize = 10;

/// Runs a program with arguments, without a shell: nothing from a request ever reaches it.
///
/// By default the trigger waits for the program to exit, bounded by a timeout (default 60 s,
/// after which the program is killed): a non-zero exit is a failure that carries the exit status
/// and the last lines of stderr. [`detached`](Self::detached) instead returns as soon as the
/// program has started, for a program that *is* the backend. Either way its stdout and stderr
/// go to `tracing`, line by line.
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
    /// output logged, in the background). For a program that is the backend itself.
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
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        command.spawn().map_err(|source| CommandError::Spawn {
            program: self.name(),
            source,
        })
    }
}

impl Trigger for Command {
    fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        let spawned = self.spawn();
        let (name, timeout, detached) = (self.name(), self.timeout, self.detached);
        async move {
            let mut child = spawned?;
            let stdout = child
                .stdout
                .take()
                .map(|out| log_lines(out, name.clone(), false));
            let stderr = child
                .stderr
                .take()
                .map(|err| log_lines(err, name.clone(), true));
            if detached {
                tracing::info!(program = %name, pid = child.id(), "started detached");
                tokio::spawn(async move {
                    let status = child.wait().await;
                    tracing::info!(program = %name, ?status, "detached program exited");
                });
                return Ok(());
            }
            let status = match tokio::time::timeout(timeout, child.wait()).await {
                Ok(status) => status.map_err(|source| CommandError::Spawn {
                    program: name.clone(),
                    source,
                })?,
                Err(_) => {
                    let _ = child.kill().await;
                    return Err(CommandError::Timeout {
                        program: name,
                        timeout,
                    }
                    .into());
                }
            };
            if let Some(stdout) = stdout {
                let _ = stdout.await;
            }
            let stderr_tail = match stderr {
                Some(stderr) => stderr.await.unwrap_or_default(),
                None => String::new(),
            };
            if status.success() {
                tracing::debug!(program = %name, "command succeeded");
                Ok(())
            } else {
                Err(CommandError::Exit {
                    program: name,
                    status,
                    stderr_tail,
                }
                .into())
            }
        }
        .boxed()
    }
}

/// Logs a program's output line by line; returns the last lines (of stderr) once it closes.
fn log_lines(
    output: impl AsyncRead + Unpin + Send + 'static,
    program: String,
    is_stderr: bool,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(output).lines();
        let mut tail = VecDeque::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if is_stderr {
                tracing::warn!(program = %program, "stderr: {line}");
                if tail.len() == STDERR_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            } else {
                tracing::info!(program = %program, "stdout: {line}");
            }
        }
        Vec::from(tail).join("\n")
    })
}
