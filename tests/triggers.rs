//! Each trigger kind, against real programs and local servers on 127.0.0.1.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::any;
use common::*;
use tower_monitor::trigger::{
    self, Command, CommandError, Compound, Delay, RateLimit, RateLimited, Webhook, WebhookError,
};
use tower_monitor::{BoxError, Trigger, Url};

#[tokio::test]
async fn command_success() {
    let _logs = logs(tracing::Level::WARN);
    Command::new("true").trigger().await.unwrap();
}

#[tokio::test]
async fn command_failure_carries_the_status_and_stderr_tail() {
    let _logs = logs(tracing::Level::WARN);
    let err = Command::new("sh")
        .args(["-c", "echo first >&2; echo last words >&2; exit 3"])
        .trigger()
        .await
        .unwrap_err();
    let err = err.downcast::<CommandError>().unwrap();
    assert!(matches!(*err, CommandError::Exit { ref status, .. } if status.code() == Some(3)));
    let text = err.to_string();
    assert!(
        text.contains("exit status: 3") && text.contains("last words"),
        "{text}"
    );
}

#[tokio::test]
async fn command_that_cannot_start_names_the_program() {
    let _logs = logs(tracing::Level::WARN);
    let err = Command::new("no-such-program-here")
        .trigger()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-program-here"), "{err}");
}

