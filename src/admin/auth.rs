//! The bearer token that guards the admin actions, and the log of the actions it refuses.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::act::Peer;

/// At most one refusal a minute is logged at warn: anyone who reaches the admin port can ask
/// without the token, as often as they like, and each warn line would be theirs to write.
const REFUSAL_WARN_EVERY: Duration = Duration::from_secs(60);

/// The token an action must present as `Authorization: Bearer <token>`.
#[derive(Clone)]
pub(crate) struct Token(Box<[u8]>);

impl Token {
    pub(crate) fn new(token: String) -> Self {
        Self(token.into_bytes().into_boxed_slice())
    }

    /// Whether the request carries the token. An empty token admits no one.
    pub(crate) fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return false;
        };
        let value = value.as_bytes();
        let Some(scheme) = value.get(..7) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        !self.0.is_empty() && same(&value[7..], &self.0)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// The actions refused for want of the token, for their log: the first, and then the first
/// after each [`REFUSAL_WARN_EVERY`], at warn with how many were refused since the last line at
/// warn; the others at debug. Those refused quietly are counted out at warn when their minute
/// ends, so a flood that stops is reported within a minute, not only with the next refusal.
/// One for an admin service and its clones.
#[derive(Debug, Default)]
pub(crate) struct Refusals(Mutex<Window>);

#[derive(Debug, Default)]
struct Window {
    /// When the last line at warn was.
    warned: Option<Instant>,
    /// The refusals logged at debug since.
    quiet: u64,
}

/// How a refusal is logged.
#[derive(Debug, PartialEq)]
enum Said {
    /// At warn, with how many were refused quietly since the last line at warn.
    Warn(u64),
    /// At debug; the first such in its minute asks for the count at the end of the minute
    /// that began with the line at warn given.
    Quiet { first_since: Option<Instant> },
}

impl Refusals {
    /// Logs the refusal of `action` of `name` (as sent) to `peer`, for `why`.
    pub(crate) fn log(self: &Arc<Self>, peer: &Peer, name: &str, action: &str, why: &str) {
        let why = why.trim_end();
        // The name as sent (Debug: escaped), since it names no service yet.
        match self.said(Instant::now()) {
            Said::Warn(quiet) => tracing::warn!(
                %peer,
                service = ?name,
                action,
                refused_quietly = quiet,
                "admin action refused: {why} (refusals are logged at warn at most once a minute; \
                 refused_quietly: those logged at debug since the last one)"
            ),
            Said::Quiet { first_since } => {
                tracing::debug!(%peer, service = ?name, action, "admin action refused: {why}");
                // Outside a runtime (a caller's own executor) the count waits for the next
                // refusal at warn, as it did.
                let runtime = tokio::runtime::Handle::try_current();
                if let (Some(since), Ok(runtime)) = (first_since, runtime) {
                    let refusals = Arc::downgrade(self);
                    runtime.spawn(async move {
                        tokio::time::sleep_until((since + REFUSAL_WARN_EVERY).into()).await;
                        let Some(refusals) = refusals.upgrade() else {
                            return;
                        };
                        if let Some(quiet) = refusals.count_out(since, Instant::now()) {
                            tracing::warn!(
                                refused_quietly = quiet,
                                "admin actions refused without the token in the last minute, \
                                 logged at debug: {quiet}"
                            );
                        }
                    });
                }
            }
        }
    }

    /// How a refusal at `now` is logged.
    fn said(&self, now: Instant) -> Said {
        let mut window = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match window.warned {
            Some(warned) if now.saturating_duration_since(warned) < REFUSAL_WARN_EVERY => {
                window.quiet += 1;
                Said::Quiet {
                    first_since: (window.quiet == 1).then_some(warned),
                }
            }
            _ => {
                window.warned = Some(now);
                Said::Warn(std::mem::take(&mut window.quiet))
            }
        }
    }

