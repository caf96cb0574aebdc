//! Starts called off before their `on_down` began, by an operator's stop.
//!
//! A backend can be found up while a start of it still waits for its dependencies (it was
//! running already, or something else started it). That start can no longer run `on_down`
//! (it sees its Starting stay over, see `Awaited::StartEnded`), but it lasts until the
//! dependencies are up or given up, which may take far longer than the trigger timeout an
//! operator's stop waits for a start (see `Registered::dependencies_bound`). The stop would
//! be refused for a start that was never going to run anything: so it calls such starts
//! off instead, and waits only for an `on_down` that has begun.

use std::fmt;

use tokio::sync::watch;

/// Calls off the starts that have not begun `on_down`: each takes a [`Ticket`] as it is made
/// and looks at it right before `on_down`.
pub(super) struct CallOff(watch::Sender<u64>);

impl Default for CallOff {
    fn default() -> Self {
        Self(watch::Sender::new(0))
    }
}

impl CallOff {
    /// For a start about to be made (taken before its transition, so that a stop which follows
    /// that transition calls it off).
    pub(super) fn ticket(&self) -> Ticket {
        Ticket(self.0.subscribe())
    }

    /// Calls off every start whose ticket was taken before now and whose `on_down` has not
    /// begun. A start either sees this (the channel's version) and runs no `on_down`, or
    /// looked before it and runs `on_down`; either way it stays counted in the start runs,
    /// from before its transition until it ends, so the caller, which waits for those, waits
    /// for it.
    pub(super) fn call_off(&self) {
        self.0.send_modify(|calls| *calls = calls.wrapping_add(1));
    }
}

/// One start's view of [`CallOff`].
pub(super) struct Ticket(watch::Receiver<u64>);

impl Ticket {
    /// Whether the start was called off since its ticket was taken.
    pub(super) fn called_off(&self) -> bool {
        self.0.has_changed().unwrap_or(false)
    }

    /// Resolves once the start is called off (never, if it is not).
    pub(super) async fn wait(&mut self) {
        if self.0.changed().await.is_err() {
            // The sender lives as long as the service: gone, nothing calls off any more.
            std::future::pending::<()>().await;
        }
    }
}

/// Why a start ended without running `on_down`: an operator's stop called it off.
#[derive(Debug)]
pub(crate) struct StartCalledOff;

impl fmt::Display for StartCalledOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("its start was called off by a stop before on_down ran")
    }
}

impl std::error::Error for StartCalledOff {}
