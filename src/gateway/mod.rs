//! The start-on-demand gateway: routes in front of monitored backends, each reached through a
//! [`Proxy`](crate::proxy::Proxy) guarded by its [`MonitorLayer`](crate::MonitorLayer).
//!
//! The `tower-monitor-gateway` program is [`cli::main`] over this module. A configuration is the
//! monitor's (see [`config`](crate::config)) with a `gateway` section beside `services`:
//!
//! ```json
//! {
//!   "gateway": {
//!     "listen": "127.0.0.1:8080",
//!     "routes": [
//!       { "host": "app.localhost", "service": "app" },
//!       { "path_prefix": "/api/", "service": "api" }
//!     ],
//!     "services": {
//!       "app": {
//!         "hold": { "max_wait": "30s", "max_held": 1000 },
//!         "retry_after": "3s",
//!         "waiting_page": "waiting.html",
//!         "wake": { "never_paths": ["/healthz"], "never_user_agents": "(?i)bot|crawler" },
//!         "protocol": "http1",
//!         "connect_timeout": "2s",
//!         "response_timeout": "60s",
//!         "max_response_headers": 100,
//!         "forwarded": "x-forwarded",
//!         "trust_forwarded": false,
//!         "rewrite_host": false,
//!         "limit": { "max_in_flight": 8, "max_wait": "30s" }
//!       }
//!     },
//!     "shutdown_grace": "30s",
//!     "header_read_timeout": "75s",
//!     "send_timeout": "60s",
//!     "access_log": true
//!   },
//!   "services": {
//!     "app": { "url": "http://127.0.0.1:8081/", "grace_period": "10s" },
//!     "api": { "url": "http://127.0.0.1:8082/base/", "grace_period": "10s" }
//!   }
//! }
//! ```
//!
//! - `listen` (required): an IP address and port.
//! - `tls` (optional): `{ "cert": "fullchain.pem", "key": "privkey.pem" }`, PEM files (relative
//!   to the configuration file's folder, as the waiting page is) of the certificate chain (the
//!   server's own certificate first) and its private key (PKCS#8, PKCS#1 or SEC1, not
//!   encrypted): the listener then speaks HTTPS, HTTP/2 and HTTP/1.1 offered by ALPN, and
//!   the forwarded headers say `https`. Without it, cleartext (HTTP/2 by prior knowledge).
//!   See [HTTPS](#https).
//! - `routes` (required, at least one): tried in order; a route matches when its `host` (if
//!   given; compared without port or final dot, case-insensitively, with the request's `Host` or HTTP/2
//!   `:authority`; a name in Unicode is taken in its ASCII form, `xn--…`, which clients send;
//!   no wildcards) and its `path_prefix` (default `/`) match. No match: 404. The prefix is
//!   compared with the path percent-decoded and its repeated slashes merged, as nginx compares
//!   its locations (`/%61pi/` and `//api/` take the `/api/` route); the request goes on as it
//!   came. The first match wins, not the longest prefix (as with nginx), so a
//!   route after one that takes all its requests (no host or the same host, and a prefix its
//!   own starts with) would never serve: that is an error naming both.
//! - `services` (optional): per service, all optional. `hold`: hold mode (`max_wait`,
//!   `max_held`; it also holds a request whose connection a crashed backend refused, see
//!   [`ProxyBuilder::hold_when_gone`](crate::proxy::ProxyBuilder::hold_when_gone));
//!   `retry_after`: the 503's `Retry-After`; `waiting_page`: a template file
//!   (relative to the configuration file's folder, as every relative path in the file is:
//!   see [relative paths](crate::config#relative-paths)), see
//!   [`MonitorLayer::waiting_page`](crate::MonitorLayer::waiting_page); `wake`: requests that
//!   never wake the backend (`never_paths`: path prefixes, compared as routes compare them;
//!   `never_user_agents`: a regular expression on `User-Agent`);
//!   `protocol`: `"http1"` (default) or `"http2"` (cleartext, prior knowledge: gRPC);
//!   `http2_max_header_list_size` (`"protocol": "http2"` only; default 16384 bytes, the limit
//!   of hyper's, h2's and tonic's servers, at most 16 MiB): set it to the backend's
//!   `SETTINGS_MAX_HEADER_LIST_SIZE`; a request whose header list (counted as RFC 9113 does,
//!   as it would go to the backend) reaches it is answered 431 (gRPC: `RESOURCE_EXHAUSTED`),
//!   logged at warn with its size, and never sent, since h2's server would end the connection
//!   every client shares for it (see
//!   [`ProxyBuilder::http2_max_header_list_size`](crate::proxy::ProxyBuilder::http2_max_header_list_size));
//!   `connect_timeout` and `response_timeout` (504 past them; these and `max_wait` must be
//!   more than zero); `body_read_timeout` (default 60 s, as nginx's `client_body_timeout`):
//!   how long a client's upload may keep an HTTP/1.1 backend waiting for its next bytes (408
//!   past it, the backend connection let go); `response_body_timeout` (default 60 s, as
//!   nginx's `proxy_read_timeout`): how long a backend's answer body may go without a byte
//!   (past it, the answer is cut short and the backend connection closed; raise it for long
//!   polling or server-sent events; see
//!   [`ProxyBuilder::response_body_timeout`](crate::proxy::ProxyBuilder::response_body_timeout));
//!   `max_response_headers` (default 100, at most
//!   1000; HTTP/1.1 backends): how many header lines a backend's answer may have, one with
//!   more being a 502 logged at warn with this setting's name (above 100, each answer's parse
//!   allocates; see [`ProxyBuilder::max_response_headers`](crate::proxy::ProxyBuilder::max_response_headers));
//!   `forwarded`: `"x-forwarded"`
//!   (default), `"forwarded"`, `"both"` or `"none"`; `trust_forwarded`: keep the forwarded
//!   headers clients send and append to them (only when every client is a proxy of yours,
//!   such as a load balancer; by default they are dropped, as anyone on the internet could
//!   claim any address); `rewrite_host`: send the backend's own `Host`; `limit`: at most
//!   `max_in_flight` requests at once to the backend, the others waiting their turn (first come
//!   first served) up to `max_wait` (default 30 s; zero: no wait), then a 503 with
//!   `Retry-After: 1`; one limit for all workers (see
//!   [`ProxyBuilder::max_in_flight`](crate::proxy::ProxyBuilder::max_in_flight)).
//! - `shutdown_grace` (default 30 s): how long a shutdown waits for requests in flight and open
//!   upgraded connections (WebSockets); then the backend programs started by `process` triggers
//!   are stopped, each given its own `stop_grace` between SIGTERM and SIGKILL. Requests still
//!   held 1 s before the grace ends (half the grace, if shorter) are answered 503 then (see
//!   [`MinMonitor::release_held`](crate::MinMonitor::release_held)); from then on a request
//!   starts no backend that is down (answered 503 with `Retry-After` too, said once per
//!   service at info), while an admin start still does. A [`Gateway::serve`] that ends
//!   sooner (no connection left to drain) leaves no such timer behind. A gateway killed
//!   outright (`kill -9`) cannot stop its programs: on Linux the kernel sends each program it
//!   started SIGTERM then (see [`Process`](crate::trigger::Process), "Never orphaned").
//! - A request head may hold 64 KiB over either HTTP version (over HTTP/2 counted as RFC 9113
//!   does: name, value and 32 bytes a field), and 100 header lines (over HTTP/2, 100 fields
//!   besides the pseudo-headers, a `Cookie` sent as one field per cookie counting once, as its
//!   HTTP/1.1 line would); past that it
//!   is answered 431, over HTTP/2 on its own stream, the connection going on (unless the block
//!   trips h2's guards against `CONTINUATION` floods and decompression bombs, such as more than
//!   seven frames of 16 KiB, which end the connection). Not a setting.
//! - `header_read_timeout` (default 75 s, as nginx's `keepalive_timeout`): how long a
//!   connection of either version may have no request in flight: a new one, a kept-alive one
//!   between requests, an HTTP/2 one, and so one whose client sends half a request head, or
//!   sends it a byte at a time (a head is not a request until it is whole). Counted from the
//!   end of the last answer and looked at once per bound, so such a connection is closed
//!   between the bound and twice it: it neither stays open nor holds a shutdown. Keep it above
//!   the idle timeout of a load balancer in front (60 s for many), or it may send a request on
//!   a connection being closed.
//! - `send_timeout` (default 60 s, as nginx's): how long the gateway waits for a client to
//!   take a byte of what it sends (an answer, or a WebSocket's messages) before it closes the
//!   connection, so a client that stops reading holds neither its request nor the backend
//!   connection behind it for ever. Over HTTP/2, where a client can stop taking one answer by
//!   granting its stream no window, that answer alone is ended (its stream reset, its backend
//!   connection let go, or its stream to an HTTP/2 backend reset, even while the client still
//!   uploads, as in a gRPC bidi stream) once it has taken nothing for the bound (within one
//!   and a half times it); the connection's other streams go on, as with nginx.
//! - `access_log` (default off): one info line per request (target `tower_monitor::access`),
//!   written once its response has been sent: service, method, path, status, milliseconds from
//!   arrival to the body's end, body bytes sent, whether the body was sent to its end
//!   (`complete=false`: the client went away first), and cold-start milliseconds when the
//!   request was held. A request whose client went away before the answer's head (while held
//!   for a cold start, say) is logged with status 499, as nginx does.
//!
//! Beside `gateway` and `services`, two optional sections:
//!
//! - `admin`: `{ "listen": "127.0.0.1:9901", "token": "…", "hosts": ["gateway-1"] }`, the
//!   admin listener (`GET /`, `/status`, `/metrics`; `POST /services/{name}/start` and `stop`
//!   behind `Authorization: Bearer <token>`). `token` is required; `listen` defaults to
//!   [`DEFAULT_ADMIN_LISTEN`] and must differ from `gateway.listen`; `hosts` are the names it
//!   answers to besides IP addresses and `localhost`. Its `/metrics` also counts the requests
//!   the gateway answered by service and status code, `tower_monitor_gateway_requests_total`
//!   (see [`admin`](crate::admin)).
//! - `fleet` (feature `fleet`): `{ "redis": "redis://127.0.0.1:6379/", "prefix": "shop" }`,
//!   read as a `fleet::FleetConfig`: gateways with the same Redis and
//!   prefix share one lifecycle per backend.
//!
//! A backend that refuses or drops a connection while cached up is marked down by its layer
//! (the proxy's [`BackendGone`](crate::layer::BackendGone)) and the request answered with the
//! fallback; in hold mode, a request whose connection was refused (none of it reached the
//! backend) is held instead until the backend is up again, then sent again, once. Every field
//! is checked before anything starts; an error names the field's path.
//!
//! A serving gateway reloads its configuration file without a restart through its
//! [`Reloader`] ([`Gateway::reloader`]; the program does it on SIGHUP): all of it applies but
//! `gateway.listen`, turning `gateway.tls` on or off, `admin` and `fleet`; the TLS certificate
//! and key are read again from their files; unchanged services keep their state and
//! programs, and a file with an error changes nothing.
//!
//! # HTTPS
//!
//! With `gateway.tls` the listener terminates TLS itself (rustls, with the `ring` provider;
//! the `gateway` feature turns on the `rustls` one): TLS 1.2 and 1.3, ALPN `h2` then
//! `http/1.1`. Each handshake is made in its connection's own task, never by the accept loop,
//! within `header_read_timeout` (a client that has not completed it by then is closed);
//! a failed handshake is logged at debug (scanners fail them all day), and a plain HTTP
//! request on the port is answered 400, saying to use `https://`. Everything else (the
//! timeouts, the idle and stalled-stream watches, upgrades, the close at a shutdown or a
//! reload) is as over cleartext. The files are read when the configuration is: a missing
//! file, one with no certificate or no key, or a key that does not match the certificate is
//! an error naming the field and the file. A reload reads them again, changed or not, and
//! the connections accepted from then on get what they hold (certbot renews, then `kill
//! -HUP`); a connection open before goes on with its session until it closes, as connections
//! do at a reload.
//!
//! ```
//! use tower_monitor::config::TriggerRegistry;
//! use tower_monitor::gateway::Gateway;
//!
//! let err = Gateway::from_config(r#"{
//!     "gateway": { "listen": "127.0.0.1:8443", "routes": [ { "service": "app" } ],
//!                  "tls": { "cert": "/no/such/fullchain.pem", "key": "/no/such/privkey.pem" } },
//!     "services": { "app": { "url": "http://127.0.0.1:8081/", "grace_period": "10s" } }
//! }"#, &TriggerRegistry::new()).unwrap_err();
//! assert_eq!(err.path(), "gateway.tls.cert");
//! assert!(err.to_string().contains("cannot read \"/no/such/fullchain.pem\""));
//! ```
//!
//! ```no_run
//! use tower_monitor::config::TriggerRegistry;
//! use tower_monitor::gateway::{Gateway, shutdown_signal};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // From a file, its relative paths count from its folder (`from_config` takes text).
//! let gateway = Gateway::from_config_file("gateway.json".as_ref(), &TriggerRegistry::new())?;
//! let listener = tokio::net::TcpListener::bind(gateway.listen()).await?;
//! // `false`: requests still in flight past the grace, or a backend program that would not stop.
//! let clean = gateway.serve(listener, shutdown_signal()).await;
//! if !clean {
//!     std::process::exit(1);
//! }
//! # Ok(())
//! # }
//! ```

