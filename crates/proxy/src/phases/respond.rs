//! Respond: the upstream's response head becomes the client's.
//!
//! Reads the exchange's target and pick; changes the response head: the client's protocol
//! version, hop-by-hop headers dropped, `x-cohort-experiment`, `x-cohort-variant` and
//! `x-cohort-request-id` added, and a generated unit id set as a cookie and returned in
//! `x-cohort-unit`. The body gets the route's idle timeout (a response-body tap would be
//! added here).

use http::header::{HeaderName, HeaderValue, SET_COOKIE};
use http::{Response, StatusCode, Version};

use super::Exchange;
use crate::ablate::{off, Piece};
use crate::errors::ProxyError;
use crate::headers;
use crate::idle::IdleTimeoutBody;
use crate::pool::UpstreamBody;

/// Response headers cohort adds.
pub const X_COHORT_EXPERIMENT: &str = "x-cohort-experiment";
pub const X_COHORT_VARIANT: &str = "x-cohort-variant";
pub const X_COHORT_REQUEST_ID: &str = "x-cohort-request-id";
pub const X_COHORT_UNIT: &str = "x-cohort-unit";
pub(crate) static H_EXPERIMENT: HeaderName = HeaderName::from_static(X_COHORT_EXPERIMENT);
pub(crate) static H_VARIANT: HeaderName = HeaderName::from_static(X_COHORT_VARIANT);
pub(crate) static H_REQUEST_ID: HeaderName = HeaderName::from_static(X_COHORT_REQUEST_ID);
static H_UNIT: HeaderName = HeaderName::from_static(X_COHORT_UNIT);

/// The client's response, answered in the client's protocol (`version`) whatever the
/// upstream spoke: an HTTP/1.0 or h2c upstream must not turn the client's keep-alive
/// HTTP/1.1 connection into 1.0.
pub fn respond(
    ex: &Exchange,
    resp: Response<UpstreamBody>,
    version: Version,
) -> Result<Response<IdleTimeoutBody<UpstreamBody>>, ProxyError> {
    let Some(t) = ex.target() else {
        return Err(ex.fail(StatusCode::INTERNAL_SERVER_ERROR, "respond before route"));
    };
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    let (mut parts, body) = resp.into_parts();
    parts.version = version;
    if off(Piece::Headers) {
        let body = IdleTimeoutBody::new(body, t.route.idle_timeout, t.handles.metrics.clone());
        return Ok(Response::from_parts(parts, body));
    }
    headers::strip_hop_by_hop(&mut parts.headers, false, switching);
    let h = &mut parts.headers;
    h.reserve(3);
    h.insert(&H_EXPERIMENT, t.experiment.name_value.clone());
    h.insert(&H_VARIANT, t.variant.name_value.clone());
    h.insert(&H_REQUEST_ID, t.pick.request_id.clone());
    if let (true, Some(id), Some(cookie)) = (
        t.pick.generated,
        &t.pick.unit,
        &t.experiment.generated_cookie,
    ) {
        let secure = if t.experiment.cookie.secure {
            "; Secure"
        } else {
            ""
        };
        let set = format!(
            "{cookie}={id}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
            t.experiment.cookie.max_age_s
        );
        if let Ok(v) = HeaderValue::from_str(&set) {
            h.append(SET_COOKIE, v);
        }
        if let Ok(v) = HeaderValue::from_str(id) {
            h.insert(&H_UNIT, v);
        }
    }
    let body = IdleTimeoutBody::new(body, t.route.idle_timeout, t.handles.metrics.clone());
    Ok(Response::from_parts(parts, body))
}
