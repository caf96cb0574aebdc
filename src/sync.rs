//! The synchronisation types of the lock-free parts: std's, or loom's when model checking.
//!
//! Code whose interleavings a loom model checks takes its atomics, `Arc` and `Mutex` from here
//! instead of `std::sync`; built with `--cfg loom` they are loom's, which lets a model explore
//! every interleaving (and memory ordering) of the threads it starts.
//!
//! # Running the models
//!
//! ```text
//! cargo rustc --lib --profile test -- --cfg loom   # build the unit tests with cfg(loom)
//! target/debug/deps/tower_monitor-<hash> loom_     # run only the models
//! ```
//!
//! `.ci/run` does both (it reads the test binary's path from cargo's JSON messages). The cfg
//! goes to this crate alone, through `cargo rustc`: `RUSTFLAGS="--cfg loom"` would reach every
//! dependency too, and Tokio's own `cfg(loom)` code does not build outside Tokio's test setup.
//! `loom` is a plain dev-dependency for the same reason: a `[target.'cfg(loom)']` table is only
//! selected by `RUSTFLAGS`. Under `cfg(loom)` the other unit tests build but must not run (loom
//! types panic outside a model), hence the `loom_` filter.
//!
//! # Adding a model
//!
//! 1. Keep the protocol you want checked in a small type that uses only `crate::sync` types and
//!    no Tokio (as `deadline::state::DeadlineState` and `single_flight::slot::Slot` do), and
//!    make the Tokio-facing type a thin wrapper around it.
//! 2. Next to it, add `#[cfg(all(test, loom))] mod loom_models { .. }` with `#[test] fn
//!    loom_..()` functions, each calling `loom::model(|| { .. })`: start at most three threads
//!    with `loom::thread::spawn`, join them, then assert the invariant. State the invariant in
//!    a comment on the model, and check it fails on a version of the code with the bug.
//! 3. Keep each model small: `LOOM_MAX_PREEMPTIONS` (3 in `.ci/run`) bounds the search; a model
//!    should finish in seconds.

#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, atomic};

#[cfg(not(loom))]
#[allow(
    unused_imports,
    reason = "`Arc` is here for the models and the code they check"
)]
pub(crate) use std::sync::{Arc, Mutex, atomic};

/// Locks `mutex` (a std one, whatever the `loom` cfg) whose data is consistent between
/// statements: a panic elsewhere while it was held spoils nothing, so its poison is ignored.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
