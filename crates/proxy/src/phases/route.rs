//! Route: which route, which unit, which variant.
//!
//! Reads the request's head (host, path, unit sources, the override header) and the
//! table; sets the exchange's `host`, `route` and `pick`. Changes nothing in the request.

use std::borrow::Cow;

use http::header::{HeaderValue, HOST};
use http::request::Parts;
use http::{StatusCode, Version};

use super::respond::H_VARIANT;
use super::{Exchange, Pick};
use crate::ablate::{off, Piece};
use crate::errors::ProxyError;
use crate::headers;
use crate::request_id;
use cohort_assign::unit::find_unit;
use cohort_config::schema::{OnMissingUnit, UnitKind};
use cohort_config::{assign, forced_variant, Experiment};

/// Matches the route (longest prefix, then config order), then picks the variant.
pub fn route(ex: &mut Exchange, parts: &Parts) -> Result<(), ProxyError> {
    // Kept as a header value: it is forwarded as it came (X-Forwarded-Host, `preserve`).
    ex.host = match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => {
            let mut hosts = parts.headers.get_all(HOST).into_iter();
            let (first, more) = (hosts.next(), hosts.next().is_some());
            // RFC 9112 §3.2: exactly one Host in HTTP/1.1. Routing by the first of two
            // would let a client pick what cohort sees apart from what the upstream sees.
            if parts.version == Version::HTTP_11 && (first.is_none() || more) {
                return Err(ex.fail(
                    StatusCode::BAD_REQUEST,
                    "an HTTP/1.1 request needs exactly one Host header",
                ));
            }
            first.cloned()
        }
    };
    let host = ex.host.as_ref().and_then(|h| h.to_str().ok());
    let matched = ex
        .serving
        .routes
        .routes
        .iter()
        .position(|r| r.matches(host, parts.uri.path(), &parts.headers));
    let Some(route) = matched else {
        return Err(ex.fail(
            StatusCode::NOT_FOUND,
            format!("no route matches {}", parts.uri.path()),
        ));
    };
    ex.route = Some(route);
    let pick = pick(ex, route, parts)?;
    ex.pick = Some(pick);
    Ok(())
}

/// The unit, the variant (assigned, or forced where overrides are allowed) and the request
/// id of a request on `route`.
fn pick(ex: &Exchange, route: usize, parts: &Parts) -> Result<Pick, ProxyError> {
    let routes = &ex.serving.routes;
    let exp = &routes.experiments[routes.routes[route].experiment];
    let nonce: u128 = if off(Piece::RequestId) {
        0
    } else {
        rand::random()
    };
    let (unit, generated) = if off(Piece::Assign) {
        (None, false)
    } else {
        identify(ex, exp, parts, nonce)?
    };
    // Looked up only where it can count: without `allow_override` it is ignored.
    let forced_header = exp
        .allow_override
        .then(|| parts.headers.get(&H_VARIANT))
        .flatten()
        .and_then(|v| v.to_str().ok());
    let forced = forced_variant(exp, forced_header)
        .map_err(|e| ex.fail(StatusCode::BAD_REQUEST, e.to_string()))?;
    let variant = match (forced, &unit) {
        (Some(v), _) => v,
        (None, Some(u)) => assign(exp, u).variant,
        (None, None) => exp.control,
    };
    // Names are validated to header-safe characters, so the id always is a header value.
    let prefix = &ex.serving.by_route[route][variant].request_id_prefix;
    let request_id = if off(Piece::RequestId) {
        HeaderValue::from_static("ablated")
    } else {
        HeaderValue::try_from(request_id::mint_after(prefix, nonce)).map_err(|_| {
            ex.fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot make a request id from these names",
            )
        })?
    };
    Ok(Pick {
        variant,
        unit,
        generated,
        forced: forced.is_some(),
        request_id,
        client_request_id: parts.headers.get(&headers::X_REQUEST_ID).cloned(),
    })
}

/// The unit id, and whether it was minted here. With `unit: request` it is the random part
/// of cohort's own request id, never anything the client sent.
fn identify(
    ex: &Exchange,
    exp: &Experiment,
    parts: &Parts,
    nonce: u128,
) -> Result<(Option<String>, bool), ProxyError> {
    let found = match exp.unit {
        UnitKind::Request => Some(format!("{nonce:032x}")),
        UnitKind::User => {
            find_unit(&exp.unit_from, &parts.headers, parts.uri.query()).map(Cow::into_owned)
        }
    };
    match (found, exp.on_missing_unit) {
        (Some(u), _) => Ok((Some(u), false)),
        (None, OnMissingUnit::Control) => Ok((None, false)),
        (None, OnMissingUnit::Reject) => {
            let sources: Vec<String> = exp.unit_from.iter().map(|s| s.to_string()).collect();
            Err(ex.fail(
                StatusCode::BAD_REQUEST,
                format!(
                    "no unit id in the request (looked for {})",
                    sources.join(", then ")
                ),
            ))
        }
        (None, OnMissingUnit::Generate) => {
            Ok((Some(format!("{:032x}", rand::random::<u128>())), true))
        }
    }
}
