//! The atomics the lock-free parts use: loom's under `cfg(loom)`, so the model checker can
//! explore their interleavings, and std's otherwise.

#[cfg(loom)]
pub(crate) use loom::sync::atomic;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic;
