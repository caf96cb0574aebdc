use std::fmt;
use std::future::Future;

use futures::future::{BoxFuture, FutureExt};

use super::Trigger;
use crate::BoxError;

/// A [`Trigger`] made from a closure that returns a future; see [`from_fn`].
#[derive(Clone)]
pub struct FromFn<F> {
    f: F,
}

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromFn").finish_non_exhaustive()
    }
}

/// Makes a [`Trigger`] from a closure returning a future.
///
/// The closure is called for each run and its future must own what it uses: clone what the
/// closure captures into an `async move` block, as below. An `async` closure (`async || ..`)
/// does for one that captures nothing; one that captures (`async move || counted.fetch_add(..)`)
/// only lends its captures to its futures, and is refused with "async closure does not
/// implement `Fn` because it captures state from its environment".
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use tower_monitor::{BoxError, trigger};
///
/// let wakes = Arc::new(AtomicUsize::new(0));
/// let counted = wakes.clone();
/// let wake = trigger::from_fn(move || {
///     let counted = counted.clone();
///     async move {
///         counted.fetch_add(1, Ordering::SeqCst);
///         Ok::<(), BoxError>(())
///     }
/// });
/// let log = trigger::from_fn(async || {
///     println!("a request found the backend up");
///     Ok::<(), BoxError>(())
/// });
/// # let _ = (wake, log);
/// ```
pub fn from_fn<F, Fut, E>(f: F) -> FromFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    FromFn { f }
}

impl<F, Fut, E> Trigger for FromFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        (self.f)().map(|r| r.map_err(Into::into)).boxed()
    }
}
