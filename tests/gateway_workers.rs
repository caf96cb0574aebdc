//! The `tower-monitor-gateway` program on several workers (`--workers N`): they share one
//! monitor, so `max_held` holds for the whole gateway and a herd spread over the workers starts
//! the backend program once.

mod common;

use std::time::Duration;

const PROGRAM: &str = env!("CARGO_BIN_EXE_tower-monitor-gateway");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_held_is_for_the_whole_gateway_whatever_the_workers() {
    let backend = common::refused_addr().await;
    // The backend never comes up: held requests end in 504 at max_wait.
    let config = common::TempFile::new(
        "max-held",
        &format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                              "services": {{ "app": {{ "hold": {{ "max_wait": "2s", "max_held": 2 }} }} }} }},
                 "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s", "probe_timeout": "300ms",
                     "on_down": {{ "type": "command", "command": "true" }} }} }} }}"#
        ),
    );
    let (gateway, addr) =
        common::spawn_gateway_program_with(PROGRAM, config.path(), false, &["--workers", "3"])
            .await;
    // Twelve requests, all within max_wait, on several workers.
    let requests = spread(addr, 12, Duration::from_millis(20)).await;
    let mut statuses = Vec::new();
    for request in requests {
        let reply = tokio::time::timeout(Duration::from_secs(10), request)
            .await
            .expect("answered within max_wait and a bit")
            .unwrap();
        statuses.push(reply.get(9..12).unwrap_or_default().to_string());
    }
    let held = statuses.iter().filter(|status| *status == "504").count();
    let refused = statuses.iter().filter(|status| *status == "503").count();
    assert_eq!((held, refused), (2, 10), "{statuses:?}");
    drop(gateway);
}

/// A backend program that notes each start in `starts`, then takes a second to listen.
const SLOW_BOOTING_BACKEND: &str = "\
import http.server, sys, time
with open(sys.argv[1], 'a') as starts:
    starts.write('start\\n')
time.sleep(1)
http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[2])), http.server.SimpleHTTPRequestHandler).serve_forever()
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_over_many_connections_and_workers_starts_the_backend_program_once() {
    let backend = common::refused_addr().await;
    let dir = std::env::temp_dir();
    let tag = format!("tower-monitor-herd-{}", std::process::id());
    let (script, starts) = (
        dir.join(format!("{tag}.py")),
        dir.join(format!("{tag}.starts")),
    );
    std::fs::write(&script, SLOW_BOOTING_BACKEND).unwrap();
    let _ = std::fs::remove_file(&starts);
    let config = common::TempFile::new(
        "herd",
        &format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                              "services": {{ "app": {{ "hold": {{ "max_wait": "20s" }} }} }} }},
                 "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s", "probe_timeout": "300ms",
                     "on_down": {{ "type": "process", "command": "python3",
                                   "args": [{script:?}, {starts:?}, "{port}"], "stop_grace": "3s" }} }} }} }}"#,
            port = backend.port(),
            script = script.display().to_string(),
            starts = starts.display().to_string(),
        ),
    );
    let (gateway, addr) =
        common::spawn_gateway_program_with(PROGRAM, config.path(), false, &["--workers", "4"])
            .await;
    // Forty requests, all while the backend boots, on several workers.
    let herd = spread(addr, 40, Duration::from_millis(5)).await;
    for request in herd {
        let reply = tokio::time::timeout(Duration::from_secs(30), request)
            .await
            .expect("a held request is answered")
            .unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.contains("x-cold-start: "), "{reply}");
    }
    let started = std::fs::read_to_string(&starts).unwrap_or_default();
    assert_eq!(
        started.lines().count(),
        1,
        "backend program starts: {started:?}"
    );

    common::terminate_gateway_then_backend_is_gone(gateway, backend).await;
    let _ = std::fs::remove_file(&script);
    let _ = std::fs::remove_file(&starts);
}

/// `n` requests `apart`, each on a connection of its own, so that they land on different
/// workers (a burst is often accepted by one worker alone); their replies to come.
async fn spread(
    addr: std::net::SocketAddr,
    n: usize,
    apart: Duration,
) -> Vec<tokio::task::JoinHandle<String>> {
    let mut requests = Vec::with_capacity(n);
    for _ in 0..n {
        requests.push(tokio::spawn(common::get_once(addr)));
        tokio::time::sleep(apart).await;
    }
    requests
}
