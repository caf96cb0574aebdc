//! Serving on one single-threaded runtime per core, as nginx's workers do.
//!
//! On a work-stealing runtime a proxied request hops threads: hyper's client drives each
//! upstream connection as a task of its own, so the answer wakes the client connection's task,
//! often on the other thread (a futex each way). Here each worker thread has its own runtime,
//! its own copy of the listening socket and its own upstream connection pools, so a request is
//! accepted, proxied and answered on one thread. What the workers share is the monitor: one
//! lifecycle per backend, whichever worker a request lands on.

use std::fmt;
use std::future::Future;
use std::io;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use super::live::Live;
use super::{Router, serve};
use crate::once_a_minute::OnceAMinute;

/// Builds a router for one worker: its own upstream connection pools, the layers shared.
pub(super) struct Routers(pub(super) Box<dyn Fn() -> Router + Send + Sync>);

impl fmt::Debug for Routers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Routers")
    }
}

/// The default number of workers: one per core the process may use.
pub fn default_workers() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// A worker thread: its result (whether its connections drained), and the signal that lets
/// its runtime end, sent once nothing started on it (a poller, a backend program's output)
/// is needed any more.
struct Worker {
    drained: oneshot::Receiver<bool>,
    release: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// Serves `listener` on `workers` threads until `shutdown` completes, then drains each as
/// [`serve::serve`] does. Returns whether every worker drained within the grace (or why the
/// workers could not all start: then those that did are drained at once), and the workers'
/// runtimes, for the caller to end once it has stopped the backends.
pub(super) async fn serve_workers(
    listener: std::net::TcpListener,
    live: &Live,
    workers: NonZeroUsize,
    shutdown: impl Future<Output = ()>,
) -> (io::Result<bool>, Released) {
    let (stop, stopping) = watch::channel(false);
    // One for the listener, whichever worker's copy fails: at error once a minute for the
    // process, not once for each worker.
    let accept_said = Arc::<OnceAMinute>::default();
    // Not allocated from the count: a huge one is a thread that fails to start, not an abort.
    let mut started = Vec::new();
    let mut failed = listener.set_nonblocking(true).err();
    for index in 0..workers.get() {
        if failed.is_some() {
            break;
        }
        let worker = listener.try_clone().and_then(|listener| {
            let said = Arc::clone(&accept_said);
            start_worker(index, listener, live.clone(), stopping.clone(), said)
        });
        match worker {
            Ok(worker) => started.push(worker),
            Err(error) => failed = Some(error),
        }
    }
    drop(listener);
    if failed.is_none() {
        shutdown.await;
    }
    let _ = stop.send(true);
    let mut all_drained = true;
    let mut released = Released(Vec::with_capacity(started.len()));
    for worker in started {
        all_drained &= worker.drained.await.unwrap_or(false);
        released.0.push((worker.release, worker.thread));
    }
    (failed.map_or(Ok(all_drained), Err), released)
}

/// One worker: a thread running a single-threaded runtime that serves `listener` with the
/// routes of `live` until `stopping` turns true, then waits to be released.
fn start_worker(
    index: usize,
    listener: std::net::TcpListener,
    live: Live,
    mut stopping: watch::Receiver<bool>,
    accept_said: Arc<OnceAMinute>,
) -> io::Result<Worker> {
    let (drained_tx, drained) = oneshot::channel();
    let (release, released) = oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name(format!("gateway-worker-{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::error!(%error, worker = index, "cannot use the listener");
                        let _ = drained_tx.send(false);
                        return;
                    }
                };
                let stopped = async move {
                    let _ = stopping.wait_for(|stop| *stop).await;
                };
                let drained = serve::serve(listener, live, stopped, accept_said).await;
                let _ = drained_tx.send(drained);
                let _ = released.await;
            });
            // Tasks still running (a relayed WebSocket past the grace) must not hold the exit.
            runtime.shutdown_timeout(Duration::from_secs(1));
        })?;
    Ok(Worker {
        drained,
        release,
        thread,
    })
}

/// The workers' runtimes, kept until [`join`](Self::join): they drive what was started on
/// them (pollers, a backend program's output and its exit), so they end after the backends
/// are stopped. Dropped without `join`, they end without being waited for.
pub(super) struct Released(Vec<(oneshot::Sender<()>, std::thread::JoinHandle<()>)>);

impl Released {
    /// Ends the runtimes and waits for their threads (about a second at most each). Blocks.
    pub(super) fn join(mut self) {
        // All released first, so that their shutdowns overlap.
        let threads: Vec<_> = self
            .0
            .drain(..)
            .map(|(release, thread)| {
                let _ = release.send(());
                thread
            })
            .collect();
        for thread in threads {
            let _ = thread.join();
        }
    }
}
