//! Each backend program is started from a thread of its own, its parent for the kernel's
//! parent-death signal (Linux), which must live exactly as long as the program: none left
//! behind once the programs have exited, however they end. In a test binary of its own, so
//! that no other test's programs are counted.
#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use tower_monitor::trigger::Process;

/// The threads of this process that started a program and wait for its end.
fn program_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                // The kernel keeps 15 bytes of a thread's name.
                .is_ok_and(|name| name.trim_end() == "tower-monitor-p")
        })
        .count()
}

/// Waits (bounded) until `program_threads()` is `count`: a thread ends once the exit watcher
/// has let it go, which nothing announces to the test.
async fn program_threads_become(count: usize) {
    let give_up = Instant::now() + Duration::from_secs(10);
    while program_threads() != count {
        assert!(
            Instant::now() < give_up,
            "{} program threads, not {count}",
            program_threads()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_thread_lives_as_long_as_its_program() {
    assert_eq!(program_threads(), 0);
    let stopped = Process::builder("sleep").arg("1000").build();
    let exits = Process::builder("sh").args(["-c", "sleep 0.2"]).build();
    let dropped = Process::builder("sleep").arg("1000").build();
    for process in [&stopped, &exits, &dropped] {
        process.start().unwrap();
    }
    assert_eq!(program_threads(), 3, "one thread per running program");

    stopped.stop().await.unwrap();
    exits.exited().await;
    program_threads_become(1).await;

    drop(dropped);
    program_threads_become(0).await;

    // A start that fails (no such program) leaves no thread behind either.
    let missing = Process::builder("/nonexistent/tower-monitor-program").build();
    assert!(missing.start().is_err());
    program_threads_become(0).await;
}
