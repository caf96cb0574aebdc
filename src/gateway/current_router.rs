//! [`CurrentRouter`]: the router a connection's next request takes. A connection keeps the
//! router of the settings it was accepted under for the requests begun before a reload; the
//! requests it begins after the reload (the first of a connection on which none had begun,
//! a browser's preconnection; an HTTP/2 stream opened before the client has read the
//! `GOAWAY`) take the reload's. With the old router they would reach the definitions the
//! reload retired, whose programs stop once their own requests have ended, without waiting
//! for such a connection: a request to a service the reload changed would be refused there,
//! and one to a path it routes elsewhere would go to the old service.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Router;
use crate::sync::lock;

/// See the [module documentation](self).
pub(super) struct CurrentRouter {
    /// The router of the settings the connection was accepted under, for its client.
    first: Router,
    /// Whether a reload gave another: only then is `after` locked, so a request pays one load.
    replaced: AtomicBool,
    after: Mutex<Option<Router>>,
}

impl CurrentRouter {
    pub(super) fn new(first: Router) -> Self {
        Self {
            first,
            replaced: AtomicBool::new(false),
            after: Mutex::new(None),
        }
    }

    /// The router for a request beginning now.
    #[inline]
    pub(super) fn get(&self) -> Router {
        if !self.replaced.load(Ordering::Acquire) {
            return self.first.clone();
        }
        lock(&self.after)
            .clone()
            .unwrap_or_else(|| self.first.clone())
    }

    /// A reload came: the requests that begin from now on take `router` (a worker's, for no
    /// client yet), for the connection's client.
    pub(super) fn replace(&self, router: &Router) {
        *lock(&self.after) = Some(router.for_client_of(&self.first));
        self.replaced.store(true, Ordering::Release);
    }
}
