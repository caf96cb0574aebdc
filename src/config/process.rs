//! The `process` and `process_stop` trigger types: a supervised backend program and its stop.
//!
//! A `process_stop` finds its `process` by the service they are in: the registry remembers the
//! last `process` built in each service (weakly: it never keeps a program alive) and a
//! `process_stop` built later in the same service stops that one. A service's `on_down`, `on_up`
//! and `always` are built before its `on_idle`, so `"on_idle": {"after": "15m", "trigger":
//! {"type": "process_stop"}}` stops the program its `on_down` starts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Deserialize;
use tracing::Level;

use super::{ConfigError, DurationValue, TriggerSpec};
use crate::trigger::{Process, Supervisor, Trigger, WeakProcess};

/// The processes a registry's configurations define, under one supervisor.
#[derive(Clone, Default)]
pub(super) struct Processes {
    supervisor: Supervisor,
    /// The last process built per service, by the service's path (e.g. `services.app`).
    by_service: Arc<Mutex<BTreeMap<String, WeakProcess>>>,
}

impl Processes {
    pub(super) fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    pub(super) fn process(&self, spec: &TriggerSpec<'_>) -> Result<Arc<dyn Trigger>, ConfigError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Spec {
            command: String,
            #[serde(default)]
            args: Vec<String>,
            current_dir: Option<String>,
            #[serde(default)]
            env: BTreeMap<String, String>,
            stop_grace: Option<DurationValue>,
            output_level: Option<String>,
            lock_file: Option<String>,
        }
        let Spec {
            command,
            args,
            current_dir,
            env,
            stop_grace,
            output_level,
            lock_file,
        } = spec.parse()?;
        let program = super::builtin::check_program(spec, &command, current_dir.as_deref())?;
        super::builtin::check_args(spec, &args)?;
        let service_path = service_of(spec.path());
        let mut builder = Process::builder(program.program).args(args);
        if let Some(name) = service_path.strip_prefix("services.") {
            builder = builder.service(name);
        }
        if let Some(dir) = program.working_dir {
            builder = builder.current_dir(dir);
        }
        for (key, value) in env {
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(spec.error(
                    &format!("env.{key}"),
                    format!("{key:?} cannot be an environment variable name"),
                ));
            }
            if value.contains('\0') {
                return Err(spec.error(
                    &format!("env.{key}"),
                    format!("{value:?} cannot be an environment value (it holds a NUL)"),
                ));
            }
            builder = builder.env(key, value);
        }
        if let Some(grace) = stop_grace {
            builder = builder.stop_grace(grace.0);
        }
        if let Some(level) = output_level {
            let parsed: Level = level.parse().map_err(|_| {
                spec.error(
                    "output_level",
                    format!("{level:?} is not a log level; use error, warn, info, debug or trace"),
                )
            })?;
            builder = builder.output_level(parsed);
        }
        if let Some(written) = lock_file {
            let path = super::paths::resolve(spec.base_dir(), &written);
            let dir = path.parent();
            if written.trim().is_empty()
                || dir.is_some_and(|d| !d.as_os_str().is_empty() && !d.is_dir())
            {
                return Err(spec.error(
                    "lock_file",
                    format!(
                        "{} cannot be created: its directory does not exist",
                        crate::trigger::program::named_at(&written, &path)
                    ),
                ));
            }
            builder = builder.lock_file(path);
        }
        let process = self.supervisor.supervise(builder);
        let mut by_service = self
            .by_service
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Forget the processes of monitors dropped since, so the map stays as small as they are.
        by_service.retain(|_, weak| weak.upgrade().is_some());
        by_service.insert(service_path.to_string(), process.downgrade());
        drop(by_service);
        Ok(Arc::new(process))
    }

    pub(super) fn process_stop(
        &self,
        spec: &TriggerSpec<'_>,
    ) -> Result<Arc<dyn Trigger>, ConfigError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Spec {}
        let Spec {} = spec.parse()?;
        let service_path = service_of(spec.path());
        let process = self
            .by_service
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(service_path)
            .and_then(WeakProcess::upgrade);
        match process {
            Some(process) => Ok(Arc::new(process.stopper())),
            None => Err(ConfigError::new(
                spec.path(),
                format!(
                    "a \"process_stop\" stops the \"process\" trigger of its service, and \
                     {service_path} has none before it: give its on_down \
                     {{\"type\": \"process\", \"command\": …}}"
                ),
            )),
        }
    }
}

/// The service part of a trigger's path: what comes before its `on_down`, `on_up`, `always` or
/// `on_idle` (`services.app.on_idle.trigger` → `services.app`); the whole path for a trigger
/// built outside a service.
fn service_of(path: &str) -> &str {
    const FIELDS: [&str; 4] = [".on_down", ".on_up", ".always", ".on_idle"];
    let found = FIELDS
        .iter()
        .filter_map(|field| {
            path.match_indices(field)
                .filter(|(at, _)| {
                    let rest = &path[at + field.len()..];
                    rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')
                })
                .map(|(at, _)| at)
                .last()
        })
        .max();
    found.map_or(path, |at| &path[..at])
}

#[cfg(test)]
mod tests {
    use super::service_of;

    #[test]
    fn finds_the_service_of_a_trigger_path() {
        assert_eq!(service_of("services.app.on_down"), "services.app");
        assert_eq!(service_of("services.app.on_idle.trigger"), "services.app");
        assert_eq!(
            service_of("services.my.app.on_down.triggers[0]"),
            "services.my.app"
        );
        assert_eq!(service_of("services.on_upx.always"), "services.on_upx");
        assert_eq!(service_of("on_down"), "on_down");
    }
}
