//! [`WakeAfterStop`]: a start asked for while the backend was stopping, kept for the stop's end.
//!
//! A request (or an operator) that finds the backend stopping cannot start it beside the
//! running `on_idle`; its wish is kept, and the stop's end in Down takes it and starts the
//! backend. The asker records the wish, then tries to wake once more (the stop may have ended
//! between its two looks): whichever of the two comes second sees the other's write.

use crate::lifecycle::{Event, Lifecycle, ServiceState, Transition};
use crate::sync::atomic::{AtomicU8, Ordering};

use super::release::Asker;

/// No start asked for while the backend was stopping.
const NO_WISH: u8 = 0;

/// A start asked for while the backend was stopping, and by whom: an operator's outranks a
/// request's (a request's is refused once the server shuts down, an operator's never).
#[derive(Debug)]
pub(super) struct WakeAfterStop(AtomicU8);

impl WakeAfterStop {
    pub(super) fn new() -> Self {
        Self(AtomicU8::new(NO_WISH))
    }

    /// Wakes `life` if it is down. If it is stopping, the wish is kept for the stop's end in
    /// Down to start it, and a second try wakes it should the stop have ended between the two
    /// looks. `counted` counts a start in before each try (see `runs`: an idle stop that
    /// follows the wake sees it). Answers the wake's transition and its count, or None if
    /// this asker starts nothing now (up, starting, or the wish kept).
    pub(super) fn wake<R>(
        &self,
        life: &Lifecycle,
        asker: Asker,
        counted: impl Fn() -> R,
    ) -> Option<(Transition, R)> {
        let running = counted();
        if let Some(transition) = life.apply(Event::Wake) {
            return Some((transition, running));
        }
        drop(running);
        // Down here too: the stop ended after the try, its end seeing no wish yet.
        if matches!(life.state(), ServiceState::Up | ServiceState::Starting) {
            return None;
        }
        self.ask(asker);
        let running = counted();
        let Some(transition) = life.apply(Event::Wake) else {
            self.after_failed_wake(life.state());
            return None;
        };
        self.forget();
        Some((transition, running))
    }

    /// `asker` wants a start once the stop ends. Recorded before the asker's second try to
    /// wake: a stop that ends after that try failed takes the wish in its Down transition.
    fn ask(&self, asker: Asker) {
        let wish = match asker {
            Asker::Request => 1,
            Asker::Operator => 2,
        };
        self.0.fetch_max(wish, Ordering::SeqCst);
    }

    /// The asker's second try to wake failed, and the service is now in `state`. Up (the stop
    /// failed) or Starting (someone else woke it): nothing is left to wish for, and a wish kept
    /// would start the backend right after its next idle stop, so it is forgotten. Down: the
    /// stop ended after the failed try, and its Down transition takes the wish (or already
    /// has): forgetting it here could come before that take, and lose the start. Stopping:
    /// the stop's end will take it.
    fn after_failed_wake(&self, state: ServiceState) {
        if matches!(state, ServiceState::Up | ServiceState::Starting) {
            self.forget();
        }
    }

    /// The backend is up again, or starting: a wish is moot.
    pub(super) fn forget(&self) {
        self.0.store(NO_WISH, Ordering::SeqCst);
    }

    /// The stop ended in Down: who wished for a start meanwhile, if anyone (the wish is gone).
    pub(super) fn take(&self) -> Option<Asker> {
        match self.0.swap(NO_WISH, Ordering::SeqCst) {
            NO_WISH => None,
            1 => Some(Asker::Request),
            _ => Some(Asker::Operator),
        }
    }
}
