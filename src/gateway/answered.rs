//! The requests the gateway answered, by service and status code, for the admin's `/metrics`
//! (`tower_monitor_gateway_requests_total{service, code}`), and how long each took to its
//! answer's head (`tower_monitor_gateway_request_duration_seconds{service}`).
//!
//! Counted per router, that is per worker (each builds its own routes): a block of plain
//! counters, one row per route plus one for requests no route took, each row a counter per
//! status code and one per duration bucket. A request adds to its row with relaxed atomic adds, on a cache line no
//! other worker writes: no lock, no lookup, no allocation. A scrape sums the blocks.
//!
//! Not through the `metrics` facade: a facade call builds its key (the service name a label:
//! an allocation) and the recorder looks it up (hashing, a shared lock) on every request.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The metric's name.
pub(super) const NAME: &str = "tower_monitor_gateway_requests_total";

/// The duration histogram's name.
pub(super) const DURATION: &str = "tower_monitor_gateway_request_duration_seconds";

/// The duration histogram's bucket bounds, in microseconds: an answer over loopback comes in
/// well under a millisecond, a cold start or a hold takes seconds, the default response timeout
/// is 30 s.
const BOUNDS_MICROS: [u64; 14] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000,
];
/// A counter per bound, and one for the durations past the last.
const BUCKETS: usize = BOUNDS_MICROS.len() + 1;

/// The `service` label of requests no route took (as the access log names their service).
pub(super) const NO_ROUTE: &str = "-";

/// The status logged and counted for a request whose client went away before its answer's
/// head (while it was held for a cold start, say): 499, as nginx logs it.
pub(super) const CLIENT_GONE: u16 = 499;

/// Codes 100 to 599 (RFC 9110's range) each have a counter; the codes past it that a backend
/// may still send (600 to 999) share the last one, labelled `other`.
const CODES: usize = 500;
const SLOTS: usize = CODES + 1;

/// One route's counters in one worker. Aligned so that no two rows, and no row and anything
/// else, share a cache line (nor the pair of lines some CPUs fetch together).
#[repr(align(128))]
struct Row {
    codes: [AtomicU64; SLOTS],
    /// Requests by duration bucket (not cumulative: summed at the scrape).
    buckets: [AtomicU64; BUCKETS],
    /// The durations' sum, in microseconds.
    micros: AtomicU64,
}

impl Row {
    fn new() -> Self {
        Self {
            codes: [const { AtomicU64::new(0) }; SLOTS],
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            micros: AtomicU64::new(0),
        }
    }
}

/// The counters of one router: a row per route, in the routes' order, then the no-route row.
pub(super) struct Block {
    /// The `service` label of each row.
    names: Box<[Arc<str>]>,
    rows: Box<[Row]>,
}

impl Block {
    /// Counts one answer with `status` on `row` (a route's index, or the number of routes for
    /// no route), whose head came `took` after the request.
    #[inline]
    pub(super) fn count(&self, row: usize, status: u16, took: Duration) {
        let slot = usize::from(status.wrapping_sub(100)).min(CODES);
        if let Some(row) = self.rows.get(row) {
            row.codes[slot].fetch_add(1, Ordering::Relaxed);
            let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            let bucket = BOUNDS_MICROS.partition_point(|&bound| bound < micros);
            row.buckets[bucket].fetch_add(1, Ordering::Relaxed);
            row.micros.fetch_add(micros, Ordering::Relaxed);
        }
    }
}

/// Every block of one gateway (one per router built), for the scrape.
#[derive(Default)]
pub(super) struct Requests {
    blocks: Mutex<Vec<Arc<Block>>>,
    /// After a reload, the services its routes name: a service it removed is no more in the
    /// scrape.
    routed: Mutex<Option<BTreeSet<Arc<str>>>>,
}

