//! A backend program that exits before it comes up ends its start at once, and a held
//! request does not start it again in a loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, StatusCode};
use tower::ServiceExt;
use tower_monitor::trigger::{Process, Supervisor};
use tower_monitor::{MinMonitor, MonitoredService, ServiceState, Url};

use crate::process_support::{record_logs, scratch};
use crate::{free_addr, lines};

/// A program that notes its start in `starts` and exits 3 at once, as one with a bad flag.
fn exits_at_once(starts: &std::path::Path) -> tower_monitor::trigger::ProcessBuilder {
    Process::builder("sh").args([
        "-c".to_string(),
        format!("echo started >> '{}'; exit 3", starts.display()),
    ])
}

type App =
    tower::util::BoxCloneService<Request<Body>, http::Response<Body>, std::convert::Infallible>;

/// A service started by `on_down` (start timeout 60 s) behind the layer, holding requests for
/// `hold` if given.
async fn app(
    on_down: impl tower_monitor::Trigger,
    hold: Option<Duration>,
) -> (Arc<MinMonitor>, App) {
    let url = Url::parse(&format!("http://{}/", free_addr().await)).unwrap();
    let monitor = Arc::new(MinMonitor::new());
    monitor
        .add(
            "app",
            MonitoredService::new(url, Duration::from_secs(30))
                .on_down(on_down)
                .start_timeout(Duration::from_secs(60)),
        )
        .unwrap();
    let mut layer = monitor.layer("app").unwrap();
    if let Some(max_wait) = hold {
        layer = layer.hold(max_wait);
    }
    let app = tower::ServiceBuilder::new()
        .layer(layer)
        .service_fn(|_: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::from("ok")))
        })
        .map_response(|response| response.map(Body::new));
    (monitor, tower::util::BoxCloneService::new(app))
}

async fn status(app: &App) -> StatusCode {
    let request = Request::get("/").body(Body::empty()).unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_exits_before_it_comes_up_ends_the_start_at_once() {
    record_logs();
    let dir = scratch("early-exit");
    let starts = dir.join("starts");
    let supervisor = Supervisor::new();
    let (monitor, app) = app(supervisor.supervise(exits_at_once(&starts)), None).await;

    assert_eq!(status(&app).await, StatusCode::SERVICE_UNAVAILABLE);
    // Bounded look at the state (no event to await from outside): far less than the start
    // timeout of 60 s, which would end the start otherwise.
    let give_up = Instant::now() + Duration::from_secs(10);
    while monitor.state("app").unwrap() != ServiceState::Down {
        assert!(Instant::now() < give_up, "still {:?}", monitor.state("app"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lines(&starts).len(), 1);
    // The next request starts it again.
    assert_eq!(status(&app).await, StatusCode::SERVICE_UNAVAILABLE);
    let give_up = Instant::now() + Duration::from_secs(10);
    while lines(&starts).len() < 2 {
        assert!(Instant::now() < give_up, "not started again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    supervisor.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_starts_a_program_that_exits_at_once_again_but_not_in_a_loop() {
    record_logs();
    let dir = scratch("early-exit-held");
    let starts = dir.join("starts");
    let supervisor = Supervisor::new();
    let backend = supervisor.supervise(exits_at_once(&starts));
    // Started again about once a second while held: without the pause between starts, a
    // program that exits at once would have been started hundreds of times.
    let started = starts_while_held(backend, &starts).await;
    assert!((2..=4).contains(&started), "started {started} times");
    supervisor.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Holds one request for up to 2.5 s (or until a pause after failed starts outlasts that) while `on_down` starts the program that notes its starts
/// in `starts`; how many times it started.
async fn starts_while_held(
    on_down: impl tower_monitor::Trigger,
    starts: &std::path::Path,
) -> usize {
    let (_monitor, app) = app(on_down, Some(Duration::from_millis(2_500))).await;
    let asked = Instant::now();
    // 500 once the pause after the third failed start (2 s) outlasts the wait; 504 at the
    // wait's end should the third not have come by then (a slow machine).
    let answered = status(&app).await;
    assert!(
        [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::GATEWAY_TIMEOUT
        ]
        .contains(&answered),
        "{answered}"
    );
    assert!(asked.elapsed() < Duration::from_secs(10));
    lines(starts).len()
}

/// `on_down` runs the program, then a short command: by the time it returns, the program has
/// ended already, so the start ends as soon as it is watched, maybe before the held request
/// looks at the state again. It must still wait before starting the program again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_has_ended_by_the_time_on_down_returns_is_not_retried_in_a_loop() {
    record_logs();
    use tower_monitor::trigger::{Command, Compound};

    let dir = scratch("early-exit-compound");
    let starts = dir.join("starts");
    let supervisor = Supervisor::new();
    let on_down = Compound::new()
        .then(supervisor.supervise(exits_at_once(&starts)))
        .then(Command::new("sh").args(["-c", "sleep 0.05"]));
    // Once a second, as when the program's end comes after on_down has returned; a start
    // every 50 ms (the command's run) would be about 50.
    let started = starts_while_held(on_down, &starts).await;
    assert!((2..=4).contains(&started), "started {started} times");
    supervisor.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// What `Process` tells the start watch: nothing for a program run under another supervisor's
/// lock file; the running program's exit when a trigger found it running; the same through a
/// `Compound` with a command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_told_is_the_end_of_the_program_this_supervisor_runs() {
    record_logs();
    use futures::FutureExt;
    use tower_monitor::Trigger;
    use tower_monitor::trigger::{Command, Compound};

    let dir = scratch("ended-told");
    let lock = dir.join("backend.lock");
    let sleeper = || Process::builder("sleep").arg("30").lock_file(&lock).build();
    let other = sleeper();
    other.start().unwrap();
    let ours = sleeper();
    ours.trigger().await.unwrap();
    assert_eq!(ours.starts(), 0, "runs under the other's lock");
    assert!(
        ours.ended().is_none(),
        "the other's program: its end is not seen here"
    );
    other.stop().await.unwrap();

    ours.trigger().await.unwrap();
    ours.trigger().await.unwrap();
    assert_eq!(ours.starts(), 1, "the second trigger found it running");
    let mut ended = ours.ended().expect("its own program");
    let compound = Compound::new()
        .then(Command::new("true"))
        .then(ours.clone());
    compound.trigger().await.unwrap();
    assert_eq!(ours.starts(), 1);
    let mut compound_ended = compound.ended().expect("its process's end");
    assert!((&mut ended).now_or_never().is_none(), "still running");
    assert!(
        (&mut compound_ended).now_or_never().is_none(),
        "still running"
    );
    ours.stop().await.unwrap();
    let within = Duration::from_secs(5);
    tokio::time::timeout(within, ended).await.expect("its exit");
    tokio::time::timeout(within, compound_ended)
        .await
        .expect("its exit, through the compound");
}
