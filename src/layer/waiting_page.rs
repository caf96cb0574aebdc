//! The waiting page: what a browser sees while the backend is not ready, in words that are true
//! for the case at hand, and the one-pass template renderer that fills it.

use std::fmt::Write as _;
use std::time::Duration;

/// The waiting page (HTML 503, 504, and the 500 of a failed start) unless replaced with
/// [`MonitorLayer::waiting_page`](super::MonitorLayer::waiting_page).
///
/// It refreshes itself after `Retry-After` seconds (`<meta http-equiv="refresh">`): the browser
/// asks for the same URL again, and once the backend is up that request is forwarded, so the
/// page turns into the app with no script, no status endpoint to expose, and nothing for the
/// user to press.
///
/// Substitutions, each HTML-escaped and filled in one pass (a service name that contains
/// `{retry_after}` stays as it is):
///
/// | placeholder     | replaced with |
/// |-----------------|---------------|
/// | `{service}`     | the service's name |
/// | `{retry_after}` | the seconds until the page reloads (the `Retry-After` header) |
/// | `{waited}`      | whole seconds since the current start began (`0` when none is under way) |
/// | `{case}`        | `starting`, `not-started`, `start-failed` or `timed-out` (for CSS) |
/// | `{title}`       | a short heading for the case, naming the service |
/// | `{message}`     | one sentence for the case, true in each: starting (with the seconds waited), not set up to start on demand, failed to start, still not up after a held request's longest wait |
///
/// The default page is centred, has a CSS-only progress bar (still, and hidden where nothing is
/// in progress, for `prefers-reduced-motion`), follows the light or dark theme of the
/// browser (`prefers-color-scheme`), is announced by screen readers (`role="status"`,
/// `aria-live="polite"`), and is valid HTML with no external resources, under 4 KB once
/// filled in. A test opens it in headless Chromium and saves a screenshot of each theme under
/// `target/waiting-page/`: `light.png` shows a white card on a pale grey page, `dark.png` a
/// dark grey card on a near-black page, each with a blue bar sliding to and fro in a grey track above the
/// heading "demo is starting" and the sentence with the seconds waited.
///
/// ```
/// let page = tower_monitor::layer::DEFAULT_WAITING_PAGE;
/// assert!(page.contains(r#"<meta http-equiv="refresh" content="{retry_after}">"#));
/// assert!(page.contains("prefers-color-scheme"));
/// ```
pub const DEFAULT_WAITING_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{retry_after}">
<meta name="color-scheme" content="light dark">
<title>{title}</title>
<style>
:root{--bg:#f3f4f6;--card:#fff;--fg:#111827;--muted:#4b5563;--line:#e5e7eb;--accent:#2563eb;--bad:#b91c1c}
@media (prefers-color-scheme:dark){:root{--bg:#0b0d10;--card:#1a1d23;--fg:#f3f4f6;--muted:#aab1bc;--line:#30353d;--accent:#60a5fa;--bad:#f87171}}
html,body{height:100%;margin:0}
body{display:flex;align-items:center;justify-content:center;padding:1rem;box-sizing:border-box;background:var(--bg);color:var(--fg);font:1rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{width:100%;max-width:26rem;padding:2rem 1.75rem;text-align:center;background:var(--card);border:1px solid var(--line);border-radius:.75rem}
h1{margin:0 0 .5rem;font-size:1.3rem;font-weight:600;overflow-wrap:anywhere}
p{margin:.5rem 0 0;color:var(--muted)}
.bar{height:.25rem;margin:0 auto 1.5rem;max-width:12rem;border-radius:1rem;background:var(--line);overflow:hidden}
.bar::before{content:"";display:block;width:40%;height:100%;border-radius:1rem;background:var(--accent);animation:slide 1.2s ease-in-out infinite alternate}
@keyframes slide{to{transform:translateX(150%)}}
.start-failed .bar::before,.not-started .bar::before{width:100%;animation:none;background:var(--line)}
.start-failed h1{color:var(--bad)}
@media (prefers-reduced-motion:reduce){.bar::before{animation:none;width:100%}}
small{display:block;margin-top:1.25rem;color:var(--muted)}
</style>
</head>
<body>
<main class="{case}" role="status" aria-live="polite">
<div class="bar" aria-hidden="true"></div>
<h1>{title}</h1>
<p>{message}</p>
<small>This page reloads by itself every {retry_after} s.</small>
</main>
</body>
</html>
"#;

/// Which of the page's cases is true right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Case {
    /// A start is under way; with how long it has lasted, when known.
    Starting(Option<Duration>),
    /// Down, and this request does not start it: no `on_down`, or the wake policy said no.
    NotStarted { can_start: bool },
    /// `on_down` failed.
    StartFailed,
    /// A held request waited its longest; with how long the start has lasted, when known.
    TimedOut(Option<Duration>),
}

impl Case {
    fn class(self) -> &'static str {
        match self {
            Self::Starting(_) => "starting",
            Self::NotStarted { .. } => "not-started",
            Self::StartFailed => "start-failed",
            Self::TimedOut(_) => "timed-out",
        }
    }

    fn waited(self) -> Option<Duration> {
        match self {
            Self::Starting(waited) | Self::TimedOut(waited) => waited,
            _ => None,
        }
    }
}

/// Fills `template` for `service` in `case`: one pass, every value HTML-escaped, unknown
/// `{…}` left as they are.
pub(crate) fn render(template: &str, service: &str, case: Case, retry_secs: u64) -> String {
    let waited = case.waited().map_or(0, |d| d.as_secs());
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            rest = &rest[open..];
            break;
        };
        let key = &after[..close];
        let known = match key {
            "service" => {
                escape_into(&mut out, service);
                true
            }
            "retry_after" => write!(out, "{retry_secs}").is_ok(),
            "waited" => write!(out, "{waited}").is_ok(),
            "case" => {
                out.push_str(case.class());
                true
            }
            "title" => {
                title(&mut out, service, case);
                true
            }
            "message" => {
                message(&mut out, case, waited);
                true
            }
            _ => false,
        };
        if known {
            rest = &after[close + 1..];
        } else {
            out.push('{');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn title(out: &mut String, service: &str, case: Case) {
    escape_into(out, service);
    out.push_str(match case {
        Case::Starting(_) => " is starting",
        Case::NotStarted { .. } => " is not running",
        Case::StartFailed => " could not be started",
        Case::TimedOut(_) => " has not started yet",
    });
}

fn message(out: &mut String, case: Case, waited: u64) {
    let sentence = match case {
        Case::Starting(Some(_)) => {
            let _ = write!(out, "Started {waited} s ago. ");
            "You will be taken there as soon as it is ready."
        }
        Case::Starting(None) => "You will be taken there as soon as it is ready.",
        Case::NotStarted { can_start: false } => {
            "It is not set up to start on demand; it is there again once someone starts it."
        }
        Case::NotStarted { can_start: true } => "It is not running right now.",
        Case::StartFailed => "Starting it failed. The next reload tries again.",
        Case::TimedOut(Some(_)) => {
            let _ = write!(out, "It has been starting for {waited} s. ");
            "Your request waited as long as it may."
        }
        Case::TimedOut(None) => "Your request waited as long as it may.",
    };
    out.push_str(sentence);
}

pub(crate) fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Case; 7] = [
        Case::Starting(Some(Duration::from_secs(12))),
        Case::Starting(None),
        Case::NotStarted { can_start: false },
        Case::NotStarted { can_start: true },
        Case::StartFailed,
        Case::TimedOut(Some(Duration::from_secs(30))),
        Case::TimedOut(None),
    ];

    #[test]
    fn every_case_fits_in_4_kb_with_a_long_name() {
        let name = "a-rather-long-service-name-for-a-backend-&-friends".repeat(2);
        for case in ALL {
            let page = render(DEFAULT_WAITING_PAGE, &name, case, 3600);
            assert!(page.len() <= 4096, "{case:?}: {} bytes", page.len());
            for placeholder in [
                "{service}",
                "{retry_after}",
                "{waited}",
                "{case}",
                "{title}",
                "{message}",
            ] {
                assert!(!page.contains(placeholder), "{placeholder} left in {page}");
            }
        }
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for needle in ["src=", "href=", "url(", "@import", "<script", "<link"] {
            assert!(!DEFAULT_WAITING_PAGE.contains(needle), "{needle}");
        }
    }

    #[test]
    fn the_words_fit_the_case() {
        let page = |case| render(DEFAULT_WAITING_PAGE, "demo", case, 5);
        let starting = page(Case::Starting(Some(Duration::from_millis(12_700))));
        assert!(starting.contains("<h1>demo is starting</h1>"), "{starting}");
        assert!(starting.contains("Started 12 s ago."), "{starting}");
        assert!(starting.contains(r#"class="starting""#));
        let manual = page(Case::NotStarted { can_start: false });
        assert!(manual.contains("demo is not running"));
        assert!(manual.contains("not set up to start on demand"));
        assert!(!manual.contains("is starting"));
        let failed = page(Case::StartFailed);
        assert!(failed.contains("demo could not be started"));
        assert!(!failed.contains("is starting"));
        let timed_out = page(Case::TimedOut(Some(Duration::from_secs(30))));
        assert!(timed_out.contains("demo has not started yet"));
        assert!(timed_out.contains("starting for 30 s"));
    }

    #[test]
    fn substitutions_are_escaped_and_filled_once() {
        let page = render(
            "{service}|{retry_after}|{waited}|{case}|{nope}|{",
            "<b>{retry_after}\"a&b'</b>",
            Case::Starting(Some(Duration::from_secs(7))),
            3,
        );
        assert_eq!(
            page,
            "&lt;b&gt;{retry_after}&quot;a&amp;b&#39;&lt;/b&gt;|3|7|starting|{nope}|{"
        );
    }
}