    /// The refusals logged quietly in the minute that began at `since`, at its end: their
    /// count, which begins a new minute (the line about them is at warn), or `None` if none
    /// was or a refusal at warn has reported them already.
    fn count_out(&self, since: Instant, now: Instant) -> Option<u64> {
        let mut window = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if window.quiet == 0 || window.warned != Some(since) {
            return None;
        }
        window.warned = Some(now);
        Some(std::mem::take(&mut window.quiet))
    }
}

/// Compares in time that depends on the lengths only, never on where the bytes differ, so a
/// client cannot find the token byte by byte from how long refusals take.
fn same(given: &[u8], token: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != token.len());
    for (i, expected) in token.iter().enumerate() {
        let got = given.get(i).copied().unwrap_or(!expected);
        diff |= std::hint::black_box(got ^ expected);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_the_exact_token_is_admitted() {
        let token = Token::new("s3cret".into());
        assert!(token.admits(&with("Bearer s3cret")));
        assert!(token.admits(&with("bearer s3cret")));
        assert!(!token.admits(&with("Bearer s3cre")));
        assert!(!token.admits(&with("Bearer s3cret!")));
        assert!(!token.admits(&with("Bearer S3cret")));
        assert!(!token.admits(&with("Basic s3cret")));
        assert!(!token.admits(&with("Bearer")));
        assert!(!token.admits(&HeaderMap::new()));
    }

    #[test]
    fn one_refusal_a_minute_is_at_warn_with_the_count_of_those_since() {
        let refusals = Refusals::default();
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let quiet = |first| Said::Quiet { first_since: first };
        assert_eq!(refusals.said(at(0)), Said::Warn(0));
        assert_eq!(
            refusals.said(at(0)),
            quiet(Some(at(0))),
            "the first quiet one"
        );
        for secs in [1, 59] {
            assert_eq!(refusals.said(at(secs)), quiet(None), "at {secs} s");
        }
        assert_eq!(refusals.said(at(60)), Said::Warn(3));
        assert_eq!(refusals.said(at(61)), quiet(Some(at(60))));
        // Long after: at warn at once, with the one refused quietly meanwhile.
        assert_eq!(refusals.said(at(3600)), Said::Warn(1));
        assert_eq!(refusals.said(at(3660)), Said::Warn(0));
    }

    #[test]
    fn the_count_at_a_minutes_end_is_of_that_minute_only() {
        let refusals = Refusals::default();
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        refusals.said(at(0));
        refusals.said(at(1));
        refusals.said(at(2));
        assert_eq!(refusals.count_out(at(0), at(60)), Some(2));
        assert_eq!(refusals.count_out(at(0), at(60)), None, "counted once");
        // The count began a minute: the next refusal within it is quiet.
        assert_eq!(
            refusals.said(at(61)),
            Said::Quiet {
                first_since: Some(at(60))
            }
        );
        // A refusal at warn reported it first: a count of the older minute says nothing.
        assert_eq!(refusals.said(at(120)), Said::Warn(1));
        refusals.said(at(121));
        assert_eq!(refusals.count_out(at(60), at(121)), None);
        assert_eq!(refusals.count_out(at(120), at(180)), Some(1));
    }

    /// A flood that stops is counted out at warn when its minute ends, without a next refusal.
    #[tokio::test(start_paused = true)]
    async fn the_refusals_of_a_flood_that_stopped_are_counted_out_at_the_minutes_end() {
        let refusals = Arc::new(Refusals::default());
        let peer = Peer(None);
        for _ in 0..3 {
            refusals.log(&peer, "app", "start", "no token");
        }
        assert_eq!(lock_quiet(&refusals), 2);
        tokio::time::sleep(REFUSAL_WARN_EVERY - Duration::from_secs(1)).await;
        assert_eq!(lock_quiet(&refusals), 2, "not before the minute ends");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(lock_quiet(&refusals), 0, "counted out");
    }

    fn lock_quiet(refusals: &Refusals) -> u64 {
        refusals.0.lock().unwrap().quiet
    }

    #[test]
    fn an_empty_token_admits_no_one() {
        let token = Token::new(String::new());
        assert!(!token.admits(&with("Bearer ")));
    }
}
