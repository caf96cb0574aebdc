//! Probes: how a service's status is determined.
//!
//! A probe answers `Ok(true)` when the service is up, `Ok(false)` when it cannot be reached
//! (refused, reset, unreachable, a name that does not resolve), and `Err(..)` only when it
//! failed for another reason. The monitor bounds every probe by the service's
//! [probe timeout](crate::MonitoredService::probe_timeout); a probe that runs out of time
//! counts as down.
//!
//! A probe that fails because this process ran out of a resource of its own (an
//! [`std::io::Error`] in the error's chain that is `EMFILE` or `ENFILE`, out of file
//! descriptors; `EADDRNOTAVAIL`, out of local ports; `ENOBUFS` or `ENOMEM`) says nothing of the
//! service: the monitor leaves its state as it was (an Up service is neither marked down nor
//! started again, a Starting or Stopping one waits on for its probe or its timeout), counts the
//! probe as `local_resources`, logs it at error at most once a minute, and gives the error to
//! whoever asked for the status. A request behind the layer is then forwarded if the service
//! was last up (the proxy may still reach it on a kept connection, and answers 503 for itself
//! if not), and answered 503 with `Retry-After: 1` otherwise, nothing started. The built-in
//! probes report these errors so, also for a name with several addresses of which one was
//! refused and another could not be tried so (unless one connects: the service may listen on
//! the one not tried); a [`from_fn`] probe does by returning the `io::Error` (or an error
//! whose `source` chain holds it).

mod expect;
mod from_fn;
pub(crate) mod http;
mod tcp;
#[cfg(feature = "rustls")]
pub(crate) mod tls;

pub use expect::Expect;
pub use from_fn::{FromFn, from_fn};
pub use http::{DEFAULT_MAX_BODY_BYTES, Http};
pub use tcp::Tcp;

use std::sync::Arc;

use futures::future::BoxFuture;
use url::Url;

use crate::BoxError;

/// Determines whether a service is up.
///
/// Most custom probes are a [`from_fn`] closure; a type of your own implements this trait
/// (with the crate's [`BoxFuture`], no other dependency needed):
///
/// ```
/// use tower_monitor::{BoxError, BoxFuture, Probe, Url};
///
/// /// Up when the URL's path says so; a stand-in for a real check.
/// struct PathSaysUp;
///
/// impl Probe for PathSaysUp {
///     fn probe(&self, url: &Url) -> BoxFuture<'static, Result<bool, BoxError>> {
///         let up = url.path() == "/up";
///         Box::pin(async move { Ok(up) })
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    note = "a closure that returns a future is a probe once wrapped: `tower_monitor::probe::from_fn(|url| async move {{ Ok::<bool, BoxError>(true) }})`"
)]
pub trait Probe: Send + Sync + 'static {
    /// Probes the service at `url`.
    fn probe(&self, url: &Url) -> BoxFuture<'static, Result<bool, BoxError>>;

    /// Checks, when the service is added, that `url` is something this probe can probe.
    /// The error says what is missing; the default accepts every URL.
    ///
    /// ```
    /// use tower_monitor::{Probe, Url, probe::Tcp};
    ///
    /// let no_port = Url::parse("myproto://host/").unwrap();
    /// assert!(Tcp.validate_url(&no_port).is_err());
    /// ```
    fn validate_url(&self, url: &Url) -> Result<(), String> {
        let _ = url;
        Ok(())
    }
}

impl<P: Probe + ?Sized> Probe for Arc<P> {
    fn probe(&self, url: &Url) -> BoxFuture<'static, Result<bool, BoxError>> {
        (**self).probe(url)
    }

    fn validate_url(&self, url: &Url) -> Result<(), String> {
        (**self).validate_url(url)
    }
}
