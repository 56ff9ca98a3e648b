//! # cohort
//!
//! An A/B traffic-splitting reverse proxy for ML model variants.
//!
//! ## The request's path
//!
//! ```text
//! accept → match route → identify unit → assign variant → forward (streamed) → observe → record
//!          config/       assign::unit     assign           proxy/               proxy/     events/
//! ```
//!
//! ## Layout
//!
//! * [`config`]: routes.yaml → validated, compiled, immutable [`config::Routes`]. The hot path
//!   reads it through one `ArcSwap`; nothing in it does I/O.
//! * [`assign`]: stable bucketing (XXH3-64 into 100 000 buckets), the lane layout that keeps
//!   ramps safe, and unit-id extraction. Pure, golden-vector tested.
//! * [`compare`]: what a config change does to units — the moves between variants over
//!   the whole bucket space, and whether they amount to a reshuffle. Behind
//!   `cohort check NEW --against OLD` and (with hot reload) behind every reload.
//! * [`live`]: the table in force, one `ArcSwap`; a request loads it once and keeps it.
//! * [`proxy`]: the data plane (hyper 1.x): route, unit, assignment, streamed forwarding,
//!   header hygiene, JSON errors. [`request_id`]: cohort's self-describing request ids.
//! * [`server`]: the accept loop both listeners share: limits, graceful shutdown.
//! * [`admin`]: probes, metrics, the read API, and the token-protected control plane.
//! * [`reload`]: hot reload (file watch, SIGHUP, admin), refusing bad files and reshuffles;
//!   [`runtime`]: runtime weights persisted in the state file.
//! * [`events`]: the outcome log (schema v1, writer thread, reader, conversions, live counts).
//! * [`metrics`]: every Prometheus family, with per-variant handles resolved at compile time.
//! * [`stats`]: the statistics, pure functions checked against statsmodels, scipy and
//!   gbstats fixtures, and the decision rule.
//! * [`analysis`]: event log → per-unit tally (any order, mergeable) → counted population →
//!   report; the same code behind `cohort report` and the live admin view.
//! * [`report`]: a report as text, Markdown, or one self-contained HTML page with SVG charts.
//! * [`demo`]: built-in model backends and simulated users for `cohort demo`.
//! * [`cli`]: the bodies of the `cohort` subcommands; `main.rs` only parses arguments.

pub mod admin;
pub mod analysis;
pub mod assign;
pub mod cli;
pub mod clock;
pub mod compare;
pub mod config;
pub mod demo;
pub mod events;
pub mod live;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod report;
pub mod request_id;
pub mod runtime;
pub mod server;
pub mod stats;
pub mod workers;
