//! The process's Prometheus recorder, installed once, shared by every admin service; and the
//! families rendered beside it.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Metric families kept outside the `metrics` recorder and rendered by their owner at each
/// scrape, after the recorder's: the gateway's counts of requests answered, which it keeps per
/// worker so that counting costs a request no lookup in the recorder.
pub(crate) trait Families: Send + Sync {
    /// Appends the families, in the Prometheus text format, to `out`.
    fn render(&self, out: &mut String);
}

/// Bucket bounds (seconds) for probe durations: a loopback connect takes well under a
/// millisecond, a probe times out after 2 s by default.
const PROBE_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0, 2.5,
];
/// Bucket bounds (seconds) for cold starts: from a process that binds at once to a VM.
const COLD_START_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// Installs the Prometheus recorder as the global `metrics` recorder, once per process, and
/// returns its handle; `None` if another recorder was installed first (then the admin service
/// answers `/metrics` with 503 and says why).
pub(crate) fn handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(crate::metrics::PROBE_DURATION.to_owned()),
                    &PROBE_BUCKETS,
                )
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(crate::metrics::COLD_START.to_owned()),
                        &COLD_START_BUCKETS,
                    )
                })
                .and_then(PrometheusBuilder::install_recorder);
            match installed {
                Ok(handle) => {
                    crate::metrics::describe();
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(%error, "the Prometheus recorder could not be installed; /metrics answers 503");
                    None
                }
            }
        })
        .clone()
}

#[cfg(feature = "gateway")]
/// `text` (the Prometheus text format) without the samples labelled with a service of
/// `removed`; their `# HELP` and `# TYPE` lines stay, as other services may share them.
pub(crate) fn without_services(
    text: String,
    removed: &std::collections::BTreeSet<String>,
) -> String {
    if removed.is_empty() {
        return text;
    }
    let labels: Vec<String> = (removed.iter())
        .map(|name| {
            let escaped = name
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("service=\"{escaped}\"")
        })
        .collect();
    let removed_sample = |line: &str| {
        !line.starts_with('#')
            && labels.iter().any(|label| {
                line.match_indices(label.as_str()).any(|(at, _)| {
                    let before = line[..at].ends_with(['{', ',']);
                    let after = line[at + label.len()..].starts_with([',', '}']);
                    before && after
                })
            })
    };
    let mut kept = String::with_capacity(text.len());
    for line in text
        .split_inclusive('\n')
        .filter(|line| !removed_sample(line))
    {
        kept.push_str(line);
    }
    kept
}

#[cfg(all(test, feature = "gateway"))]
mod tests {
    #[test]
    fn the_samples_of_removed_services_are_left_out() {
        let text = "# TYPE up gauge\nup{service=\"a\"} 1\nup{service=\"ab\"} 1\nx{code=\"1\",service=\"a\"} 2\n";
        let removed = ["a".to_string()].into_iter().collect();
        assert_eq!(
            super::without_services(text.to_string(), &removed),
            "# TYPE up gauge\nup{service=\"ab\"} 1\n"
        );
    }
}
