//! The start-on-demand gateway: pullcord's whole job in one program.
//!
//! Run:  cargo run --example gateway
//! Then: curl -i http://127.0.0.1:8080/     (503 while the backend starts; again a second later: 200)
//!
//! With no arguments it listens on 127.0.0.1:8080 in front of a demo backend (this program
//! started again in backend mode on 127.0.0.1:8081) that is *not running*. The first request
//! runs `on_down`, which starts it; the gateway answers 503 until a probe finds it up, then
//! reverse-proxies to it; after 20 s without a request in flight `on_idle` stops it, and the next
//! request starts it again. Your own file: `cargo run --example gateway -- --config FILE`, with
//! a `gateway` section (`listen`, `routes` by `path_prefix` and/or `host`) beside `services`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};
use tower_monitor::config::{ConfigError, TriggerRegistry};
use tower_monitor::layer::{FallbackBody, MonitorBody};
use tower_monitor::{BoxError, MinMonitor, MonitorService, Trigger};

const DEFAULT_CONFIG: &str = r#"{
  "gateway": { "listen": "127.0.0.1:8080", "routes": [ { "path_prefix": "/", "service": "demo" } ] },
  "services": {
    "demo": {
      "url": "http://127.0.0.1:8081/",
      "grace_period": "2s",
      "probe_timeout": "500ms",
      "on_down": { "type": "demo_backend_start", "listen": "127.0.0.1:8081" },
      "on_idle": { "after": "20s", "trigger": { "type": "demo_backend_stop", "listen": "127.0.0.1:8081" } }
    }
  }
}"#;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewaySpec {
    listen: String,
    routes: Vec<RouteSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteSpec {
    host: Option<String>,
    #[serde(default = "root")]
    path_prefix: String,
    service: String,
}

fn root() -> String {
    "/".to_string()
}

type ProxyBody = Either<Incoming, Full<Bytes>>;
type Routed = MonitorService<
    tower::util::BoxCloneSyncService<Request<Incoming>, Response<ProxyBody>, Infallible>,
>;

struct Route {
    host: Option<String>,
    path_prefix: String,
    service: Routed,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(addr) = flag("--backend") {
        return demo_backend(&addr).await;
    }
    tracing_subscriber::fmt()
        .with_env_filter("tower_monitor=info")
        .with_target(false)
        .init();

    let text = match flag("--config") {
        Some(path) => {
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?
        }
        None => DEFAULT_CONFIG.to_string(),
    };
    let (spec, monitor) = load(&text).map_err(|e| format!("configuration: {e}"))?;
    let monitor = Arc::new(monitor);
    let routes = spec
        .routes
        .into_iter()
        .enumerate()
        .map(|(i, route)| {
            let unknown = |e: tower_monitor::MonitorError| {
                ConfigError::new(format!("gateway.routes[{i}].service"), e.to_string())
            };
            let layer = monitor.layer(&route.service).map_err(unknown)?;
            let target = monitor
                .url(&route.service)
                .map_err(unknown)?
                .as_str()
                .parse()
                .unwrap_or_default();
            Ok(Route {
                host: route.host,
                path_prefix: route.path_prefix,
                service: layer.layer(proxy(target)),
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()
        .map_err(|e| format!("configuration: {e}"))?;
    let routes = Arc::new(routes);

    let listen = flag("--listen").unwrap_or(spec.listen);
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!("gateway: listening on http://{}", listener.local_addr()?);
    println!(
        "gateway: try curl -i http://{}/ (the first request starts the backend)",
        listener.local_addr()?
    );
    loop {
        let (stream, client) = listener.accept().await?;
        let routes = routes.clone();
        let service = tower::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(client);
            dispatch(routes.clone(), request)
        });
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .await;
        });
    }
}

/// Reads the gateway's own section and hands the rest to the monitor.
fn load(text: &str) -> Result<(GatewaySpec, MinMonitor), ConfigError> {
    let mut document: Value = serde_json::from_str(text)
        .map_err(|e| ConfigError::new("", format!("not valid JSON: {e}")))?;
    let gateway = document
        .as_object_mut()
        .and_then(|doc| doc.remove("gateway"))
        .ok_or_else(|| {
            ConfigError::new("gateway", "missing: { \"listen\": .., \"routes\": [..] }")
        })?;
    let spec: GatewaySpec = serde_path_to_error::deserialize(gateway).map_err(|e| {
        ConfigError::new(format!("gateway.{}", e.path()), e.into_inner().to_string())
    })?;
    let monitor = MinMonitor::from_config_value_with(document, &demo_registry())?;
    Ok((spec, monitor))
}

async fn dispatch(
    routes: Arc<Vec<Route>>,
    request: Request<Incoming>,
) -> Result<Response<MonitorBody<ProxyBody>>, Infallible> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.split(':').next().unwrap_or(h).to_ascii_lowercase());
    let path = request.uri().path();
    let route = routes.iter().find(|route| {
        route
            .host
            .as_deref()
            .is_none_or(|want| host.as_deref() == Some(&want.to_ascii_lowercase()))
            && path.starts_with(&route.path_prefix)
    });
    match route {
        Some(route) => route.service.clone().oneshot(request).await,
        None => {
            let mut response = Response::new(MonitorBody::fallback(FallbackBody::from(
                "no route for this request\n",
            )));
            *response.status_mut() = StatusCode::NOT_FOUND;
            Ok(response)
        }
    }
}

