//! Send: the upstream call.
//!
//! Reads the target (this worker's pool or client for the variant, the route's timeout);
//! consumes the rewritten request and yields the upstream's response head. Plain-HTTP/1.1
//! upstreams go through this worker's lean pool; https, h2c and protocol upgrades through
//! the general client. A failure is counted against the variant
//! (`cohort_upstream_errors_total`) and becomes 502 or 504.

use http::{Request, Response, StatusCode};
use tracing::{warn, Instrument};

use super::Exchange;
use crate::body::Body;
use crate::errors::ProxyError;
use crate::metrics::UpstreamErrorKind;
use crate::pool::{UpstreamBody, UpstreamFailure};

/// Sends `req` to the target's upstream within the route's `timeout_ms` (to the head).
pub async fn send(
    ex: &Exchange,
    req: Request<Body>,
    upgrade: bool,
) -> Result<Response<UpstreamBody>, ProxyError> {
    let Some(t) = ex.target() else {
        return Err(ex.fail(StatusCode::INTERNAL_SERVER_ERROR, "send before route"));
    };
    let pooled = if upgrade { None } else { t.handles.pool() };
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
                .send(req)
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
    match tokio::time::timeout(t.route.timeout, call)
        .instrument(span)
        .await
    {
        Ok(Ok(resp)) => Ok(resp),
        Err(_) => {
            t.handles.metrics.upstream_error(UpstreamErrorKind::Timeout);
            Err(ex.fail(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "upstream {} sent no response head within {} ms",
                    up.url,
                    t.route.timeout.as_millis()
                ),
            ))
        }
        Ok(Err(e)) => {
            t.handles.metrics.upstream_error(if e.is_connect() {
                UpstreamErrorKind::Connect
            } else {
                UpstreamErrorKind::Reset
            });
            ex.span()
                .in_scope(|| warn!(error = %e, upstream = %up.url, "upstream failed"));
            Err(ex.fail(
                StatusCode::BAD_GATEWAY,
                format!("upstream {} failed: {}", up.url, describe(&e)),
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
