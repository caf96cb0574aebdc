//! The idle watch's count of requests in flight, on per-thread shards: what a request writes,
//! and what the looks and an idle stop read.
//!
//! Kept apart from the watch (its timer, its lock, its service) and built on `crate::sync`, so
//! that loom can race a request counting in against an idle stop through this very code (see
//! `registered::loom_models`).

#[cfg(all(not(loom), any(target_arch = "x86", target_arch = "x86_64")))]
use std::sync::atomic::compiler_fence;

use crate::sync::Arc;
use crate::sync::atomic::{AtomicBool, Ordering, fence};

/// A power of two of shards; a thread counts on the shard its index picks.
pub(crate) struct Shards(Box<[Arc<Shard>]>);

/// Requests in flight on one shard: as many as the references to it beyond the watch's own.
/// Aligned, so that two shards (written by different threads) never share a cache line.
#[repr(align(128))]
struct Shard {
    /// Set when a request ends; cleared by each look: "a request ended since the last look".
    ended: AtomicBool,
}

impl Shards {
    /// Enough shards that the threads of a default Tokio runtime (one per core) rarely share
    /// one, and a power of two so that picking one is a mask.
    pub(crate) fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(4, usize::from);
        Self::with_count((cores * 2).next_power_of_two().clamp(2, 64))
    }

    /// `count` shards (a power of two).
    pub(crate) fn with_count(count: usize) -> Self {
        debug_assert!(count.is_power_of_two());
        Self(
            (0..count)
                .map(|_| {
                    Arc::new(Shard {
                        ended: AtomicBool::new(false),
                    })
                })
                .collect(),
        )
    }

    /// A request starts; it stays counted until the returned guard drops.
    #[inline]
    pub(crate) fn enter(&self) -> InFlight {
        let shard = &self.0[thread_index() & (self.0.len() - 1)];
        // The shard's reference count is its count of requests in flight.
        let in_flight = InFlight(Arc::clone(shard));
        // Counted before the caller reads the cached up (see `active_since_look`): with the
        // stop's fence, a Dekker pair. On x86 the increment's locked instruction is a full
        // barrier already, but only in hardware: the language's model (the compiler's, and
        // loom's) lets the cache's relaxed load read a value older than the stop's clear
        // without a fence here. So the compiler is kept from moving that load above the
        // increment, and loom, which knows no locked instruction, checks the fence.
        #[cfg(any(loom, not(any(target_arch = "x86", target_arch = "x86_64"))))]
        fence(Ordering::SeqCst);
        #[cfg(all(not(loom), any(target_arch = "x86", target_arch = "x86_64")))]
        compiler_fence(Ordering::SeqCst);
        in_flight
    }

    /// Requests in flight now, summed over the shards.
    pub(crate) fn in_flight(&self) -> usize {
        let in_flight = self
            .0
            .iter()
            .map(|shard| Arc::strong_count(shard) - 1)
            .sum();
        // Pairs with the release of each guard's drop: a request seen ended here is ended.
        fence(Ordering::Acquire);
        in_flight
    }

    /// Whether a request ended since the last look; read, not cleared.
    pub(crate) fn ended(&self) -> bool {
        self.0
            .iter()
            .any(|shard| shard.ended.load(Ordering::Acquire))
    }

    /// Whether a request ended since the last look, cleared for the next: the look's.
    pub(crate) fn take_ended(&self) -> bool {
        self.0.iter().fold(false, |any, shard| {
            shard.ended.swap(false, Ordering::Acquire) | any
        })
    }

    /// Whether a request is in flight, or one ended, since the last look: checked by an idle
    /// stop once the cached up is forgotten, so a request that read it just before is seen.
    ///
    /// A request counts itself in (an atomic increment, then a fence, which on x86 the
    /// increment is in hardware) before it reads the cache, and the stop forgets the cache
    /// before it reads the counts: a request that read the cached up is always seen here.
    pub(crate) fn active_since_look(&self) -> bool {
        // The stop's transition and cache clear come before these loads.
        fence(Ordering::SeqCst);
        self.in_flight() > 0 || self.ended()
    }
}

/// This thread's index, handed out in order on first use, so that a runtime's worker threads
/// get different shards.
#[inline]
fn thread_index() -> usize {
    // A std atomic even under loom: which shard a thread counts on is no part of the protocol.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    // `try_with`: never a panic, even from a thread-local destructor (any shard is correct).
    INDEX.try_with(|index| *index).unwrap_or(0)
}

/// Counts one request as in flight while it lives.
pub(crate) struct InFlight(Arc<Shard>);

impl Drop for InFlight {
    #[inline]
    fn drop(&mut self) {
        // Before the count goes down (the `Arc` field drops after this, with release ordering):
        // a look that sees the count down also sees the flag. Written only when clear, so the
        // cache line is written at most once per look.
        let ended = &self.0.ended;
        if !ended.load(Ordering::Relaxed) {
            ended.store(true, Ordering::Release);
        }
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InFlight")
    }
}
