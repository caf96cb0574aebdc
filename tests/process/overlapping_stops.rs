//! Stops of one program that overlap (an idle stop and the gateway's shutdown, an operator's
//! stop and a second signal): one SIGTERM and one SIGKILL, each said once, and the earliest
//! deadline kills it, even when the stop that set it is not polled any more.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

use tower_monitor::trigger::Process;

use crate::lines;
use crate::process_support::*;

/// A shell for `service` that notes each SIGTERM it gets in `terms` and runs on: only
/// SIGKILL ends it. Its pid is in `pid_file`.
fn noting_terms(service: &str, terms: &Path, pid_file: &Path, grace: Duration) -> Process {
    Process::builder("sh")
        .args([
            "-c",
            &format!(
                "trap 'echo TERM >> {}' TERM; echo $$ > {}; while :; do sleep 0.05; done",
                terms.display(),
                pid_file.display()
            ),
        ])
        .service(service)
        .stop_grace(grace)
        .build()
}

/// The log lines of `service` that contain `text`.
fn said(service: &str, text: &str) -> Vec<String> {
    log().lines_with(&[&format!("service={service} "), text])
}

/// One "stopping" line and one SIGKILL line for `service`, however many stops overlapped.
fn said_once_each(service: &str) {
    assert_eq!(said(service, "stopping the backend program").len(), 1);
    assert_eq!(
        said(service, "did not stop within").len(),
        1,
        "{}",
        log().text()
    );
}

/// A program that notes each SIGTERM in `terms` (in the scratch folder `name`) and ignores it,
/// started, with a first stop of `grace` spawned and its SIGTERM noted: the scratch folder, the
/// notes, the program, its pid and the first stop.
async fn first_stop_under_way(
    name: &str,
    service: &str,
    grace: Duration,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    Process,
    u32,
    tokio::task::JoinHandle<
        Result<Option<std::process::ExitStatus>, tower_monitor::trigger::ProcessError>,
    >,
) {
    record_logs();
    let dir = scratch(name);
    let (terms, pid_file) = (dir.join("terms"), dir.join("pid"));
    let program = noting_terms(service, &terms, &pid_file, grace);
    program.start().unwrap();
    let pid = read_pid(&pid_file).await;
    let first = tokio::spawn({
        let program = program.clone();
        async move { program.stop().await }
    });
    // A second stop once the first SIGTERM was taken: two sent at once may merge into one.
    eventually("the program notes the first SIGTERM", || {
        !lines(&terms).is_empty()
    })
    .await;
    (dir, terms, program, pid, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_another_runs_sends_no_second_sigterm_and_one_sigkill() {
    let service = "overlapping-stops";
    let (dir, terms, program, pid, first) =
        first_stop_under_way("overlap", service, Duration::from_millis(800)).await;
    let second = tokio::time::timeout(Duration::from_secs(10), program.stop())
        .await
        .expect("the second stop ends")
        .unwrap()
        .expect("it was running");
    let first = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("the first stop ends")
        .unwrap()
        .unwrap()
        .expect("it was running");

    assert_eq!(second.signal(), Some(9), "SIGKILLed: {second}");
    assert_eq!(first.signal(), Some(9), "SIGKILLed: {first}");
    assert!(!alive(pid));
    assert_eq!(lines(&terms), ["TERM"], "one SIGTERM");
    said_once_each(service);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_stop_with_no_grace_kills_at_once() {
    let service = "overlapping-zero-grace";
    // The first stop would wait 30 s before its SIGKILL.
    let (dir, _, program, pid, first) =
        first_stop_under_way("overlap-zero", service, Duration::from_secs(30)).await;

    let began = Instant::now();
    let second = tokio::time::timeout(Duration::from_secs(5), program.stop_with(Duration::ZERO))
        .await
        .expect("the stop with no grace does not wait for the first one's grace")
        .unwrap()
        .expect("it was running");

    assert!(began.elapsed() < Duration::from_secs(5));
    assert_eq!(second.signal(), Some(9), "SIGKILLed: {second}");
    let first = tokio::time::timeout(Duration::from_secs(5), first)
        .await
        .expect("the first stop ends with the program")
        .unwrap()
        .unwrap();
    assert_eq!(first.and_then(|s| s.signal()), Some(9));
    assert!(!alive(pid));
    said_once_each(service);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_stop_kills_when_the_first_one_would_though_it_is_not_polled() {
    // As in the gateway when a second signal comes: the first stop (the shutdown) is left
    // unpolled, and the second one's own deadline is later than the first's.
    record_logs();
    let dir = scratch("overlap-unpolled");
    let (terms, pid_file) = (dir.join("terms"), dir.join("pid"));
    let service = "overlapping-unpolled";
    let program = noting_terms(service, &terms, &pid_file, Duration::from_millis(500));
    program.start().unwrap();
    let pid = read_pid(&pid_file).await;
    let first = program.stop();
    let mut first = std::pin::pin!(first);
    tokio::select! {
        ended = &mut first => panic!("the first stop ended: {ended:?}"),
        () = eventually("the program notes the first SIGTERM", || !lines(&terms).is_empty()) => {}
    }

    let second = tokio::time::timeout(
        Duration::from_secs(10),
        program.stop_with(Duration::from_secs(30)),
    )
    .await
    .expect("the second stop kills at the first one's deadline, not its own")
    .unwrap()
    .expect("it was running");

    assert_eq!(second.signal(), Some(9), "SIGKILLed: {second}");
    assert!(!alive(pid));
    assert_eq!(lines(&terms), ["TERM"], "one SIGTERM");
    assert_eq!(
        said(service, "did not stop within").len(),
        1,
        "{}",
        log().text()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
