//! A child program's output, line by line into `tracing`, each line bounded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;
use tracing::Level;

/// The longest output line logged or kept, in bytes: a longer line is cut there and ends with
/// [`CUT_MARKER`]. The rest of it is read and dropped, so a program writing hundreds of megabytes
/// without a newline costs this much memory, not that much.
pub const MAX_OUTPUT_LINE: usize = 4096;

/// What ends a line cut at [`MAX_OUTPUT_LINE`].
pub const CUT_MARKER: &str = "… [cut]";

/// Which of a program's outputs a line came from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Who wrote the output, as the log lines name it.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(crate) program: Arc<str>,
    pub(crate) service: Option<Arc<str>>,
    pub(crate) level: Level,
}

/// The last few lines of an output, shared with whoever reports the program's failure.
#[derive(Debug, Clone)]
pub(crate) struct Tail {
    lines: Arc<Mutex<VecDeque<String>>>,
    keep: usize,
}

impl Tail {
    pub(crate) fn new(keep: usize) -> Self {
        Self {
            lines: Arc::new(Mutex::new(VecDeque::with_capacity(keep))),
            keep,
        }
    }

    fn push(&self, line: &str) {
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.len() == self.keep {
            lines.pop_front();
        }
        lines.push_back(line.to_string());
    }

    /// The lines kept so far, oldest first, joined with newlines.
    pub(crate) fn text(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        Vec::from_iter(lines.iter().map(String::as_str)).join("\n")
    }
}

/// Logs `output` line by line in a task of its own, until it closes.
pub(crate) fn forward(
    output: impl AsyncRead + Unpin + Send + 'static,
    source: Source,
    stream: Stream,
    tail: Option<Tail>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let _ = read_lines(output, |line| {
            log(&source, stream, line);
            if let Some(tail) = &tail {
                tail.push(line);
            }
        })
        .await;
    })
}

/// Calls `on_line` for each line of `output` (without its `\n` or `\r\n`), each cut at
/// [`MAX_OUTPUT_LINE`] bytes; a last line without a newline counts too.
pub(crate) async fn read_lines(
    output: impl AsyncRead + Unpin,
    mut on_line: impl FnMut(&str),
) -> std::io::Result<()> {
    let mut reader = BufReader::new(output);
    let mut line = Line::default();
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            if line.started() {
                on_line(&line.finish());
            }
            return Ok(());
        }
        let used = match buffer.iter().position(|&b| b == b'\n') {
            Some(end) => {
                line.extend(&buffer[..end]);
                on_line(&line.finish());
                end + 1
            }
            None => {
                line.extend(buffer);
                buffer.len()
            }
        };
        reader.consume(used);
    }
}

/// The line being read: at most [`MAX_OUTPUT_LINE`] bytes of it, and whether more was dropped.
#[derive(Default)]
struct Line {
    bytes: Vec<u8>,
    cut: bool,
    seen: bool,
}

impl Line {
    fn started(&self) -> bool {
        self.seen
    }

    fn extend(&mut self, more: &[u8]) {
        self.seen = true;
        let room = MAX_OUTPUT_LINE - self.bytes.len();
        if more.len() > room {
            self.cut = true;
        }
        self.bytes.extend_from_slice(&more[..more.len().min(room)]);
    }

    fn finish(&mut self) -> String {
        if !self.cut && self.bytes.last() == Some(&b'\r') {
            self.bytes.pop();
        }
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.cut {
            text.push_str(CUT_MARKER);
        }
        *self = Self::default();
        text
    }
}

fn log(source: &Source, stream: Stream, line: &str) {
    let program = &*source.program;
    let service = source.service.as_deref();
    let stream = stream.as_str();
    // `tracing` wants the level as a constant, hence one call per level.
    match source.level {
        Level::ERROR => {
            tracing::error!(service = service.map(tracing::field::display), %program, stream, "{line}")
        }
        Level::WARN => {
            tracing::warn!(service = service.map(tracing::field::display), %program, stream, "{line}")
        }
        Level::INFO => {
            tracing::info!(service = service.map(tracing::field::display), %program, stream, "{line}")
        }
        Level::DEBUG => {
            tracing::debug!(service = service.map(tracing::field::display), %program, stream, "{line}")
        }
        Level::TRACE => {
            tracing::trace!(service = service.map(tracing::field::display), %program, stream, "{line}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        read_lines(input, |line| lines.push(line.to_string()))
            .await
            .unwrap();
        lines
    }

    #[tokio::test]
    async fn splits_lines_and_keeps_a_last_line_without_newline() {
        assert_eq!(lines_of(b"a\r\nb\n\nc").await, ["a", "b", "", "c"]);
        assert!(lines_of(b"").await.is_empty());
    }

    #[tokio::test]
    async fn cuts_long_lines_and_keeps_reading_after_them() {
        let mut input = vec![b'x'; 3 * MAX_OUTPUT_LINE + 17];
        input.extend_from_slice(b"\nnext\n");
        let lines = lines_of(&input).await;
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), MAX_OUTPUT_LINE + CUT_MARKER.len());
        assert!(lines[0].ends_with(CUT_MARKER));
        assert_eq!(lines[1], "next");
    }

    #[tokio::test]
    async fn a_line_of_exactly_the_limit_is_not_cut() {
        let mut input = vec![b'y'; MAX_OUTPUT_LINE];
        input.push(b'\n');
        assert_eq!(lines_of(&input).await, ["y".repeat(MAX_OUTPUT_LINE)]);
    }
}
