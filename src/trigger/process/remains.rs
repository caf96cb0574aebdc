//! What the program left in its process group once it exited under a stop (what a wrapper
//! script started, children deaf to SIGTERM): stopped by its exit's watcher, on that task, so
//! that a stop given up on by its caller (an idle stop cut short by the monitor's
//! `trigger_timeout`) still kills it at the stop's deadline, and the lock file stays held, and
//! counted as a stop under way (which a start waits for), until the group is empty.

use std::sync::Arc;

use tokio::time::Instant;

use super::run::Running;
use super::stop::{AFTER_KILL, GROUP_POLL, UnderWay, has_live_members};
use crate::trigger::process_group as group;

/// Where the stop of what the program left in its group stands.
#[derive(Debug, Clone)]
pub(super) enum Remains {
    /// Not begun: the program has not exited under a stop, or its watcher was dropped first
    /// (having killed the group).
    NotBegun,
    /// Under way, on the exit's watcher's task.
    Stopping,
    /// Over: the group is empty, or why it may not be.
    Stopped(Option<String>),
}

/// The stop of what the program left in its group, begun as its exit is seen under a stop.
pub(super) struct RemainsStop {
    under_way: Option<UnderWay>,
    /// Why the group may not be empty, once that stop is over.
    failure: Option<String>,
    over: bool,
}

impl RemainsStop {
    /// Begins it, under the state lock and before the run is forgotten there, so that a start
    /// meanwhile finds either the program running or a stop under way.
    pub(super) fn begin(running: &Running) -> Self {
        running.stops.set_remains(Remains::Stopping);
        Self {
            under_way: Some(UnderWay::new(running.clone())),
            failure: None,
            over: false,
        }
    }

    /// Waits for the group to empty until the stops' SIGKILL deadline (the earliest, read at
    /// each look: a stop joined since, a shutdown's, may bring it forward), kills what is left
    /// then, and waits for that to die.
    pub(super) async fn run(mut self, program: Arc<str>, service: Option<Arc<str>>) {
        let under_way = self.under_way.as_mut().expect("held until dropped");
        let pid = under_way.pid();
        let stops = Arc::clone(&under_way.stops);
        let kill_at = || stops.kill_at().unwrap_or_else(Instant::now);
        if has_live_members(pid).await {
            // The record says so until the lock goes, however the stops that said so end.
            under_way.say(kill_at());
        }
        while has_live_members(pid).await && Instant::now() < kill_at() {
            tokio::time::sleep(GROUP_POLL).await;
        }
        if has_live_members(pid).await {
            self.failure = kill(pid, &stops, &program, service.as_deref()).await.err();
        }
        self.over = true;
    }
}

/// Kills what the program left in its group now, if that is being stopped: the last handle to
/// the process is gone, which kills its group (as it does the program, running), and with it
/// whatever waited for that stop (a supervisor's shutdown no longer sees the process). Its
/// exit's watcher goes on, to wait for it to die and release the lock file.
pub(super) fn kill_now(stops: &super::stop::Stops) -> bool {
    if !stops.remains_under_way() || !stops.claim_kill() {
        return false;
    }
    let _ = group::signal(stops.pid, group::SIGKILL);
    true
}

/// Sends SIGKILL to the group `pid`, unless a stop did (the program did not exit within the
/// grace), and waits for its members to die: a start right after would find them still
/// holding the port.
async fn kill(
    pid: u32,
    stops: &super::stop::Stops,
    program: &str,
    service: Option<&str>,
) -> Result<(), String> {
    if stops.claim_kill() {
        tracing::warn!(
            service = service.map(tracing::field::display),
            program,
            pid,
            "processes the program left in its group did not stop within the grace: SIGKILL"
        );
        if let Err(e) = group::signal(pid, group::SIGKILL) {
            if has_live_members(pid).await {
                return Err(format!("SIGKILL to what it left in its process group: {e}"));
            }
        }
    }
    let deadline = Instant::now() + AFTER_KILL;
    while has_live_members(pid).await {
        if Instant::now() >= deadline {
            return Err(format!(
                "what it left in its process group still runs {AFTER_KILL:?} after SIGKILL"
            ));
        }
        tokio::time::sleep(GROUP_POLL).await;
    }
    Ok(())
}

impl Drop for RemainsStop {
    fn drop(&mut self) {
        let Some(under_way) = self.under_way.take() else {
            return;
        };
        let (pid, stops) = (under_way.pid(), Arc::clone(&under_way.stops));
        if !self.over {
            // Dropped with its runtime: no one would stop the group any more, and the lock
            // goes with this.
            let _ = group::signal(pid, group::SIGKILL);
            self.failure = Some("its runtime shut down as it stopped its process group".into());
        }
        // The lock released (unless a stop still holds it) before the stops waiting for this
        // see it over.
        drop(under_way);
        stops.set_remains(Remains::Stopped(self.failure.take()));
    }
}
