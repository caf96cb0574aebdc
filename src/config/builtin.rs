//! The built-in trigger types, each a constructor from its JSON object, registered by
//! [`TriggerRegistry::new`](super::TriggerRegistry::new) the way a user's own types are.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::Method;
use serde::Deserialize;
use serde_json::Value;

use super::paths::Program;
use super::{ConfigError, DurationValue, TriggerSpec, UrlValue};
use crate::trigger::program::{self, ProgramProblem};
use crate::trigger::{Command, Compound, Delay, RateLimit, Trigger, Webhook};

pub(super) fn command(spec: &TriggerSpec<'_>) -> Result<Arc<dyn Trigger>, ConfigError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Spec {
        command: String,
        #[serde(default)]
        args: Vec<String>,
        timeout: Option<DurationValue>,
        #[serde(default)]
        detached: bool,
        current_dir: Option<String>,
    }
    let Spec {
        command,
        args,
        timeout,
        detached,
        current_dir,
    } = spec.parse()?;
    let program = check_program(spec, &command, current_dir.as_deref())?;
    check_args(spec, &args)?;
    let mut trigger = Command::new(program.program).args(args);
    if let Some(timeout) = timeout {
        trigger = trigger.timeout(timeout.positive(format!("{}.timeout", spec.path()))?);
    }
    if let Some(dir) = program.working_dir {
        trigger = trigger.current_dir(dir);
    }
    if detached {
        trigger = trigger.detached();
    }
    Ok(Arc::new(trigger))
}

/// Checks that no argument of a `command` (or `process`) trigger holds a NUL, which no program
/// can be given: each run would fail.
pub(super) fn check_args(spec: &TriggerSpec<'_>, args: &[String]) -> Result<(), ConfigError> {
    match args.iter().position(|arg| arg.contains('\0')) {
        Some(i) => Err(spec.error(
            &format!("args[{i}]"),
            format!(
                "{:?} cannot be a program argument (it holds a NUL)",
                args[i]
            ),
        )),
        None => Ok(()),
    }
}

/// The program of a `command` (or `process`) trigger and its working directory, resolved from
/// the configuration file's folder (see [`Program::resolve`]); checked to exist and be
/// runnable, with a directory to run in: a typo is one error now, naming the field and the
/// path it resolved to, not a failure per request.
pub(super) fn check_program(
    spec: &TriggerSpec<'_>,
    command: &str,
    current_dir: Option<&str>,
) -> Result<Program, ConfigError> {
    let resolved = Program::resolve(spec.base_dir(), command, current_dir);
    // The command as written: `check` names the path it resolves it to from the directory.
    program::check(command.as_ref(), resolved.working_dir.as_deref()).map_err(|problem| {
        match problem {
            ProgramProblem::Program(why) => spec.error("command", why),
            ProgramProblem::CurrentDir(why) => spec.error("current_dir", why),
        }
    })?;
    Ok(resolved)
}

pub(super) fn compound(spec: &TriggerSpec<'_>) -> Result<Arc<dyn Trigger>, ConfigError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Spec {
        triggers: Vec<Value>,
    }
    let Spec { triggers } = spec.parse()?;
    let triggers = triggers
        .iter()
        .enumerate()
        .map(|(i, value)| spec.trigger(&format!("triggers[{i}]"), value))
        .collect::<Result<Compound, _>>()?;
    Ok(Arc::new(triggers))
}

pub(super) fn delay(spec: &TriggerSpec<'_>) -> Result<Arc<dyn Trigger>, ConfigError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Spec {
        delay: DurationValue,
        trigger: Value,
        timeout: Option<DurationValue>,
    }
    let Spec {
        delay,
        trigger,
        timeout,
    } = spec.parse()?;
    let mut delayed = Delay::new(delay.0, spec.trigger("trigger", &trigger)?);
    if let Some(timeout) = timeout {
        delayed = delayed.timeout(timeout.positive(format!("{}.timeout", spec.path()))?);
    }
    Ok(Arc::new(delayed))
}

pub(super) fn rate_limit(spec: &TriggerSpec<'_>) -> Result<Arc<dyn Trigger>, ConfigError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Spec {
        max_runs: usize,
        period: DurationValue,
        trigger: Value,
    }
    let Spec {
        max_runs,
        period,
        trigger,
    } = spec.parse()?;
    if max_runs == 0 {
        return Err(spec.error("max_runs", "must be at least 1, not 0"));
    }
    // A zero period would forget each run at once: a limit that never limits.
    let period = period.positive(format!("{}.period", spec.path()))?;
    Ok(Arc::new(RateLimit::new(
        max_runs,
        period,
        spec.trigger("trigger", &trigger)?,
    )))
}

pub(super) fn webhook(spec: &TriggerSpec<'_>) -> Result<Arc<dyn Trigger>, ConfigError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Spec {
        url: UrlValue,
        #[serde(default = "post")]
        method: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        body: String,
        timeout: Option<DurationValue>,
        root_certificate_pem: Option<String>,
    }
    fn post() -> String {
        "POST".to_string()
    }
    let Spec {
        url,
        method,
        headers,
        body,
        timeout,
        root_certificate_pem,
    } = spec.parse()?;
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| spec.error("method", format!("{method:?} is not an HTTP method")))?;
    let mut hook = Webhook::new(method, url.0).map_err(|e| spec.error("url", e.to_string()))?;
    for (name, value) in &headers {
        hook = hook
            .header(name, value)
            .map_err(|e| spec.error(&format!("headers.{name}"), e.to_string()))?;
    }
    hook = hook.body(body);
    if let Some(timeout) = timeout {
        hook = hook.timeout(timeout.positive(format!("{}.timeout", spec.path()))?);
    }
    if let Some(pem) = root_certificate_pem {
        #[cfg(feature = "rustls")]
        {
            hook = hook
                .root_certificate_pem(pem.as_bytes())
                .map_err(|e| spec.error("root_certificate_pem", e.to_string()))?;
        }
        #[cfg(not(feature = "rustls"))]
        {
            let _ = pem;
            return Err(spec.error("root_certificate_pem", "needs the `rustls` feature"));
        }
    }
    Ok(Arc::new(hook))
}