mod access;
mod admin;
mod answered;
mod build;
mod cancels;
pub mod cli;
mod config;
mod connection;
mod current_router;
mod demo;
mod fleet;
mod handshake;
mod in_flight;
mod live;
mod own_address;
mod reload;
mod route_host;
mod route_path;
mod router;
mod run;
mod send_timeout;
mod serve;
mod signals;
mod stalled;
mod streams;
mod workers;

pub use admin::DEFAULT_ADMIN_LISTEN;
pub use config::{DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_SEND_TIMEOUT, DEFAULT_SHUTDOWN_GRACE};
pub use reload::{Reloaded, Reloader};
pub use router::{GatewayBody, Router, RouterFuture};
pub use signals::shutdown_signal;
pub use workers::default_workers;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::MinMonitor;
use crate::config::{ConfigError, TriggerRegistry};

/// A configured gateway, ready to serve: its monitor, its routes, where it listens.
#[derive(Debug)]
pub struct Gateway {
    monitor: Arc<MinMonitor>,
    router: Router,
    /// The counts of the requests answered, every router's, for the admin's `/metrics`.
    requests: Arc<answered::Requests>,
    listen: SocketAddr,
    /// The admin listener, when the configuration has an `admin` section.
    admin: Option<admin::AdminSettings>,
    /// The fleet to join when serving, when the configuration has a `fleet` section.
    #[cfg_attr(not(feature = "fleet"), allow(dead_code))]
    fleet: Option<fleet::FleetSettings>,
    /// The configuration in use, which the serving loops read and a reload replaces.
    reload: Arc<reload::Shared>,
    /// The programs the configuration's `process` triggers start: stopped on the way out.
    #[cfg(unix)]
    supervisor: crate::trigger::Supervisor,
}

