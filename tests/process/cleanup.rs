//! Nothing left behind: dropped handles, dropped runtimes, supervisor shutdown, and one
//! backend for two supervisors sharing a lock file.

use std::time::Duration;

use tower_monitor::Trigger;
use tower_monitor::trigger::{Process, ProcessError, Supervisor};

use crate::process_support::*;
use crate::{booting_backend, free_addr, lines};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_kills_the_group() {
    record_logs();
    let dir = scratch("drop");
    let pid_file = dir.join("pid");
    let process = Process::builder("sh")
        .args([
            "-c",
            &format!("sleep 1000 & echo $! > {}; wait", pid_file.display()),
        ])
        .build();
    process.start().unwrap();
    let leader = process.pid().unwrap();
    let grandchild = read_pid(&pid_file).await;

    drop(process);

    eventually("the program is gone", || !alive(leader)).await;
    eventually("the grandchild is gone", || !alive(grandchild)).await;
}

#[test]
fn a_runtime_shutting_down_kills_the_program_it_was_watching() {
    record_logs();
    let dir = scratch("runtime-gone");
    let pid_file = dir.join("pid");
    let process = Process::builder("sh")
        .args([
            "-c",
            &format!("sleep 1000 & echo $! > {}; wait", pid_file.display()),
        ])
        .build();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (leader, grandchild) = runtime.block_on(async {
        process.start().unwrap();
        (process.pid().unwrap(), read_pid(&pid_file).await)
    });

    drop(runtime);

    assert!(
        !process.is_running(),
        "forgotten, so a later trigger starts it again"
    );
    let checker = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    checker.block_on(async {
        eventually("the program is gone", || !alive(leader)).await;
        eventually("the grandchild is gone", || !alive(grandchild)).await;
    });
}

