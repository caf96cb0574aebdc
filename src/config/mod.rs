//! JSON configuration: a whole [`MinMonitor`] from one document.
//!
//! ```json
//! {
//!   "services": {
//!     "app": {
//!       "url": "http://127.0.0.1:8081/",
//!       "grace_period": "30s",
//!       "probe_timeout": "2s",
//!       "on_down": { "type": "command", "command": "systemctl", "args": ["start", "app"] },
//!       "on_idle": { "after": "15m", "trigger": { "type": "command", "command": "systemctl", "args": ["stop", "app"] } }
//!     }
//!   }
//! }
//! ```
//!
//! A service has `url` (required), `grace_period` (how long a successful probe is trusted;
//! [`DEFAULT_GRACE_PERIOD`], 10 s, when not given), `probe_timeout`, `probe_on_add`,
//! `ready_after`, `start_timeout`, `stop_timeout` and `trigger_timeout` (see
//! [`MonitoredService`]), a `probe` (`{"type": "tcp"}`, the default; `{"type": "http", "path": "/healthz",
//! "accept": ["2xx", 401], "body_matches": "ok"}`, whose other optional fields are `method`,
//! `headers`, `body`, `body_excludes`, `max_body_bytes` and `root_certificate_pem`, see
//! [`probe::Http`](crate::probe::Http); or `{"type": "expect", "steps": [{"send":
//! "PING\r\n"}, {"expect": "^\\+PONG"}]}`), and the triggers `on_down`, `on_up`, `always` and
//! `on_idle` (`{"after": .., "trigger": ..}`, `after` more than zero), and `depends_on`: the
//! names of services it needs up first, in any order in the file (see
//! [`MonitoredService::depends_on`]; a name that is no service, or a cycle, is an error).
//! Durations are humantime strings (`"1m30s"`, `"250ms"`), at most [`MAX_DURATION`] (`"100years"`,
//! which already means "never" in practice); a longer one is rejected rather than overflowing
//! the clock later. Trigger types are looked up in a
//! [`TriggerRegistry`]: the built-in `command`, `compound`, `delay`, `rate_limit` and `webhook`,
//! on Unix `process` and `process_stop`, and any you register.
//!
//! A `webhook` has `url` (required: `http://`, or `https://` with the default `rustls`
//! feature), `method` (default `POST`), `headers` (an object of names and values), `body`,
//! `timeout` (default 10 s) and `root_certificate_pem` (PEM text of certificates to trust
//! besides the Mozilla roots, as for the `http` probe); see [`Webhook`](crate::trigger::Webhook).
//!
//! # Supervised backends (Unix)
//!
//! A program that *is* the backend is a `process` trigger in the service's `on_down`
//! ([`Process`](crate::trigger::Process): started once, known to run, stopped with SIGTERM then
//! SIGKILL, process group included), and its idle stop a `process_stop` in the same service's
//! `on_idle`:
//!
//! ```json
//! {
//!   "services": {
//!     "app": {
//!       "url": "http://127.0.0.1:8081/",
//!       "grace_period": "30s",
//!       "on_down": { "type": "process", "command": "python3",
//!                    "args": ["-m", "http.server", "--bind", "127.0.0.1", "8081"],
//!                    "current_dir": "/srv/app", "env": { "PYTHONUNBUFFERED": "1" },
//!                    "stop_grace": "10s", "output_level": "info" },
//!       "on_idle": { "after": "15m", "trigger": { "type": "process_stop" } }
//!     }
//!   }
//! }
//! ```
//!
//! `command` is required; `args`, `current_dir`, `env` (added to the inherited environment),
//! `stop_grace` (SIGTERM to SIGKILL, default 10 s), `output_level` (the level of its output
//! lines, default `info`) and `lock_file` (so that of several gateways sharing the
//! configuration only one runs the program, and, on Linux, so that a gateway stops what one
//! that was killed left of it running, a program that ignores SIGTERM or what a wrapper script
//! started, before starting it and when its idle stop finds nothing of its own to stop: see
//! [`ProcessBuilder::lock_file`](crate::trigger::ProcessBuilder::lock_file)) are optional. A `process_stop` takes no field: it stops the `process`
//! built last before it in the same service (a service's `on_down`, `on_up` and `always` are
//! built before its `on_idle`), and is an error in a service without one. Every `process` is
//! supervised by the registry's [`TriggerRegistry::supervisor`], which a program stops them all
//! with on its way out. The program must stay in the foreground: if it exits before the
//! service comes up (a bad flag, a port in use, or a server that daemonizes), the start ends
//! then and the service is down again, rather than `start_timeout` (default 60 s) later.
//!
//! # Relative paths
//!
//! Read from a file (by [`Gateway::from_config_file`](crate::gateway::Gateway::from_config_file),
//! or with [`TriggerRegistry::relative_to`] the file's folder), a configuration's relative
//! paths count from the file's folder, so that it means the same files wherever the program
//! reading it was started (by hand, or by systemd in `/`):
//!
//! - a `command` or `process` trigger runs in its `current_dir` (relative: from the file's
//!   folder) or, without one, in the file's folder: its own relative files (a database in its
//!   `args`, the folder `python3 -m http.server` serves) are beside the configuration rather
//!   than wherever the gateway happened to start;
//! - its `command` with a slash (`"./backend.sh"`, `"bin/server"`) counts from that working
//!   directory, as a shell started there would take it; one without a slash (`"python3"`) is
//!   looked up in `PATH`; `args` are passed as written (what they mean is the program's
//!   business);
//! - a `process`'s `lock_file`, and the gateway's `waiting_page`, count from the file's folder.
//!
//! A configuration given as text ([`MinMonitor::from_config`], no file) leaves them to the
//! program: relative to its current folder, a relative `command` from its `current_dir`.
//!
//! Everything is checked before anything starts: unknown fields, fields or names given twice,
//! unknown trigger types, bad URLs and bad durations are each a [`ConfigError`] naming the
//! field's path and the bad value. So is
//! a `command` or `process` trigger's program that is not found (on `PATH`, or at its path,
//! resolved as above and named in the error), not executable, or a script whose `#!`
//! interpreter is missing, and a `current_dir` that is not a directory: the configuration is only valid on a machine that has its programs. So are two
//! services on one backend address (host and port) that both have an `on_down` or an `on_idle`:
//! each would start and stop it on its own, one's idle stop under the other's requests.

