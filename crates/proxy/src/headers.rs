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

/// Positions in [`HOP_BY_HOP`] of the headers kept in some cases.
const AT_TE: usize = 3;
const AT_UPGRADE: usize = 6;

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
/// keeps `Upgrade` and `Connection: upgrade` for the WebSocket switch cohort passes through
/// (requests: as `Upgrade: websocket` only, whatever else the client offered).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_te_trailers: bool, keep_upgrade: bool) {
    // Most messages carry none or one of them (`Connection: keep-alive`): one pass over
    // the names finds which, and only those are removed.
    let mut present = [false; HOP_BY_HOP.len()];
    for k in headers.keys() {
        if let Some(i) = hop_index(k) {
            present[i] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    // `Connection: keep-alive` (or `close`) names nothing more: no token parsing.
    let only_usual = headers.get_all(CONNECTION).iter().all(|v| {
        let v = v.as_bytes();
        v.eq_ignore_ascii_case(b"keep-alive") || v.eq_ignore_ascii_case(b"close")
    });
    let named: Vec<HeaderName> = if only_usual {
        Vec::new()
    } else {
        connection_named(headers)
    };
    let wants_trailers = keep_te_trailers
        && present[AT_TE]
        && headers
            .get_all(TE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    let upgrade = if keep_upgrade && present[AT_UPGRADE] {
        let offered = headers.get(UPGRADE).cloned();
        // A client's offer names only the protocol cohort passes through.
        if offered
            .as_ref()
            .is_some_and(|v| v.as_bytes().contains(&b','))
        {
            Some(HeaderValue::from_static("websocket"))
        } else {
            offered
        }
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

/// Where `name` is in [`HOP_BY_HOP`]. Names are compared as strings, and only those of
/// the right length: comparing `HeaderName`s compares the bytes of every custom name
/// against each custom hop-by-hop name.
fn hop_index(name: &HeaderName) -> Option<usize> {
    let name = name.as_str();
    let candidates: &[usize] = match name.len() {
        2 => &[3],
        7 => &[4, 6],
        10 => &[0, 2],
        16 => &[1],
        17 => &[5],
        19 => &[7],
        _ => return None,
    };
    candidates
        .iter()
        .copied()
        .find(|&i| HOP_BY_HOP[i].as_str() == name)
}

/// The headers a `Connection` header names, beyond the usual `keep-alive` and `close`.
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // The usual tokens name no header beyond the fixed set: skip parsing them.
        .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .collect()
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

    #[test]
    fn every_hop_by_hop_name_is_found_by_its_length() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_index(name), Some(i), "{name}");
            let parsed = HeaderName::from_bytes(name.as_str().to_uppercase().as_bytes()).unwrap();
            assert_eq!(hop_index(&parsed), Some(i), "{name}");
        }
        assert_eq!(HOP_BY_HOP[AT_TE], TE);
        assert_eq!(HOP_BY_HOP[AT_UPGRADE], UPGRADE);
        for other in ["x-user-id", "host", "content-type", "keep-alivf", "tf"] {
            assert_eq!(hop_index(&HeaderName::from_static(other)), None, "{other}");
        }
    }

    #[test]
    fn the_usual_connection_tokens_and_an_upgrade() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Keep-Alive"));
        h.append("connection", HeaderValue::from_static("close"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h, true, false);
        assert_eq!(h.len(), 1, "{h:?}");
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade, x-hop"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        let mut dropped = h.clone();
        strip_hop_by_hop(&mut h, false, true);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        strip_hop_by_hop(&mut dropped, false, false);
        assert!(dropped.is_empty(), "{dropped:?}");
    }
}
