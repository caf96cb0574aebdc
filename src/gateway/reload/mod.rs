//! Reloading a serving gateway's configuration (the program does it on SIGHUP): checked as
//! at startup, then applied all at once, or not at all.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::build::{self, Sections};
use super::live::{Live, Publish, Settings};
use super::{Gateway, answered};
use crate::MinMonitor;
use crate::config::{ConfigError, TriggerRegistry};

mod gate;
mod plan;
mod retire;

pub(super) use plan::Startup;

/// Reloads a [`Gateway`]'s configuration while it serves, as nginx does on SIGHUP; the
/// `tower-monitor-gateway` program calls it on SIGHUP. Cheap to clone; reloads through clones
/// are applied one after the other.
///
/// A reload reads the configuration file again and checks it as the startup does; then,
/// all at once:
///
/// - the routes, every `gateway.services.*` setting (the waiting page read again), the
///   `access_log`, the `shutdown_grace`, and for new connections `header_read_timeout`,
///   `send_timeout` and the TLS certificate and key (`gateway.tls`'s files read again,
///   changed or not, so that a renewed certificate is served), are the new file's;
/// - a service whose definition (its `services.NAME` section, and those of the services it
///   `depends_on`) is unchanged goes on as it was: its state, its running program, its idle
///   watch, its counters, its count of held requests (counted against its `max_held`, the
///   new one) and, its `limit` unchanged, its limit of requests in flight;
/// - a service added is added; one removed, or changed (a removal and an addition under the
///   same name), has its requests in flight finish, then its held requests answered and the
///   program its definition started stopped, as a shutdown stops it; the new definitions'
///   first starts wait for that stop (and for the stops of earlier reloads still to come), so
///   that two programs never run at once on one port;
/// - the connections open are closed once their requests in flight are answered (HTTP/1.1:
///   after the answer, at once if idle between requests, after its first answer if none has
///   come yet; HTTP/2: `GOAWAY`), and a request that begins on them after the reload takes
///   the new routes; an upgraded connection (a
///   WebSocket) stays open to its service. The program of a service removed or changed is
///   stopped once that service's own requests in flight (held ones, and its open upgraded
///   connections, count) have ended, at most `shutdown_grace` after the reload, whatever the
///   connections to other services do.
///
/// A file that is not valid (a TLS file that cannot be used too: the certificate in use
/// stays), or that changes `gateway.listen`, turns `gateway.tls` on or off, or changes the
/// `admin` section or the `fleet` section (or, with a `fleet` section, the `services`),
/// changes nothing: the error names the field. Each reload is logged: at info with what changed, or at error.
///
/// ```no_run
/// use tower_monitor::config::TriggerRegistry;
/// use tower_monitor::gateway::{Gateway, shutdown_signal};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let gateway = Gateway::from_config_file("gateway.json".as_ref(), &TriggerRegistry::new())?;
/// let reloader = gateway.reloader();
/// tokio::spawn(async move {
///     let mut hangup =
///         tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();
///     while hangup.recv().await.is_some() {
///         // Logged either way; a failed reload leaves the configuration in use serving.
///         let _ = reloader.reload().await;
///     }
/// });
/// let listener = tokio::net::TcpListener::bind(gateway.listen()).await?;
/// gateway.serve(listener, shutdown_signal()).await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Reloader {
    shared: Arc<Shared>,
}

/// What a reload changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reloaded {
    /// The services added.
    pub added: Vec<String>,
    /// The services removed.
    pub removed: Vec<String>,
    /// The services whose definition changed: removed and added again.
    pub changed: Vec<String>,
    /// The services kept as they were.
    pub kept: Vec<String>,
    /// How many routes there are now.
    pub routes: usize,
    /// Whether the listener speaks TLS: then its certificate and key were read again from
    /// their files (changed or not), and the connections accepted from now on get them.
    pub tls: bool,
}

impl fmt::Display for Reloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |names: &[String]| match names.is_empty() {
            true => "none".to_string(),
            false => names.join(", "),
        };
        write!(
            f,
            "services added: {}; removed: {}; changed: {}; kept: {}; {} routes",
            list(&self.added),
            list(&self.removed),
            list(&self.changed),
            list(&self.kept),
            self.routes
        )?;
        if self.tls {
            f.write_str("; TLS certificate and key read again")?;
        }
        Ok(())
    }
}