#[test]
fn a_runtime_dropped_before_it_ever_watched_the_program_kills_it_too() {
    record_logs();
    let process = Process::builder("sleep").arg("1000").build();
    // On a current-thread runtime the watcher task is not polled before block_on returns.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pid = runtime.block_on(async {
        process.start().unwrap();
        process.pid().unwrap()
    });

    drop(runtime);

    assert!(!process.is_running());
    let checker = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    checker.block_on(eventually("the program is gone", || !alive(pid)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_shutdown_stops_every_program_and_leaves_no_process() {
    record_logs();
    let dir = scratch("shutdown");
    let supervisor = Supervisor::new();
    let mut pids = Vec::new();
    let mut processes = Vec::new();
    for (i, script) in [
        "echo $$ > {pid}; exec sleep 1000",
        "sleep 1000 & echo $! > {pid}; wait",
        "trap '' TERM; echo $$ > {pid}; while :; do sleep 0.05; done",
    ]
    .into_iter()
    .enumerate()
    {
        let pid_file = dir.join(format!("pid{i}"));
        let script = script.replace("{pid}", &pid_file.display().to_string());
        let process = supervisor.supervise(Process::builder("sh").args(["-c", &script]));
        process.start().unwrap();
        pids.push(process.pid().unwrap());
        pids.push(read_pid(&pid_file).await);
        processes.push(process);
    }
    assert_eq!(supervisor.running().len(), 3);

    supervisor
        .shutdown(Duration::from_millis(300))
        .await
        .unwrap();

    for pid in &pids {
        eventually(&format!("{pid} is gone"), || !alive(*pid)).await;
    }
    assert!(supervisor.running().is_empty());
    let refused = processes[0].start().unwrap_err();
    assert!(
        matches!(refused, ProcessError::ShutDown { .. }),
        "{refused}"
    );
    assert!(processes[0].pid().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_lock_file_two_supervisors_run_the_backend_once() {
    record_logs();
    let dir = scratch("two-gateways");
    let starts = dir.join("starts");
    let lock_file = dir.join("backend.lock");
    let addr = free_addr().await;
    // Two supervisors stand for two gateways with the same configuration.
    let (first, second) = (Supervisor::new(), Supervisor::new());
    let backend =
        || booting_backend(&starts, Duration::from_millis(300), addr).lock_file(&lock_file);
    let (a, b) = (first.supervise(backend()), second.supervise(backend()));
    let triggers: Vec<_> = (0..32)
        .map(|i| {
            let process = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { process.trigger().await.map_err(|e| e.to_string()) })
        })
        .collect();
    for trigger in futures::future::join_all(triggers).await {
        trigger.unwrap().expect("every trigger is Ok");
    }
    let (owner, other) = if a.is_running() { (&a, &b) } else { (&b, &a) };
    assert!(owner.is_running() && !other.is_running());
    let pid = owner.pid().unwrap();
    // The id on the first line, for people; what tells it from a later process follows.
    assert_eq!(
        std::fs::read_to_string(&lock_file).unwrap().lines().next(),
        Some(pid.to_string().as_str())
    );
    eventually("the backend accepts", || {
        std::net::TcpStream::connect(addr).is_ok()
    })
    .await;
    assert_eq!(
        lines(&starts).len(),
        1,
        "started once: {:?}",
        lines(&starts)
    );

    // Once its owner stops it, the other one may start it.
    owner.stop().await.unwrap();
    other.trigger().await.unwrap();
    assert!(other.is_running());
    let second_pid = other.pid().unwrap();
    first.shutdown(Duration::from_secs(5)).await.unwrap();
    second.shutdown(Duration::from_secs(5)).await.unwrap();

    assert_ne!(second_pid, pid);
    assert_eq!(a.starts() + b.starts(), 2);
    assert!(!alive(pid) && !alive(second_pid));
}

/// Tells, by its drop, that the thread holding it in a thread-local has ended.
struct ThreadEnd(std::sync::mpsc::Sender<()>);

impl Drop for ThreadEnd {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

thread_local! {
    static THREAD_END: std::cell::RefCell<Option<ThreadEnd>> = const { std::cell::RefCell::new(None) };
}

#[test]
fn a_program_outlives_the_thread_that_started_it() {
    record_logs();
    // On Linux a program asks the kernel to stop it when its supervisor dies, and the kernel's
    // "parent" is the thread that started it: a blocking-pool thread, which ends once idle,
    // must not take the program with it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_keep_alive(Duration::from_millis(10))
        .enable_all()
        .build()
        .unwrap();
    let process = Process::builder("sleep").arg("1000").build();
    let starter = process.clone();
    let (ended, thread_ended) = std::sync::mpsc::channel();
    let pid = runtime.block_on(async move {
        tokio::task::spawn_blocking(move || {
            starter.start().unwrap();
            THREAD_END.with(|end| *end.borrow_mut() = Some(ThreadEnd(ended)));
            starter.pid().unwrap()
        })
        .await
        .unwrap()
    });

    thread_ended
        .recv_timeout(Duration::from_secs(10))
        .expect("the idle blocking thread ends");

    runtime.block_on(async {
        let stopped = tokio::time::timeout(Duration::from_secs(1), async {
            while alive(pid) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(stopped.is_err(), "the program ended with its thread");
        assert!(process.is_running());
    });
}

#[test]
fn a_start_that_panics_fails_that_start_only() {
    record_logs();
    // Tokio panics when a child's pipes need an IO driver the runtime lacks.
    let without_io = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let exits_at_once = Process::builder("true").build();
    let error = without_io
        .block_on(async { exits_at_once.start() })
        .unwrap_err();
    assert!(matches!(error, ProcessError::Spawn { .. }), "{error}");
    assert!(error.to_string().contains("panicked"), "{error}");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let next = Process::builder("sleep").arg("1000").build();
    runtime.block_on(async { next.start() }).unwrap();
    assert!(next.is_running());
}

/// The processes running `argv`, found by their command line.
#[cfg(target_os = "linux")]
fn running(argv: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
        .collect()
}

/// Fails if a `sleep seconds` still runs, after killing it.
#[cfg(target_os = "linux")]
fn no_program_left(seconds: &str) {
    let left = running(&["sleep", seconds]);
    for pid in &left {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    assert!(
        left.is_empty(),
        "the failed start left its program running: {left:?}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_start_on_a_runtime_that_cannot_watch_it_leaves_no_program_running() {
    record_logs();
    // Tokio registers a child's pipes with the runtime only once it has started: a runtime
    // without an IO driver fails the start after the program runs, unwatched, unstoppable.
    // (`start` returns after the program's exec, so it would be running by then.)
    let seconds = format!("1000.{}", std::process::id());
    let without_io = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let process = Process::builder("sleep").arg(&seconds).build();
    let error = without_io.block_on(async { process.start() }).unwrap_err();
    assert!(matches!(error, ProcessError::Spawn { .. }), "{error}");

    no_program_left(&seconds);
}

#[cfg(target_os = "linux")]
#[test]
fn a_start_on_a_runtime_shut_down_leaves_no_program_running() {
    record_logs();
    // A blocking task may outlive its runtime's drivers: the start then fails, and must not
    // leave a program behind.
    let seconds = format!("1001.{}", std::process::id());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let handle = runtime.handle().clone();
    // Returns once the workers have shut the drivers down (`shutdown_background` would not
    // wait for them).
    runtime.shutdown_timeout(Duration::from_secs(10));
    let process = Process::builder("sleep").arg(&seconds).build();
    let error = handle.block_on(async { process.start() }).unwrap_err();
    assert!(matches!(error, ProcessError::Spawn { .. }), "{error}");

    no_program_left(&seconds);
}

/// Set for [`supervisor_ignoring_sigterm`] when run by the test below, to the program's
/// argument.
#[cfg(target_os = "linux")]
const IGNORING_SIGTERM: &str = "TOWER_MONITOR_TEST_SUPERVISOR_IGNORING_SIGTERM";

/// Run by the test below in a process of its own, to be killed: a supervisor that ignores
/// SIGTERM (started under `trap '' TERM`, say) starts a program, says its id, and waits.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "run by a_program_ends_with_a_killed_supervisor_that_ignores_sigterm"]
fn supervisor_ignoring_sigterm() {
    record_logs();
    let Some(seconds) = std::env::var_os(IGNORING_SIGTERM) else {
        return;
    };
    // SAFETY: no handler is installed, a disposition is set.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGTERM,
            nix::sys::signal::SigHandler::SigIgn,
        )
    }
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let process = Process::builder("sleep").arg(seconds).build();
    runtime.block_on(async { process.start() }).unwrap();
    println!("program pid {}", process.pid().unwrap());
    std::thread::sleep(Duration::from_secs(60));
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_ends_with_a_killed_supervisor_that_ignores_sigterm() {
    record_logs();
    use tokio::io::AsyncBufReadExt;
    // An ignored signal stays ignored across exec: the program would ignore the SIGTERM the
    // kernel sends it when its supervisor dies, and outlive it.
    let seconds = format!("1002.{}", std::process::id());
    let mut supervisor = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cleanup::supervisor_ignoring_sigterm",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(IGNORING_SIGTERM, &seconds)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(supervisor.stdout.take().unwrap()).lines();
    let pid: u32 = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let line = lines.next_line().await.unwrap().expect("it says the pid");
            // After libtest's "test … ... " on the same line.
            if let Some((_, pid)) = line.split_once("program pid ") {
                break pid.trim().parse().unwrap();
            }
        }
    })
    .await
    .expect("the supervisor starts its program");

    supervisor.start_kill().unwrap();
    supervisor.wait().await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while alive(pid) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outlived = alive(pid);
    kill(pid);
    assert!(!outlived, "the program outlived its killed supervisor");
}
