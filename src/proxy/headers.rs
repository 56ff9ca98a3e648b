//! Header hygiene for a forwarded request or response (RFC 9110 §7.6.1).
//!
//! Hop-by-hop headers describe one connection, not the message: they are dropped, together
//! with every header the `Connection` header names. One exception: `te: trailers` is kept
//! on requests, because gRPC servers built on gRPC C-core (Python grpcio, Triton) reject
//! requests without it.

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};

/// Header names cohort reads or writes on every request, made once (a `&str` name is
/// parsed again at each use).
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

static HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    PROXY_AUTHORIZATION,
];

/// `ip` as a header value (X-Forwarded-For). The last one made on this thread is kept:
/// a sidecar's peers are few (the node's ingress, a load balancer), so nearly every
/// request finds its peer's value already made.
pub fn peer_value(ip: std::net::IpAddr) -> Option<HeaderValue> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(std::net::IpAddr, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((seen, value)) = &*last {
            if *seen == ip {
                return Some(value.clone());
            }
        }
        let value = HeaderValue::try_from(ip.to_string()).ok()?;
        *last = Some((ip, value.clone()));
        Some(value)
    })
}

/// Removes hop-by-hop headers: the fixed set, plus any header named in `Connection`.
/// `keep_te_trailers` keeps `TE: trailers` (gRPC needs it end to end); `keep_upgrade`
/// keeps `Upgrade` and `Connection: upgrade` for a protocol switch that cohort passes through.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_te_trailers: bool, keep_upgrade: bool) {
    // Most messages carry none or one of them (`Connection: keep-alive`): one pass over
    // the names finds which, and only those are removed.
    let mut present = [false; HOP_BY_HOP.len()];
    for k in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == k) {
            present[i] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // The usual tokens name no header beyond the fixed set: skip parsing them.
        .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .collect();
    let wants_trailers = keep_te_trailers
        && headers
            .get_all(TE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    let upgrade = if keep_upgrade {
        headers.get(UPGRADE).cloned()
    } else {
        None
    };
    for name in named {
        headers.remove(name);
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        headers.remove(name);
    }
    if wants_trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    if let Some(up) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, up);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_values_follow_the_peer() {
        let a: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let b: std::net::IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(peer_value(a).unwrap(), "10.0.0.1");
        assert_eq!(peer_value(a).unwrap(), "10.0.0.1");
        assert_eq!(peer_value(b).unwrap(), "2001:db8::1");
        assert_eq!(peer_value(a).unwrap(), "10.0.0.1");
    }

    #[test]
    fn drops_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers, deflate"));
        h.insert("x-user-id", HeaderValue::from_static("alice"));
        strip_hop_by_hop(&mut h, true, false);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["x-user-id"], "alice");
        let mut h = HeaderMap::new();
        h.insert("te", HeaderValue::from_static("deflate"));
        strip_hop_by_hop(&mut h, true, false);
        assert!(h.is_empty());
    }
}
