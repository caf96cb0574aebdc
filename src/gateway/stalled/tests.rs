use super::*;
use http_body_util::BodyExt;
use tokio::time::{Instant, sleep_until};

const BOUND: Duration = Duration::from_secs(10);

/// An answer's body, endless or awaiting its backend for ever; held by the test's `Arc` so
/// that its drop shows.
struct Endless {
    _alive: Arc<()>,
    awaiting_backend: bool,
}

impl Body for Endless {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.awaiting_backend {
            Poll::Pending
        } else {
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"more")))))
        }
    }
}

fn watched(awaiting_backend: bool) -> (Arc<Stalled>, Watched<Endless>, Arc<()>) {
    let stalled = Arc::new(Stalled::default());
    let alive = Arc::new(());
    let body = Endless {
        _alive: Arc::clone(&alive),
        awaiting_backend,
    };
    let answer = stalled.watch(body);
    let watch = Arc::clone(&stalled);
    tokio::spawn(async move { watch.watch_every(BOUND).await });
    (stalled, answer, alive)
}

#[tokio::test(start_paused = true)]
async fn an_answer_the_client_stops_taking_is_released_within_one_and_a_half_bounds() {
    let (_stalled, mut answer, alive) = watched(false);
    // The client takes a frame every 3 s for 39 s (four looks' worth), then stops.
    for _ in 0..13 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let frame = answer.frame().await.expect("a frame").expect("data");
        assert!(frame.is_data());
    }
    let taken = Instant::now();
    sleep_until(taken + BOUND - Duration::from_millis(1)).await;
    assert_eq!(Arc::strong_count(&alive), 2, "released before the bound");
    sleep_until(taken + BOUND * 3 / 2 + Duration::from_millis(1)).await;
    assert_eq!(Arc::strong_count(&alive), 1, "still held after 1.5 bounds");
    // The client asking again finds the stream failed, not ended as if whole.
    assert!(answer.frame().await.expect("an error").is_err());
    assert!(!answer.is_end_stream());
}

#[tokio::test(start_paused = true)]
async fn an_answer_whose_client_never_took_a_frame_is_released_too() {
    let (_stalled, _answer, alive) = watched(false);
    sleep_until(Instant::now() + BOUND * 3 / 2 + Duration::from_millis(1)).await;
    assert_eq!(Arc::strong_count(&alive), 1);
}

#[tokio::test(start_paused = true)]
async fn an_answer_awaiting_its_backend_is_not_the_clients_stall() {
    let (stalled, mut answer, alive) = watched(true);
    // The client asks; the backend has nothing yet, for a long time.
    assert!(
        futures::FutureExt::now_or_never(answer.frame()).is_none(),
        "the backend has nothing to give"
    );
    tokio::time::sleep(BOUND * 10).await;
    assert_eq!(
        Arc::strong_count(&alive),
        2,
        "released while the backend was awaited"
    );
    assert_eq!(lock(&stalled.answers).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_big_frame_is_handed_in_pieces_and_the_answer_ends_after_the_last() {
    let stalled = Arc::new(Stalled::default());
    let whole = Bytes::from(vec![7u8; PIECE * 2 + 10]);
    let mut answer = stalled.watch(http_body_util::Full::new(whole.clone()));
    assert_eq!(answer.size_hint().exact(), Some(whole.len() as u64));
    let mut taken = Vec::new();
    while let Some(frame) = answer.frame().await {
        let data = frame.expect("data").into_data().expect("data");
        assert!(data.len() <= PIECE);
        taken.extend_from_slice(&data);
        assert_eq!(
            answer.is_end_stream(),
            taken.len() == whole.len(),
            "ends with its last piece, not before"
        );
        assert_eq!(
            answer.size_hint().exact(),
            Some((whole.len() - taken.len()) as u64)
        );
    }
    assert_eq!(taken, whole);
}

#[tokio::test(start_paused = true)]
async fn ended_answers_leave_the_watch() {
    let (stalled, answer, _alive) = watched(false);
    drop(answer);
    tokio::time::sleep(BOUND).await;
    assert!(lock(&stalled.answers).is_empty());
}
