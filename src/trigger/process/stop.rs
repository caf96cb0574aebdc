//! Stopping the program: SIGTERM to its group, SIGKILL after the grace, once however many
//! stops overlap; and the stop as a trigger.

use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::remains::Remains;
use super::run::{Exit, Running};
use super::{Process, ProcessError, Shared};
use crate::BoxError;
use crate::trigger::Trigger;
use crate::trigger::process_group as group;

/// How long a program is awaited after SIGKILL: it cannot refuse to die, so running out of this
/// means something is badly wrong (a process stuck in the kernel).
pub(super) const AFTER_KILL: Duration = Duration::from_secs(5);

/// How often a stop looks whether what the program left in its group has exited: there is no
/// event for the exit of a process that is not our child.
pub(super) const GROUP_POLL: Duration = Duration::from_millis(20);

/// What a stop may take past its SIGKILL deadline besides [`AFTER_KILL`]: a look at the group
/// on a busy blocking pool, a record written. Only a bound for those who wait for the stop.
pub(super) const STOP_SLACK: Duration = Duration::from_secs(1);

/// A trigger that stops a [`Process`] (SIGTERM, then SIGKILL after its stop grace), made by
/// [`Process::stopper`]: for `on_idle`. `Ok` once the program is stopped, or if it crashed
/// (nothing is left to stop), or once what a supervisor that died left of it is stopped (with
/// a [`lock_file`](super::ProcessBuilder::lock_file) that shows it); it fails with
/// [`ProcessError::NotRunning`] when the program does not run under this supervisor otherwise
/// (never started here, run by another, or it exited successfully, as one that forks into the
/// background does), as the backend, up though nothing of its is running, cannot be stopped
/// from here (a monitor keeps it up, and says so, rather than waiting for its stop until the
/// stop timeout).
///
/// ```
/// use std::time::Duration;
/// use tower_monitor::{MonitoredService, Url};
/// use tower_monitor::trigger::Process;
///
/// let backend = Process::builder("my-server").build();
/// let service = MonitoredService::new(Url::parse("http://127.0.0.1:8081/").unwrap(), Duration::from_secs(5))
///     .on_down(backend.clone())
///     .on_idle(Duration::from_secs(600), backend.stopper());
/// # let _ = service;
/// ```
#[derive(Clone, Debug)]
pub struct ProcessStop {
    process: Process,
}

impl ProcessStop {
    pub(super) fn new(process: Process) -> Self {
        Self { process }
    }
}

impl Trigger for ProcessStop {
    fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        // A program started outside the monitor (at boot) has no service yet: its stop's
        // lines must name the one whose `on_idle` this is.
        self.process.shared.learn_service();
        let process = self.process.clone();
        async move {
            // An `Ok` would leave the service Stopping until its stop timeout, holding requests
            // that the backend, still up, could answer.
            if let Some(error) = process.not_running() {
                // What answers may be what a supervisor that died left running.
                let grace = process.shared.spec.stop_grace;
                if super::leftover::reclaim(&process.shared, grace).await? {
                    return Ok(());
                }
                return Err(error.into());
            }
            process.stop().await?;
            Ok(())
        }
        .boxed()
    }
}

impl Process {
    /// Why nothing of this program runs here while its backend may still answer, if so: for
    /// an idle stop to say. A program that crashed (ended in failure, or by a signal) has
    /// nothing left to stop: its backend is down, which the monitor's probe will find.
    pub(super) fn not_running(&self) -> Option<ProcessError> {
        let state = self.shared.lock();
        let remains = state.stops.as_ref().is_some_and(|s| s.remains_under_way());
        if state.running.is_some() || remains {
            return None;
        }
        // Each says what the operator can do: nothing here will stop what answers.
        let forked = "yet the backend answers: the program forked into the background and \
                      exited, or something else answers on its port; run the program in the \
                      foreground (nginx with `-g \"daemon off;\"`, say), and stop what runs \
                      now yourself";
        let why = if state.elsewhere {
            "it runs under another supervisor, which holds its lock file and stops it".to_string()
        } else {
            match state.latest.as_ref().map(|exit| *exit.borrow()) {
                Some(Exit::Exited(Some(status))) if !status.success() => return None,
                Some(Exit::Exited(Some(status))) => {
                    format!("its last run ended, {status}, {forked}")
                }
                Some(_) => format!("its last run ended, {forked}"),
                None => "this supervisor never started it: what answers on its port was \
                         started otherwise (by hand, say, or left running by a supervisor \
                         that was killed: stopped from here only with a `lock_file` whose \
                         record shows it is that run's), and is not stopped from here; stop \
                         that program yourself, and the next request starts it here"
                    .to_string(),
            }
        };
        Some(ProcessError::NotRunning {
            program: self.shared.program.to_string(),
            why,
        })
    }
}

