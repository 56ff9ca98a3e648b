//! Header hygiene for a forwarded request or response (RFC 9110 §7.6.1).
//!
//! Hop-by-hop headers describe one connection, not the message: they are dropped, together
//! with every header the `Connection` header names. One exception: `te: trailers` is kept
//! on requests, because gRPC servers built on gRPC C-core (Python grpcio, Triton) reject
//! requests without it.

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, TE, UPGRADE};

/// The hop-by-hop headers of RFC 9110 §7.6.1, plus the legacy ones proxies still meet.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
];

/// Removes hop-by-hop headers and those named in `Connection`. With `keep_te_trailers`,
/// a `te` header that asks for trailers is kept as `te: trailers`. With `keep_upgrade`
/// (a WebSocket / HTTP/1.1 Upgrade passing through), `connection: upgrade` and `upgrade`
/// are kept.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_te_trailers: bool, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
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
    for name in HOP_BY_HOP {
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
