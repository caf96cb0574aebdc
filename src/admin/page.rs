//! The status page: one table of the services, readable at a glance, with no external resources.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::layer::escape_into;
use crate::snapshot::{ServiceSnapshot, rfc3339};

const HEAD: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5">
<meta name="color-scheme" content="light dark">
<title>tower-monitor status</title>
<style>
:root{--bg:#f3f4f6;--card:#fff;--fg:#111827;--muted:#4b5563;--line:#e5e7eb;--up:#15803d;--starting:#b45309;--down:#b91c1c;--stopping:#6d28d9}
@media (prefers-color-scheme:dark){:root{--bg:#0b0d10;--card:#1a1d23;--fg:#f3f4f6;--muted:#aab1bc;--line:#30353d;--up:#4ade80;--starting:#fbbf24;--down:#f87171;--stopping:#c4b5fd}}
body{margin:0;padding:1.5rem;background:var(--bg);color:var(--fg);font:.95rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:72rem;margin:0 auto}
h1{font-size:1.3rem;margin:0 0 1rem}
table{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line);border-radius:.5rem}
th,td{padding:.5rem .75rem;text-align:left;border-bottom:1px solid var(--line);white-space:nowrap}
th{font-weight:600;color:var(--muted)}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.state{font-weight:600}
.up{color:var(--up)}.starting{color:var(--starting)}.down{color:var(--down)}.stopping{color:var(--stopping)}
p{color:var(--muted)}
</style>
</head>
<body>
<main>
<h1>Services</h1>
<table>
<thead><tr><th scope="col">Service</th><th scope="col">State</th><th scope="col">Since</th><th scope="col">Last probe</th><th scope="col">In flight</th><th scope="col">Held</th><th scope="col">Last cold start</th><th scope="col">Wakes</th><th scope="col">Idle stops</th><th scope="col">Fallbacks</th></tr></thead>
<tbody>
"#;

const TAIL: &str = "</tbody>\n</table>\n<p>Reloads every 5 s. Also: <code>/status</code> (JSON), <code>/metrics</code> (Prometheus).</p>\n</main>\n</body>\n</html>\n";

/// The status page for `services`, as of `now`.
pub(crate) fn render(services: &[ServiceSnapshot], now: SystemTime) -> String {
    let mut out = String::with_capacity(HEAD.len() + TAIL.len() + 400 * services.len());
    out.push_str(HEAD);
    for service in services {
        let state = service.state.as_str();
        out.push_str("<tr><th scope=\"row\">");
        escape_into(&mut out, &service.name);
        let _ = write!(
            out,
            "</th><td class=\"state {state}\" data-state=\"{state}\">{state}</td>"
        );
        let ago = now.duration_since(service.since).unwrap_or_default();
        let _ = write!(
            out,
            "<td title=\"{}\">{} ago</td>",
            rfc3339(service.since),
            short(ago)
        );
        match service.last_probe {
            Some(probe) => {
                let _ = write!(
                    out,
                    "<td title=\"{}\">{} in {}</td>",
                    rfc3339(probe.at),
                    probe.result.as_str(),
                    short(probe.duration)
                );
            }
            None => out.push_str("<td>none yet</td>"),
        }
        match service.requests_in_flight {
            Some(n) => {
                let _ = write!(out, "<td class=\"num\">{n}</td>");
            }
            None => out.push_str("<td class=\"num\" title=\"counted with on_idle only\">-</td>"),
        }
        let _ = write!(out, "<td class=\"num\">{}</td>", service.requests_held);
        match service.last_cold_start {
            Some(took) => {
                let _ = write!(out, "<td class=\"num\">{}</td>", short(took));
            }
            None => out.push_str("<td class=\"num\">-</td>"),
        }
        let counters = &service.counters;
        let _ = writeln!(
            out,
            "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            counters.wakes, counters.idle_stops, counters.fallbacks
        );
    }
    if services.is_empty() {
        out.push_str("<tr><td colspan=\"10\">No services.</td></tr>\n");
    }
    out.push_str(TAIL);
    out
}

/// A duration as a person reads it: "850 ms", "1.62 s", "4 m 05 s", "2 h 03 m".
fn short(d: Duration) -> String {
    let secs = d.as_secs();
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if secs < 60 {
        format!("{:.2} s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{} m {:02} s", secs / 60, secs % 60)
    } else {
        format!("{} h {:02} m", secs / 3600, secs / 60 % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(short(Duration::from_millis(850)), "850 ms");
        assert_eq!(short(Duration::from_millis(1620)), "1.62 s");
        assert_eq!(short(Duration::from_secs(245)), "4 m 05 s");
        assert_eq!(short(Duration::from_secs(7380)), "2 h 03 m");
    }
}
