//! One service's section, `services.NAME`: its fields as written, and the service built from them.

use serde::Deserialize;
use serde_json::Value;

use super::{ConfigError, DEFAULT_GRACE_PERIOD, DurationValue, TriggerRegistry, UrlValue, probe};
use crate::MonitoredService;

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object such as {\"url\": \"http://127.0.0.1:8081/\", \"grace_period\": \"30s\"}"
)]
pub(super) struct ServiceSpec {
    url: UrlValue,
    grace_period: Option<DurationValue>,
    probe_timeout: Option<DurationValue>,
    #[serde(default)]
    probe_on_add: bool,
    probe: Option<Value>,
    ready_after: Option<DurationValue>,
    start_timeout: Option<DurationValue>,
    stop_timeout: Option<DurationValue>,
    trigger_timeout: Option<DurationValue>,
    on_down: Option<Value>,
    on_up: Option<Value>,
    always: Option<Value>,
    on_idle: Option<IdleSpec>,
    #[serde(default)]
    depends_on: Vec<String>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object such as {\"after\": \"15m\", \"trigger\": {\"type\": \"process_stop\"}}"
)]
struct IdleSpec {
    after: DurationValue,
    trigger: Value,
}

pub(super) fn build_service(
    path: &str,
    spec: ServiceSpec,
    registry: &TriggerRegistry,
) -> Result<MonitoredService, ConfigError> {
    let grace_period = spec
        .grace_period
        .map_or(DEFAULT_GRACE_PERIOD, |grace| grace.0);
    let mut service =
        MonitoredService::new(spec.url.0, grace_period).probe_on_add(spec.probe_on_add);
    if let Some(probe) = spec.probe {
        service = service.probe(probe::build(&format!("{path}.probe"), probe)?);
    }
    if let Some(delay) = spec.ready_after {
        service = service.ready_after(delay.0);
    }
    service.probe.validate_url(&service.url).map_err(|reason| {
        ConfigError::new(
            format!("{path}.url"),
            format!(
                "URL {:?} cannot be probed: {reason}",
                crate::redact::url(&service.url)
            ),
        )
    })?;
    if let Some(timeout) = spec.probe_timeout {
        service = service.probe_timeout(timeout.positive(format!("{path}.probe_timeout"))?);
    }
    if let Some(timeout) = spec.start_timeout {
        service = service.start_timeout(timeout.positive(format!("{path}.start_timeout"))?);
    }
    if let Some(timeout) = spec.stop_timeout {
        service = service.stop_timeout(timeout.positive(format!("{path}.stop_timeout"))?);
    }
    if let Some(timeout) = spec.trigger_timeout {
        service = service.trigger_timeout(timeout.positive(format!("{path}.trigger_timeout"))?);
    }
    if let Some(trigger) = spec.on_down {
        service = service.on_down(registry.build_at(&format!("{path}.on_down"), &trigger)?);
    }
    if let Some(trigger) = spec.on_up {
        service = service.on_up(registry.build_at(&format!("{path}.on_up"), &trigger)?);
    }
    if let Some(trigger) = spec.always {
        service = service.always(registry.build_at(&format!("{path}.always"), &trigger)?);
    }
    if let Some(idle) = spec.on_idle {
        if idle.after.0.is_zero() {
            // Read by some as "never": it stops the backend after every request instead.
            return Err(ConfigError::new(
                format!("{path}.on_idle.after"),
                "must be more than \"0s\": zero stops the backend as soon as no request is in \
                 flight, so every request starts it again; to never stop it, leave on_idle out",
            ));
        }
        let trigger = registry.build_at(&format!("{path}.on_idle.trigger"), &idle.trigger)?;
        service = service.on_idle(idle.after.0, trigger);
    }
    for dependency in spec.depends_on {
        service = service.depends_on(dependency);
    }
    Ok(service)
}
