//! The starter stops: which replica a backend's first idle stop is left to.
//!
//! With a `process` trigger only the replica that runs the program can stop it (it is that
//! gateway's child; `process_stop` elsewhere has nothing to stop, fails, and the backend stays
//! up another idle time). A start under the lease has one starter. But a start made while
//! Redis was unreachable may have been made by every replica, and a start taken over may have
//! been made by the holder too (its lease lost with a restarted Redis, not with the holder):
//! only the trigger knows whether what it started runs here (with a lock file, a replica that
//! found it held started nothing). So the trigger's word decides where it can tell: a replica
//! whose program runs is the starter, one whose program has exited is not, even if it started
//! the backend under the lease (the program crashed, and another replica started it again).
//! Where the trigger cannot tell (a webhook), the replica that started under the lease is.

use std::sync::atomic::Ordering;

use super::member::Member;
use crate::registered::Registered;

impl Member {
    /// Whether this idle stop is left to the replica that started the backend: every other
    /// one, where the backend was not started, and the idle time starts over. The starter's
    /// watch, looking every quarter idle time, sees the fleet idle at most a quarter after any
    /// other's; if the starter is gone (or there is none), another stops the backend an idle
    /// time later.
    pub(super) fn leave_to_starter(&self, registered: &Registered, idle_check: bool) -> bool {
        // The trigger's word first: a program started here under the lease may have crashed
        // and been started again by another replica (in a Redis outage, or with its
        // announcement missed), which this one could not stop. A trigger that cannot tell (a
        // webhook) leaves the lease's word; with neither, the backend is left to whichever
        // replica asks second, as one that was up before is.
        let starter = registered
            .runs_its_start()
            .unwrap_or_else(|| self.started_here.load(Ordering::SeqCst));
        if !idle_check || starter {
            return false;
        }
        // Toggled: left this time if it was not left the last time.
        !self.left_to_starter.fetch_xor(true, Ordering::SeqCst)
    }
}
