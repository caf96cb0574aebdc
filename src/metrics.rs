//! Metrics recorded by the monitor, through the `metrics` facade.
//!
//! These are the crate's only recording points; the lifecycle, probes, triggers and the layer
//! call them at events (never once per cached-up request). Without the `metrics` feature each
//! is an empty inline function.
// Filled in by the observability work: names, labels and the recorder wiring.
#![allow(dead_code, unused_variables)]

use std::time::Duration;

/// A probe finished: `result` is "up", "down" or "error".
#[inline]
pub(crate) fn probe(service: &str, result: &'static str, took: Duration) {}

/// The service's state changed.
#[inline]
pub(crate) fn transition(service: &str, from: &'static str, to: &'static str) {}

/// A cold start ended: Starting lasted `took` before the backend came up.
#[inline]
pub(crate) fn cold_start(service: &str, took: Duration) {}

/// `on_down` ran (a wake).
#[inline]
pub(crate) fn wake(service: &str) {}

/// `on_idle` ran (an idle stop).
#[inline]
pub(crate) fn idle_stop(service: &str) {}

/// A trigger failed (or timed out, or panicked); `trigger` is "on_down", "on_idle", "on_up" or
/// "always".
#[inline]
pub(crate) fn trigger_failed(service: &str, trigger: &'static str) {}

/// A request was answered by the fallback; `reason` is "not_ready", "error" or "timeout".
#[inline]
pub(crate) fn fallback(service: &str, reason: &'static str) {}
