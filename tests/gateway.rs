//! The gateway example's whole cycle, end to end over real sockets: start on demand, 503, 200
//! through the proxy, idle stop, and start again; and the gateway's router served by a user's
//! own TLS server. Bounded in time.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

/// The gateway example's executable, built once per test run.
fn gateway_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| example_binary("gateway")).clone()
}

/// Runs the gateway on `config`, its stdout piped; killed when dropped.
fn spawn_gateway(config: &str) -> tokio::process::Child {
    Command::new(gateway_binary())
        .arg("--config")
        .arg(config)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) {
    let give_up = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < give_up, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_on_demand_proxy_idle_stop_and_start_again() {
    let backend = refused_addr().await;
    let config = common::TempFile::new(
        "demo",
        &format!(
            r#"{{
  "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "path_prefix": "/", "service": "demo" }} ] }},
  "services": {{ "demo": {{ "url": "http://{backend}/", "grace_period": "300ms", "probe_timeout": "300ms",
      "on_down": {{ "type": "demo_backend_start", "listen": "{backend}" }},
      "on_idle": {{ "after": "1s", "trigger": {{ "type": "demo_backend_stop", "listen": "{backend}" }} }} }} }}
}}"#
        ),
    );
    let mut gateway = spawn_gateway(config.path());
    let output = Arc::new(Mutex::new(Vec::<String>::new()));
    let (lines_out, stdout) = (output.clone(), gateway.stdout.take().unwrap());
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            lines_out.lock().unwrap().push(line);
        }
    });
    let said = |text: &'static str| {
        let output = output.clone();
        move || {
            let found = output.lock().unwrap().iter().any(|l| l.contains(text));
            async move { found }
        }
    };
    until(
        "the gateway listens",
        Duration::from_secs(20),
        said("gateway: listening on"),
    )
    .await;
    let addr: std::net::SocketAddr = output
        .lock()
        .unwrap()
        .iter()
        .find_map(|l| {
            l.strip_prefix("gateway: listening on http://")
                .map(|a| a.parse().unwrap())
        })
        .unwrap();

    // 1. The backend sleeps: the first request starts it and is answered 503.
    assert!(
        TcpStream::connect(backend).await.is_err(),
        "the backend is not running yet"
    );
    assert_eq!(get(addr, "/first", &[]).await.status, 503);
    // 2. Once up, requests go through the proxy, path and query intact.
    until(
        "the backend answers through the gateway",
        Duration::from_secs(20),
        || async { get(addr, "/hello?x=1", &[]).await.status == 200 },
    )
    .await;
    let reply = get(addr, "/hello?x=1", &[("connection", "keep-alive")]).await;
    assert!(
        reply.body.starts_with("hello from the demo backend"),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("GET /hello?x=1"), "{}", reply.body);
    let first_pid = reply
        .body
        .split("pid ")
        .nth(1)
        .map(|s| s.split(')').next().unwrap().to_string());
    // 3. No request for the idle time: the backend is stopped.
    until(
        "the idle backend is stopped",
        Duration::from_secs(20),
        || async { TcpStream::connect(backend).await.is_err() },
    )
    .await;
    // The port closes when the backend dies, a moment before the gateway says so.
    until(
        "the gateway says it stopped the backend",
        Duration::from_secs(10),
        said("stopped the demo backend"),
    )
    .await;
    // 4. The next request starts it again.
    assert_eq!(get(addr, "/again", &[]).await.status, 503);
    until("the backend is back", Duration::from_secs(20), || async {
        get(addr, "/again", &[]).await.status == 200
    })
    .await;
    let again = get(addr, "/again", &[]).await;
    let second_pid = again
        .body
        .split("pid ")
        .nth(1)
        .map(|s| s.split(')').next().unwrap().to_string());
    assert_ne!(first_pid, second_pid, "a new backend process");

    // The backend ends with the gateway.
    gateway.kill().await.unwrap();
    until(
        "the backend exits with the gateway",
        Duration::from_secs(10),
        || async { TcpStream::connect(backend).await.is_err() },
    )
    .await;
}

