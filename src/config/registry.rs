//! Trigger types by name, each a constructor from its JSON object (the built-ins are in `builtin.rs`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_path_to_error::Segment;

use super::ConfigError;
use super::builtin;
use crate::trigger::Trigger;

type Constructor =
    Arc<dyn Fn(&TriggerSpec<'_>) -> Result<Arc<dyn Trigger>, ConfigError> + Send + Sync>;

/// The trigger types a configuration may use, by the name its `"type"` field gives.
///
/// [`TriggerRegistry::new`] knows the built-in types; [`register`](Self::register) adds yours,
/// the same way the built-ins are added (pullcord's resource-type registry, done per registry
/// instead of globally).
///
/// On Unix it also holds the [`Supervisor`](crate::trigger::Supervisor) of the `process`
/// triggers it builds ([`supervisor`](Self::supervisor)), and remembers them per service for
/// `process_stop` (see the [`config`](super) docs).
///
/// ```
/// use tower_monitor::config::TriggerRegistry;
///
/// let registry = TriggerRegistry::new();
/// assert!(registry.types().starts_with(&["command", "compound", "delay"]));
/// ```
#[derive(Clone)]
pub struct TriggerRegistry {
    kinds: BTreeMap<String, Constructor>,
    /// The configuration file's folder (absolute), which relative paths count from.
    base_dir: Option<Arc<Path>>,
    #[cfg(unix)]
    processes: super::process::Processes,
}

/// One trigger's JSON object, handed to its type's constructor.
pub struct TriggerSpec<'a> {
    path: &'a str,
    fields: &'a serde_json::Map<String, Value>,
    registry: &'a TriggerRegistry,
}

impl TriggerSpec<'_> {
    /// Where this trigger is in the document, e.g. `services.app.on_down`.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use tower_monitor::config::{ConfigError, TriggerRegistry};
    /// let mut registry = TriggerRegistry::empty();
    /// registry.register("never", |spec| Err(ConfigError::new(spec.path(), "not allowed here")));
    /// ```
    pub fn path(&self) -> &str {
        self.path
    }

    /// The folder relative paths in the configuration count from: the configuration file's
    /// (absolute), set by [`TriggerRegistry::relative_to`]; `None` for a configuration given
    /// as text, whose relative paths are the program's own business (its current folder).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_monitor::{BoxError, trigger};
    /// use tower_monitor::config::TriggerRegistry;
    ///
    /// let mut registry = TriggerRegistry::new();
    /// registry.register("touch", |spec| {
    ///     #[derive(serde::Deserialize)]
    ///     struct Touch { file: String }
    ///     let Touch { file } = spec.parse()?;
    ///     let file = match spec.base_dir() {
    ///         Some(dir) => dir.join(file),
    ///         None => file.into(),
    ///     };
    ///     Ok(Arc::new(trigger::from_fn(move || {
    ///         let file = file.clone();
    ///         async move { std::fs::write(file, b"").map_err(BoxError::from) }
    ///     })))
    /// });
    /// ```
    pub fn base_dir(&self) -> Option<&Path> {
        self.registry.base_dir.as_deref()
    }

    /// The trigger's fields (all but `"type"`) as `T`; an error names the field's path.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_monitor::{BoxError, trigger};
    /// use tower_monitor::config::TriggerRegistry;
    ///
    /// #[derive(serde::Deserialize)]
    /// #[serde(deny_unknown_fields)]
    /// struct Beep { times: u32 }
    ///
    /// let mut registry = TriggerRegistry::new();
    /// registry.register("beep", |spec| {
    ///     let Beep { times } = spec.parse()?;
    ///     Ok(Arc::new(trigger::from_fn(move || async move {
    ///         for _ in 0..times { print!("\x07") }
    ///         Ok::<(), BoxError>(())
    ///     })))
    /// });
    /// ```
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        parse_at(self.path, Value::Object(self.fields.clone()))
    }

    /// Builds a nested trigger found at `field` (a path relative to this trigger).
    ///
    /// ```
    /// use tower_monitor::config::TriggerRegistry;
    /// use serde_json::Value;
    ///
    /// let mut registry = TriggerRegistry::new();
    /// registry.register("twice", |spec| {
    ///     #[derive(serde::Deserialize)]
    ///     struct Twice { trigger: Value }
    ///     let Twice { trigger } = spec.parse()?;
    ///     let inner = spec.trigger("trigger", &trigger)?;
    ///     Ok(std::sync::Arc::new(tower_monitor::trigger::Compound::from_iter([inner.clone(), inner])))
    /// });
    /// ```
    pub fn trigger(&self, field: &str, value: &Value) -> Result<Arc<dyn Trigger>, ConfigError> {
        self.registry.build_at(&join(self.path, field), value)
    }

    /// An error about `field` (relative to this trigger).
    ///
    /// ```
    /// # use tower_monitor::config::{ConfigError, TriggerRegistry};
    /// let mut registry = TriggerRegistry::empty();
    /// registry.register("strict", |spec| Err(spec.error("level", "must be 1 to 3")));
    /// ```
    pub fn error(&self, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(join(self.path, field), message)
    }
}

