//! Send: the upstream call.
//!
//! Reads the target (this worker's pool or client for the variant, the route's timeout);
//! consumes the rewritten request and yields the upstream's response head. Plain-HTTP/1.1
//! upstreams go through this worker's lean pool; https, h2c and protocol upgrades through
//! the general client. A failure is counted against the variant
//! (`cohort_upstream_errors_total`) and becomes 502 or 504.

use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::{warn, Instrument};

use super::Exchange;
use crate::ablate::{off, Piece};
use crate::body::{Body, BoxError};
use crate::errors::ProxyError;
use crate::metrics::UpstreamErrorKind;
use crate::pool::{UpstreamBody, UpstreamFailure};
use crate::tap::{Tapped, Upload};

/// Sends the rewritten head and the client's body, streamed, to the target's upstream
/// within the route's `timeout_ms` (to the head).
pub async fn send(
    ex: &Exchange,
    head: Parts,
    body: Incoming,
    upgrade: bool,
) -> Result<Response<UpstreamBody>, ProxyError> {
    let Some(t) = ex.target() else {
        return Err(ex.fail(StatusCode::INTERNAL_SERVER_ERROR, "send before route"));
    };
    let pooled = if upgrade { None } else { t.handles.pool() };
    // How the upload goes: a pooled connection is given back only once it is complete, and
    // a failure the client caused is not the model's.
    let (body, upload): (Body, _) = if body.is_end_stream() || off(Piece::UploadTap) {
        (body.map_err(BoxError::from).boxed(), None)
    } else {
        let upload = Upload::default();
        let tapped = Tapped::new(body, upload.clone());
        (tapped.map_err(BoxError::from).boxed(), Some(upload))
    };
    // A call sampled for monitoring: its request body is copied on its way out too.
    let body = match &ex.capture {
        Some(slot) if body.is_end_stream() => {
            slot.no_request_body();
            body
        }
        Some(slot) => Tapped::new(body, slot.request_tap()).boxed(),
        None => body,
    };
    // A request copied to shadows: its body is copied on its way out too.
    let body = match &ex.shadow {
        Some(call) if body.is_end_stream() => {
            call.no_request_body();
            body
        }
        Some(call) => Tapped::new(body, call.request_tap()).boxed(),
        None => body,
    };
    let req = Request::from_parts(head, body);
    // `Clients` makes one client per worker, so there always is one.
    let Some(general) = t.handles.client() else {
        return Err(ex.fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no upstream client on this worker thread (a cohort bug: please report it)",
        ));
    };
    let call = async {
        match pooled {
            Some(pool) => pool
                .send(req, upload.clone())
                .await
                .map(|r| r.map(UpstreamBody::Pooled))
                .map_err(UpstreamFailure::from),
            None => general
                .request(req)
                .await
                .map(|r| r.map(UpstreamBody::General))
                .map_err(UpstreamFailure::from),
        }
    };
    // The span is made only where something is logged in it: a span the subscriber
    // records is allocated and its fields formatted, on every request.
    let span = if tracing::enabled!(tracing::Level::DEBUG) {
        ex.span()
    } else {
        tracing::Span::none()
    };
    let up = &t.variant.upstream;
    let answer = if off(Piece::Timeout) {
        Ok(call.instrument(span).await)
    } else {
        tokio::time::timeout(t.route.timeout, call)
            .instrument(span)
            .await
    };
    match answer {
        Ok(Ok(resp)) => {
            if !off(Piece::Metrics) {
                t.handles.metrics.answered();
            }
            Ok(resp)
        }
        Err(_) => {
            t.handles.metrics.upstream_error(UpstreamErrorKind::Timeout);
            let ms = t.route.timeout.as_millis();
            ex.span().in_scope(|| warn!(upstream = %up.url, timeout_ms = ms as u64, "upstream sent no response head in time"));
            // The client learns which variant and why; the address stays in the log.
            Err(ex.fail(
                StatusCode::GATEWAY_TIMEOUT,
                format!("variant {} sent no response within {ms} ms", t.variant.name),
            ))
        }
        Ok(Err(_)) if upload.as_ref().is_some_and(Upload::failed) => {
            // The client's upload broke off or was malformed: its failure, not the model's.
            ex.serving.client_body_errors.inc();
            Err(ex.fail(
                StatusCode::BAD_REQUEST,
                "the request body was cut short or malformed",
            ))
        }
        Ok(Err(e)) => {
            t.handles.metrics.upstream_error(if e.is_connect() {
                UpstreamErrorKind::Connect
            } else {
                UpstreamErrorKind::Reset
            });
            let reason = describe(&e);
            ex.span()
                .in_scope(|| warn!(error = %reason, upstream = %up.url, "upstream failed"));
            // The client learns which variant; the address and the OS error stay in the log.
            Err(ex.fail(
                StatusCode::BAD_GATEWAY,
                format!("variant {} is unavailable", t.variant.name),
            ))
        }
    }
}

/// A short reason for an upstream client error (the whole source chain).
fn describe(e: &UpstreamFailure) -> String {
    let mut s = match e {
        UpstreamFailure::General(g) if g.is_connect() => "connect error".to_owned(),
        _ => e.to_string(),
    };
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
