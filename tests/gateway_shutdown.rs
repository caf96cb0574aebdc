//! The `tower-monitor-gateway` program stopping its backend programs, as an operator stops
//! it: each program with its own `stop_grace`, with its output pipe
//! gone, and when a second signal comes while the programs stop; and `Gateway::serve` in this
//! process when a connection outlives its grace.

mod common;

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::net::TcpStream;

const PROGRAM: &str = env!("CARGO_BIN_EXE_tower-monitor-gateway");

/// A gateway configuration (port 0, hold mode) whose one service, "app" on `backend`, is a
/// Python HTTP server that ignores SIGTERM, so only SIGKILL after `stop_grace` stops it.
/// Should a failing test leave it, it ends itself after 60 s.
fn term_ignoring_backend(backend: std::net::SocketAddr, stop_grace: &str) -> String {
    let program = format!(
        "import os, signal, sys, threading, runpy; \
         signal.signal(signal.SIGTERM, signal.SIG_IGN); \
         threading.Timer(60, os._exit, [0]).start(); \
         sys.argv = ['http.server', '{}', '--bind', '127.0.0.1']; \
         runpy.run_module('http.server', run_name='__main__')",
        backend.port()
    );
    format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                          "services": {{ "app": {{ "hold": {{ "max_wait": "20s" }} }} }} }},
             "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s",
                 "on_down": {{ "type": "process", "command": "python3", "stop_grace": "{stop_grace}",
                     "args": ["-c", "{program}"] }} }} }} }}"#
    )
}

