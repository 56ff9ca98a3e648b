//! Record: what the request did, in the metrics and the outcome log.
//!
//! Reads the whole exchange and the response status; counts the request and its latency
//! (to the response head) in its variant's metrics, and hands its exposure to the event
//! log: at once for cohort's own answer, when the body ends for the upstream's (tapped,
//! so that a response the upstream breaks off mid-body is marked `aborted`; one the client
//! abandons is not, since the model answered it). Requests
//! without a pick (no route, no unit) count under the unrouted series and log nothing.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::Response;
use http_body::Body as HttpBody;
use http_body_util::BodyExt;

use super::{Exchange, Pick};
use crate::ablate::{off, Piece};
use crate::body::{Body, BoxError};
use crate::serving::Serving;
use crate::tap::{Ending, Tap, Tapped};
use cohort_events::{EventLog, EventRef, ExposureRef, LazyEvent};

/// The client's response, with the request counted and its exposure on its way. `resp` is
/// the upstream's response or cohort's own answer.
pub fn record<B>(
    ex: Exchange,
    resp: Result<Response<B>, Response<Body>>,
    events: Option<&EventLog>,
) -> Response<Body>
where
    B: HttpBody<Data = bytes::Bytes, Error = BoxError> + Send + Sync + Unpin + 'static,
{
    let status = match &resp {
        Ok(r) => r.status(),
        Err(r) => r.status(),
    }
    .as_u16();
    let handles = match (ex.route, &ex.pick) {
        (Some(r), Some(p)) => &ex.serving.by_route[r][p.variant].requests,
        _ => &ex.serving.unrouted,
    };
    // The time to the response head (the upstream's, or cohort's own answer): one clock
    // read serves the histogram and the exposure.
    let latency = ex.head.unwrap_or_else(|| ex.start.elapsed());
    if !off(Piece::Metrics) {
        handles.count(status);
        handles.duration.observe(latency.as_secs_f64());
    }
    let pending = match (events, ex.route, ex.pick) {
        (Some(log), Some(route), Some(pick)) => Some((
            log,
            Box::new(PendingExposure {
                serving: ex.serving,
                route,
                pick,
                arrival: ex.arrival,
                latency,
                status,
                aborted: false,
                ts: [0; 24],
                ts_ns: None,
            }),
        )),
        _ => None,
    };
    match (resp, pending) {
        // cohort's own answer: complete at once.
        (Err(resp), Some((log, pending))) => {
            log.record_lazy(pending);
            resp
        }
        (Err(resp), None) => resp,
        (Ok(resp), Some((log, pending))) if off(Piece::ResponseTap) => {
            log.record_lazy(pending);
            resp.map(|body| body.boxed())
        }
        // Written when the response ends: complete, or aborted mid-body.
        (Ok(resp), Some((log, pending))) => resp.map(|body| {
            Tapped::new(
                body,
                RecordExposure {
                    pending,
                    log: log.clone(),
                },
            )
            .boxed()
        }),
        (Ok(resp), None) => resp.map(|body| body.boxed()),
    }
}

/// The tap that writes a response's exposure when its body ends.
struct RecordExposure {
    pending: Box<PendingExposure>,
    log: EventLog,
}

impl Tap for RecordExposure {
    fn end(mut self, how: Ending) {
        // Only the upstream's break is the model's failure: a client that went away
        // (`Dropped`) leaves the exposure as the model answered it.
        if how == Ending::Failed {
            self.pending.set_aborted();
        }
        self.log.record_lazy(self.pending);
    }
}

/// A request's exposure as the handler knows it: indices into the table it was served by
/// and what the request already owned. The writer thread formats the timestamp and
/// serializes it as an exposure event straight from here, borrowing the names from the
/// table ([`ExposureRef`]): no copy of any name is made per event.
struct PendingExposure {
    serving: Arc<Serving>,
    route: usize,
    pick: Pick,
    arrival: SystemTime,
    latency: Duration,
    status: u16,
    aborted: bool,
    /// `arrival` as RFC 3339, filled in by the writer thread ([`LazyEvent::prepare`]).
    ts: [u8; 24],
    /// `arrival` in nanoseconds since the epoch, to the millisecond (as `ts` has it).
    ts_ns: Option<i64>,
}

impl LazyEvent for PendingExposure {
    fn prepare(&mut self) {
        self.ts = cohort_events::clock::rfc3339_bytes(self.arrival);
        // Millisecond precision, as written: the tally sees what a reader of the log sees.
        self.ts_ns = self
            .arrival
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_nanos()).ok())
            .map(|ns| ns - ns % 1_000_000);
    }

    fn view(&self) -> EventRef<'_> {
        let p = &self.pick;
        let route = &self.serving.routes.routes[self.route];
        let exp = &self.serving.routes.experiments[route.experiment];
        // Minted by cohort from validated names and hex: ASCII, checked as UTF-8 (a scan
        // several times cheaper than `to_str`'s byte-by-byte one).
        let request_id = std::str::from_utf8(p.request_id.as_bytes()).unwrap_or_default();
        EventRef::Exposure(ExposureRef {
            v: Some(1),
            ts: std::str::from_utf8(&self.ts).unwrap_or_default(),
            experiment: &exp.name,
            // A request without a unit is recorded under its request id, and marked.
            unit: p.unit.as_deref().unwrap_or(request_id),
            variant: &exp.variants[p.variant].name,
            request_id: Some(request_id),
            client_request_id: p.client_request_id.as_ref().and_then(|v| v.to_str().ok()),
            config_version: Some(&self.serving.routes.version),
            route: Some(&route.name),
            status: Some(self.status),
            // To the microsecond: `42.481`, not `42.481270999999996` (shorter lines).
            latency_ms: Some(self.latency.as_micros() as f64 / 1e3),
            aborted: self.aborted,
            forced: p.forced,
            unit_missing: p.unit.is_none(),
            phase: Some(&exp.salt),
            ts_ns: self.ts_ns,
            // Validated names, the table's hex version, an id minted from them, our clock.
            clean: true,
        })
    }

    fn set_aborted(&mut self) {
        self.aborted = true;
    }
}
