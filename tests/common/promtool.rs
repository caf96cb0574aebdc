//! `promtool check metrics` on a `/metrics` answer.

use std::time::Duration;

/// Whether `program` is on the `PATH`, and where.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

/// Asserts that `promtool check metrics` accepts `text` (a `/metrics` answer); skipped without
/// promtool (Debian's `prometheus` package), except under CI, which must run it.
pub async fn promtool_accepts(text: &str) {
    let Some(promtool) = which("promtool") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run this check: install Debian's `prometheus` package (.ci/run does)"
        );
        eprintln!("skipped the promtool check: no promtool (Debian's `prometheus` package)");
        return;
    };
    let mut child = tokio::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("promtool runs");
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, text.as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("promtool is bounded")
        .unwrap();
    assert!(
        output.status.success(),
        "promtool: {}{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        text
    );
}