mod builtin;
mod depends;
pub(crate) mod duplicates;
pub(crate) mod error;
mod objects;
pub(crate) mod paths;
mod probe;
#[cfg(unix)]
mod process;
pub(crate) mod registry;
mod service_spec;
mod shared_backend;
mod values;

pub use error::ConfigError;
pub(crate) use objects::Objects;
pub use registry::{TriggerRegistry, TriggerSpec};
pub(crate) use values::{DurationValue, UrlValue};

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::{MinMonitor, MonitoredService};
use service_spec::{ServiceSpec, build_service};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    services: BTreeMap<String, ServiceSpec>,
}

/// A service's `grace_period` when its configuration gives none: 10 s.
///
/// Long enough that a busy backend is probed once per 10 s rather than per request, short
/// enough that a backend that crashed while cached up is probed again within 10 s (until then,
/// requests are still forwarded to it). The Rust API has no default:
/// [`MonitoredService::new`] takes the grace period.
///
/// ```
/// use tower_monitor::MinMonitor;
///
/// let monitor = MinMonitor::from_config(r#"{"services": {"app": {"url": "http://127.0.0.1:8081/"}}}"#)
///     .unwrap();
/// assert_eq!(monitor.names(), ["app"]);
/// ```
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);

/// The longest duration a configuration accepts: 100 years (`"100years"`).
///
/// Longer ones are rejected with a [`ConfigError`] naming the field and this limit: a value such
/// as `"9300000000000000000s"` parses, but no clock can add it, and a hundred years already
/// means "never" for every duration a service has (grace period, idle time, delays, timeouts).
///
/// ```
/// use tower_monitor::MinMonitor;
///
/// let err = MinMonitor::from_config(r#"{"services": {"app": {
///     "url": "http://127.0.0.1:8081/", "grace_period": "9300000000000000000s" }}}"#).unwrap_err();
/// assert_eq!(err.path(), "services.app.grace_period");
/// assert!(err.message().contains("100years"), "{err}");
/// ```
pub const MAX_DURATION: Duration = crate::deadline::PRACTICALLY_FOREVER;

impl MinMonitor {
    /// A monitor with the services of a JSON document, using the built-in trigger types.
    ///
    /// ```
    /// use tower_monitor::MinMonitor;
    ///
    /// let monitor = MinMonitor::from_config(r#"{
    ///     "services": { "app": { "url": "http://127.0.0.1:8081/", "grace_period": "30s" } }
    /// }"#).unwrap();
    /// assert_eq!(monitor.names(), ["app"]);
    ///
    /// let err = MinMonitor::from_config(r#"{
    ///     "services": { "app": { "url": "http://127.0.0.1:8081/", "grace_period": "soon" } }
    /// }"#).unwrap_err();
    /// assert_eq!(err.path(), "services.app.grace_period");
    /// assert!(err.to_string().contains("\"soon\""));
    /// ```
    pub fn from_config(json: &str) -> Result<Self, ConfigError> {
        Self::from_config_with(json, &TriggerRegistry::new())
    }