#[tokio::test]
async fn a_bad_configuration_names_the_field_and_starts_nothing() {
    let config = common::TempFile::new(
        "bad",
        r#"{ "gateway": { "listen": "127.0.0.1:0", "routes": [ { "service": "ghost" } ] },
             "services": { "demo": { "url": "http://127.0.0.1:9/", "grace_period": "1s" } } }"#,
    );
    let output = Command::new(gateway_binary())
        .arg("--config")
        .arg(config.path())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("gateway.routes[0].service") && stderr.contains("ghost"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("listening"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_path_prefix_and_drops_hop_by_hop_headers() {
    let (a, b) = (refused_addr().await, refused_addr().await);
    let service = |addr: std::net::SocketAddr| {
        format!(
            r#"{{ "url": "http://{addr}/", "grace_period": "5s", "probe_timeout": "300ms",
                 "on_down": {{ "type": "demo_backend_start", "listen": "{addr}" }} }}"#
        )
    };
    let config = common::TempFile::new(
        "routes",
        &format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [
                   {{ "host": "a.localhost", "service": "a" }},
                   {{ "path_prefix": "/b/", "service": "b" }} ] }},
                 "services": {{ "a": {}, "b": {} }} }}"#,
            service(a),
            service(b)
        ),
    );
    let mut gateway = spawn_gateway(config.path());
    let addr = listening_addr(&mut gateway).await;

    // No route: 404, and no backend is started.
    assert_eq!(get(addr, "/elsewhere", &[]).await.status, 404);
    assert!(TcpStream::connect(a).await.is_err() && TcpStream::connect(b).await.is_err());

    let for_a = [
        ("host", "a.localhost"),
        ("connection", "x-hop"),
        ("x-hop", "secret"),
        ("keep-alive", "timeout=5"),
    ];
    until(
        "service a answers by Host",
        Duration::from_secs(20),
        || async { get(addr, "/any", &for_a).await.status == 200 },
    )
    .await;
    let reply = get(addr, "/any", &for_a).await;
    assert!(reply.body.contains("GET /any"), "{}", reply.body);
    // The same host in another case, fully qualified (a final dot), with a port.
    let qualified = get(addr, "/any", &[("host", "A.Localhost.:8080")]).await;
    assert_eq!(qualified.status, 200, "{}", qualified.body);
    let headers = reply
        .body
        .lines()
        .find_map(|l| l.strip_prefix("headers: "))
        .unwrap()
        .to_string();
    assert!(
        headers.contains("x-forwarded-for") && headers.contains("x-forwarded-host"),
        "{headers}"
    );
    assert!(
        !headers.contains("x-hop") && !headers.contains("keep-alive"),
        "hop-by-hop leaked: {headers}"
    );
    assert!(
        TcpStream::connect(b).await.is_err(),
        "service b was not woken by a request for a"
    );

    until(
        "service b answers by path prefix",
        Duration::from_secs(20),
        || async { get(addr, "/b/page", &[]).await.status == 200 },
    )
    .await;
    assert!(get(addr, "/b/page", &[]).await.body.contains("GET /b/page"));
    // The prefix is compared with the path decoded and its slashes merged, as nginx compares
    // its locations; the request goes on as it came.
    for path in ["/%62/page", "//b/page", "/b%2Fpage"] {
        let reply = get(addr, path, &[]).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert!(
            reply.body.contains(&format!("GET {path}")),
            "{}",
            reply.body
        );
    }
    gateway.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_gets_the_host_the_request_was_routed_by() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Each backend answers with its name and the `Host` it got.
    let backend = |name: &'static str| {
        common::serve(
            axum::Router::new().fallback(move |headers: http::HeaderMap| async move {
                let host = headers
                    .get("host")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("-");
                format!("{name} host={host}\n")
            }),
        )
    };
    let (a, other) = (backend("a").await, backend("other").await);
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [
               {{ "host": "a.localhost", "service": "a" }}, {{ "service": "other" }} ] }},
             "services": {{ "a": {{ "url": "http://{}/", "grace_period": "30s" }},
                            "other": {{ "url": "http://{}/", "grace_period": "30s" }} }} }}"#,
        a.addr, other.addr
    );
    let gateway =
        common::start_gateway(&config, &tower_monitor::config::TriggerRegistry::new()).await;
    // An absolute-form target names the host (RFC 9112, 3.2.2: a `Host` beside it is ignored),
    // so the request goes to `a`, which must be told the host it was routed by, not the other.
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(
            b"GET http://a.localhost:8080/x HTTP/1.1\r\nhost: b.localhost\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut reply))
        .await
        .expect("an answer in time")
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("a host=a.localhost:8080\n"), "{reply}");
}

/// A library user serves [`Gateway::router`] behind a TLS listener of their own: told so
/// (`over_tls`), the router's forwarded headers say `https`, as the gateway's own HTTPS
/// listener's do; not told, `http` (the router cannot see the user's TLS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_served_behind_the_users_own_tls_tells_the_backend_https() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tower::Service;
    use tower_monitor::gateway::{Gateway, Router};
    use tower_monitor::proxy::ClientAddr;

    let backend = common::serve(axum::Router::new().fallback(
        |headers: http::HeaderMap| async move {
            let header = |name| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
            };
            format!("[{} {}]", header("x-forwarded-proto"), header("forwarded"))
        },
    ))
    .await;
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [{{ "service": "app" }}],
               "services": {{ "app": {{ "forwarded": "both" }} }} }},
             "services": {{ "app": {{ "url": "http://{}/", "grace_period": "30s" }} }} }}"#,
        backend.addr
    );
    let gateway =
        Gateway::from_config(&config, &tower_monitor::config::TriggerRegistry::new()).unwrap();
    let certificate = common::SelfSigned::new();
    let (acceptor, trusted) = (certificate.acceptor(), certificate.cert);
    // The user's server: TLS, then hyper, with the client's address put in each request.
    let serve = |router: Router| {
        let acceptor = acceptor.clone();
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let accepting = tokio::spawn(async move {
                loop {
                    let (stream, client) = listener.accept().await.unwrap();
                    let (acceptor, router) = (acceptor.clone(), router.clone());
                    tokio::spawn(async move {
                        let Ok(stream) = acceptor.accept(stream).await else {
                            return;
                        };
                        let service = hyper::service::service_fn(
                            move |mut request: http::Request<hyper::body::Incoming>| {
                                request.extensions_mut().insert(ClientAddr(client));
                                router.clone().call(request)
                            },
                        );
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            (addr, accepting)
        }
    };
    let (over_tls, accepting) = serve(gateway.router().over_tls()).await;
    let reply = common::https_get(over_tls, &trusted).await;
    accepting.abort();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.ends_with("[https for=127.0.0.1;host=\"app\";proto=https]"),
        "{reply}"
    );
    let (not_told, accepting) = serve(gateway.router()).await;
    let reply = common::https_get(not_told, &trusted).await;
    accepting.abort();
    assert!(
        reply.ends_with("[http for=127.0.0.1;host=\"app\";proto=http]"),
        "{reply}"
    );
}
