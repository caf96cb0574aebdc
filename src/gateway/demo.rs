//! The self-contained demo: a backend that is this same program started in backend mode, and
//! the two trigger types that start and stop it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::config::TriggerRegistry;
use crate::{BoxError, BoxFuture, Trigger};

/// The configuration run with no `--config`.
pub(super) const DEFAULT_CONFIG: &str = r#"{
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

type Running = Arc<Mutex<HashMap<String, tokio::process::Child>>>;

/// The built-in trigger types plus `demo_backend_start` and `demo_backend_stop` (`{"listen":
/// ADDR}`): start and stop this program in backend mode.
pub(super) fn registry() -> TriggerRegistry {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Listen {
        listen: String,
    }
    let running: Running = Arc::default();
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
        Ok(Arc::new(crate::trigger::from_fn(move || {
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
    running: Running,
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

/// Backend mode: boots slowly (as a VM would), then says hello with the request's line and the
/// names of the headers it got; exits when the gateway does (its stdin closes).
pub(super) async fn backend(addr: &str) -> Result<(), BoxError> {
    println!("backend: booting on {addr} (takes 1.5 s)");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let listener = TcpListener::bind(addr).await?;
    println!("backend: up on {addr}");
    tokio::spawn(async {
        let mut stdin = tokio::io::stdin();
        let _ = tokio::io::copy(&mut stdin, &mut tokio::io::sink()).await;
        std::process::exit(0);
    });
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(hello);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn hello(
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let mut names: Vec<&str> = request.headers().keys().map(|name| name.as_str()).collect();
    names.sort_unstable();
    let text = format!(
        "hello from the demo backend (pid {}): {} {}\nheaders: {}\n",
        std::process::id(),
        request.method(),
        request.uri(),
        names.join(", ")
    );
    let mut response = hyper::Response::new(Full::from(text));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}
