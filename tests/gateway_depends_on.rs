//! A dev environment behind the gateway: an app (Python's `http.server`) that needs a Redis
//! server up first, both real programs the gateway starts and stops (`depends_on`). The first
//! request starts Redis, then the app; once idle, the app stops first, then Redis. A Redis
//! that crashes under the up app is started again at the app's next probe.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const PROGRAM: &str = env!("CARGO_BIN_EXE_tower-monitor-gateway");

/// Whether a Redis server answers `PING` at `addr` now.
async fn redis_answers(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let mut reply = [0u8; 16];
    let ping = async {
        stream.write_all(b"PING\r\n").await?;
        stream.read(&mut reply).await
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), ping).await,
        Ok(Ok(n)) if reply[..n].starts_with(b"+PONG")
    )
}

/// The process id a Redis server at `addr` gives in `INFO server` (bounded wait).
async fn redis_pid(addr: SocketAddr) -> Option<u32> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let info = async {
        stream.write_all(b"INFO server\r\n").await.ok()?;
        let mut reply = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            reply.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&reply);
            let line = text
                .split("process_id:")
                .nth(1)
                .and_then(|rest| rest.split_once("\r\n"));
            if let Some((pid, _)) = line {
                return pid.trim().parse().ok();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(2), info)
        .await
        .ok()
        .flatten()
}

async fn answers(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_ok()
}

fn redis_server() -> Option<&'static str> {
    let found = ["redis-server", "valkey-server"]
        .into_iter()
        .find(|program| {
            std::env::var_os("PATH").is_some_and(|path| {
                std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
            })
        });
    if found.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("redis-server (or valkey-server) is not installed; .ci/run installs it");
        }
        eprintln!("SKIPPED: redis-server (or valkey-server) is not installed");
    }
    found
}

/// The gateway's configuration, in a file named after `name`: the app (Python's
/// `http.server` at `app`) depends on the cache (`redis` at `cache`); each is stopped after
/// its idle time.
fn config(
    name: &str,
    redis: &str,
    (cache, cache_idle): (SocketAddr, &str),
    (app, app_idle): (SocketAddr, &str),
) -> common::TempFile {
    common::TempFile::new(
        name,
        &format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                              "services": {{ "app": {{ "hold": {{ "max_wait": "20s" }} }} }} }},
                 "services": {{
                   "app": {{ "url": "http://{app}/", "grace_period": "1s", "depends_on": ["cache"],
                            "on_down": {{ "type": "process", "command": "python3",
                                          "args": ["-m", "http.server", "--bind", "127.0.0.1", "{app_port}"] }},
                            "on_idle": {{ "after": "{app_idle}", "trigger": {{ "type": "process_stop" }} }} }},
                   "cache": {{ "url": "tcp://{cache}", "grace_period": "1s",
                              "probe": {{ "type": "expect", "steps": [ {{ "send": "PING\r\n" }}, {{ "expect": "^\\+PONG" }} ] }},
                              "on_down": {{ "type": "process", "command": "{redis}",
                                            "args": ["--port", "{cache_port}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"] }},
                              "on_idle": {{ "after": "{cache_idle}", "trigger": {{ "type": "process_stop" }} }} }} }} }}"#,
            app_port = app.port(),
            cache_port = cache.port(),
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_request_starts_redis_then_the_app_and_idle_stops_them_in_turn() {
    let Some(redis) = redis_server() else {
        return;
    };
    let (cache, app) = (common::refused_addr().await, common::refused_addr().await);
    let config = config("depends", redis, (cache, "200ms"), (app, "1s"));
    let (mut gateway, addr) = common::spawn_gateway_program(PROGRAM, config.path(), false).await;

    let reply = tokio::time::timeout(
        Duration::from_secs(30),
        common::exchange(
            addr,
            "GET / HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n",
        ),
    )
    .await
    .expect("an answer within the hold");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(redis_answers(cache).await, "the app is up, Redis is not");

    // Idle: the app goes after its 1 s; Redis, whose 200 ms passed long ago, only after it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut app_gone = None;
    loop {
        let (app_up, cache_up) = (answers(app).await, redis_answers(cache).await);
        if !app_up && app_gone.is_none() {
            app_gone = Some(Instant::now());
        }
        if !cache_up {
            assert!(
                app_gone.is_some(),
                "Redis was stopped under the running app"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis was never stopped (app gone: {app_gone:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    common::sigterm(&gateway).await;
    let status = tokio::time::timeout(Duration::from_secs(20), gateway.wait())
        .await
        .expect("the gateway exits")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Redis crashes (SIGKILL) under the up app, which talks to it directly: no request through
/// the gateway reaches it, so only the app's next probe, which looks at its dependencies, can
/// find it down. It is started again, and the app, up all along, is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_the_up_app_is_started_again_at_the_apps_next_probe() {
    let Some(redis) = redis_server() else {
        return;
    };
    let (cache, app) = (common::refused_addr().await, common::refused_addr().await);
    // Idle stops far past the test's end, so that only the crash takes Redis down.
    let config = config("depends-crash", redis, (cache, "10m"), (app, "10m"));
    let (mut gateway, addr, log) = common::gateway_with_log(PROGRAM, &config).await;

    let reply = tokio::time::timeout(Duration::from_secs(30), common::get_once(addr))
        .await
        .expect("an answer within the hold");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let first = redis_pid(cache).await.expect("Redis, up, gives its pid");

    // Its own pid, from Redis itself: other Redis servers may run on this machine.
    let killed = tokio::process::Command::new("kill")
        .args(["-KILL", &first.to_string()])
        .status()
        .await
        .unwrap();
    assert!(killed.success(), "kill -KILL {first}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while answers(cache).await {
        assert!(
            Instant::now() < deadline,
            "Redis still answers after SIGKILL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Requests to the app: each after its 1 s grace period has it probed, which looks at Redis.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = common::get_once(addr).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(answers(app).await, "the app went down");
        if redis_answers(cache).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis was not started again within 10 s of its crash"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let second = redis_pid(cache)
        .await
        .expect("Redis, up again, gives its pid");
    assert_ne!(first, second, "the same Redis answers after SIGKILL");

    let said = common::stop_and_read_log(&mut gateway, log).await;
    assert!(
        said.contains("app: cache was found down while app is up; starting it again"),
        "{said}"
    );
    let starts = |program: &str| {
        said.lines()
            .filter(|l| l.contains("started the backend program"))
            .filter(|l| l.contains(&format!("program={program}")))
            .count()
    };
    assert_eq!(starts("python3"), 1, "the app was started again: {said}");
    assert_eq!(starts(redis), 2, "{said}");
}
