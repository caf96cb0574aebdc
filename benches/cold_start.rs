//! Cold starts: a backend that starts accepting after a random 0.2–5 s, and a request held
//! meanwhile. Measures the delay from the moment the backend can accept (its `listen` returned)
//! to the held request reaching the inner service, and the probes per second spent while the
//! backend was starting. Real TCP on 127.0.0.1, a multi-thread runtime.
//!
//! Run: cargo bench --bench cold_start            (20 cold starts, about a minute)
//!      COLD_STARTS=100 cargo bench --bench cold_start
//!
//! Goals (issue "lifecycle"): median ≤ 40 ms, max ≤ 100 ms, ≤ 20 probes per second.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use tower::{Layer, ServiceExt, service_fn};
use tower_monitor::probe::Tcp;
use tower_monitor::{BoxError, MinMonitor, MonitoredService, Probe, Url, probe, trigger};

/// A small xorshift generator: the delays need to be spread, not cryptographic.
struct Random(u64);

impl Random {
    fn between(&mut self, low: Duration, high: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let span = (high - low).as_micros() as u64;
        low + Duration::from_micros(self.0 % span.max(1))
    }
}

struct Run {
    boot: Duration,
    delay: Duration,
    probes_per_second: f64,
}

async fn cold_start(boot: Duration) -> Run {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = Url::parse(&format!("http://127.0.0.1:{port}/")).expect("valid URL");
    let probes = Arc::new(AtomicUsize::new(0));
    let ready_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    // When on_down ran, and how many probes had run by then (the probe that found it down).
    let woken: Arc<Mutex<Option<(Instant, usize)>>> = Arc::default();
    let (p, r, w) = (probes.clone(), ready_at.clone(), woken.clone());
    let p_at_wake = probes.clone();
    let service = MonitoredService::new(url, Duration::from_secs(30))
        .probe_timeout(Duration::from_millis(500))
        .probe(probe::from_fn(move |url| {
            p.fetch_add(1, Ordering::Relaxed);
            Tcp.probe(&url)
        }))
        .on_down(trigger::from_fn(move || {
            let ready_at = r.clone();
            let probed = p_at_wake.load(Ordering::Relaxed);
            *w.lock().expect("not poisoned") = Some((Instant::now(), probed));
            tokio::spawn(async move {
                tokio::time::sleep(boot).await;
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                    .await
                    .expect("bind the backend");
                *ready_at.lock().expect("not poisoned") = Some(Instant::now());
                while let Ok((stream, _)) = listener.accept().await {
                    drop(stream);
                }
            });
            async { Ok::<(), BoxError>(()) }
        }));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).expect("fresh monitor");
    let forwarded_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let f = forwarded_at.clone();
    let inner = service_fn(move |_req: Request<()>| {
        *f.lock().expect("not poisoned") = Some(Instant::now());
        async { Ok::<_, Infallible>(Response::new(())) }
    });
    let layer = monitor
        .layer("app")
        .expect("registered")
        .hold(Duration::from_secs(30));
    let response = layer
        .layer(inner)
        .oneshot(Request::new(()))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let ready = ready_at
        .lock()
        .expect("not poisoned")
        .expect("the backend started");
    let forwarded = forwarded_at
        .lock()
        .expect("not poisoned")
        .expect("forwarded");
    let (woken_at, probes_before) = woken.lock().expect("not poisoned").expect("on_down ran");
    // Probes while Starting: from on_down to the forward (the last one is the one that saw it up).
    let starting = forwarded.duration_since(woken_at).as_secs_f64();
    let probes_starting = probes.load(Ordering::Relaxed) - probes_before;
    Run {
        boot,
        delay: forwarded.duration_since(ready),
        probes_per_second: probes_starting as f64 / starting.max(0.001),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass nothing: run either way.
    let runs: usize = std::env::var("COLD_STARTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64 | 1);
    let mut random = Random(seed);
    let mut delays = Vec::with_capacity(runs);
    let mut worst_rate: f64 = 0.0;
    println!("cold_start: {runs} runs, boot 0.2–5 s");
    for i in 0..runs {
        let boot = random.between(Duration::from_millis(200), Duration::from_secs(5));
        let run = runtime.block_on(cold_start(boot));
        println!(
            "  run {:>3}: boot {:>6.0} ms, forwarded {:>5.1} ms after the backend could accept, {:.1} probes/s",
            i + 1,
            run.boot.as_secs_f64() * 1e3,
            run.delay.as_secs_f64() * 1e3,
            run.probes_per_second
        );
        worst_rate = worst_rate.max(run.probes_per_second);
        delays.push(run.delay);
    }
    delays.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = delays[delays.len() / 2];
    let max = delays[delays.len() - 1];
    let mean = delays.iter().sum::<Duration>() / delays.len() as u32;
    println!(
        "cold_start: delay median {:.1} ms (goal ≤ 40), mean {:.1} ms, max {:.1} ms (goal ≤ 100); probes/s at most {:.1} (goal ≤ 20)",
        ms(median),
        ms(mean),
        ms(max),
        worst_rate
    );
}