/// The gateway program in front of a [`term_ignoring_backend`], which a first request (held
/// until it answers) has started; its address, and the configuration file, kept until the end.
async fn serving_term_ignoring_backend(
    tag: &str,
    stop_grace: &str,
) -> (
    tokio::process::Child,
    std::net::SocketAddr,
    common::TempFile,
) {
    let backend = common::refused_addr().await;
    let config = common::TempFile::new(tag, &term_ignoring_backend(backend, stop_grace));
    let (gateway, addr) = common::spawn_gateway_program(PROGRAM, config.path(), true).await;
    let reply = common::get_once(addr).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "held until up: {reply}");
    (gateway, backend, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_backend_program_with_its_configured_stop_grace() {
    // Only SIGKILL, after the program's `stop_grace` (1 s, not the default 10 s), stops it.
    let (mut gateway, backend, _config) = serving_term_ignoring_backend("stop-grace", "1s").await;

    common::sigterm(&gateway).await;
    let mut log = String::new();
    let mut stderr = gateway.stderr.take().unwrap();
    // Past 7 s, the default grace (10 s) was used.
    tokio::time::timeout(Duration::from_secs(7), stderr.read_to_string(&mut log))
        .await
        .expect("the gateway exits once the program's own grace is over")
        .unwrap();
    let status = gateway.wait().await.unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    let stopping = log
        .lines()
        .find(|l| l.contains("stopping the backend program (SIGTERM)"))
        .unwrap_or_else(|| panic!("no stop in:\n{log}"));
    assert!(stopping.contains("grace=1s"), "{stopping}");
    assert!(log.contains("SIGKILL"), "{log}");
    assert!(
        TcpStream::connect(backend).await.is_err(),
        "the backend program outlived the gateway"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_output_is_closed_serves_on_and_stops_on_sigterm() {
    use tokio::io::AsyncBufReadExt;
    // Its stdout and stderr go to a pipe whose reader goes away (`| tee` ended, say): a lost
    // log line must not end the task that logs it (a request, the signal listener).
    let backend = common::refused_addr().await;
    let config = common::TempFile::new("closed", &common::process_backend_config(backend, ""));
    let mut gateway = tokio::process::Command::new(PROGRAM)
        .args(["--config", config.path()])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(gateway.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the gateway starts")
        .unwrap()
        .expect("the gateway prints its address");
    let addr: std::net::SocketAddr = line
        .strip_prefix("gateway: listening on http://")
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    drop(lines);
    drop(gateway.stderr.take());

    let reply = common::get_once(addr).await;
    assert!(
        reply.starts_with("HTTP/1.1 503"),
        "the first request starts the program: {reply:?}"
    );
    let give_up = std::time::Instant::now() + Duration::from_secs(20);
    while !common::get_once(addr).await.starts_with("HTTP/1.1 200") {
        assert!(
            std::time::Instant::now() < give_up,
            "the program never came up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    common::terminate_gateway_then_backend_is_gone(gateway, backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_to_the_demo_says_there_is_nothing_to_reload_and_serves_on() {
    // SIGHUP reloads the --config file (see gateway_reload.rs); the demo has none. SIGHUP
    // once ended the gateway: it must neither stop nor die of the signal's default action.
    let mut gateway = tokio::process::Command::new(PROGRAM)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = common::listening_addr(&mut gateway).await;
    let mut log = tokio::io::BufReader::new(gateway.stderr.take().unwrap()).lines();
    common::signal(&gateway, "HUP").await;
    let said = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line = log.next_line().await.unwrap().expect("the gateway logs");
            if line.contains("SIGHUP") {
                break line;
            }
        }
    })
    .await
    .expect("the SIGHUP is logged");
    assert!(
        said.contains("WARN") && said.contains("nothing to reload"),
        "{said}"
    );
    tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
    // Still serving (a `TRACE` is answered without waking the demo's backend).
    let reply = common::exchange(
        addr,
        "TRACE / HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");
    common::sigterm_then_exits_0(&mut gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_while_the_programs_stop_still_waits_for_them() {
    // No connection holds the drain, so the first SIGTERM goes on to stop the program, which
    // takes its 2 s grace; the second signal comes meanwhile. The gateway once let its workers
    // go then, and with them what watched the program: it exited without waiting for it.
    let (mut gateway, backend, _config) = serving_term_ignoring_backend("second-stop", "2s").await;
    let mut stderr = tokio::io::BufReader::new(gateway.stderr.take().unwrap());

    common::sigterm(&gateway).await;
    let mut log = String::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !log.contains("stopping the backend program (SIGTERM)") {
            use tokio::io::AsyncBufReadExt;
            assert!(stderr.read_line(&mut log).await.unwrap() > 0, "{log}");
        }
    })
    .await
    .expect("the program is being stopped");
    common::sigterm(&gateway).await;
    tokio::time::timeout(Duration::from_secs(15), stderr.read_to_string(&mut log))
        .await
        .expect("the gateway exits")
        .unwrap();
    let _ = gateway.wait().await.unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("backend program stopped") && l.contains("SIGKILL")),
        "the gateway did not wait for the program:\n{log}"
    );
    // The second signal's stop joins the first: no second SIGTERM, no second line.
    let sigterms = log
        .matches("stopping the backend program (SIGTERM)")
        .count();
    assert_eq!(sigterms, 1, "{log}");
    assert!(
        TcpStream::connect(backend).await.is_err(),
        "the backend program outlived the gateway"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_signal_kills_the_backend_programs_at_once() {
    // A program that ignores SIGTERM, with a long stop grace: the first signal's stop would
    // wait 30 s before its SIGKILL, and the second signal's too.
    let (mut gateway, backend, _config) = serving_term_ignoring_backend("third", "30s").await;
    let mut stderr = tokio::io::BufReader::new(gateway.stderr.take().unwrap());
    let mut log = String::new();
    // Each signal once the one before has been taken (signals sent at once may merge).
    for (signal, said) in [
        ("first", "stopping the backend program (SIGTERM)"),
        ("second", "second signal: not waiting"),
    ] {
        common::sigterm(&gateway).await;
        tokio::time::timeout(Duration::from_secs(10), async {
            while !log.contains(said) {
                use tokio::io::AsyncBufReadExt;
                assert!(stderr.read_line(&mut log).await.unwrap() > 0, "{log}");
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the {signal} signal was taken: {log}"));
    }
    common::sigterm(&gateway).await;

    tokio::time::timeout(Duration::from_secs(10), stderr.read_to_string(&mut log))
        .await
        .expect("the gateway exits long before the program's stop grace")
        .unwrap();
    let _ = gateway.wait().await.unwrap();
    assert!(
        log.contains("third signal: killing the backend programs"),
        "{log}"
    );
    let sigterms = log
        .matches("stopping the backend program (SIGTERM)")
        .count();
    assert_eq!(sigterms, 1, "{log}");
    assert!(
        TcpStream::connect(backend).await.is_err(),
        "the backend program outlived the gateway"
    );
}

/// `Gateway::serve` (in this process): a connection that outlives the shutdown grace (its
/// backend still answering) does not leave the backend program running: the programs are
/// stopped whether or not every connection closed in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stops_the_backend_programs_even_when_a_connection_outlives_the_grace() {
    let dir = std::env::temp_dir().join(format!("tower-monitor-outlived-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let slow = dir.join("slow");
    let _ = std::fs::remove_file(&slow);
    let backend = common::refused_addr().await;
    // Answers at once, but `/slow` only after 30 s; should a failing test leave it, it ends
    // itself after 60 s.
    let script = format!(
        "import http.server, os, threading, time\n\
         threading.Timer(60, os._exit, [0]).start()\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       if self.path == '/slow':\n\
         \x20           open({slow:?}, 'w').close()\n\
         \x20           time.sleep(30)\n\
         \x20       self.send_response(200)\n\
         \x20       self.send_header('content-length', '2')\n\
         \x20       self.end_headers()\n\
         \x20       self.wfile.write(b'ok')\n\
         http.server.ThreadingHTTPServer(('127.0.0.1', {port}), H).serve_forever()\n",
        slow = slow.display().to_string(),
        port = backend.port()
    );
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                          "shutdown_grace": "1s",
                          "services": {{ "app": {{ "hold": {{ "max_wait": "20s" }} }} }} }},
             "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s",
                 "on_down": {{ "type": "process", "command": "python3", "stop_grace": "2s",
                     "args": ["-c", {script:?}] }} }} }} }}"#
    );
    let mut gateway =
        common::start_gateway(&config, &tower_monitor::config::TriggerRegistry::new()).await;
    let reply = common::get_once(gateway.addr).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "held until up: {reply}");
    let mut outliving = TcpStream::connect(gateway.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut outliving,
        b"GET /slow HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    common::until(
        Duration::from_secs(10),
        "the slow request reached the backend",
        || slow.exists(),
        |yes| *yes,
    )
    .await;

    gateway.shut_down();
    assert_eq!(
        gateway.ended_within(Duration::from_secs(10)).await,
        Some(false),
        "the slow request outlived the grace"
    );
    assert!(
        TcpStream::connect(backend).await.is_err(),
        "the backend program outlived the gateway"
    );
    drop(outliving);
    let _ = std::fs::remove_dir_all(&dir);
}
