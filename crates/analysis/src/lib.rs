//! From the outcome log to a report: the one analysis behind `cohort report` and the
//! admin API's live view, so that the two always agree on the same events.
//!
//! ```text
//! *.jsonl ──read (parallel, any order)──▶ Tally ──count(phase)──▶ Population ──build──▶ Report
//!                                          ▲                       │ walk (ts order):
//!       writer thread (live view) ─────────┘                       │ baseline, fixed
//!                                                                   ▼ decision, SRM, charts
//! ```
//!
//! * [`tally`]: per-unit state folded from events in any order (mergeable);
//! * [`read`]: reading event directories in parallel, `--since/--until` (the file set and
//!   the line format are [`cohort_events`]'s);
//! * [`versions`]: `config-versions.jsonl`, the shares in force when each unit arrived;
//! * [`rollout`]: `rollouts.jsonl`, the rollout's timeline, the actions behind share
//!   changes, and the rollback at which the comparison freezes;
//! * [`population`]: what counts — first exposure, crossovers, attribution;
//! * [`walk`]: the replay in `ts` order (frozen baseline, frozen fixed decision, SRM
//!   expectations, time series);
//! * [`report`]: every statistic, in the report JSON's shape (the math is in
//!   [`cohort_stats`]);
//! * [`series`]: the report's charts as numbers (renderers only draw them);
//! * [`counts`]: the live per-variant counts the event writer keeps, and the live report;
//! * [`monitoring`] and [`shadow`]: the report's sections from model monitoring's window
//!   lines and shadow traffic's compared copies.

#![forbid(unsafe_code)]
// The crate doc is the code map and names private modules too: read it with
// `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

mod analyze;
pub mod counts;
pub mod monitoring;
mod population;
pub mod read;
pub mod report;
pub mod rollout;
pub mod series;
pub mod shadow;
pub mod tally;
mod versions;
mod walk;

pub use analyze::{analyze, analyze_with, choose_phase, count, Counted, Setup};
pub use counts::LiveCounts;
pub use population::Population;
pub use report::Report;
pub use rollout::{Rollout, RolloutLog};
pub use tally::{ExperimentTally, Tally};
pub use versions::{ConfigVersions, Version};
