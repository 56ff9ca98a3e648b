//! Rewrite: the client's request head becomes the upstream's.
//!
//! Reads the exchange (target, client host, peer) and the table's trusted proxies;
//! changes the request head only: the target URI, hop-by-hop headers dropped,
//! `X-Forwarded-For`/`-Proto`/`-Host`, `Host`, `x-cohort-request-id`, the protocol version.
//! The body is forwarded as it comes (a request-body tap would be added here).

use http::header::{HeaderMap, HeaderValue, HOST};
use http::request::Parts;
use http::uri::{self, PathAndQuery};
use http::{StatusCode, Uri, Version};

use super::{Exchange, Target};
use crate::ablate::{off, Piece};
use crate::errors::ProxyError;
use crate::headers;
use crate::phases::respond::H_REQUEST_ID;
use cohort_config::schema::Protocol;
use cohort_config::{HostHeader, Route, Upstream};

/// Rewrites `parts` for the target's upstream. `upgrade`: the client asked for a protocol
/// upgrade (WebSocket), whose headers are kept.
pub fn rewrite(ex: &Exchange, parts: &mut Parts, upgrade: bool) -> Result<(), ProxyError> {
    let Some(t) = ex.target() else {
        return Err(ex.fail(StatusCode::INTERNAL_SERVER_ERROR, "rewrite before route"));
    };
    let up = &t.variant.upstream;
    let uri = upstream_uri(t.route, up, &parts.uri).ok_or_else(|| {
        ex.fail(
            StatusCode::BAD_REQUEST,
            "the request path cannot be forwarded",
        )
    })?;
    if off(Piece::Headers) {
        parts.uri = uri;
        parts.version = version(ex, &t)?;
        return Ok(());
    }
    headers::strip_hop_by_hop(&mut parts.headers, true, upgrade);
    // Room made once for what is added.
    parts.headers.reserve(5);
    forwarding(ex, &mut parts.headers);
    let host = match (&t.variant.host_header, &ex.host) {
        (HostHeader::Literal(h), _) => h,
        (HostHeader::Preserve, Some(h)) => h,
        // HTTP/1.1 needs one (a client without a Host, with `preserve`).
        (HostHeader::Upstream, _) | (HostHeader::Preserve, None) => &up.host_value,
    };
    parts.headers.insert(HOST, host.clone());
    parts
        .headers
        .insert(&H_REQUEST_ID, t.pick.request_id.clone());
    parts.uri = uri;
    parts.version = version(ex, &t)?;
    Ok(())
}

/// The upstream's scheme and authority (parsed once, at load) with the request's path and
/// query, reused as they are unless a stripped prefix or a base path changes them.
pub(crate) fn upstream_uri(route: &Route, up: &Upstream, uri: &Uri) -> Option<Uri> {
    let path_and_query = match uri.path_and_query() {
        Some(pq)
            if !route.strip_prefix && up.base_path.is_empty() && pq.as_str().starts_with('/') =>
        {
            Some(pq.clone())
        }
        _ => {
            let path = uri.path();
            let path = if route.strip_prefix {
                let rest = path
                    .strip_prefix(route.path_prefix.trim_end_matches('/'))
                    .unwrap_or(path);
                if rest.starts_with('/') {
                    rest
                } else {
                    "/"
                }
            } else {
                path
            };
            let joined = match uri.query() {
                Some(q) => format!("{}{}?{}", up.base_path, path, q),
                None => format!("{}{}", up.base_path, path),
            };
            PathAndQuery::try_from(joined).ok()
        }
    };
    let mut target = uri::Parts::default();
    target.scheme = Some(up.scheme.clone());
    target.authority = Some(up.authority.clone());
    target.path_and_query = path_and_query;
    Uri::from_parts(target).ok()
}

/// `X-Forwarded-For` set to the peer (a chain from a trusted proxy is extended, anyone
/// else's replaced); `X-Forwarded-Proto` and `-Host` set unless a trusted proxy set them.
fn forwarding(ex: &Exchange, h: &mut HeaderMap) {
    let trusted = ex
        .serving
        .routes
        .file
        .trusted_proxies
        .iter()
        .any(|net| net.contains(&ex.peer.ip()));
    let previous = trusted
        .then(|| h.get(&headers::X_FORWARDED_FOR))
        .flatten()
        .and_then(|v| v.to_str().ok());
    let xff = match previous {
        Some(prev) => HeaderValue::try_from(format!("{prev}, {}", ex.peer.ip())).ok(),
        None => headers::peer_value(ex.peer.ip()),
    };
    if let Some(v) = xff {
        h.insert(&headers::X_FORWARDED_FOR, v);
    }
    if !trusted || !h.contains_key(&headers::X_FORWARDED_PROTO) {
        h.insert(
            &headers::X_FORWARDED_PROTO,
            HeaderValue::from_static("http"),
        );
    }
    if !trusted || !h.contains_key(&headers::X_FORWARDED_HOST) {
        match &ex.host {
            Some(host) => h.insert(&headers::X_FORWARDED_HOST, host.clone()),
            None => h.remove(&headers::X_FORWARDED_HOST),
        };
    }
}

/// The protocol the upstream speaks; a gRPC request cannot go to an `http1` upstream.
fn version(ex: &Exchange, t: &Target<'_>) -> Result<Version, ProxyError> {
    match t.variant.protocol {
        Protocol::Http1 if ex.grpc => Err(ex.fail(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "gRPC request routed to variant {:?}, whose upstream speaks http1: set `protocol: h2c`",
                t.variant.name
            ),
        )),
        Protocol::Http1 => Ok(Version::HTTP_11),
        Protocol::H2c => Ok(Version::HTTP_2),
    }
}
