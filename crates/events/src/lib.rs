//! The outcome log: exposures and conversions as JSON Lines (event schema v1).
//!
//! ```text
//! handler ──record()──▶ bounded channel ──▶ writer thread ──▶ EventSink (segment files)
//!            (never blocks: full → counted in cohort_events_dropped_total)
//! ```
//!
//! * [`schema`]: the event types, the public contract (README, "Outcomes and the event log");
//! * [`writer`]: the writer thread, batching, fsync modes, write errors, and the
//!   [`writer::EventSink`] interface with the local segment log as its embedded default;
//! * [`reader`]: reading a directory back, skipping and counting malformed lines;
//! * [`spool`]: the bound on what waits to be shipped (`events.spool_max_bytes`).

#![forbid(unsafe_code)]
// The crate doc is the code map and names private modules too: read it with
// `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

pub mod clock;
pub mod reader;
pub mod scan;
mod schema;
pub mod spool;
pub mod writer;

pub use schema::{Conversion, Event, EventRef, Exposure, ExposureRef};
pub use spool::SpoolBound;
pub use writer::{EventLog, EventSink, LazyEvent, Observer, SegmentLog, WriterOptions};
