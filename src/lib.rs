//! # cohort
//!
//! An A/B traffic-splitting reverse proxy for ML model variants. This crate is the `cohort`
//! command: [`cli`] holds the body of each subcommand, [`demo`] the built-in model
//! backends and simulated users of `cohort demo`. The work is done by the workspace's
//! crates, each layer pointing only down:
//!
//! ```text
//! cohort (this crate: cli, demo)
//!   └─ cohort-control   reload, weight overrides, admin API and auth
//!        ├─ cohort-proxy     accept loop, request phases, upstream pools, headers, metrics
//!        └─ cohort-report    text, Markdown, HTML with SVG charts
//!             └─ cohort-analysis   tally → population → report numbers, live counts
//!                  ├─ cohort-stats     pure statistics and the decision rule
//!                  └─ cohort-events    the event line format, writer thread, reader
//!                       └─ cohort-config   routes.yaml → compiled table; what a change moves
//!                            └─ cohort-assign   bucket hash, lane layout, unit ids
//! cohort-sys: the few libc calls (the one crate allowed unsafe code)
//! ```

#![forbid(unsafe_code)]

pub mod cli;
pub mod demo;
