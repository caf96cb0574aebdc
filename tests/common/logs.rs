//! The log lines of a test binary, from one global subscriber.
//!
//! A subscriber of the test's own thread (`tracing::subscriber::set_default`) misses lines now
//! and then: when another test, in parallel, meets a log call for the first time while that
//! subscriber is being registered, tracing can cache that nobody listens there, and the call
//! stays silent for the rest of the run (CI lost a line of `gateway_http2_header_list` so). One
//! global subscriber, installed by each test before it logs anything, is there when every log
//! call is first met. Its lines are those of every test of the binary: a test picks its own by
//! something only it logs (its service's name, a path).

use std::sync::{Arc, Mutex, OnceLock};

/// The log lines up to `level` of every test of this binary, from the one global subscriber,
/// installed at the first call. Every test of a binary that reads its log calls this first,
/// with the same level.
pub fn logs(level: tracing::Level) -> Captured {
    static LOGS: OnceLock<(tracing::Level, Captured)> = OnceLock::new();
    let (installed, logs) = LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        (level, logs)
    });
    assert_eq!(
        *installed, level,
        "the tests of a binary share one subscriber, at one level"
    );
    logs.clone()
}

/// Log lines written by a tracing subscriber (`.with_writer(move || captured.clone())`).
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// What was written so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The lines written so far that contain each of `parts`.
    pub fn lines_with(&self, parts: &[&str]) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| parts.iter().all(|part| line.contains(part)))
            .map(str::to_owned)
            .collect()
    }

    /// The first line written so far that contains each of `parts`; a panic showing the whole
    /// log if there is none.
    pub fn line_with(&self, parts: &[&str]) -> String {
        self.lines_with(parts)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no line with {parts:?} in:\n{}", self.text()))
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
