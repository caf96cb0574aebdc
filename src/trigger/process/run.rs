//! Starting the program, and watching for its exit.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::process::Child;
use tokio::sync::watch;
use tokio::time::Instant;

use super::lock::{self, Claim, Record, RunLock};
use super::remains::RemainsStop;
use super::stop::Stops;
use super::{ProcessError, Shared};
use super::{leftover, spawner};
use crate::trigger::output::{self, Source, Stream};
use crate::trigger::process_group as group;

/// The program while it runs: its id, and a way to await its exit.
#[derive(Clone)]
pub(super) struct Running {
    pid: u32,
    exit: watch::Receiver<Exit>,
    /// The stops of this run, shared by its clones.
    pub(super) stops: Arc<Stops>,
    /// The lock file's lock, held while the program runs, and the record written in it.
    lock: Option<(Arc<RunLock>, Record)>,
}

/// Whether the program has exited, and how.
#[derive(Clone, Copy, Debug)]
pub(super) enum Exit {
    Running,
    /// Exited; the status is unknown when waiting for it failed.
    Exited(Option<ExitStatus>),
}

impl Running {
    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    /// Resolves once the program has exited and been reaped.
    pub(super) async fn exited(&self) -> Option<ExitStatus> {
        exited(self.exit.clone()).await
    }

    /// Says in the lock file's record, if any, that this run is being stopped and what is
    /// left of it killed by `deadline`: another supervisor's start then waits for the lock.
    pub(super) fn say_stopping(&self, deadline: Instant) {
        if let Some((lock, record)) = &self.lock {
            lock.record(&record.stopping(deadline));
        }
    }

    /// Takes back [`say_stopping`](Self::say_stopping) if the program still runs as the last
    /// stop ends (given up on by its caller, or the SIGKILL failed): it still holds the lock,
    /// and another supervisor must take it for running again, not wait for its stop.
    pub(super) fn unsay_stopping_if_running(&self) {
        if let Some((lock, record)) = &self.lock {
            if matches!(*self.exit.borrow(), Exit::Running) {
                lock.record(record);
            }
        }
    }
}

/// Why a start did not start the program, though it does not run here: a stop holds its lock
/// file, after which it may be started. A trigger waits for that; [`start`] cannot.
#[derive(Debug, Clone, Copy)]
pub(super) enum Blocked {
    /// A stop of this supervisor's own.
    OwnStop,
    /// Another supervisor's stop (of its run, or of what a supervisor that died left), which
    /// its record says kills what is left within this.
    HolderStops(Duration),
}

/// Resolves once the run `exit` watches has exited and been reaped, with its status.
pub(super) async fn exited(mut exit: watch::Receiver<Exit>) -> Option<ExitStatus> {
    // A watcher gone without a word was dropped with its runtime, after killing the group.
    match exit.wait_for(|exit| matches!(exit, Exit::Exited(_))).await {
        Ok(exit) => match *exit {
            Exit::Exited(status) => status,
            Exit::Running => None,
        },
        Err(_) => None,
    }
}

/// Starts the program unless it runs (here or under another supervisor); fails when a stop
/// holds the lock file (see [`Blocked`]).
pub(super) fn start(shared: &Arc<Shared>) -> Result<(), ProcessError> {
    let Some(blocked) = try_start(shared, None)? else {
        return Ok(());
    };
    let path = shared
        .spec
        .lock_file
        .as_deref()
        .unwrap_or(std::path::Path::new(""));
    let path = path.display().to_string();
    let why = match blocked {
        Blocked::OwnStop if shared.spec.lock_file.is_none() => {
            "what its last run left in its process group is being stopped here".to_string()
        }
        Blocked::OwnStop => {
            format!("it is being stopped here, and that stop holds its lock file {path:?}")
        }
        Blocked::HolderStops(_) => {
            format!("the supervisor that holds its lock file {path:?} is stopping it")
        }
    };
    Err(ProcessError::Spawn {
        program: shared.program.to_string(),
        source: std::io::Error::other(format!("{why}: a trigger starts it once that is done")),
    })
}

