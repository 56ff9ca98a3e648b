//! The life of one request, as named phases over one context, the [`Exchange`]:
//!
//! ```text
//! route ─▶ rewrite ─▶ send ─▶ upgrade ─▶ respond ─▶ record
//! ```
//!
//! * [`route`]: match the route, identify the unit, assign the variant, mint the request id;
//! * [`rewrite`]: the upstream URI, header hygiene, forwarding headers, protocol;
//! * [`send`]: the upstream call through this worker's client, bounded by the timeouts;
//! * [`upgrade`]: a WebSocket's two halves joined once the upstream switched protocols;
//! * [`respond`]: the client's response: cohort's headers, the unit cookie, the idle timeout;
//! * [`record`]: metrics and the exposure event, written when the response ends.
//!
//! Each phase is a plain function with a doc comment saying what it reads and changes.
//! The exchange is filled in as the phases run (the route, then the pick); an error in any
//! phase is a [`ProxyError`] carrying what is known by then, and the record phase counts
//! the request either way. Bodies are never collected: a feature that needs their bytes
//! taps them ([`crate::tap`]).

pub mod record;
pub mod respond;
pub mod rewrite;
pub mod route;
pub mod send;
pub mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, StatusCode};

use crate::errors::ProxyError;
use crate::serving::{Serving, VariantHandles};
use cohort_config::{Experiment, Route, Variant};

/// What one request carries through its phases.
pub struct Exchange {
    /// The table the request is served by, start to end, whatever reloads meanwhile.
    pub serving: Arc<Serving>,
    pub peer: SocketAddr,
    /// A gRPC request: cohort's own errors are answered as gRPC.
    pub grpc: bool,
    /// When the request arrived: for latencies, and (as wall time) for the exposure.
    pub start: Instant,
    pub arrival: SystemTime,
    /// The client's `Host` (HTTP/1) or `:authority` (HTTP/2), as it came (set by [`route`]).
    pub host: Option<HeaderValue>,
    /// The index of the matched route (set by [`route`]).
    pub route: Option<usize>,
    /// The variant and identity of the request (set by [`route`]).
    pub pick: Option<Pick>,
    /// Time from arrival to the upstream's response head (set by [`send`]).
    pub head: Option<Duration>,
    /// A call sampled for model monitoring: its bodies are copied as they pass (set
    /// between [`route`] and [`rewrite`]).
    pub capture: Option<Arc<crate::capture::Slot>>,
    /// The copies of this request for the experiment's shadows (set between [`route`] and
    /// [`rewrite`]).
    pub shadow: Option<Arc<crate::shadow::Call>>,
}

/// The variant a request was assigned, and who it is.
pub struct Pick {
    pub variant: usize,
    /// None when served by the control without a unit id.
    pub unit: Option<String>,
    /// The unit id was minted here (`on_missing_unit: generate`): the response sets it.
    pub generated: bool,
    /// Forced by an allowed `x-cohort-variant` header.
    pub forced: bool,
    /// cohort's request id, as sent upstream and back.
    pub request_id: HeaderValue,
    pub client_request_id: Option<HeaderValue>,
}

/// The route, experiment, variant and per-variant handles of a routed request.
pub struct Target<'a> {
    pub route: &'a Route,
    pub experiment: &'a Experiment,
    pub variant: &'a Variant,
    pub handles: &'a VariantHandles,
    pub pick: &'a Pick,
}

impl Exchange {
    pub fn new(serving: Arc<Serving>, peer: SocketAddr, grpc: bool) -> Self {
        Self {
            serving,
            peer,
            grpc,
            start: Instant::now(),
            arrival: SystemTime::now(),
            host: None,
            route: None,
            pick: None,
            head: None,
            capture: None,
            shadow: None,
        }
    }

    /// Where a routed and assigned request goes; None before [`route`] has picked.
    pub fn target(&self) -> Option<Target<'_>> {
        let (r, pick) = (self.route?, self.pick.as_ref()?);
        let routes = &self.serving.routes;
        let route = &routes.routes[r];
        let experiment = &routes.experiments[route.experiment];
        Some(Target {
            route,
            experiment,
            variant: &experiment.variants[pick.variant],
            handles: &self.serving.by_route[r][pick.variant],
            pick,
        })
    }

    /// The request's tracing span, for what is logged about it.
    pub fn span(&self) -> tracing::Span {
        match self.target() {
            Some(t) => tracing::info_span!(
                "request",
                route = %t.route.name,
                experiment = %t.experiment.name,
                variant = %t.variant.name,
                request_id = t.pick.request_id.to_str().unwrap_or_default()
            ),
            None => tracing::Span::none(),
        }
    }

    /// An error, naming the experiment, variant and request id known so far.
    pub fn fail(&self, status: StatusCode, message: impl Into<String>) -> ProxyError {
        let routes = &self.serving.routes;
        let experiment = self
            .route
            .map(|r| &routes.experiments[routes.routes[r].experiment]);
        let pick = self.pick.as_ref();
        ProxyError {
            status,
            message: message.into(),
            experiment: experiment.map(|e| e.name.clone()),
            variant: experiment
                .zip(pick)
                .map(|(e, p)| e.variants[p.variant].name.clone()),
            request_id: pick.and_then(|p| p.request_id.to_str().ok().map(str::to_owned)),
        }
    }
}
