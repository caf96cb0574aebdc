//! The requests the gateway answered, by service and status code, for the admin's `/metrics`
//! (`tower_monitor_gateway_requests_total{service, code}`).
//!
//! Counted per router, that is per worker (each builds its own routes): a block of plain
//! counters, one row per route plus one for requests no route took, each row a counter per
//! status code. A request adds one to its row with a relaxed atomic add, on a cache line no
//! other worker writes: no lock, no lookup, no allocation. A scrape sums the blocks.
//!
//! Not through the `metrics` facade: a facade call builds its key (the service name a label:
//! an allocation) and the recorder looks it up (hashing, a shared lock) on every request.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The metric's name.
pub(super) const NAME: &str = "tower_monitor_gateway_requests_total";

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
struct Row([AtomicU64; SLOTS]);

impl Row {
    fn new() -> Self {
        Self([const { AtomicU64::new(0) }; SLOTS])
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
    /// no route).
    #[inline]
    pub(super) fn count(&self, row: usize, status: u16) {
        let slot = usize::from(status.wrapping_sub(100)).min(CODES);
        if let Some(row) = self.rows.get(row) {
            row.0[slot].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Every block of one gateway (one per router built), for the scrape.
#[derive(Default)]
pub(super) struct Requests {
    blocks: Mutex<Vec<Arc<Block>>>,
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

    /// The counts summed over the blocks, by service and code (1000 for `other`); only those
    /// above zero.
    fn totals(&self) -> BTreeMap<(Arc<str>, u16), u64> {
        let blocks = self
            .blocks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut totals = BTreeMap::new();
        for block in &blocks {
            for (name, row) in block.names.iter().zip(&block.rows) {
                for (slot, counter) in row.0.iter().enumerate() {
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
        first.count(0, 200);
        first.count(2, 200);
        second.count(0, 200);
        second.count(1, 503);
        second.count(3, 404);
        first.count(0, CLIENT_GONE);
        first.count(0, 600);
        first.count(0, 999);
        let mut text = String::new();
        requests.render(&mut text);
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                r#"tower_monitor_gateway_requests_total{service="-",code="404"} 1"#,
                r#"tower_monitor_gateway_requests_total{service="a\"p\\i",code="503"} 1"#,
                r#"tower_monitor_gateway_requests_total{service="app",code="200"} 3"#,
                r#"tower_monitor_gateway_requests_total{service="app",code="499"} 1"#,
                r#"tower_monitor_gateway_requests_total{service="app",code="other"} 2"#,
                "",
            ]
        );
        assert!(text.starts_with("# HELP tower_monitor_gateway_requests_total "));
        assert!(text.contains("\n# TYPE tower_monitor_gateway_requests_total counter\n"));
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