    /// Like [`from_config`](Self::from_config), with your own trigger types.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_monitor::{BoxError, MinMonitor, trigger};
    /// use tower_monitor::config::TriggerRegistry;
    ///
    /// let mut registry = TriggerRegistry::new();
    /// registry.register("log", |spec| {
    ///     #[derive(serde::Deserialize)]
    ///     struct Log { message: String }
    ///     let Log { message } = spec.parse()?;
    ///     Ok(Arc::new(trigger::from_fn(move || {
    ///         println!("{message}");
    ///         async { Ok::<(), BoxError>(()) }
    ///     })))
    /// });
    /// let monitor = MinMonitor::from_config_with(r#"{ "services": { "app": {
    ///     "url": "http://127.0.0.1:8081/", "grace_period": "5s",
    ///     "on_down": { "type": "log", "message": "waking app" }
    /// } } }"#, &registry).unwrap();
    /// # let _ = monitor;
    /// ```
    pub fn from_config_with(json: &str, registry: &TriggerRegistry) -> Result<Self, ConfigError> {
        if json.trim().is_empty() {
            return Err(ConfigError::new("", "the configuration is empty"));
        }
        duplicates::check(json)?;
        let document: Value = serde_json::from_str(json)
            .map_err(|e| ConfigError::new("", format!("not valid JSON: {e}")))?;
        Self::from_config_value_with(document, registry)
    }

    /// Like [`from_config_with`](Self::from_config_with), from a parsed JSON document: for
    /// programs whose own file holds the monitor's `services` beside their own settings (remove
    /// yours first: unknown fields are rejected).
    ///
    /// ```
    /// use serde_json::json;
    /// use tower_monitor::MinMonitor;
    /// use tower_monitor::config::TriggerRegistry;
    ///
    /// let mut file = json!({
    ///     "listen": "127.0.0.1:8080",
    ///     "services": { "app": { "url": "http://127.0.0.1:8081/", "grace_period": "10s" } }
    /// });
    /// let listen = file.as_object_mut().unwrap().remove("listen");
    /// let monitor = MinMonitor::from_config_value_with(file, &TriggerRegistry::new()).unwrap();
    /// # let _ = (listen, monitor);
    /// ```
    pub fn from_config_value_with(
        document: Value,
        registry: &TriggerRegistry,
    ) -> Result<Self, ConfigError> {
        Self::from_config_value_reusing(document, registry, &mut |_, service| Ok(service))
    }

    /// [`from_config_value_with`](Self::from_config_value_with), each service, once built and
    /// checked, given to `reuse` before it is added (in dependency order, after every service
    /// was built and checked): it answers the service to add, or one already registered
    /// elsewhere to take as it is (a reload keeps an unchanged service's lifecycle so).
    pub(crate) fn from_config_value_reusing(
        document: Value,
        registry: &TriggerRegistry,
        reuse: &mut dyn FnMut(&str, MonitoredService) -> Result<MonitoredService, Reused>,
    ) -> Result<Self, ConfigError> {
        if !document.is_object() {
            return Err(ConfigError::new(
                "",
                "the configuration must be a JSON object with a \"services\" field",
            ));
        }
        idle_given_as_trigger(&document)?;
        let file: File = registry::parse_at("", document)?;
        if file.services.is_empty() {
            return Err(ConfigError::new(
                "services",
                "at least one service is required",
            ));
        }
        // Build and check every service before adding any: nothing starts unless all is well.
        let mut services = Vec::with_capacity(file.services.len());
        for (name, spec) in file.services {
            let path = format!("services.{}", registry::field_name(&name));
            let service = build_service(&path, spec, registry)?;
            services.push((name, path, service));
        }
        shared_backend::check(&services)?;
        let services = depends::order(services)?;
        let monitor = MinMonitor::new();
        for (name, path, service) in services {
            match reuse(&name, service) {
                Ok(service) => monitor.add(name, service),
                Err(Reused(registered)) => monitor.adopt(name, registered),
            }
            .map_err(|e| ConfigError::new(path, e.to_string()))?;
        }
        Ok(monitor)
    }
}

/// A service already registered, to take in a new monitor as it is (see
/// [`MinMonitor::from_config_value_reusing`]).
#[cfg_attr(not(feature = "gateway"), allow(dead_code))]
pub(crate) struct Reused(pub(crate) std::sync::Arc<crate::registered::Registered>);

/// An `on_idle` written as the trigger itself (`{"type": "command", …}`), the likely slip of a
/// reader of `on_down`, said as such rather than as its first field unknown.
fn idle_given_as_trigger(document: &Value) -> Result<(), ConfigError> {
    let Some(services) = document.get("services").and_then(Value::as_object) else {
        return Ok(());
    };
    for (name, service) in services {
        let Some(idle) = service.get("on_idle").and_then(Value::as_object) else {
            continue;
        };
        if idle.contains_key("type") && !idle.contains_key("trigger") {
            return Err(ConfigError::new(
                format!("services.{}.on_idle", registry::field_name(name)),
                "a trigger given as on_idle itself: write {\"after\": \"15m\", \"trigger\": {\"type\": …}}, the idle time in \"after\" and the trigger in \"trigger\"",
            ));
        }
    }
    Ok(())
}
