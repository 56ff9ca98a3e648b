//! The bound on what waits in the spool: with shipping, the local log holds events until
//! the store has them, and `events.spool_max_bytes` caps how much of it may wait.
//!
//! The writer adds what it writes and the shipper sets the measured backlog after each
//! round, so the figure is exact at every round and never behind by more than what was
//! written since. Past the bound the writer drops exposures (counted, as for a full
//! channel) and the conversions endpoint answers 503, so that a conversion a client was
//! told about is never one the spool then has no room for.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// `events.spool_max_bytes` and the bytes not shipped yet.
#[derive(Debug)]
pub struct SpoolBound {
    max: u64,
    backlog: AtomicU64,
    /// Whether the writer last saw the spool full (to log each change once).
    was_full: AtomicBool,
}

impl SpoolBound {
    pub fn new(max: u64) -> SpoolBound {
        SpoolBound {
            max,
            backlog: AtomicU64::new(0),
            was_full: AtomicBool::new(false),
        }
    }

    /// The bound, in bytes.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Bytes not shipped yet, as last known.
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    /// True when the backlog has reached the bound.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.backlog() >= self.max
    }

    /// The writer appended `bytes`.
    pub fn wrote(&self, bytes: u64) {
        self.backlog.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The shipper measured the backlog (after a round).
    pub fn measured(&self, backlog: u64) {
        self.backlog.store(backlog, Ordering::Relaxed);
    }

    /// Whether the spool is full now, and whether that changed since the last call
    /// (for the one log line per change).
    pub fn check(&self) -> (bool, bool) {
        let full = self.is_full();
        let before = self.was_full.swap(full, Ordering::Relaxed);
        (full, full != before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_at_the_bound_and_each_change_reported_once() {
        let b = SpoolBound::new(100);
        assert_eq!(b.check(), (false, false));
        b.wrote(60);
        assert!(!b.is_full());
        b.wrote(40);
        assert!(b.is_full());
        assert_eq!(b.check(), (true, true));
        assert_eq!(b.check(), (true, false));
        b.measured(10);
        assert_eq!(b.check(), (false, true));
        assert_eq!(b.backlog(), 10);
    }
}
