//! Probes in the configuration: `{"type": "tcp"}`, `{"type": "http", ..}`, `{"type": "expect", ..}`.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::ConfigError;
use super::registry::parse_at;
use crate::probe::{Expect, Http, Probe, Tcp};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSpec {
    method: Option<String>,
    path: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    /// Status codes (`200`) or ranges (`"200-299"`, `"2xx"`).
    accept: Option<Vec<StatusSpec>>,
    body_matches: Option<String>,
    body_excludes: Option<String>,
    max_body_bytes: Option<usize>,
    /// PEM text of extra root certificates to trust for `https`.
    root_certificate_pem: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StatusSpec {
    Code(u16),
    Range(String),
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object such as {\"steps\": [{\"send\": …}, {\"expect\": …}]}"
)]
struct ExpectSpec {
    steps: Vec<StepSpec>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object {\"send\": …} or {\"expect\": …}"
)]
struct StepSpec {
    send: Option<String>,
    expect: Option<String>,
}

/// Builds the probe described by `value`, found at `path`.
pub(crate) fn build(path: &str, value: Value) -> Result<Arc<dyn Probe>, ConfigError> {
    let Value::Object(mut fields) = value else {
        return Err(ConfigError::new(
            path,
            "a probe must be an object with a \"type\"",
        ));
    };
    let kind = match fields.remove("type") {
        Some(Value::String(kind)) => kind,
        _ => {
            return Err(ConfigError::new(
                path,
                "a probe needs a \"type\": tcp, http or expect",
            ));
        }
    };
    let fields = Value::Object(fields);
    let at = |field: &str| format!("{path}.{field}");
    match kind.as_str() {
        "tcp" => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct TcpSpec {}
            let TcpSpec {} = parse_at(path, fields)?;
            Ok(Arc::new(Tcp))
        }
        "http" => {
            let spec: HttpSpec = parse_at(path, fields)?;
            let mut probe = Http::new();
            if let Some(method) = spec.method {
                let parsed = http::Method::from_bytes(method.as_bytes()).map_err(|_| {
                    ConfigError::new(at("method"), format!("{method:?} is not an HTTP method"))
                })?;
                probe = probe.method(parsed);
            }
            if let Some(request_path) = spec.path {
                crate::probe::http::check_path(&request_path)
                    .map_err(|e| ConfigError::new(at("path"), e))?;
                probe = probe.path(request_path);
            }
            for (name, value) in &spec.headers {
                probe = probe
                    .header(name, value)
                    .map_err(|e| ConfigError::new(at(&format!("headers.{name}")), e.to_string()))?;
            }
            if let Some(body) = spec.body {
                probe = probe.body(body);
            }
            if let Some(accept) = spec.accept {
                // No status accepted: never up, and every request would start it again.
                if accept.is_empty() {
                    return Err(ConfigError::new(
                        at("accept"),
                        "at least one status is needed, such as [\"2xx\"]",
                    ));
                }
                let ranges = accept
                    .iter()
                    .enumerate()
                    .map(|(i, status)| {
                        status_range(status)
                            .map_err(|e| ConfigError::new(format!("{path}.accept[{i}]"), e))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                probe = probe.accept(ranges);
            }
            if let Some(pattern) = spec.body_matches {
                probe = probe
                    .body_matches(&pattern)
                    .map_err(|e| ConfigError::regex(at("body_matches"), &pattern, &e))?;
            }
            if let Some(pattern) = spec.body_excludes {
                probe = probe
                    .body_excludes(&pattern)
                    .map_err(|e| ConfigError::regex(at("body_excludes"), &pattern, &e))?;
            }
            if let Some(max) = spec.max_body_bytes {
                probe = probe.max_body_bytes(max);
            }
            if let Some(pem) = spec.root_certificate_pem {
                #[cfg(feature = "rustls")]
                {
                    probe = probe
                        .root_certificate_pem(pem.as_bytes())
                        .map_err(|e| ConfigError::new(at("root_certificate_pem"), e.to_string()))?;
                }
                #[cfg(not(feature = "rustls"))]
                {
                    let _ = pem;
                    return Err(ConfigError::new(
                        at("root_certificate_pem"),
                        "needs the `rustls` feature",
                    ));
                }
            }
            Ok(Arc::new(probe))
        }
        "expect" => {
            let spec: ExpectSpec = parse_at(path, fields)?;
            let mut probe = Expect::new();
            for (i, step) in spec.steps.into_iter().enumerate() {
                let here = format!("{path}.steps[{i}]");
                probe = match (step.send, step.expect) {
                    (Some(bytes), None) => probe.send(bytes),
                    (None, Some(pattern)) => probe
                        .expect(&pattern)
                        .map_err(|e| ConfigError::regex(format!("{here}.expect"), &pattern, &e))?,
                    _ => {
                        return Err(ConfigError::new(
                            here,
                            "a step is either {\"send\": ..} or {\"expect\": ..}",
                        ));
                    }
                };
            }
            Ok(Arc::new(probe))
        }
        other => Err(ConfigError::new(
            at("type"),
            format!(
                "unknown probe type {other:?}{}; known types: tcp, http, expect",
                super::error::closest(other, ["tcp", "http", "expect"].into_iter())
                    .map(|meant| format!(" (did you mean {meant:?}?)"))
                    .unwrap_or_default()
            ),
        )),
    }
}

fn status_range(status: &StatusSpec) -> Result<RangeInclusive<u16>, String> {
    let valid = |code: u16| (100..=999).contains(&code);
    match status {
        StatusSpec::Code(code) if valid(*code) => Ok(*code..=*code),
        StatusSpec::Code(code) => Err(format!("{code} is not an HTTP status")),
        StatusSpec::Range(text) => {
            let bad = || {
                format!(
                    "{text:?} is not a status, a range like \"200-299\", or a class like \"2xx\""
                )
            };
            if let Some(class) = text.strip_suffix("xx") {
                let digit: u16 = class.parse().map_err(|_| bad())?;
                return if (1..=9).contains(&digit) {
                    Ok(digit * 100..=digit * 100 + 99)
                } else {
                    Err(bad())
                };
            }
            let (low, high) = text.split_once('-').ok_or_else(bad)?;
            let (low, high): (u16, u16) = (
                low.trim().parse().map_err(|_| bad())?,
                high.trim().parse().map_err(|_| bad())?,
            );
            if valid(low) && valid(high) && low <= high {
                Ok(low..=high)
            } else {
                Err(bad())
            }
        }
    }
}
