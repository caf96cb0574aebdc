//! What a reload keeps, adds and retires: decided from the sections as written, before any
//! service is built, so that a setting that needs a restart refuses the reload at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde_json::Value;

use super::gate::{AfterStop, Gate};
use crate::MinMonitor;
use crate::config::{ConfigError, Reused};
use crate::gateway::build::{Reuse, Sections};
use crate::layer::HeldCount;
use crate::service::MonitoredService;

/// The reload's plan, filled in as the build goes.
pub(super) struct Plan<'a> {
    /// The sections of the configuration in use.
    pub(super) old: &'a Sections,
    /// The gateway's monitor, whose unchanged services the new configuration takes.
    pub(super) monitor: &'a MinMonitor,
    /// What the starts of the new definitions wait for: the old programs' stop.
    pub(super) gate: &'a Gate,
    pub(super) added: Vec<String>,
    pub(super) removed: Vec<String>,
    pub(super) changed: Vec<String>,
    pub(super) kept: BTreeSet<String>,
    /// New services to probe once committed (their `probe_on_add`, held back until then so
    /// that a reload refused later probes nothing).
    pub(super) probe_now: Vec<String>,
    /// The limits of requests in flight of the configuration in use, by service.
    pub(super) limits: &'a BTreeMap<String, crate::proxy::InFlightLimit>,
    /// The counts of held requests of the configuration in use, by service.
    pub(super) held: &'a BTreeMap<String, HeldCount>,
    /// The stop flag of each new definition's start (see [`AfterStop`]), by name.
    pub(super) retired_flags: BTreeMap<String, Arc<AtomicBool>>,
    /// Where the gateway listens if `--listen` said so: then the file's `listen` is not used.
    pub(super) listen_flag: Option<std::net::SocketAddr>,
}

impl<'a> Plan<'a> {
    pub(super) fn new(
        old: &'a Sections,
        limits: &'a BTreeMap<String, crate::proxy::InFlightLimit>,
        held: &'a BTreeMap<String, HeldCount>,
        monitor: &'a MinMonitor,
        gate: &'a Gate,
    ) -> Self {
        Self {
            old,
            limits,
            held,
            monitor,
            gate,
            added: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
            kept: BTreeSet::new(),
            probe_now: Vec::new(),
            retired_flags: BTreeMap::new(),
            listen_flag: None,
        }
    }
}

/// An error for a section that cannot change without a restart.
fn needs_restart(field: &str, what: &str) -> ConfigError {
    ConfigError::new(
        field,
        format!(
            "{what} cannot change without a restart: put it back as it was, or restart the \
             gateway"
        ),
    )
}