impl Gateway {
    /// A gateway from a JSON configuration, with the trigger types of `registry`.
    ///
    /// ```
    /// use tower_monitor::config::TriggerRegistry;
    /// use tower_monitor::gateway::Gateway;
    ///
    /// let gateway = Gateway::from_config(r#"{
    ///     "gateway": { "listen": "127.0.0.1:8080", "routes": [ { "service": "app" } ] },
    ///     "services": { "app": { "url": "http://127.0.0.1:8081/", "grace_period": "10s" } }
    /// }"#, &TriggerRegistry::new()).unwrap();
    /// assert_eq!(gateway.listen().port(), 8080);
    ///
    /// let err = Gateway::from_config(r#"{
    ///     "gateway": { "listen": "127.0.0.1:8080", "routes": [] },
    ///     "services": { "app": { "url": "http://127.0.0.1:8081/", "grace_period": "10s" } }
    /// }"#, &TriggerRegistry::new()).unwrap_err();
    /// assert_eq!(err.path(), "gateway.routes");
    /// ```
    pub fn from_config(json: &str, registry: &TriggerRegistry) -> Result<Self, ConfigError> {
        Self::from_config_in(json, registry, None, None)
    }

    /// Like [`from_config`](Self::from_config), for the file at `path`: relative paths in it
    /// (a `waiting_page`; `gateway.tls`'s `cert` and `key`; a `command`'s or `process`'s
    /// `command`, `current_dir` and `lock_file`, see [`TriggerRegistry::relative_to`]) are
    /// taken from the file's folder,
    /// and an unreadable file is an error. Its [`reloader`](Self::reloader) reads the file
    /// again.
    ///
    /// ```
    /// use tower_monitor::config::TriggerRegistry;
    /// use tower_monitor::gateway::Gateway;
    ///
    /// let err = Gateway::from_config_file("no/such/file.json".as_ref(), &TriggerRegistry::new()).unwrap_err();
    /// assert!(err.to_string().contains("no/such/file.json"));
    /// ```
    pub fn from_config_file(path: &Path, registry: &TriggerRegistry) -> Result<Self, ConfigError> {
        let text = read_config_file(path)?;
        Self::from_config_in(&text, registry, path.parent(), Some(path))
    }

