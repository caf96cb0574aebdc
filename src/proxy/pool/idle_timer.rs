//! The pool's idle timer: one task per pool that closes the connections idle for longer than
//! its timeout, and stops once none is idle.

use std::sync::{Arc, PoisonError, Weak};

use tokio::time::Instant;

use super::Shared;

/// The idle timer task's hold on its pool's `timer` flag: should the task be dropped before
/// it ends (its runtime shut down, while the pool goes on serving another runtime's requests),
/// the flag is cleared, so that the next connection put back starts another timer. Made before
/// the task is spawned: a task dropped before its first poll clears it too.
pub(super) struct IdleTimer<B> {
    pool: Weak<Shared<B>>,
    /// False once the task has cleared the flag itself (with the stack empty, under its lock).
    running: bool,
}

impl<B> IdleTimer<B> {
    pub(super) fn new(pool: &Arc<Shared<B>>) -> Self {
        Self {
            pool: Arc::downgrade(pool),
            running: true,
        }
    }
}

impl<B> Drop for IdleTimer<B> {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        if let Some(pool) = self.pool.upgrade() {
            pool.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .timer = false;
        }
    }
}

/// Closes the connections idle for longer than the pool's timeout, until none is idle (or
/// the pool is gone).
pub(super) async fn close_idle<B: Send + 'static>(mut timer: IdleTimer<B>) {
    let pool = &timer.pool;
    let Some(mut deadline) = pool
        .upgrade()
        .map(|pool| Instant::now() + pool.idle_timeout)
    else {
        return;
    };
    loop {
        tokio::time::sleep_until(deadline).await;
        let Some(pool) = pool.upgrade() else { return };
        let mut idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let fresh = idle
            .connections
            .iter()
            .position(|connection| now.duration_since(connection.idle_since) < pool.idle_timeout)
            .unwrap_or(idle.connections.len());
        // Dropping a sender ends its connection's task, which closes the socket.
        idle.connections.drain(..fresh);
        match idle.connections.front() {
            Some(connection) => deadline = connection.idle_since + pool.idle_timeout,
            None => {
                idle.timer = false;
                timer.running = false;
                return;
            }
        }
    }
}