/// The names `service` (a `services.NAME` section) `depends_on`.
fn dependencies(service: &Value) -> impl Iterator<Item = &str> {
    service
        .get("depends_on")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

impl Reuse for Plan<'_> {
    fn sections(&mut self, new: &Sections) -> Result<(), ConfigError> {
        let (old, new_listen) = (self.old, new.listen.parse::<std::net::SocketAddr>().ok());
        // With `--listen`, the file's address is not where the gateway listens: it may change.
        if self.listen_flag.is_none()
            && old.listen.parse::<std::net::SocketAddr>().ok() != new_listen
        {
            let what = format!(
                "the listening address ({} in use, {} now)",
                old.listen, new.listen
            );
            return Err(needs_restart("gateway.listen", &what));
        }
        if old.tls != new.tls {
            // The listener's scheme, which clients name in their URLs, as they name its
            // address.
            let (turning, now) = match new.tls {
                true => ("on", "cleartext HTTP"),
                false => ("off", "HTTPS"),
            };
            return Err(ConfigError::new(
                "gateway.tls",
                format!(
                    "turning TLS {turning} needs a restart (the listener speaks {now} now): put \
                     it back as it was, or restart the gateway"
                ),
            ));
        }
        if old.admin != new.admin {
            return Err(needs_restart("admin", "the admin section"));
        }
        if old.fleet != new.fleet {
            return Err(needs_restart("fleet", "the fleet section"));
        }
        // Unchanged: the same definition, whose dependencies are unchanged too (a service
        // holds its dependencies themselves, not their names).
        let mut kept: BTreeSet<String> = (new.services.iter())
            .filter(|(name, service)| old.services.get(*name) == Some(service))
            .map(|(name, _)| name.clone())
            .collect();
        loop {
            let unkept: Vec<String> = (kept.iter())
                .filter(|name| {
                    (new.services.get(*name))
                        .is_some_and(|service| dependencies(service).any(|d| !kept.contains(d)))
                })
                .cloned()
                .collect();
            if unkept.is_empty() {
                break;
            }
            for name in unkept {
                kept.remove(&name);
            }
        }
        for name in new.services.keys() {
            match (kept.contains(name), old.services.contains_key(name)) {
                (true, _) => {}
                (false, true) => self.changed.push(name.clone()),
                (false, false) => self.added.push(name.clone()),
            }
        }
        self.removed = (old.services.keys())
            .filter(|name| !new.services.contains_key(*name))
            .cloned()
            .collect();
        self.kept = kept;
        let services_change =
            !(self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty());
        if new.fleet.is_some() && services_change {
            return Err(ConfigError::new(
                "services",
                "services cannot be added, removed or changed by a reload while a fleet section \
                 is present (the other gateways share their lifecycles): restart the gateway for \
                 that",
            ));
        }
        Ok(())
    }

    fn limits(&mut self, new: &Sections) -> BTreeMap<String, crate::proxy::InFlightLimit> {
        (self.limits.iter())
            .filter(|(name, _)| {
                self.kept.contains(*name) && self.old.limits.get(*name) == new.limits.get(*name)
            })
            .map(|(name, limit)| (name.clone(), limit.clone()))
            .collect()
    }

    fn held(&mut self) -> BTreeMap<String, HeldCount> {
        // A kept service is the very one in use, held requests and all: whatever its hold
        // settings now, they count against its `max_held`.
        (self.held.iter())
            .filter(|(name, _)| self.kept.contains(*name))
            .map(|(name, count)| (name.clone(), count.clone()))
            .collect()
    }

    fn service(
        &mut self,
        name: &str,
        mut service: MonitoredService,
    ) -> Result<MonitoredService, Reused> {
        if self.kept.contains(name) {
            if let Ok(registered) = self.monitor.lookup(name) {
                return Err(Reused(registered));
            }
        }
        if std::mem::take(&mut service.probe_on_add) {
            self.probe_now.push(name.to_string());
        }
        Ok(behind(self.gate, name, service, &mut self.retired_flags))
    }
}

/// `service` (named `name`) with its `on_down` behind `gate`, its stop flag put in `flags`.
fn behind(
    gate: &Gate,
    name: &str,
    mut service: MonitoredService,
    flags: &mut BTreeMap<String, Arc<AtomicBool>>,
) -> MonitoredService {
    if let Some(on_down) = service.on_down.take() {
        let (after_stop, retired) = AfterStop::new(gate.clone(), on_down, name);
        flags.insert(name.to_string(), retired);
        service.on_down = Some(Arc::new(after_stop));
    }
    service
}

/// The startup's build: each definition's `on_down` behind a gate open from the start, with
/// the stop flag that a reload retiring it sets, as a reload's own definitions have. Without
/// it, a start under way when a reload retires the definition (one waiting for its
/// dependencies, or for a backend found gone) would run `on_down` after the retirement's
/// stop: a program no one stops, beside the new definition's on one port.
pub(in crate::gateway) struct Startup {
    gate: Gate,
    retired_flags: BTreeMap<String, Arc<AtomicBool>>,
}

impl Startup {
    pub(in crate::gateway) fn new() -> Self {
        let (opener, gate) = super::gate::gate();
        opener.open();
        Self {
            gate,
            retired_flags: BTreeMap::new(),
        }
    }

    /// The gate and stop flag of each definition, by name.
    pub(super) fn into_gates(self) -> BTreeMap<String, (Gate, Arc<AtomicBool>)> {
        let gate = self.gate;
        (self.retired_flags.into_iter())
            .map(|(name, retired)| (name, (gate.clone(), retired)))
            .collect()
    }
}

impl Reuse for Startup {
    fn sections(&mut self, _: &Sections) -> Result<(), ConfigError> {
        Ok(())
    }

    fn limits(&mut self, _: &Sections) -> BTreeMap<String, crate::proxy::InFlightLimit> {
        BTreeMap::new()
    }

    fn held(&mut self) -> BTreeMap<String, HeldCount> {
        BTreeMap::new()
    }

    fn service(
        &mut self,
        name: &str,
        service: MonitoredService,
    ) -> Result<MonitoredService, Reused> {
        Ok(behind(&self.gate, name, service, &mut self.retired_flags))
    }
}

/// How long a new definition's start may wait for the old programs' stop at most (each wait
/// is bounded before: the drain by the grace, each stop by its SIGKILL).
pub(super) const START_WAIT_BOUND: Duration = Duration::from_secs(300);