    fn from_config_in(
        json: &str,
        registry: &TriggerRegistry,
        base_dir: Option<&Path>,
        file: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        let requests = Arc::new(answered::Requests::default());
        let mut startup = reload::Startup::new();
        let build::Built {
            listen,
            timeouts,
            tls,
            admin,
            fleet,
            monitor,
            router,
            routers,
            routes: _,
            routed: _,
            limits,
            held,
            sections,
        } = build::build(json, registry, base_dir, &requests, &mut startup)?;
        let reload = reload::Shared::new(
            &monitor,
            routers,
            timeouts,
            tls,
            sections,
            (limits, held),
            startup,
            registry,
            base_dir,
            file,
            &requests,
        );
        Ok(Self {
            listen,
            router,
            requests,
            monitor,
            admin,
            fleet,
            reload,
            #[cfg(unix)]
            supervisor: registry.supervisor().clone(),
        })
    }

    /// Where the configuration says to listen.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// How long [`serve`](Self::serve) waits for requests in flight once asked to stop (as
    /// the configuration in use says: a reload may change it).
    pub fn shutdown_grace(&self) -> Duration {
        self.reload.grace()
    }

    /// The monitor of the gateway's services.
    pub fn monitor(&self) -> &Arc<MinMonitor> {
        &self.monitor
    }

    /// The routes as one Tower service (`Request<hyper::body::Incoming>` in), to serve your
    /// own way; put a [`ClientAddr`](crate::proxy::ClientAddr) in each request's extensions
    /// for the forwarded headers, and serve [`Router::over_tls`] behind a TLS listener of your
    /// own, for them to say `https`. These are the routes of the configuration the gateway was
    /// made with: a [reload](Self::reloader) changes what [`serve`](Self::serve) serves, not
    /// this router.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The scheme of the listener's URLs: `https` with `gateway.tls`, `http` without.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.reload.tls() { "https" } else { "http" }
    }

    /// Where the admin service listens, if the configuration has one.
    pub fn admin_listen(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|admin| admin.listen)
    }
}

/// The text of the configuration file at `path`, without the byte order mark some editors
/// begin it with.
fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
    // Notepad and other Windows editors begin a UTF-8 file with a byte order mark, which
    // JSON does not allow and a reader cannot see ("expected value at line 1 column 1").
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}
