//! One pool used from several runtimes, one of which ends while the others go on (a library
//! user's server with a runtime per thread, and a proxy shared by them): what the ended runtime
//! made must not break the pool for the others.

use super::*;

/// A runtime that serves the backend and outlives the test's other runtimes.
fn serving() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// A runtime that ends during the test.
fn passing() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Waits until `count` connections are back on the stack: nothing announces the push, which
/// on a runtime other than the connection's may come after the answer's end (bounded).
async fn until_idle(pool: &Pool<Full<Bytes>>, count: usize) {
    let give_up = Instant::now() + BOUND;
    while pool.shared.lock().connections.len() != count {
        assert!(Instant::now() < give_up, "the connection never came back");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A runtime serving the backend, and a pool with one connection kept, dialled (and so run) on
/// that runtime.
fn one_kept_connection() -> (tokio::runtime::Runtime, Backend, Pool<Full<Bytes>>) {
    let serving = serving();
    let backend = serving.block_on(backend(Mode::KeepAlive));
    let pool = pool(&backend, Duration::from_secs(15));
    serving.block_on(async {
        assert_eq!(hello(&pool, &backend).await, "hello");
        until_idle(&pool, 1).await;
    });
    (serving, backend, pool)
}

/// A request on the kept connection (on the busy path, which arms its response timer) is
/// answered `hello`.
async fn hello_on_the_kept_connection(pool: &Pool<Full<Bytes>>, backend: &Backend) {
    let (outcome, _) = exchange(pool, backend, "/", BOUND).await;
    let Outcome::Answered(response) = outcome else {
        panic!("no answer on the kept connection");
    };
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "hello"
    );
}

/// A kept connection's response timer was made by the first request that waited on it; made
/// on a runtime that then ended, while the connection's own runtime went on, the next request
/// on the connection polled a timer of a runtime shut down, which panics.
#[test]
fn a_connection_a_request_of_an_ended_runtime_used_still_serves_the_others() {
    // Dialled here: the connection's task runs on `serving`.
    let (serving, backend, pool) = one_kept_connection();
    let passing = passing();
    passing.block_on(async {
        hello_on_the_kept_connection(&pool, &backend).await;
        until_idle(&pool, 1).await;
    });
    drop(passing);
    serving.block_on(async {
        hello_on_the_kept_connection(&pool, &backend).await;
    });
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 1, "one connection");
}

/// The pool's idle timer runs as a task of the runtime that put a connection back first; that
/// runtime ended, the task went with it, and the pool, taking it for running, started none
/// again: no idle connection was ever closed after.
#[test]
fn idle_connections_are_closed_after_the_runtime_of_the_idle_timer_ended() {
    let serving = serving();
    let mut backend = serving.block_on(backend(Mode::KeepAlive));
    let pool = pool(&backend, Duration::from_millis(200));
    let passing = passing();
    passing.block_on(async {
        assert_eq!(hello(&pool, &backend).await, "hello");
        until_idle(&pool, 1).await;
    });
    // The connection's task ends with its runtime, and closes it.
    drop(passing);
    serving.block_on(async {
        tokio::time::timeout(BOUND, backend.closed_by_proxy.recv())
            .await
            .expect("the ended runtime's connection was not closed");
        assert_eq!(hello(&pool, &backend).await, "hello");
        tokio::time::timeout(BOUND, backend.closed_by_proxy.recv())
            .await
            .expect("the idle connection was never closed");
    });
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 2);
}

/// A connection put back where no runtime is current (a response body read to its end by
/// another executor, on a thread of the user's) cannot start the idle timer, so it is not
/// kept; the timer task that could not be spawned is dropped, and that drop must not wait for
/// the pool's lock the put holds.
#[test]
fn a_connection_put_back_outside_any_runtime_is_not_kept_and_blocks_nothing() {
    let (serving, _backend, pool) = one_kept_connection();
    let connection = pool
        .shared
        .take_idle(Instant::now())
        .expect("the connection is kept");
    // The stack is empty: the put back must start a timer.
    pool.shared.lock().timer = false;
    let (done, put) = std::sync::mpsc::channel();
    let shared = Arc::clone(&pool.shared);
    std::thread::spawn(move || {
        shared.push(connection);
        let _ = done.send(());
    });
    if put.recv_timeout(BOUND).is_err() {
        // The put holds the pool's lock for ever, and the runtime's shutdown would wait for
        // it too (its idle timer task takes the lock when dropped): the test fails, not hangs.
        std::mem::forget(serving);
        panic!("putting a connection back outside a runtime hung");
    }
    let idle = pool.shared.lock();
    assert_eq!(idle.connections.len(), 0, "kept with no timer to close it");
    assert!(!idle.timer, "a timer taken for running");
}
