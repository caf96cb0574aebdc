//! The log of a test binary, from one global subscriber.
//!
//! A subscriber of the test's own thread (`tracing::subscriber::set_default`) misses lines now
//! and then: when another test, in parallel, meets a log call for the first time while that
//! subscriber is being registered, tracing can cache that nobody listens there, and the call
//! stays silent for the rest of the run (CI lost a line of `gateway_http2_header_list` so). One
//! global subscriber, installed by each test before it logs anything, is there when every log
//! call is first met. Its lines are those of every test of the binary: a test picks its own by
//! something only it logs (its service's name, a path).
//!
//! The same subscriber keeps each event with its fields, for a test that checks a field's value
//! rather than a line's text: a second subscriber for that would bring the race back.

use std::sync::{Arc, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// The log up to `level` of every test of this binary, from the one global subscriber,
/// installed at the first call. Every test of a binary that reads its log calls this first,
/// with the same level.
pub fn logs(level: tracing::Level) -> Captured {
    static LOGS: OnceLock<(tracing::Level, Captured)> = OnceLock::new();
    let (installed, logs) = LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::registry()
            .with(LevelFilter::from_level(level))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || writer.clone()),
            )
            .with(Recorder(logs.clone()));
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        (level, logs)
    });
    assert_eq!(
        *installed, level,
        "the tests of a binary share one subscriber, at one level"
    );
    logs.clone()
}

/// The log written by the subscriber of [`logs`]: its lines as text, and its events.
#[derive(Clone, Default)]
pub struct Captured {
    text: Arc<Mutex<Vec<u8>>>,
    events: Arc<Mutex<Vec<Logged>>>,
    /// Told at each line written, for a test that awaits one.
    written: Arc<tokio::sync::Notify>,
}

impl Captured {
    /// What was written so far.
    pub fn text(&self) -> String {
        let bytes = self.text.lock().unwrap_or_else(|e| e.into_inner()).clone();
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

    /// The first line that contains each of `parts`, once written: a line logged just after
    /// what the test saw happen (a transition is logged once it is made). A panic showing the
    /// whole log if none comes within `bound`.
    pub async fn line_within(&self, parts: &[&str], bound: std::time::Duration) -> String {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            // Asked for before the look, so that a line written between the two is not missed.
            let written = self.written.notified();
            if let Some(line) = self.lines_with(parts).into_iter().next() {
                return line;
            }
            if tokio::time::timeout_at(deadline, written).await.is_err() {
                return self.line_with(parts);
            }
        }
    }

    /// The events logged so far whose field `name` is `value`.
    pub fn events_with(&self, name: &str, value: &str) -> Vec<Logged> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|event| event.field(name) == Some(value))
            .cloned()
            .collect()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        self.written.notify_waiters();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One event of the log: its level, its message, and its other fields as text (a string as
/// it is, any other value as `Debug` shows it; `%value` shows as `Display`).
#[derive(Debug, Clone)]
pub struct Logged {
    pub level: tracing::Level,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

impl Logged {
    /// The value of the field `name`, if the event has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }

    fn record(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else {
            self.fields.push((field.name().to_owned(), value));
        }
    }
}

/// The layer that keeps each event in the [`Captured`] it holds.
struct Recorder(Captured);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Recorder {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut logged = Logged {
            level: *event.metadata().level(),
            message: String::new(),
            fields: Vec::new(),
        };
        event.record(&mut logged);
        self.0
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(logged);
    }
}

impl Visit for Logged {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}
