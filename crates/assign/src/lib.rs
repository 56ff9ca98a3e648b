//! Which variant a unit gets: a pure function of (unit id, salt, layout).
//!
//! * [`hash`]: the specified bucket function (XXH3-64, 100 000 buckets);
//! * [`layout`]: how shares become bucket ranges so that ramps move as few units as possible;
//! * [`mod@unit`]: finding the unit id in a request.
//!
//! Replicas agree without talking to each other because nothing here depends on anything
//! but its arguments; restarts keep every unit where it was for the same reason.

#![forbid(unsafe_code)]

pub mod hash;
pub mod layout;
pub mod unit;

pub use hash::BUCKETS;

/// The outcome of assigning one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Assignment {
    pub bucket: u32,
    /// Index into the experiment's variants.
    pub variant: usize,
}