/// What a gateway and its reloaders share.
pub(super) struct Shared {
    monitor: Arc<MinMonitor>,
    publish: Publish,
    requests: Arc<answered::Requests>,
    registry: TriggerRegistry,
    base_dir: Option<PathBuf>,
    file: Option<PathBuf>,
    /// The address `--listen` gave in place of `gateway.listen`, if it did: a reload checks
    /// the services against it, and the file's `listen`, unused, may change.
    listen_flag: std::sync::OnceLock<std::net::SocketAddr>,
    /// Held through a reload: reloads are applied one after the other.
    state: tokio::sync::Mutex<State>,
}

/// The configuration in use, as far as the next reload needs it.
struct State {
    sections: Sections,
    /// The limits of requests in flight in use, by service: a kept service keeps its own.
    limits: BTreeMap<String, crate::proxy::InFlightLimit>,
    /// The counts of held requests in use, by service: a kept service keeps its own.
    held: BTreeMap<String, crate::layer::HeldCount>,
    /// The gate each service's definition waits behind, if a reload made it, by name.
    gates: BTreeMap<String, (gate::Gate, Arc<std::sync::atomic::AtomicBool>)>,
    /// The gates of the reloads whose retired programs may not all be stopped yet.
    pending: Vec<gate::Gate>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reload")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The reload state of a gateway built from `file` (if any; relative paths from
    /// `base_dir`) with `registry`: its `monitor`, and the `routers`, `timeouts` and
    /// `sections` of its configuration, and the gates of its definitions (`startup`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        monitor: &Arc<MinMonitor>,
        routers: super::workers::Routers,
        timeouts: super::serve::Timeouts,
        tls: Option<tokio_rustls::TlsAcceptor>,
        sections: Sections,
        (limits, held): (
            BTreeMap<String, crate::proxy::InFlightLimit>,
            BTreeMap<String, crate::layer::HeldCount>,
        ),
        startup: Startup,
        registry: &TriggerRegistry,
        base_dir: Option<&Path>,
        file: Option<&Path>,
        requests: &Arc<answered::Requests>,
    ) -> Arc<Self> {
        let settings = Settings {
            routers: Arc::new(routers),
            timeouts,
            tls,
        };
        let (publish, _) = tokio::sync::watch::channel(Arc::new(settings));
        Arc::new(Self {
            monitor: Arc::clone(monitor),
            publish,
            requests: Arc::clone(requests),
            registry: registry.clone(),
            base_dir: base_dir.map(Path::to_path_buf),
            file: file.map(Path::to_path_buf),
            listen_flag: std::sync::OnceLock::new(),
            state: tokio::sync::Mutex::new(State {
                sections,
                limits,
                held,
                gates: startup.into_gates(),
                pending: Vec::new(),
            }),
        })
    }

    /// The serving loops' view of the configuration in use.
    pub(super) fn live(&self) -> Live {
        self.publish.subscribe()
    }

    /// The shutdown grace of the configuration in use.
    pub(super) fn grace(&self) -> Duration {
        self.publish.borrow().timeouts.grace
    }

    /// Whether the listener speaks TLS (which no reload changes).
    pub(super) fn tls(&self) -> bool {
        self.publish.borrow().tls.is_some()
    }
}

impl Gateway {
    /// A handle that reloads this gateway's configuration, before or while it serves (see
    /// [`Reloader`]).
    pub fn reloader(&self) -> Reloader {
        Reloader {
            shared: Arc::clone(&self.reload),
        }
    }
}

impl Reloader {
    /// The configuration file a reload reads, if the gateway was made from one
    /// ([`Gateway::from_config_file`]).
    pub fn file(&self) -> Option<&Path> {
        self.shared.file.as_deref()
    }

    /// Reads the configuration file again and applies it (see [`Reloader`]); a gateway made
    /// from text has no file to read: an error.
    pub async fn reload(&self) -> Result<Reloaded, ConfigError> {
        let Some(file) = &self.shared.file else {
            let error = ConfigError::new(
                "",
                "the gateway was not made from a configuration file: nothing to reload",
            );
            tracing::error!("reload refused: {error}");
            return Err(error);
        };
        let text = match super::read_config_file(file) {
            Ok(text) => text,
            Err(error) => {
                tracing::error!("reload refused, the configuration in use goes on: {error}");
                return Err(error);
            }
        };
        self.reload_from(&text).await
    }

