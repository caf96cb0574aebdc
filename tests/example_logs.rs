//! The examples' log lines are plain text when their output is not a terminal (a file, a
//! pipe), as the gateway's are: colour codes there are noise in every line.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// The `status` example's executable (it ends by itself), built as `cargo run --example status`
/// builds it (`cargo test --all-targets` builds examples only as test harnesses).
fn status_example() -> PathBuf {
    let test_exe = std::env::current_exe().unwrap();
    let profile_dir = test_exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .to_path_buf();
    let mut cargo = std::process::Command::new(env!("CARGO"));
    cargo
        .args(["build", "--quiet", "--example", "status"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("cargo runs");
    assert!(status.success(), "building the status example failed");
    let binary = profile_dir.join("examples").join("status");
    assert!(binary.is_file(), "{} was not built", binary.display());
    binary
}

#[tokio::test]
async fn an_example_piped_to_a_file_logs_without_colour_codes() {
    let binary = status_example();
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
