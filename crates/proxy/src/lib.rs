//! The data plane: the accept loop, a request's life as named phases, upstream clients and
//! pools, header hygiene, metrics.
//!
//! ```text
//! accept (server) → route → rewrite → send → upgrade → respond → record (phases)
//! ```
//!
//! One [`Proxy`] serves a listener; every request loads the serving table once from
//! [`live::Live`] and keeps it to the end, so a reload never changes a request midway.
//! Bodies stream both ways (hyper's `Incoming` is passed through, never collected); the one
//! place to observe their bytes is a [`tap::Tap`].
//!
//! Modules: [`server`] (accept loop, limits, graceful shutdown), [`protocol`] (HTTP/1.1 or
//! h2c, from a connection's first bytes), [`workers`] (one runtime
//! per serving thread), [`handler`] (the shared state and the run through the phases),
//! [`phases`], [`serving`] (the table plus per-variant clients and metric handles),
//! [`upstream`] and [`pool`] (clients), [`headers`] (hop-by-hop hygiene), [`errors`] (JSON and
//! gRPC error responses), [`idle`] (the mid-stream idle timeout), [`metrics`] (every
//! Prometheus family), [`request_id`], [`conversions`] (reported conversions), [`capture`] (the bodies of calls
//! sampled for model monitoring), [`shadow`] (copies of requests to shadow models, and
//! their answers compared), [`budget`] (a per-second budget).

#![forbid(unsafe_code)]
// The crate doc is the code map and names private modules too: read it with
// `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

mod ablate;
pub mod body;
mod budget;
pub mod capture;
pub mod conversions;
mod errors;
mod handler;
mod headers;
mod idle;
mod live;
pub mod metrics;
mod phases;
mod pool;
mod probe;
mod protocol;
pub mod request_id;
pub mod server;
mod serving;
pub mod shadow;
mod tap;
mod upstream;
pub mod workers;

pub use body::{json_response, Body, BoxError};
pub use handler::{Installer, Proxy};
pub use phases::respond::{
    X_COHORT_EXPERIMENT, X_COHORT_REQUEST_ID, X_COHORT_UNIT, X_COHORT_VARIANT,
};
pub use serving::{Serving, VariantHandles};