/// What the stops of one run share, so that stops that overlap (an idle stop and the
/// gateway's shutdown, an operator's stop and a second signal) signal the program once each
/// way: one SIGTERM, one SIGKILL, one line each.
#[derive(Debug)]
pub(super) struct Stops {
    /// The program's id, its group's.
    pub(super) pid: u32,
    /// When what is left of the program is killed: the earliest deadline of the stops so far;
    /// `None` until the first stop.
    kill_at: Mutex<Option<Instant>>,
    /// Whether a stop has sent (or is sending) the SIGKILL.
    killed: AtomicBool,
    /// How many stops are under way: a start waits until none is (see [`ended`](Self::ended)).
    under_way: watch::Sender<usize>,
    /// How many of those have said so in the lock file's record: the record is written as this
    /// changes from and to zero, under this lock, so that it says "stopping" while one is
    /// under way and not once none is, however they begin and end (one after another given
    /// up, two given up at once on two threads).
    said: Mutex<usize>,
    /// Where the stop of what the program left in its group stands (see `remains`).
    remains: watch::Sender<Remains>,
}

impl Stops {
    pub(super) fn new(pid: u32) -> Self {
        Self {
            pid,
            kill_at: Mutex::default(),
            killed: AtomicBool::default(),
            under_way: watch::Sender::default(),
            said: Mutex::default(),
            remains: watch::Sender::new(Remains::NotBegun),
        }
    }

    /// Whether a stop has begun, so that the exit is not reported as a crash.
    pub(super) fn begun(&self) -> bool {
        self.kill_at().is_some()
    }

    /// Adds a stop whose own deadline is `deadline`: whether it is the first, and when it
    /// kills the program, its own deadline or an earlier stop's, whichever comes first (one
    /// stop is not polled any more when the gateway's second signal wins, and a grace of zero
    /// must kill at once however long the first stop would wait).
    fn join(&self, deadline: Instant) -> (bool, Instant) {
        let mut kill_at = self.kill_at.lock().unwrap_or_else(PoisonError::into_inner);
        let first = kill_at.is_none();
        let at = kill_at.map_or(deadline, |at| at.min(deadline));
        *kill_at = Some(at);
        (first, at)
    }

    pub(super) fn kill_at(&self) -> Option<Instant> {
        *self.kill_at.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a stop is under way: of the program, or of what it left in its group (which
    /// holds the lock file's lock meanwhile).
    pub(super) fn under_way(&self) -> bool {
        *self.under_way.borrow() > 0
    }

    /// Resolves once no stop is under way any more (their hold on the lock file released),
    /// or fails once they have outlasted their bound: the SIGKILL deadline, then what the
    /// program and its group may take to die of it.
    pub(super) async fn ended(&self) -> Result<(), Duration> {
        let Some(kill_at) = self.kill_at() else {
            return Ok(());
        };
        let bound = crate::deadline::saturating_after(kill_at, AFTER_KILL + STOP_SLACK);
        let mut under_way = self.under_way.subscribe();
        match tokio::time::timeout_at(bound, under_way.wait_for(|n| *n == 0)).await {
            // The sender is ours: it cannot be gone while we borrow it.
            Ok(_) => Ok(()),
            Err(_) => Err(bound.saturating_duration_since(kill_at)),
        }
    }

    /// Whether this caller is the one to send the SIGKILL: the first to ask.
    pub(super) fn claim_kill(&self) -> bool {
        !self.killed.swap(true, Ordering::SeqCst)
    }

    /// Whether what the program left in its group is being stopped (it has exited).
    pub(super) fn remains_under_way(&self) -> bool {
        matches!(*self.remains.borrow(), Remains::Stopping)
    }

    pub(super) fn set_remains(&self, remains: Remains) {
        self.remains.send_replace(remains);
    }

    /// Resolves once what the program left in its group is stopped (at once if that stop has
    /// not begun: the program has not exited under a stop), or why it may not be: it could
    /// not be killed, or it outlasted its bound.
    async fn remains_stopped(&self) -> Result<(), String> {
        let kill_at = self.kill_at().unwrap_or_else(Instant::now);
        let bound = crate::deadline::saturating_after(kill_at, AFTER_KILL + STOP_SLACK);
        let mut remains = self.remains.subscribe();
        let over = remains.wait_for(|remains| !matches!(remains, Remains::Stopping));
        match tokio::time::timeout_at(bound, over).await {
            Ok(Ok(remains)) => match &*remains {
                Remains::Stopped(Some(failure)) => Err(failure.clone()),
                _ => Ok(()),
            },
            // The sender is ours: it cannot be gone while we borrow it.
            Ok(Err(_)) => Ok(()),
            Err(_) => Err(format!(
                "what it left in its process group still runs {:?} after its SIGKILL was due",
                bound.saturating_duration_since(kill_at)
            )),
        }
    }
}

/// One stop under way, holding its run (and so the lock file's lock) until it ends, however it
/// ends (its future dropped too): the lock is released before the count says it has ended.
pub(super) struct UnderWay {
    running: Option<Running>,
    /// Whether it counts among the stops that said so in the record ([`Stops::said`]).
    said: bool,
}

impl UnderWay {
    pub(super) fn new(running: Running) -> Self {
        running.stops.under_way.send_modify(|n| *n += 1);
        Self {
            running: Some(running),
            said: false,
        }
    }

    /// Says in the lock file's record that the program is being stopped and killed by
    /// `deadline`, unless a stop under way has: every stop, not the first only, as the
    /// record was taken back if the stops before it were given up on.
    pub(super) fn say(&mut self, deadline: Instant) {
        let running = self.running.as_ref().expect("held until dropped");
        let mut said = running
            .stops
            .said
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *said += 1;
        if *said == 1 {
            running.say_stopping(deadline);
        }
        self.said = true;
    }
}

impl std::ops::Deref for UnderWay {
    type Target = Running;

    fn deref(&self) -> &Running {
        self.running.as_ref().expect("held until dropped")
    }
}

impl Drop for UnderWay {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            if self.said {
                let stops = &running.stops;
                let mut said = stops.said.lock().unwrap_or_else(PoisonError::into_inner);
                *said -= 1;
                if *said == 0 {
                    running.unsay_stopping_if_running();
                }
            }
            let stops = std::sync::Arc::clone(&running.stops);
            drop(running);
            stops.under_way.send_modify(|n| *n -= 1);
        }
    }
}

