//! Triggers: actions run by the layer when a request finds a service up, down, or either.
//!
//! A trigger returns a future that the layer awaits, so its failure can turn the request into a
//! 500. A trigger whose work is long (starting a VM) should return once the work is requested.

mod from_fn;

pub use from_fn::{FromFn, from_fn};

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::BoxError;

/// An action run for a request, for example "start the backend".
///
/// ```
/// use futures::future::{BoxFuture, FutureExt};
/// use tower_monitor::{BoxError, Trigger};
///
/// struct LogWake;
///
/// impl Trigger for LogWake {
///     fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>> {
///         async {
///             println!("waking the backend");
///             Ok(())
///         }
///         .boxed()
///     }
/// }
/// ```
pub trait Trigger: Send + Sync + 'static {
    /// Runs the action; the future resolves when it is done (or has been requested).
    fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>>;
}

impl<T: Trigger + ?Sized> Trigger for Arc<T> {
    fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        (**self).trigger()
    }
}
