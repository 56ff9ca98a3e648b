//! The control plane: what changes the routing table in force, and the admin API.
//!
//! * [`reload`]: hot reload (file watch, SIGHUP, admin), refusing bad files and reshuffles;
//! * [`overrides`]: runtime weights, persisted in the state file;
//! * [`admin`]: probes, metrics, the read API (the live report: this replica's counts, or
//!   with shipping the fleet's from `cohort_clickhouse::live`), and the token-protected
//!   control calls;
//! * [`gauges`]: the live report's gauges on /metrics;
//! * [`rollout`]: rollouts' weights over the file, and the task that evaluates and acts;
//! * [`webhooks`]: rollout actions POSTed to receivers, signed, retried.

#![forbid(unsafe_code)]

pub mod admin;
pub mod gauges;
pub mod monitoring;
pub mod overrides;
pub mod reload;
pub mod rollout;
pub mod webhooks;