/// Whether the group `pgid` has a member that runs: one signal to tell a group that is gone,
/// and only for one that is not, a look through `/proc` (to tell zombies, which a group
/// whose leader is gone may hold for as long as their parent does not reap them), made on the
/// blocking pool as it reads every process's entry.
pub(super) async fn has_live_members(pgid: u32) -> bool {
    if !group::has_members(pgid) {
        return false;
    }
    super::leftover::off_runtime(move || group::has_live_members(pgid)).await
}

pub(super) async fn stop(
    shared: &Shared,
    grace: Duration,
) -> Result<Option<ExitStatus>, ProcessError> {
    let joined = {
        // Joined under the state lock, as the exit's watcher reads whether a stop began.
        let state = shared.lock();
        let own = crate::deadline::saturating_after(Instant::now(), grace);
        match state.running.as_ref() {
            // The program has exited, and what it left in its group may be being stopped
            // still: this stop kills that by its own deadline at the latest (a shutdown's,
            // with no grace at the third signal), and waits for it.
            None => {
                let remains = state.stops.clone().filter(|s| s.remains_under_way());
                if let Some(stops) = &remains {
                    stops.join(own);
                }
                Err(remains)
            }
            Some(running) => {
                let (first, deadline) = running.stops.join(own);
                Ok((UnderWay::new(running.clone()), first, deadline))
            }
        }
    };
    let (mut running, first, deadline) = match joined {
        Ok(joined) => joined,
        Err(None) => return Ok(None),
        Err(Some(stops)) => {
            let failed = |reason| ProcessError::Stop {
                program: shared.program.to_string(),
                pid: stops.pid,
                reason,
            };
            return stops.remains_stopped().await.map_err(failed).map(|()| None);
        }
    };
    // Written before the program goes down: another supervisor that finds it down then waits
    // for this stop, rather than take it for running under this one.
    running.say(deadline);
    let pid = running.pid();
    let service = shared.asker();
    let service = service.as_deref();
    let failed = |reason: String| ProcessError::Stop {
        program: shared.program.to_string(),
        pid,
        reason,
    };
    // Sends the SIGKILL unless another stop did; one to a group gone meanwhile is no error.
    let kill = |why: &'static str| {
        let running = &running;
        async move {
            if !running.stops.claim_kill() {
                return Ok(());
            }
            tracing::warn!(service = service.map(tracing::field::display), program = %shared.program, pid, ?grace,
                "{why}: SIGKILL");
            match group::signal(pid, group::SIGKILL) {
                Err(e) if has_live_members(pid).await => Err(failed(format!("SIGKILL: {e}"))),
                _ => Ok(()),
            }
        }
    };
    if first {
        tracing::info!(service = service.map(tracing::field::display), program = %shared.program, pid, ?grace,
            "stopping the backend program (SIGTERM)");
        group::signal(pid, group::SIGTERM).map_err(|e| failed(format!("SIGTERM: {e}")))?;
    } else {
        // A second SIGTERM would run a program's handler twice, and could cut its shutdown short.
        tracing::debug!(service = service.map(tracing::field::display), program = %shared.program, pid, ?grace,
            "the backend program is being stopped already: waiting for its exit");
    }
    let status = match tokio::time::timeout_at(deadline, running.exited()).await {
        Ok(status) => status,
        Err(_) => {
            kill("the backend program did not stop within its grace").await?;
            tokio::time::timeout(AFTER_KILL, running.exited())
                .await
                .map_err(|_| failed(format!("still running {AFTER_KILL:?} after SIGKILL")))?
        }
    };
    // What it left in its group is stopped by its exit's watcher, which goes on should this
    // stop be given up on.
    running.stops.remains_stopped().await.map_err(failed)?;
    Ok(status)
}