impl Requests {
    /// A new block for a router whose routes go to `services`, in order.
    pub(super) fn block<'a>(&self, services: impl Iterator<Item = &'a Arc<str>>) -> Arc<Block> {
        let names: Box<[Arc<str>]> = services
            .cloned()
            .chain(std::iter::once(Arc::from(NO_ROUTE)))
            .collect();
        let rows = names.iter().map(|_| Row::new()).collect();
        let block = Arc::new(Block { names, rows });
        self.blocks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&block));
        block
    }

    /// At a reload whose routes name `routed`: the services it removed leave the scrape, and
    /// the blocks of the routers no worker uses any more are summed into one, so that
    /// reloads add no memory (the counts of the services kept go on).
    pub(super) fn reloaded(&self, routed: BTreeSet<Arc<str>>) {
        let mut blocks = self.blocks.lock().unwrap_or_else(PoisonError::into_inner);
        let (unused, used): (Vec<_>, Vec<_>) =
            (blocks.drain(..)).partition(|block| Arc::strong_count(block) == 1);
        let shown = |name: &Arc<str>| &**name == NO_ROUTE || routed.contains(name);
        let names: BTreeSet<Arc<str>> = (unused.iter())
            .flat_map(|block| block.names.iter().filter(|name| shown(name)).cloned())
            .collect();
        let names: Box<[Arc<str>]> = names.into_iter().collect();
        let sum = Block {
            rows: names.iter().map(|_| Row::new()).collect(),
            names,
        };
        for block in &unused {
            for (name, row) in block.names.iter().zip(&block.rows) {
                let Ok(at) = sum.names.binary_search(name) else {
                    continue;
                };
                let into = &sum.rows[at];
                let pairs = (row.codes.iter().zip(&into.codes))
                    .chain(row.buckets.iter().zip(&into.buckets))
                    .chain(std::iter::once((&row.micros, &into.micros)));
                for (from, to) in pairs {
                    to.fetch_add(from.load(Ordering::Relaxed), Ordering::Relaxed);
                }
            }
        }
        *blocks = used;
        if !sum.names.is_empty() {
            blocks.push(Arc::new(sum));
        }
        drop(blocks);
        *self.routed.lock().unwrap_or_else(PoisonError::into_inner) = Some(routed);
    }

    /// The blocks, each with whether the scrape shows each of its rows.
    fn shown_blocks(&self) -> Vec<(Arc<Block>, Vec<bool>)> {
        let routed = self.routed.lock().unwrap_or_else(PoisonError::into_inner);
        let blocks = self.blocks.lock().unwrap_or_else(PoisonError::into_inner);
        (blocks.iter())
            .map(|block| {
                let shown = (block.names.iter())
                    .map(|name| {
                        &**name == NO_ROUTE || routed.as_ref().is_none_or(|r| r.contains(name))
                    })
                    .collect();
                (Arc::clone(block), shown)
            })
            .collect()
    }

    /// The counts summed over the blocks, by service and code (1000 for `other`); only those
    /// above zero.
    fn totals(&self) -> BTreeMap<(Arc<str>, u16), u64> {
        let blocks = self.shown_blocks();
        let mut totals = BTreeMap::new();
        for (block, shown) in &blocks {
            for ((name, row), _) in
                (block.names.iter().zip(&block.rows).zip(shown)).filter(|(_, s)| **s)
            {
                for (slot, counter) in row.codes.iter().enumerate() {
                    let count = counter.load(Ordering::Relaxed);
                    if count > 0 {
                        let code = if slot < CODES {
                            slot as u16 + 100
                        } else {
                            1000
                        };
                        *totals.entry((Arc::clone(name), code)).or_insert(0) += count;
                    }
                }
            }
        }
        totals
    }

    /// The duration buckets (not cumulative) and the sum in microseconds, summed over the
    /// blocks, by service; only services with a request.
    fn durations(&self) -> BTreeMap<Arc<str>, ([u64; BUCKETS], u64)> {
        let blocks = self.shown_blocks();
        let mut durations: BTreeMap<Arc<str>, ([u64; BUCKETS], u64)> = BTreeMap::new();
        for (block, shown) in &blocks {
            for ((name, row), _) in
                (block.names.iter().zip(&block.rows).zip(shown)).filter(|(_, s)| **s)
            {
                let counts = row.buckets.each_ref().map(|c| c.load(Ordering::Relaxed));
                if counts.iter().all(|&n| n == 0) {
                    continue;
                }
                let (buckets, micros) = durations.entry(Arc::clone(name)).or_default();
                for (total, count) in buckets.iter_mut().zip(counts) {
                    *total += count;
                }
                *micros = micros.saturating_add(row.micros.load(Ordering::Relaxed));
            }
        }
        durations
    }
}