/// [`start`], with the lock file's lock if the caller took it already (its record empty); or
/// what holds the lock file while the program is stopped, when it cannot start yet.
pub(super) fn try_start(
    shared: &Arc<Shared>,
    taken: Option<RunLock>,
) -> Result<Option<Blocked>, ProcessError> {
    shared.learn_service();
    let service = shared.asker();
    let service = service.as_deref();
    let program = || shared.program.to_string();
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return Err(ProcessError::Spawn {
            program: program(),
            source: std::io::Error::other("no Tokio runtime here: a process is started within one"),
        });
    };
    let mut state = shared.lock();
    // Checked under the state lock: a supervisor shutting down either sees this start's
    // program running, or this start sees the shutdown.
    if shared.supervisor.as_ref().is_some_and(|s| s.is_closed()) {
        return Err(ProcessError::ShutDown { program: program() });
    }
    if let Some(running) = &state.running {
        // Asked to start while it runs: it does not answer (hung, or slow to come back). Said
        // at info, or an operator sees a start that starts nothing.
        tracing::info!(service = service.map(tracing::field::display), program = %shared.program, pid = running.pid,
            "the backend program runs already: not started again");
        return Ok(None);
    }
    // Read before the claim: a stop of its own that ends meanwhile releases the lock before
    // it counts itself ended, so a lock held then is another's, unless read so here.
    let own_stop = state.stops.as_ref().is_some_and(|s| s.under_way());
    let spec = &shared.spec;
    // Its last run has exited, what it left in its group not yet (`remains`): started now,
    // it would run beside that, which may hold its port. A lock file's lock, held by that
    // stop, tells so below.
    if own_stop && spec.lock_file.is_none() {
        return Ok(Some(Blocked::OwnStop));
    }
    let lock = match &spec.lock_file {
        None => None,
        Some(path) => match taken.map_or_else(|| lock::claim(path), |lock| Ok(Claim::Ours(lock))) {
            Ok(Claim::Ours(lock)) => match leftover::left(&lock) {
                // Started now, it would find its port taken; a trigger or a stop stops that
                // group first (`leftover::reclaim`), which this start, not async, cannot wait for.
                Some((record, leftover::Verdict::Left(members))) => {
                    lock.release_keeping_record();
                    return Err(ProcessError::Spawn {
                        program: program(),
                        source: std::io::Error::other(format!(
                            "what a supervisor that died left of it runs still (process group \
                             {}, {members} processes, per lock file {:?}): a trigger or a stop \
                             stops it first",
                            record.pid,
                            path.display().to_string()
                        )),
                    });
                }
                Some((record, verdict)) => {
                    leftover::report(shared, service, path, &record, verdict);
                    Some(lock)
                }
                None => Some(lock),
            },
            // Taken by this supervisor's own cleanup, which a trigger waits for.
            Ok(Claim::Elsewhere(_)) if state.cleaning => {
                return Err(ProcessError::Spawn {
                    program: program(),
                    source: std::io::Error::other(format!(
                        "what a supervisor that died left of it is being stopped (per lock file \
                         {:?}): a trigger starts it once that is done",
                        path.display().to_string()
                    )),
                });
            }
            // This supervisor's own stop holds it (the program has exited, what it left in its
            // group has not yet): not another's.
            Ok(Claim::Elsewhere(_)) if own_stop => {
                return Ok(Some(Blocked::OwnStop));
            }
            Ok(Claim::Elsewhere(record)) => {
                if let Some(left) = record.as_ref().and_then(Record::stopping_for) {
                    return Ok(Some(Blocked::HolderStops(left)));
                }
                let pid = record.map(|record| record.pid);
                tracing::info!(service = service.map(tracing::field::display), program = %shared.program, pid,
                    lock_file = %path.display(),
                    "runs already under another supervisor (its lock file is held): not started");
                state.elsewhere = true;
                return Ok(None);
            }
            Err(error) => {
                return Err(ProcessError::Spawn {
                    program: program(),
                    source: std::io::Error::new(
                        error.kind(),
                        format!("lock file {:?}: {error}", path.display().to_string()),
                    ),
                });
            }
        },
    };
    // Only with a lock file: its record is what the id is for.
    let run_id = lock.as_ref().and_then(|_| leftover::new_run_id());
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .envs(run_id.iter().map(|id| (leftover::RUN_ID_VAR, id)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = &spec.current_dir {
        command.current_dir(dir);
    }
    let (mut child, parent) =
        spawner::spawn(command, runtime).map_err(|source| ProcessError::Spawn {
            program: program(),
            source,
        })?;
    let Some(pid) = child.id() else {
        // Only a reaped child has no id, and this one was just started.
        return Err(ProcessError::Spawn {
            program: program(),
            source: std::io::Error::other("the started program has no process id"),
        });
    };
    let lock = lock.map(|lock| {
        let record = leftover::describe(pid, run_id);
        lock.record(&record);
        (Arc::new(lock), record)
    });
    state.starts += 1;
    state.elsewhere = false;
    tracing::info!(service = service.map(tracing::field::display), program = %shared.program, pid,
        start = state.starts, "started the backend program");
    // Its output and its exit are said as this start's.
    let starter: Option<Arc<str>> = service.map(Arc::from);
    let source = Source {
        program: shared.program.clone(),
        service: starter.clone(),
        level: spec.output_level,
    };
    if let Some(out) = child.stdout.take() {
        output::forward(out, source.clone(), Stream::Stdout, None);
    }
    if let Some(err) = child.stderr.take() {
        output::forward(err, source, Stream::Stderr, None);
    }
    let (exit_tx, exit) = watch::channel(Exit::Running);
    let stops = Arc::new(Stops::new(pid));
    state.latest = Some(exit.clone());
    state.stops = Some(Arc::clone(&stops));
    state.running = Some(Running {
        pid,
        exit,
        stops,
        lock,
    });
    // Made here, not in the task: a task dropped before its first poll must kill the group too.
    let guard = KillGroupOnDrop(Some((Arc::downgrade(shared), pid)));
    tokio::spawn(watch_exit(
        (Arc::downgrade(shared), starter),
        (child, parent),
        pid,
        exit_tx,
        guard,
    ));
    Ok(None)
}

/// Reaps the program when it exits, and forgets it, so that the next trigger starts it again.
async fn watch_exit(
    // With the service whose start it was.
    (shared, service): (Weak<Shared>, Option<Arc<str>>),
    // With the thread it was started from, kept until it is reaped (see `spawner`).
    (mut child, _parent): (Child, spawner::ParentThread),
    pid: u32,
    exit_tx: watch::Sender<Exit>,
    guard: KillGroupOnDrop,
) {
    let status = child.wait().await.ok();
    guard.disarm();
    let mut remains = None;
    if let Some(shared) = shared.upgrade() {
        let mut state = shared.lock();
        let ours = state.running.as_ref().filter(|r| r.pid == pid);
        let stopping = ours.is_some_and(|r| r.stops.begun());
        // Stopped here, not by the stops: they may be given up on (see `remains`).
        remains = ours.filter(|_| stopping).map(|running| {
            let stop = RemainsStop::begin(running);
            (stop, Arc::clone(&shared.program), service.clone())
        });
        if ours.is_some() {
            state.running = None;
        }
        drop(state);
        let daemonized = status.is_some_and(|s| s.success());
        let status = status.map_or_else(|| "unknown".to_string(), |s| s.to_string());
        // A program started outside the monitor has no starter: the service learned since.
        let service = service.or_else(|| shared.service().map(Arc::from));
        let service = service.as_deref();
        if stopping {
            tracing::info!(service = service.map(tracing::field::display), program = %shared.program, pid, %status,
                "backend program stopped");
        } else if daemonized {
            // What nginx, redis-server and many daemons do unless told otherwise: what they
            // left serving is out of reach of the idle stop and of the gateway's exit.
            tracing::warn!(service = service.map(tracing::field::display), program = %shared.program, pid, %status,
                "backend program exited by itself, successfully: if it forked into the \
                 background, run it in the foreground instead (nginx: -g \"daemon off;\"), \
                 or it can be neither watched nor stopped");
        } else {
            tracing::warn!(service = service.map(tracing::field::display), program = %shared.program, pid, %status,
                "backend program exited by itself");
        }
    }
    exit_tx.send_replace(Exit::Exited(status));
    if let Some((stop, program, service)) = remains {
        stop.run(program, service).await;
    }
}

/// Kills the group if the watcher is dropped (its runtime shut down) before the program exited:
/// no one would reap it or stop it any more. It is forgotten too, so a later trigger (on another
/// runtime) starts it again instead of believing it runs.
struct KillGroupOnDrop(Option<(Weak<Shared>, u32)>);

impl KillGroupOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Some((shared, pgid)) = self.0.take() {
            let _ = group::signal(pgid, group::SIGKILL);
            if let Some(shared) = shared.upgrade() {
                let mut state = shared.lock();
                if state.running.as_ref().is_some_and(|r| r.pid == pgid) {
                    state.running = None;
                }
            }
        }
    }
}
