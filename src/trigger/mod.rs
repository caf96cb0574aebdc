//! Triggers: actions run by the layer when a request finds a service up, down, or either.
//!
//! A trigger returns a future that the layer awaits, so its failure can turn the request into a
//! 500. A trigger whose work is long (starting a VM) should return once the work is requested,
//! or be a detached [`Command`].
//!
//! The kinds: [`Command`] (a program, no shell), [`Compound`] (several in order), [`Delay`]
//! (once calls stop for a while), [`RateLimit`] (at most N runs per period), [`Webhook`] (an HTTP
//! request), and [`from_fn`] for your own. On Unix, [`Process`] is a program that *is* the
//! backend: started once, stopped with SIGTERM then SIGKILL, and with a [`Supervisor`] stopped
//! on the way out (Unix only, because it relies on process groups and signals).

mod bounded;
mod command;
mod compound;
mod delay;
mod from_fn;
mod output;
#[cfg(unix)]
mod process;
#[cfg(unix)]
pub(crate) mod process_group;
pub(crate) mod program;
mod rate_limit;
mod webhook;
mod webhook_connect;

pub(crate) use bounded::{run_bounded, run_bounded_unsaid, running_as, running_for};
pub use command::{Command, CommandError, DEFAULT_COMMAND_TIMEOUT};
pub use compound::Compound;
pub use delay::Delay;
pub use from_fn::{FromFn, from_fn};
pub use output::{CUT_MARKER, MAX_OUTPUT_LINE};
#[cfg(unix)]
pub(crate) use process::WeakProcess;
#[cfg(unix)]
pub use process::{
    DEFAULT_STOP_GRACE, Process, ProcessBuilder, ProcessError, ProcessStop, Supervisor,
};
pub use rate_limit::{RateLimit, RateLimited};
pub use webhook::{DEFAULT_WEBHOOK_TIMEOUT, MAX_WEBHOOK_ANSWER_BYTES, Webhook, WebhookError};

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::BoxError;

/// An action run for a request, for example "start the backend".
///
/// Most triggers are a [`from_fn`] closure; a type of your own implements this trait (the
/// crate re-exports [`BoxFuture`], so no other dependency is needed):
///
/// ```
/// use tower_monitor::{BoxError, BoxFuture, Trigger};
///
/// struct LogWake;
///
/// impl Trigger for LogWake {
///     fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>> {
///         Box::pin(async {
///             println!("waking the backend");
///             Ok(())
///         })
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    note = "a closure that returns a future is a trigger once wrapped: `tower_monitor::trigger::from_fn(|| async {{ Ok::<(), BoxError>(()) }})`"
)]
pub trait Trigger: Send + Sync + 'static {
    /// Runs the action; the future resolves when it is done (or has been requested).
    fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>>;

    /// For an `on_down` that runs the backend itself (a supervised [`Process`]): a future
    /// that resolves when what the last run started has ended, or `None` (the default) when
    /// the trigger cannot tell.
    ///
    /// Before a start, should it not have resolved (a program that crashed closes its sockets
    /// before its exit is seen), the monitor waits up to 1 s for it, not probing meanwhile, so
    /// that `trigger` starts the backend afresh rather than finding the dying one running.
    /// While a start is in progress the monitor watches it: a backend that ends before it
    /// comes up (a program that exits at once) ends the start then, and the service is down
    /// again, instead of Starting until the start timeout passes. In fleet mode, a replica
    /// that did not start the backend under the fleet's lease also polls the future once when
    /// it comes to an idle stop: if what it started runs here (after a start made while Redis
    /// was unreachable, say), the stop is its to make.
    ///
    /// ```
    /// use futures::future::{BoxFuture, FutureExt};
    /// use tower_monitor::{BoxError, Trigger};
    ///
    /// struct Forever;
    ///
    /// impl Trigger for Forever {
    ///     fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>> {
    ///         async { Ok(()) }.boxed()
    ///     }
    ///     fn ended(&self) -> Option<BoxFuture<'static, ()>> {
    ///         Some(futures::future::pending().boxed())
    ///     }
    /// }
    /// assert!(Forever.ended().is_some());
    /// ```
    fn ended(&self) -> Option<BoxFuture<'static, ()>> {
        None
    }

    /// For an `on_down` that runs the backend itself (a supervised [`Process`]): stops what
    /// the last run started, or `None` (the default) when there is nothing of the kind.
    ///
    /// The monitor calls it when a start is given up (the service's `start_timeout` passed
    /// before the backend came up), as systemd stops a service whose start timed out: a
    /// program hung at boot would otherwise keep running, and every later start would find it
    /// "running already" and start nothing.
    /// The future runs on its own task, bounded by the service's `trigger_timeout`; a panic
    /// is logged.
    ///
    /// ```
    /// use futures::future::{BoxFuture, FutureExt};
    /// use tower_monitor::{BoxError, Trigger};
    ///
    /// struct Vm;
    ///
    /// impl Trigger for Vm {
    ///     fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>> {
    ///         async { Ok(()) }.boxed() // power the VM on
    ///     }
    ///     fn abandon(&self) -> Option<BoxFuture<'static, ()>> {
    ///         Some(async {}.boxed()) // power it off
    ///     }
    /// }
    /// assert!(Vm.abandon().is_some());
    /// ```
    fn abandon(&self) -> Option<BoxFuture<'static, ()>> {
        None
    }
}

impl<T: Trigger + ?Sized> Trigger for Arc<T> {
    fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        (**self).trigger()
    }

    fn ended(&self) -> Option<BoxFuture<'static, ()>> {
        (**self).ended()
    }

    fn abandon(&self) -> Option<BoxFuture<'static, ()>> {
        (**self).abandon()
    }
}

impl Trigger for Box<dyn Trigger> {
    fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        (**self).trigger()
    }

    fn ended(&self) -> Option<BoxFuture<'static, ()>> {
        (**self).ended()
    }

    fn abandon(&self) -> Option<BoxFuture<'static, ()>> {
        (**self).abandon()
    }
}
