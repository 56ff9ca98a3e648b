//! Model monitoring per variant: what a variant's inputs and predictions look like against
//! a reference, window by window.
//!
//! * [`payload`]: inference bodies (MLflow, KServe v1 and v2, or a configured JSON pointer)
//!   read into rows of named columns and predictions;
//! * [`mod@column`]: one column's reference (decile bins or categories, a reservoir for KS) and
//!   its live window, kept as bin counts per sub-window and a reservoir of rows;
//! * [`drift`]: a variant's columns together, and the PSI, KS and chi-square of a window.
//!
//! No I/O and no clock of its own: callers hand in rows and the time, so every rule is
//! tested with the numbers it promises.

#![forbid(unsafe_code)]

pub mod column;
pub mod drift;
pub mod payload;
