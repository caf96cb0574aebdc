//! [`Streams`]: the executor of an HTTP/2 client connection's streams, through which the
//! connection's [`Stalled`](super::stalled::Stalled) watch can reset a stream at once.
//!
//! hyper runs each HTTP/2 stream as a task of its own, which owns the stream's handles. While
//! a client grants a stream no window, that task waits for window and asks the answer's body
//! for nothing, so an answer ended by the watch was seen by hyper (and the stream reset) only
//! once the client granted window again: a client that never did kept the stream, and its
//! place among the connection's concurrent streams, for ever. Each task spawned here carries a
//! handle ([`current`]) that ends it: its handles dropped, h2 resets the stream (`CANCEL`).

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Notify;

tokio::task_local! {
    /// The end of the stream task being polled.
    static STREAM: Arc<Notify>;
}

/// Spawns hyper's HTTP/2 tasks on Tokio, each endable through [`current`].
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Streams;

impl<F> hyper::rt::Executor<F> for Streams
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, task: F) {
        let end = Arc::new(Notify::new());
        let ended = Arc::clone(&end);
        tokio::spawn(STREAM.scope(end, async move {
            tokio::select! {
                biased;
                () = ended.notified() => None,
                output = task => Some(output),
            }
        }));
    }
}

/// What ends the stream task being polled (told with `notify_one`, which is kept if the task
/// is not waiting): `None` outside such a task, as for HTTP/1.1.
pub(super) fn current() -> Option<Arc<Notify>> {
    STREAM.try_with(Arc::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor;

    #[tokio::test]
    async fn a_task_is_ended_by_its_handle_and_only_by_it() {
        let (handles, mut got) = tokio::sync::mpsc::unbounded_channel();
        let (dropped, mut was_dropped) = tokio::sync::mpsc::unbounded_channel::<()>();
        for _ in 0..2 {
            let handles = handles.clone();
            let dropped = dropped.clone();
            Streams.execute(async move {
                let _dropped = Guard(dropped);
                handles
                    .send(current().expect("within a stream task"))
                    .unwrap();
                std::future::pending::<()>().await;
            });
        }
        let first = got.recv().await.unwrap();
        let second = got.recv().await.unwrap();
        assert!(!Arc::ptr_eq(&first, &second), "one handle per task");
        first.notify_one();
        was_dropped.recv().await.unwrap();
        assert!(
            was_dropped.try_recv().is_err(),
            "the other task goes on: {second:?}"
        );
        assert!(current().is_none(), "no handle outside a stream task");
    }

    struct Guard(tokio::sync::mpsc::UnboundedSender<()>);

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
}