    /// Applies the configuration `json` (see [`Reloader`]), its relative paths taken from the
    /// folder of the gateway's file, if any.
    pub async fn reload_from(&self, json: &str) -> Result<Reloaded, ConfigError> {
        let result = self.shared.apply(json).await;
        match &result {
            Ok(reloaded) => tracing::info!("configuration reloaded: {reloaded}"),
            Err(error) => {
                tracing::error!("reload refused, the configuration in use goes on: {error}")
            }
        }
        result
    }
}

impl Shared {
    /// Tells the reloads that the gateway listens on `listen`, given by `--listen`.
    pub(in crate::gateway) fn listen_flag(&self, listen: std::net::SocketAddr) {
        let _ = self.listen_flag.set(listen);
    }

    async fn apply(&self, json: &str) -> Result<Reloaded, ConfigError> {
        let mut state = self.state.lock().await;
        #[cfg(unix)]
        let supervisor = self.registry.supervisor();
        #[cfg(unix)]
        if supervisor.is_shut_down() {
            return Err(ConfigError::new("", "the gateway has stopped"));
        }
        // Before the new definitions are built: their programs have the same service names.
        #[cfg(unix)]
        let programs: Vec<_> = (state.sections.services.keys())
            .flat_map(|name| {
                // A `process` knows its service by its name as the configuration's paths
                // write it (quoted if it has a dot, say).
                let written = crate::config::registry::field_name(name);
                let processes = supervisor.processes_of(&written);
                processes.into_iter().map(|p| (name.clone(), p))
            })
            .collect();
        let (opener, gate) = gate::gate();
        let mut plan = plan::Plan::new(
            &state.sections,
            &state.limits,
            &state.held,
            &self.monitor,
            &gate,
        );
        plan.listen_flag = self.listen_flag.get().copied();
        let built = build::build(
            json,
            &self.registry,
            self.base_dir.as_deref(),
            &self.requests,
            &mut plan,
        )?;
        if let Some(&listen) = self.listen_flag.get() {
            crate::gateway::own_address::check(&built.monitor, listen, "--listen")?;
        }
        // Committed: from here on nothing fails.
        let plan::Plan {
            added,
            removed,
            changed,
            kept,
            probe_now,
            retired_flags,
            ..
        } = plan;
        let previous = self.monitor.replace_services(&built.monitor);
        for name in &probe_now {
            if let Ok(registered) = self.monitor.lookup(name) {
                registered.start_probe();
            }
        }
        let retiring: Vec<String> = removed.iter().chain(&changed).cloned().collect();
        for name in &retiring {
            if let Some((_, retired)) = state.gates.remove(name) {
                retired.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        // Every earlier reload's stops still to come, not only those of the services retired
        // now: a service added may take the port of one an earlier reload removed (or be that
        // one, put back).
        state.pending.retain(|gate| !gate.is_open());
        let earlier = state.pending.clone();
        for (name, retired) in retired_flags {
            state.gates.insert(name, (gate.clone(), retired));
        }
        #[cfg(unix)]
        let programs: Vec<_> = (programs.into_iter())
            .filter(|(name, _)| retiring.contains(name))
            .collect();
        #[cfg(unix)]
        let nothing_to_stop = programs.is_empty() && earlier.is_empty();
        #[cfg(not(unix))]
        let nothing_to_stop = true;
        // No program to wait for: the new definitions may start at once.
        let opener = match nothing_to_stop {
            true => {
                opener.open();
                None
            }
            false => {
                state.pending.push(gate.clone());
                Some(opener)
            }
        };
        let grace = built.timeouts.grace;
        let tls = built.tls.is_some();
        self.publish.send_replace(Arc::new(Settings {
            routers: Arc::new(built.routers),
            timeouts: built.timeouts,
            tls: built.tls,
        }));
        let retired = retire::Retired {
            grace,
            services: (retiring.iter())
                .filter_map(|name| previous.get(name).cloned())
                .collect(),
            #[cfg(unix)]
            programs,
            earlier,
            opener,
        };
        state.sections = built.sections;
        state.limits = built.limits;
        state.held = built.held;
        self.requests.reloaded(built.routed);
        // Nothing retired: the connections open are asked to close all the same (and the
        // new definitions may wait for an earlier reload's stops).
        if !retiring.is_empty() || retired.opener.is_some() {
            tokio::spawn(retired.run());
        }
        Ok(Reloaded {
            added,
            removed,
            changed,
            kept: kept.into_iter().collect(),
            routes: built.routes,
            tls,
        })
    }
}
