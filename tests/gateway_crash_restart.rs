//! A backend program that crashes after serving a while, behind the `tower-monitor-gateway`
//! program: the next request starts it again, once, and the crash counts as one failure. A
//! crash closes the program's sockets before its exit is seen (at once, or after a dump is
//! written): the start the gateway asks for meanwhile must not join the dying program.

mod common;

const PROGRAM: &str = env!("CARGO_BIN_EXE_tower-monitor-gateway");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_crashes_slowly_is_started_afresh_by_the_next_request() {
    let dir = std::env::temp_dir().join(format!("tower-monitor-slow-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let starts = dir.join("starts");
    let _ = std::fs::remove_file(&starts);
    let backend = common::refused_addr().await;
    // Its first run serves one request, then, at the second, closes its sockets and takes
    // 400 ms to exit (a crash that writes a dump); later runs serve. Should a failing test
    // leave it, it ends itself after 60 s.
    let script = format!(
        "import http.server, os, socket, threading, time\n\
         threading.Timer(60, os._exit, [0]).start()\n\
         first = not os.path.exists({starts:?})\n\
         open({starts:?}, 'a').write('started\\n')\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   served = 0\n\
         \x20   def do_GET(self):\n\
         \x20       H.served += 1\n\
         \x20       if first and H.served == 2:\n\
         \x20           self.server.socket.close()\n\
         \x20           self.connection.shutdown(socket.SHUT_RDWR)\n\
         \x20           time.sleep(0.4)\n\
         \x20           os._exit(3)\n\
         \x20       self.send_response(200)\n\
         \x20       self.send_header('content-length', '2')\n\
         \x20       self.end_headers()\n\
         \x20       self.wfile.write(b'ok')\n\
         \x20   def log_message(self, *args): pass\n\
         http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n",
        starts = starts.display().to_string(),
        port = backend.port()
    );
    let config = common::TempFile::new(
        "slow-crash",
        &format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                              "services": {{ "app": {{ "hold": {{ "max_wait": "10s" }} }} }} }},
                 "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s",
                     "probe_timeout": "300ms",
                     "on_down": {{ "type": "process", "command": "python3", "args": ["-c", {script:?}] }} }} }} }}"#
        ),
    );
    let (mut gateway, addr, log) = common::gateway_with_log(PROGRAM, &config).await;
    let first = common::get_once(addr).await;
    assert!(first.starts_with("HTTP/1.1 200"), "held until up: {first}");
    // Dropped after it was sent: answered, not sent again.
    let crashed = common::get_once(addr).await;
    assert!(crashed.starts_with("HTTP/1.1 503"), "{crashed}");
    let next = common::get_once(addr).await;
    assert!(
        next.starts_with("HTTP/1.1 200"),
        "held until restarted: {next}"
    );

    let said = common::stop_and_read_log(&mut gateway, log).await;
    let started = std::fs::read_to_string(&starts).unwrap_or_default();
    assert_eq!(started.lines().count(), 2, "{said}");
    // The crash is one failure, said as such; no start joined the dying program, to fail at
    // its exit.
    assert!(
        said.lines()
            .any(|l| l.contains("app is down") && l.contains("failed_in_a_row=1")),
        "{said}"
    );
    assert!(!said.contains("app did not come up"), "{said}");
    assert!(!said.contains("failed_in_a_row=2"), "{said}");
    assert!(!said.contains("runs already"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}