impl crate::admin::Families for Requests {
    fn render(&self, out: &mut String) {
        let totals = self.totals();
        if totals.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "# HELP {NAME} Requests the gateway answered, by service (the route's; \"{NO_ROUTE}\" for no route) and status code (499: the client went away first).\n# TYPE {NAME} counter"
        );
        for ((service, code), count) in totals {
            let _ = write!(out, "{NAME}{{service=\"");
            escaped(out, &service);
            let _ = match code {
                1000 => writeln!(out, "\",code=\"other\"}} {count}"),
                code => writeln!(out, "\",code=\"{code}\"}} {count}"),
            };
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "# HELP {DURATION} Time from a request's arrival to its answer's head (a cold start or a hold included), by service.\n# TYPE {DURATION} histogram"
        );
        for (service, (buckets, micros)) in self.durations() {
            let mut seen = 0;
            for (bound, count) in BOUNDS_MICROS.iter().zip(buckets) {
                seen += count;
                let _ = write!(out, "{DURATION}_bucket{{service=\"");
                escaped(out, &service);
                let _ = writeln!(out, "\",le=\"{}\"}} {seen}", *bound as f64 / 1e6);
            }
            seen += buckets[BUCKETS - 1];
            for (suffix, value) in [
                ("_bucket", format!("\",le=\"+Inf\"}} {seen}")),
                ("_sum", format!("\"}} {}", micros as f64 / 1e6)),
                ("_count", format!("\"}} {seen}")),
            ] {
                let _ = write!(out, "{DURATION}{suffix}{{service=\"");
                escaped(out, &service);
                let _ = writeln!(out, "{value}");
            }
        }
        out.push('\n');
    }
}

/// `value` as a label value of the Prometheus text format: `\`, `"` and line feeds escaped.
fn escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requests").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::Families;

    #[test]
    fn blocks_are_summed_by_service_and_code() {
        let requests = Requests::default();
        let (app, api): (Arc<str>, Arc<str>) = (Arc::from("app"), Arc::from("a\"p\\i"));
        // Two routes to `app`, one to the oddly named `api`.
        let routes = [app.clone(), api.clone(), app.clone()];
        let first = requests.block(routes.iter());
        let second = requests.block(routes.iter());
        first.count(0, 200, Duration::ZERO);
        first.count(2, 200, Duration::ZERO);
        second.count(0, 200, Duration::ZERO);
        second.count(1, 503, Duration::ZERO);
        second.count(3, 404, Duration::ZERO);
        first.count(0, CLIENT_GONE, Duration::ZERO);
        first.count(0, 600, Duration::ZERO);
        first.count(0, 999, Duration::ZERO);
        let mut text = String::new();
        requests.render(&mut text);
        let samples: Vec<&str> = text
            .lines()
            .filter(|l| l.is_empty() || l.starts_with(NAME))
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(
            samples,
            [
                r#"tower_monitor_gateway_requests_total{service="-",code="404"} 1"#,
                r#"tower_monitor_gateway_requests_total{service="a\"p\\i",code="503"} 1"#,
                r#"tower_monitor_gateway_requests_total{service="app",code="200"} 3"#,
                r#"tower_monitor_gateway_requests_total{service="app",code="499"} 1"#,
                r#"tower_monitor_gateway_requests_total{service="app",code="other"} 2"#,
            ]
        );
        assert!(text.starts_with("# HELP tower_monitor_gateway_requests_total "));
        assert!(text.contains("\n# TYPE tower_monitor_gateway_requests_total counter\n"));
    }

    #[test]
    fn durations_are_a_histogram_by_service_summed_over_the_blocks() {
        let requests = Requests::default();
        let routes = [Arc::from("app")];
        let first = requests.block(routes.iter());
        let second = requests.block(routes.iter());
        first.count(0, 200, Duration::from_micros(300));
        second.count(0, 200, Duration::from_millis(1));
        second.count(0, 503, Duration::from_millis(40));
        first.count(0, 504, Duration::from_secs(31));
        let mut text = String::new();
        requests.render(&mut text);
        let bucket = |le: &str| format!("{DURATION}_bucket{{service=\"app\",le=\"{le}\"}} ");
        for (le, count) in [
            ("0.001", 2),
            ("0.025", 2),
            ("0.05", 3),
            ("30", 3),
            ("+Inf", 4),
        ] {
            assert!(
                text.contains(&format!("{}{count}\n", bucket(le))),
                "{le} in {text}"
            );
        }
        assert!(text.contains(&format!("{DURATION}_count{{service=\"app\"}} 4\n")));
        assert!(text.contains(&format!("{DURATION}_sum{{service=\"app\"}} 31.0413\n")));
        assert!(text.contains(&format!("# TYPE {DURATION} histogram\n")));
        assert!(
            !text.contains("service=\"-\""),
            "no request without a route"
        );
    }

    #[test]
    fn nothing_is_rendered_before_the_first_request() {
        let requests = Requests::default();
        let _block = requests.block([Arc::from("app")].iter());
        let mut text = String::new();
        requests.render(&mut text);
        assert_eq!(text, "");
    }

    #[test]
    fn rows_do_not_share_cache_lines() {
        assert_eq!(std::mem::align_of::<Row>(), 128);
        assert_eq!(std::mem::size_of::<Row>() % 128, 0);
    }
}
