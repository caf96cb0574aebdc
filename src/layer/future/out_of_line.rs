//! What the response future owns out of line: its drop, on the cached-up path, is a few null
//! checks the compiler inlines.

use std::mem::ManuallyDrop;
use std::sync::Arc;

use crate::idle::InFlight;
use crate::layer::service::Guard;

/// What a cached-up future owns beside the inner future when the layer counts requests in
/// flight or checks inner answers, dropped out of line: once the answer came both are empty,
/// and dropping them is two null checks the compiler inlines. (One field for both, rather than
/// a state each: a fourth state made the compiler dispatch through a jump table, in `poll` and
/// in the drop.)
pub(super) struct Extras {
    /// Taken when the answer comes.
    pub(super) gone_check: ManuallyDrop<Option<Arc<Guard>>>,
    /// Moves into the response body, which holds it until the body ends.
    pub(super) in_flight: ManuallyDrop<Option<InFlight>>,
}

impl Extras {
    #[inline(never)]
    fn drop_values(&mut self) {
        // Both taken out first: if one's drop panics, the other still drops while unwinding.
        let (gone_check, in_flight) = (self.gone_check.take(), self.in_flight.take());
        drop(in_flight);
        drop(gone_check);
    }
}

impl Drop for Extras {
    #[inline]
    fn drop(&mut self) {
        if self.gone_check.is_some() || self.in_flight.is_some() {
            self.drop_values();
        }
    }
}

/// An optional value whose drop runs out of line: dropping an empty one is a null check.
///
/// The response future holds its boxed rare states in one, so that its own drop stays small
/// enough for the compiler to inline on the cached-up path; an `Option<T>` would put `T`'s
/// whole drop in it.
pub(super) struct OutOfLine<T>(ManuallyDrop<Option<T>>);

impl<T> OutOfLine<T> {
    #[inline]
    pub(super) fn new(value: Option<T>) -> Self {
        Self(ManuallyDrop::new(value))
    }

    #[inline]
    pub(super) fn as_mut(&mut self) -> Option<&mut T> {
        self.0.as_mut()
    }

    #[cfg(feature = "gateway")]
    pub(super) fn as_ref(&self) -> Option<&T> {
        self.0.as_ref()
    }

    #[inline(never)]
    fn drop_value(&mut self) {
        drop(self.0.take());
    }
}

impl<T> Drop for OutOfLine<T> {
    #[inline]
    fn drop(&mut self) {
        // Taken out, the value drops normally: the `ManuallyDrop` is left empty, nothing leaks.
        if self.0.is_some() {
            self.drop_value();
        }
    }
}
