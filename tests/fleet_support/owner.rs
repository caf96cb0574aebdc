//! A backend that only the replica running it can stop, as with a `process` trigger: the
//! program is that gateway's child, and every other replica's `process_stop` has nothing to
//! stop ("not running here").

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tower_monitor::{BoxError, Trigger, trigger};

use super::Backend;

/// Which replica runs the backend, the starts asked for, and the stops tried where it does not
/// run.
#[derive(Default)]
pub struct Owner {
    pub replica: Mutex<Option<usize>>,
    pub starts_asked: AtomicUsize,
    pub stops_elsewhere: AtomicUsize,
}

impl Owner {
    /// The replica that runs the backend now, if any.
    pub fn runner(&self) -> Option<usize> {
        *self.replica.lock().unwrap()
    }

    /// `on_idle` of replica `me`: stops `backend` if `me` runs it, and fails otherwise.
    pub fn stop_where_it_runs(self: &Arc<Self>, backend: &Arc<Backend>, me: usize) -> impl Trigger {
        let (owner, backend) = (Arc::clone(self), Arc::clone(backend));
        trigger::from_fn(move || {
            let mut replica = owner.replica.lock().unwrap();
            let result = if *replica == Some(me) {
                *replica = None;
                backend.stop();
                Ok(())
            } else {
                owner.stops_elsewhere.fetch_add(1, Ordering::SeqCst);
                Err(BoxError::from("nothing to stop: not running here"))
            };
            async move { result }
        })
    }
}
