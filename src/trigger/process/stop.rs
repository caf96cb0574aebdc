//! Stopping the program: SIGTERM to its group, SIGKILL after the grace; and the stop as a trigger.

use std::process::ExitStatus;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use tokio::time::Instant;

use super::{Process, ProcessError, Shared};
use crate::BoxError;
use crate::trigger::Trigger;
use crate::trigger::process_group as group;

/// How long a program is awaited after SIGKILL: it cannot refuse to die, so running out of this
/// means something is badly wrong (a process stuck in the kernel).
const AFTER_KILL: Duration = Duration::from_secs(5);

/// How often a stop looks whether what the program left in its group has exited: there is no
/// event for the exit of a process that is not our child.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// A trigger that stops a [`Process`] (SIGTERM, then SIGKILL after its stop grace), made by
/// [`Process::stopper`]: for `on_idle`. `Ok` once the program is stopped, or if it crashed
/// (nothing is left to stop); it fails with [`ProcessError::NotRunning`] when the program
/// does not run under this supervisor otherwise (never started here, run by another, or it
/// exited successfully, as one that forks into the background does), as the backend, up
/// though nothing of its is running, cannot be stopped from here (a monitor keeps it up, and
/// says so, rather than waiting for its stop until the stop timeout).
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
                return Err(error.into());
            }
            process.stop().await?;
            Ok(())
        }
        .boxed()
    }
}

pub(super) async fn stop(
    shared: &Shared,
    grace: Duration,
) -> Result<Option<ExitStatus>, ProcessError> {
    let running = {
        let mut state = shared.lock();
        match state.running.as_mut() {
            None => return Ok(None),
            Some(running) => {
                running.stopping = true;
                running.clone()
            }
        }
    };
    let pid = running.pid();
    let service = shared.asker();
    let service = service.as_deref();
    let failed = |reason: String| ProcessError::Stop {
        program: shared.program.to_string(),
        pid,
        reason,
    };
    let deadline = crate::deadline::saturating_after(Instant::now(), grace);
    tracing::info!(service = service.map(tracing::field::display), program = %shared.program, pid, ?grace,
        "stopping the backend program (SIGTERM)");
    group::signal(pid, group::SIGTERM).map_err(|e| failed(format!("SIGTERM: {e}")))?;
    let status = match tokio::time::timeout_at(deadline, running.exited()).await {
        Ok(status) => {
            // The program is gone; give what it started the rest of the grace.
            while group::has_live_members(pid) && Instant::now() < deadline {
                tokio::time::sleep(GROUP_POLL).await;
            }
            status
        }
        Err(_) => {
            tracing::warn!(service = service.map(tracing::field::display), program = %shared.program, pid, ?grace,
                "the backend program did not stop within its grace: SIGKILL");
            group::signal(pid, group::SIGKILL).map_err(|e| failed(format!("SIGKILL: {e}")))?;
            tokio::time::timeout(AFTER_KILL, running.exited())
                .await
                .map_err(|_| failed(format!("still running {AFTER_KILL:?} after SIGKILL")))?
        }
    };
    if group::has_live_members(pid) {
        tracing::warn!(service = service.map(tracing::field::display), program = %shared.program, pid,
            "processes the program left in its group did not stop within the grace: SIGKILL");
        group::signal(pid, group::SIGKILL).map_err(|e| failed(format!("SIGKILL: {e}")))?;
    }
    Ok(status)
}
