//! A backend program that crashes at boot, behind the `tower-monitor-gateway` program, under
//! a steady stream of requests: after a few failed starts in a row it is started again only
//! after a pause that doubles (as systemd's start limit and Kubernetes' `CrashLoopBackOff`
//! do), not once per request as fast as it can crash; the log says each failure once, with
//! the pause. One that comes up and crashes at its first request counts the same.

mod common;

use std::time::{Duration, Instant};

const PROGRAM: &str = env!("CARGO_BIN_EXE_tower-monitor-gateway");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_crashes_at_boot_is_started_again_after_a_growing_pause() {
    let dir = std::env::temp_dir().join(format!("tower-monitor-crash-loop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let starts = dir.join("starts");
    let _ = std::fs::remove_file(&starts);
    let backend = common::refused_addr().await;
    let config = common::TempFile::new(
        "crash-loop",
        &format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ] }},
                 "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s",
                     "on_down": {{ "type": "process", "command": "sh",
                                   "args": ["-c", "echo started >> '{starts}'; exit 1"] }} }} }} }}"#,
            starts = starts.display()
        ),
    );
    let (mut gateway, addr, log) = common::gateway_with_log(PROGRAM, &config).await;

    // A request every 50 ms for 4 s: without a pause, each would start the program again
    // (it fails within milliseconds), some 80 starts.
    let began = Instant::now();
    let mut statuses = Vec::new();
    while began.elapsed() < Duration::from_secs(4) {
        let reply = common::get_once(addr).await;
        statuses.push(reply.get(9..12).unwrap_or("").to_string());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = std::fs::read_to_string(&starts)
        .unwrap_or_default()
        .lines()
        .count();
    // Three at once, then one after the 2 s pause; the next pause is 4 s.
    assert!((3..=5).contains(&started), "started {started} times");
    // During the pause the start is said to have failed (500), with its Retry-After.
    assert!(statuses.iter().any(|s| s == "500"), "{statuses:?}");

    let said = common::stop_and_read_log(&mut gateway, log).await;
    let failures: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("app did not come up"))
        .collect();
    assert_eq!(failures.len(), started, "one line per failed start: {said}");
    assert!(
        failures
            .iter()
            .any(|l| l.contains("not started again for 2 s") && l.contains("service=app")),
        "{said}"
    );
    // A start refused during a pause is said once per pause, not once per request.
    let refused = said
        .lines()
        .filter(|l| l.contains("app: not started again yet: its last"))
        .count();
    assert!((1..=2).contains(&refused), "{refused} lines: {said}");
    // The exit status is said by the program's supervisor, once per start.
    let exits = said
        .lines()
        .filter(|l| l.contains("backend program exited") && l.contains("exit status: 1"))
        .count();
    assert_eq!(exits, started, "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A backend that comes up, then exits 1 at its first request (a dev server whose handler
/// crashes it): each request would start it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_crashes_at_its_first_request_is_started_again_after_a_growing_pause() {
    let dir = std::env::temp_dir().join(format!("tower-monitor-crash-up-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let starts = dir.join("starts");
    let _ = std::fs::remove_file(&starts);
    let backend = common::refused_addr().await;
    let script = format!(
        "import http.server, os\n\
         open({starts:?}, 'a').write('started\\n')\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self): os._exit(1)\n\
         http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n",
        starts = starts.display().to_string(),
        port = backend.port()
    );
    let config = common::TempFile::new(
        "crash-up",
        &format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ] }},
                 "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s",
                     "probe_timeout": "300ms",
                     "on_down": {{ "type": "process", "command": "python3", "args": ["-c", {script:?}] }} }} }} }}"#
        ),
    );
    let (mut gateway, addr, log) = common::gateway_with_log(PROGRAM, &config).await;
    // A request every 50 ms for 5 s: without a pause, every other one or so would start it
    // again once it came up (some 40 starts).
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(5) {
        let _ = common::get_once(addr).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = std::fs::read_to_string(&starts)
        .unwrap_or_default()
        .lines()
        .count();
    assert!((3..=6).contains(&started), "started {started} times");

    let said = common::stop_and_read_log(&mut gateway, log).await;
    // A crash after coming up counts as a failed start, and the third failure in a row (a
    // crash after up, or one before it, whichever comes: the program's exit races the next
    // request) brings the first pause.
    assert!(
        said.lines().any(|l| l.contains("s after it came up; ")),
        "{said}"
    );
    assert!(
        said.lines()
            .any(|l| l.contains("failed_in_a_row=3") && l.contains("not started again for 2 s")),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// In hold mode, a held request whose wait would end inside the pause after failed starts is
/// told at once that the backend could not be started (500, `Retry-After` at the pause's end),
/// not kept until its `max_wait` to get a 504 that says nothing of the failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_is_told_of_a_pause_that_outlasts_its_wait() {
    let dir = std::env::temp_dir().join(format!("tower-monitor-held-pause-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let starts = dir.join("starts");
    let _ = std::fs::remove_file(&starts);
    let backend = common::refused_addr().await;
    let config = common::TempFile::new(
        "held-pause",
        &format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                              "services": {{ "app": {{ "hold": {{ "max_wait": "3s" }}, "retry_after": "1s" }} }} }},
                 "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s",
                     "on_down": {{ "type": "process", "command": "sh",
                                   "args": ["-c", "echo started >> '{starts}'; exit 1"] }} }} }} }}"#,
            starts = starts.display()
        ),
    );
    let (mut gateway, addr, _log) = common::gateway_with_log(PROGRAM, &config).await;
    // Three failed starts (two retried at once, a second apart for a held request), then a
    // pause of 2 s that ends past the 3 s wait; then, held to that end, one more and a pause
    // of 4 s.
    for (request, pause) in [(1, "2"), (2, "4")] {
        let asked = Instant::now();
        let reply = common::get_once(addr).await;
        let waited = asked.elapsed();
        assert!(
            reply.starts_with("HTTP/1.1 500"),
            "request {request}: {reply}"
        );
        assert!(
            reply.contains(&format!("retry-after: {pause}\r\n")),
            "request {request}: {reply}"
        );
        assert!(
            waited < Duration::from_secs(3),
            "request {request} waited {waited:?}"
        );
    }
    let started = std::fs::read_to_string(&starts).unwrap_or_default();
    assert_eq!(started.lines().count(), 4);
    common::sigterm_then_exits_0(&mut gateway).await;
    let _ = std::fs::remove_dir_all(&dir);
}
