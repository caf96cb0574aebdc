//! The examples' log lines are plain text when their output is not a terminal (a file, a
//! pipe), as the gateway's are: colour codes there are noise in every line.

mod common;

use std::process::Stdio;
use std::time::Duration;

#[tokio::test]
async fn an_example_piped_to_a_file_logs_without_colour_codes() {
    // It ends by itself.
    let binary = common::example_binary("status");
    let child = tokio::process::Command::new(binary)
        // Which tracing-subscriber would honour itself: the example must not need it.
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the example ends within a minute")
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("DEBUG") && l.contains("backend")),
        "no log line naming the service in:\n{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in piped output:\n{text:?}"
    );
}