impl TriggerRegistry {
    /// A registry with the built-in types: `command`, `compound`, `delay`, `rate_limit`,
    /// `webhook`, and on Unix `process` and `process_stop`.
    ///
    /// ```
    /// let registry = tower_monitor::config::TriggerRegistry::new();
    /// assert!(registry.types().contains(&"webhook"));
    /// ```
    pub fn new() -> Self {
        let mut registry = Self::empty();
        registry.register("command", builtin::command);
        registry.register("compound", builtin::compound);
        registry.register("delay", builtin::delay);
        registry.register("rate_limit", builtin::rate_limit);
        registry.register("webhook", builtin::webhook);
        #[cfg(unix)]
        {
            let processes = registry.processes.clone();
            registry.register("process", move |spec| processes.process(spec));
            let processes = registry.processes.clone();
            registry.register("process_stop", move |spec| processes.process_stop(spec));
        }
        registry
    }

    /// The supervisor of every `process` trigger this registry (or a clone of it) builds: stop
    /// them all with [`Supervisor::shutdown`](crate::trigger::Supervisor::shutdown) on exit.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use tower_monitor::MinMonitor;
    /// use tower_monitor::config::TriggerRegistry;
    ///
    /// let registry = TriggerRegistry::new();
    /// let monitor = MinMonitor::from_config_with(r#"{ "services": { "app": {
    ///     "url": "http://127.0.0.1:8081/", "grace_period": "30s",
    ///     "on_down": { "type": "process", "command": "sleep", "args": ["600"], "stop_grace": "5s" },
    ///     "on_idle": { "after": "15m", "trigger": { "type": "process_stop" } }
    /// } } }"#, &registry)?;
    /// // … serve; then, on the way out:
    /// registry.supervisor().shutdown(Duration::from_secs(10)).await?;
    /// # drop(monitor);
    /// # Ok(()) }
    /// ```
    #[cfg(unix)]
    pub fn supervisor(&self) -> &crate::trigger::Supervisor {
        self.processes.supervisor()
    }

    /// A registry that knows no type at all.
    ///
    /// ```
    /// assert!(tower_monitor::config::TriggerRegistry::empty().types().is_empty());
    /// ```
    pub fn empty() -> Self {
        Self {
            kinds: BTreeMap::new(),
            base_dir: None,
            #[cfg(unix)]
            processes: Default::default(),
        }
    }

    /// Takes relative paths in the configurations it builds from `dir` (made absolute from
    /// the current folder): the configuration file's folder, so that a file means the same
    /// programs and files wherever the program reading it was started. The built-in `command`
    /// and `process` types then resolve their `command` and `current_dir` from it, run their
    /// program there by default, and a `process`'s `lock_file` too (see the
    /// [`config`](super) docs); your own types read it as [`TriggerSpec::base_dir`].
    /// [`Gateway::from_config_file`](crate::gateway::Gateway::from_config_file) sets it.
    ///
    /// ```
    /// use tower_monitor::MinMonitor;
    /// use tower_monitor::config::TriggerRegistry;
    ///
    /// let config = r#"{ "services": { "app": { "url": "http://127.0.0.1:8081/",
    ///     "grace_period": "30s", "on_down": { "type": "command", "command": "./sh" } } } }"#;
    /// let mut registry = TriggerRegistry::new();
    /// registry.relative_to("/bin");
    /// assert!(MinMonitor::from_config_with(config, &registry).is_ok());
    /// let err = MinMonitor::from_config_with(config, registry.relative_to("/etc")).unwrap_err();
    /// assert_eq!(err.path(), "services.app.on_down.command");
    /// assert!(err.message().contains("\"/etc/sh\""), "{err}");
    /// ```
    pub fn relative_to(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.base_dir = Some(super::paths::absolute(dir.as_ref()).into());
        self
    }