#[tokio::test]
async fn command_over_its_timeout_is_killed_and_fails() {
    let _logs = logs(tracing::Level::WARN);
    let started = Instant::now();
    let err = Command::new("sleep")
        .arg("30")
        .timeout(Duration::from_millis(200))
        .trigger()
        .await
        .unwrap_err();
    assert!(matches!(
        *err.downcast::<CommandError>().unwrap(),
        CommandError::Timeout { .. }
    ));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn detached_command_returns_once_started() {
    let _logs = logs(tracing::Level::WARN);
    let marker =
        std::env::temp_dir().join(format!("tower-monitor-detached-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    Command::new("sh")
        .args(["-c", &format!("sleep 0.3; touch {}", marker.display())])
        .detached()
        .trigger()
        .await
        .unwrap();
    assert!(!marker.exists(), "the trigger did not wait for the program");
    // The program goes on by itself and finishes its work.
    let give_up = Instant::now() + Duration::from_secs(10);
    while !marker.exists() && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(marker.exists());
    let _ = std::fs::remove_file(&marker);
}

fn recording(log: &Arc<Mutex<Vec<&'static str>>>, name: &'static str, fail: bool) -> impl Trigger {
    let log = log.clone();
    trigger::from_fn(move || {
        log.lock().unwrap().push(name);
        async move {
            if fail {
                Err::<(), BoxError>(format!("{name} failed").into())
            } else {
                Ok(())
            }
        }
    })
}

#[tokio::test]
async fn compound_runs_in_order_and_stops_at_the_first_failure() {
    let _logs = logs(tracing::Level::WARN);
    let log = Arc::new(Mutex::new(Vec::new()));
    let ok = Compound::new()
        .then(recording(&log, "a", false))
        .then(recording(&log, "b", false));
    ok.trigger().await.unwrap();
    assert_eq!(*log.lock().unwrap(), ["a", "b"]);

    log.lock().unwrap().clear();
    let failing = Compound::new()
        .then(recording(&log, "a", false))
        .then(recording(&log, "b", true))
        .then(recording(&log, "c", false));
    let err = failing.trigger().await.unwrap_err();
    assert_eq!(err.to_string(), "b failed");
    assert_eq!(*log.lock().unwrap(), ["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn delay_rearms_and_runs_once() {
    let _logs = logs(tracing::Level::WARN);
    let runs = counter();
    let delay = Delay::new(
        Duration::from_secs(5),
        counting_trigger(runs.clone(), false),
    );
    delay.trigger().await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    delay.trigger().await.unwrap(); // re-arms: now due at 9 s
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(count(&runs), 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(&runs), 1);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(count(&runs), 1, "no call, no further run");
}

/// A delayed trigger that hangs is dropped at its timeout (nobody waits for it, so without a bound
/// each expiry would leave one more run behind), and one that panics is logged; neither stops the
/// next expiry from running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_bounds_a_hung_run_and_logs_a_panicking_one() {
    // Global (as for every test of this binary): the run is spawned on the runtime's threads.
    let logs = logs(tracing::Level::WARN);

    /// Sends on its channel when dropped: the hung run was dropped.
    struct DropSignal(Option<tokio::sync::oneshot::Sender<()>>);
    impl Drop for DropSignal {
        fn drop(&mut self) {
            if let Some(sender) = self.0.take() {
                let _ = sender.send(());
            }
        }
    }
    let (dropped_tx, dropped) = tokio::sync::oneshot::channel();
    let dropped_tx = Arc::new(Mutex::new(Some(dropped_tx)));
    let hung = Delay::new(
        Duration::from_millis(10),
        trigger::from_fn(move || {
            let signal = DropSignal(dropped_tx.lock().unwrap().take());
            async move {
                let _signal = signal;
                std::future::pending::<Result<(), BoxError>>().await
            }
        }),
    )
    .timeout(Duration::from_millis(100));
    hung.trigger().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), dropped)
        .await
        .expect("the hung run is dropped at its timeout")
        .unwrap();
    until(
        Duration::from_secs(5),
        "the timeout logged",
        || logs.text(),
        |text| text.contains("delayed trigger timed out"),
    )
    .await;

    let (ran_tx, mut ran) = tokio::sync::mpsc::unbounded_channel();
    let panicking = Delay::new(
        Duration::from_millis(10),
        trigger::from_fn(move || {
            let _ = ran_tx.send(());
            async { panic!("trigger bug") as Result<(), BoxError> }
        }),
    );
    for _ in 0..2 {
        panicking.trigger().await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), ran.recv())
            .await
            .expect("each expiry runs the trigger");
    }
    until(
        Duration::from_secs(5),
        "the panic logged",
        || logs.text(),
        |text| text.contains("delayed trigger panicked"),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn rate_limit_allows_n_per_sliding_window() {
    let _logs = logs(tracing::Level::WARN);
    let runs = counter();
    let limited = RateLimit::new(
        2,
        Duration::from_secs(10),
        counting_trigger(runs.clone(), false),
    );
    limited.trigger().await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    limited.trigger().await.unwrap();
    let err = limited.trigger().await.unwrap_err();
    assert!(err.downcast_ref::<RateLimited>().is_some(), "{err}");
    assert!(err.to_string().contains("at most 2 runs"), "{err}");
    tokio::time::sleep(Duration::from_secs(5)).await; // the first run left the window
    limited.trigger().await.unwrap();
    assert!(limited.trigger().await.is_err());
    assert_eq!(count(&runs), 3);
}

#[derive(Default)]
struct Seen {
    method: Option<Method>,
    token: Option<String>,
    body: Vec<u8>,
}

async fn webhook_server() -> (Server, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    let router = Router::new()
        .route(
            "/ok",
            any(move |method: Method, headers: HeaderMap, body: Bytes| {
                let mut seen = record.lock().unwrap();
                seen.method = Some(method);
                seen.token = headers
                    .get("x-token")
                    .map(|v| v.to_str().unwrap().to_string());
                seen.body = body.to_vec();
                async { StatusCode::NO_CONTENT }
            }),
        )
        .route("/fail", any(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route(
            "/slow",
            any(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                StatusCode::OK
            }),
        );
    (serve(router).await, seen)
}

fn hook(server: &Server, path: &str) -> Webhook {
    Webhook::new(
        Method::PUT,
        Url::parse(&format!("http://{}{path}", server.addr)).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn webhook_2xx_succeeds_and_sends_method_headers_and_body() {
    let _logs = logs(tracing::Level::WARN);
    let (server, seen) = webhook_server().await;
    hook(&server, "/ok")
        .header("x-token", "t0k3n")
        .unwrap()
        .body("wake up")
        .trigger()
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.method, Some(Method::PUT));
    assert_eq!(seen.token.as_deref(), Some("t0k3n"));
    assert_eq!(seen.body, b"wake up");
}

#[tokio::test]
async fn webhook_non_2xx_fails_with_the_status() {
    let _logs = logs(tracing::Level::WARN);
    let (server, _) = webhook_server().await;
    let err = hook(&server, "/fail").trigger().await.unwrap_err();
    let err = err.downcast::<WebhookError>().unwrap();
    assert!(
        matches!(*err, WebhookError::Status { status, .. } if status == StatusCode::SERVICE_UNAVAILABLE)
    );
}

#[tokio::test]
async fn webhook_without_an_answer_times_out() {
    let _logs = logs(tracing::Level::WARN);
    let (server, _) = webhook_server().await;
    let started = Instant::now();
    let err = hook(&server, "/slow")
        .timeout(Duration::from_millis(200))
        .trigger()
        .await
        .unwrap_err();
    assert!(matches!(
        *err.downcast::<WebhookError>().unwrap(),
        WebhookError::Timeout { .. }
    ));
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test(start_paused = true)]
async fn delay_of_duration_max_means_never() {
    let _logs = logs(tracing::Level::WARN);
    let runs = counter();
    let forever = Delay::new(Duration::MAX, counting_trigger(runs.clone(), false));
    forever
        .trigger()
        .await
        .expect("arming a very long delay succeeds");
    forever.trigger().await.expect("and re-arming it too");
    tokio::time::sleep(Duration::from_secs(10 * 365 * 24 * 3600)).await;
    assert_eq!(count(&runs), 0, "a delay of Duration::MAX never passes");
}

#[tokio::test]
async fn rate_limit_with_a_huge_max_runs_allocates_nothing_up_front() {
    let _logs = logs(tracing::Level::WARN);
    // Both once aborted the process: a 608 GB `VecDeque::with_capacity`, or "capacity overflow".
    for max_runs in [38_007_346_618, usize::MAX] {
        let runs = counter();
        let limited = RateLimit::new(
            max_runs,
            Duration::from_secs(3600),
            counting_trigger(runs.clone(), false),
        );
        for _ in 0..3 {
            limited.trigger().await.unwrap();
        }
        assert_eq!(count(&runs), 3);
    }
}