/// A reverse proxy to `target`: method, headers and streaming bodies pass through; the
/// hop-by-hop headers do not.
fn proxy(
    target: Uri,
) -> tower::util::BoxCloneSyncService<Request<Incoming>, Response<ProxyBody>, Infallible> {
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build_http();
    tower::util::BoxCloneSyncService::new(tower::service_fn(
        move |mut request: Request<Incoming>| {
            let (client, target) = (client.clone(), target.clone());
            async move {
                let original_host = request.headers().get(header::HOST).cloned();
                let client_ip = request
                    .extensions()
                    .get::<std::net::SocketAddr>()
                    .map(|a| a.ip().to_string());
                let path = request
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string();
                let mut parts = target.clone().into_parts();
                parts.path_and_query = path.parse().ok();
                *request.uri_mut() = Uri::from_parts(parts).unwrap_or(target);
                let headers = request.headers_mut();
                remove_hop_by_hop(headers);
                headers.remove(header::HOST);
                if let Some(host) = original_host {
                    headers.insert("x-forwarded-host", host);
                }
                if let Some(ip) = client_ip.and_then(|ip| HeaderValue::from_str(&ip).ok()) {
                    headers.append("x-forwarded-for", ip);
                }
                match client.request(request).await {
                    Ok(response) => {
                        let (mut parts, body) = response.into_parts();
                        remove_hop_by_hop(&mut parts.headers);
                        Ok(Response::from_parts(parts, Either::Left(body)))
                    }
                    Err(error) => {
                        tracing::warn!(%error, "backend request failed");
                        let mut response =
                            Response::new(Either::Right(Full::from("bad gateway\n")));
                        *response.status_mut() = StatusCode::BAD_GATEWAY;
                        Ok(response)
                    }
                }
            }
        },
    ))
}

/// Headers that concern one connection only (RFC 9110, 7.6.1), and those `Connection` names.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|name| name.trim().to_ascii_lowercase()))
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(name);
    }
}

/// The built-in trigger types plus two for the demo: start and stop this program in backend mode.
fn demo_registry() -> TriggerRegistry {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Listen {
        listen: String,
    }
    let running: Arc<Mutex<HashMap<String, tokio::process::Child>>> = Arc::default();
    let mut registry = TriggerRegistry::new();
    let started = running.clone();
    registry.register("demo_backend_start", move |spec| {
        let Listen { listen } = spec.parse()?;
        Ok(Arc::new(DemoStart {
            listen,
            running: started.clone(),
        }) as Arc<dyn Trigger>)
    });
    registry.register("demo_backend_stop", move |spec| {
        let Listen { listen } = spec.parse()?;
        let running = running.clone();
        Ok(Arc::new(tower_monitor::trigger::from_fn(move || {
            let child = running.lock().map(|mut r| r.remove(&listen)).ok().flatten();
            async move {
                if let Some(mut child) = child {
                    child.kill().await?;
                    println!("gateway: idle → stopped the demo backend");
                }
                Ok::<(), BoxError>(())
            }
        })) as Arc<dyn Trigger>)
    });
    registry
}

struct DemoStart {
    listen: String,
    running: Arc<Mutex<HashMap<String, tokio::process::Child>>>,
}

impl Trigger for DemoStart {
    fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        let result = (|| {
            let mut running = self.running.lock().map_err(|_| "demo state poisoned")?;
            if let Some(child) = running.get_mut(&self.listen) {
                if child.try_wait()?.is_none() {
                    return Ok(()); // already starting or running
                }
            }
            println!(
                "gateway: backend down → starting the demo backend on {}",
                self.listen
            );
            let child = tokio::process::Command::new(std::env::current_exe()?)
                .args(["--backend", &self.listen])
                .stdin(std::process::Stdio::piped()) // closes when the gateway exits: the backend follows
                .kill_on_drop(true)
                .spawn()?;
            running.insert(self.listen.clone(), child);
            Ok::<(), BoxError>(())
        })();
        futures::future::ready(result).boxed()
    }
}

/// Backend mode: boots slowly (as a VM would), then says hello; exits when the gateway does.
async fn demo_backend(addr: &str) -> Result<(), BoxError> {
    println!("backend: booting on {addr} (takes 1.5 s)");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let listener = TcpListener::bind(addr).await?;
    println!("backend: up on {addr}");
    tokio::spawn(async {
        let mut stdin = tokio::io::stdin();
        let _ = tokio::io::copy(&mut stdin, &mut tokio::io::sink()).await;
        std::process::exit(0);
    });
    let app = axum::Router::new().fallback(|request: Request<axum::body::Body>| async move {
        let mut names: Vec<&str> = request.headers().keys().map(|name| name.as_str()).collect();
        names.sort_unstable();
        format!(
            "hello from the demo backend (pid {}): {} {}\nheaders: {}\n",
            std::process::id(),
            request.method(),
            request.uri(),
            names.join(", ")
        )
    });
    axum::serve(listener, app).await?;
    Ok(())
}