    /// Registers (or replaces) the type `name`, built by `constructor` from its JSON object.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_monitor::{BoxError, trigger};
    /// use tower_monitor::config::TriggerRegistry;
    ///
    /// let mut registry = TriggerRegistry::new();
    /// registry.register("noop", |_spec| Ok(Arc::new(trigger::from_fn(|| async { Ok::<(), BoxError>(()) }))));
    /// assert!(registry.types().contains(&"noop"));
    /// ```
    pub fn register<F>(&mut self, name: impl Into<String>, constructor: F) -> &mut Self
    where
        F: Fn(&TriggerSpec<'_>) -> Result<Arc<dyn Trigger>, ConfigError> + Send + Sync + 'static,
    {
        self.kinds.insert(name.into(), Arc::new(constructor));
        self
    }

    /// The registered type names, sorted.
    ///
    /// ```
    /// assert!(tower_monitor::config::TriggerRegistry::new().types().len() >= 5);
    /// ```
    pub fn types(&self) -> Vec<&str> {
        self.kinds.keys().map(String::as_str).collect()
    }

    /// Builds the trigger described by `value` (an object with a `"type"`), found at `path`.
    ///
    /// ```
    /// use serde_json::json;
    /// use tower_monitor::config::TriggerRegistry;
    ///
    /// let registry = TriggerRegistry::new();
    /// let start = registry.build_at("on_down", &json!({ "type": "command", "command": "true" }));
    /// assert!(start.is_ok());
    /// let err = registry.build_at("on_down", &json!({ "type": "teleport" })).err().unwrap();
    /// assert_eq!(err.path(), "on_down.type");
    /// ```
    pub fn build_at(&self, path: &str, value: &Value) -> Result<Arc<dyn Trigger>, ConfigError> {
        let Some(fields) = value.as_object() else {
            return Err(ConfigError::new(
                path,
                format!("a trigger must be an object with a \"type\", not {value}"),
            ));
        };
        let kind = match fields.get("type") {
            Some(Value::String(kind)) => kind,
            Some(other) => {
                return Err(ConfigError::new(
                    join(path, "type"),
                    format!("must be a string, not {other}"),
                ));
            }
            None => return Err(ConfigError::new(path, "a trigger needs a \"type\"")),
        };
        let Some(constructor) = self.kinds.get(kind) else {
            return Err(ConfigError::new(
                join(path, "type"),
                format!(
                    "unknown trigger type {kind:?}{}; known types: {}",
                    super::error::closest(kind, self.types().into_iter())
                        .map(|meant| format!(" (did you mean {meant:?}?)"))
                        .unwrap_or_default(),
                    self.types().join(", ")
                ),
            ));
        };
        let mut fields = fields.clone();
        fields.remove("type");
        constructor(&TriggerSpec {
            path,
            fields: &fields,
            registry: self,
        })
    }
}

impl Default for TriggerRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TriggerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TriggerRegistry")
            .field("types", &self.types())
            .field("base_dir", &self.base_dir)
            .finish()
    }
}

/// Deserializes `value`, naming the failing field's path below `prefix`.
pub(crate) fn parse_at<T: DeserializeOwned>(prefix: &str, value: Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(super::Objects(value)).map_err(|error| {
        let mut path = prefix.to_string();
        for segment in error.path() {
            let segment = match segment {
                Segment::Seq { index } => Cow::Owned(format!("[{index}]")),
                Segment::Map { key } => field_name(key),
                Segment::Enum { variant } => field_name(variant),
                Segment::Unknown => Cow::Borrowed("?"),
            };
            path = join(&path, &segment);
        }
        let message = super::error::plain_words(error.into_inner().to_string());
        // A missing field is reported at the object that lacks it (the whole document, for
        // `services`); the path names the field itself.
        if let Some(field) = missing_field(&message) {
            path = join(&path, field);
        }
        ConfigError::new(path, message)
    })
}

/// A field's name or a map's key as a path segment: as it is, or JSON-quoted when it would
/// make the dotted path ambiguous (empty, or with dots, brackets, quotes or spaces in it).
pub(crate) fn field_name(name: &str) -> Cow<'_, str> {
    let plain = !name.is_empty()
        && !name
            .chars()
            .any(|c| matches!(c, '.' | '[' | ']' | '"') || c.is_whitespace() || c.is_control());
    if plain {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(Value::from(name).to_string())
    }
}

/// The field named by serde's "missing field `name`" message.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")?
        .strip_suffix('`')
        .filter(|field| !field.is_empty())
}

fn join(prefix: &str, field: &str) -> String {
    match (prefix.is_empty(), field.starts_with('[')) {
        (true, _) => field.to_string(),
        (false, true) => format!("{prefix}{field}"),
        (false, false) => format!("{prefix}.{field}"),
    }
}
