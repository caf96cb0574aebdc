use std::fmt;
use std::future::Future;

use futures::future::{BoxFuture, FutureExt};
use url::Url;

use super::Probe;
use crate::BoxError;

/// A [`Probe`] made from a closure that returns a future; see [`from_fn`].
#[derive(Clone)]
pub struct FromFn<F> {
    f: F,
}

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromFn").finish_non_exhaustive()
    }
}

/// Makes a [`Probe`] from a closure that receives the service's URL and returns a future.
///
/// As with [`trigger::from_fn`](crate::trigger::from_fn), the future must own what it uses:
/// clone the closure's captures into an `async move` block, as below (an `async move |url|`
/// closure that captures an `Arc` is refused: it only lends it to its futures).
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use tower_monitor::{BoxError, probe};
///
/// let healthy = Arc::new(AtomicBool::new(true));
/// let probe = probe::from_fn(move |_url| {
///     let healthy = healthy.clone();
///     async move { Ok::<bool, BoxError>(healthy.load(Ordering::SeqCst)) }
/// });
/// # let _ = probe;
/// ```
pub fn from_fn<F, Fut, E>(f: F) -> FromFn<F>
where
    F: Fn(Url) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<bool, E>> + Send + 'static,
    E: Into<BoxError>,
{
    FromFn { f }
}

impl<F, Fut, E> Probe for FromFn<F>
where
    F: Fn(Url) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<bool, E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn probe(&self, url: &Url) -> BoxFuture<'static, Result<bool, BoxError>> {
        (self.f)(url.clone()).map(|r| r.map_err(Into::into)).boxed()
    }
}
