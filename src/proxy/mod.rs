//! The data plane: accept, match the route, identify the unit, assign, forward, answer.
//!
//! ```text
//! accept → match route → identify unit → assign variant → forward (streamed) → answer
//! ```
//!
//! One [`Proxy`] serves a listener; every request loads the routing table once from
//! [`LiveRoutes`] and keeps it to the end, so a reload never changes a request midway.
//! Bodies stream both ways (hyper's `Incoming` is passed through, never collected).
//! Errors before the upstream's response head become JSON responses ([`errors`]).
//!
//! Built so far: HTTP/1.1 and h2c inbound on one port, `http1` and `h2c` upstreams over
//! plain HTTP, header hygiene, request ids, `on_missing_unit`, overrides, timeouts to the
//! response head. Still to come with the data-plane issue: https upstreams, WebSocket
//! upgrades, gRPC-shaped errors, the idle timeout between body chunks, metrics.

pub mod errors;
pub mod headers;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, HOST, SET_COOKIE};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tracing::{debug, info_span, warn, Instrument};

use crate::assign::{assign, forced_variant, unit::find_unit};
use crate::config::schema::{OnMissingUnit, Protocol, UnitKind};
use crate::config::{HostHeader, Routes};
use crate::live::LiveRoutes;
use crate::request_id;
use errors::ProxyError;

/// The body type of every response cohort sends and every request it forwards.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Response headers cohort adds.
pub const X_COHORT_EXPERIMENT: &str = "x-cohort-experiment";
pub const X_COHORT_VARIANT: &str = "x-cohort-variant";
pub const X_COHORT_REQUEST_ID: &str = "x-cohort-request-id";
pub const X_COHORT_UNIT: &str = "x-cohort-unit";

/// The serving state shared by every connection.
pub struct Proxy {
    routes: Arc<LiveRoutes>,
    http1: Client<HttpConnector, Body>,
    h2c: Client<HttpConnector, Body>,
}

impl Proxy {
    pub fn new(routes: Arc<LiveRoutes>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        // The longest connect timeout of any route; each request's own bound is enforced
        // by the timeout to the response head.
        let connect = routes
            .load()
            .routes
            .iter()
            .map(|r| r.connect_timeout)
            .max()
            .unwrap_or(std::time::Duration::from_secs(1));
        connector.set_connect_timeout(Some(connect));
        let http1 = Client::builder(TokioExecutor::new()).build(connector.clone());
        let h2c = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        Self { routes, http1, h2c }
    }

    /// Serves `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let proxy = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, Infallible>(proxy.handle(req, peer).await) }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                if let Err(e) = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
    }

    /// One request, start to finish.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let routes = self.routes.load();
        match self.forward(&routes, req, peer).await {
            Ok(resp) => resp,
            Err(err) => err.into_response(),
        }
    }

    async fn forward(
        &self,
        routes: &Routes,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<Body>, ProxyError> {
        let (mut parts, body) = req.into_parts();
        let inbound_version = parts.version;
        let host = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                parts
                    .headers
                    .get(HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            });
        let Some(route) = routes.match_route(host.as_deref(), parts.uri.path(), &parts.headers)
        else {
            return Err(ProxyError::new(
                StatusCode::NOT_FOUND,
                format!("no route matches {}", parts.uri.path()),
            ));
        };
        let exp = &routes.experiments[route.experiment];
        let fail = |status, message: String, variant: Option<&str>, rid: Option<&str>| ProxyError {
            status,
            message,
            experiment: Some(exp.name.clone()),
            variant: variant.map(str::to_owned),
            request_id: rid.map(str::to_owned),
        };

        // Identify the unit.
        let nonce: u128 = rand::random();
        let mut generated = None;
        let unit: Option<String> = match exp.unit {
            UnitKind::Request => Some(format!("{nonce:032x}")),
            UnitKind::User => {
                find_unit(&exp.unit_from, &parts.headers, parts.uri.query()).map(|u| u.into_owned())
            }
        };
        let unit = match (unit, exp.on_missing_unit) {
            (Some(u), _) => Some(u),
            (None, OnMissingUnit::Control) => None,
            (None, OnMissingUnit::Reject) => {
                let sources: Vec<String> = exp.unit_from.iter().map(|s| s.to_string()).collect();
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "no unit id in the request (looked for {})",
                        sources.join(", then ")
                    ),
                    None,
                    None,
                ));
            }
            (None, OnMissingUnit::Generate) => {
                let id = format!("{:032x}", rand::random::<u128>());
                generated = Some(id.clone());
                Some(id)
            }
        };

        // Assign (or honour an allowed override).
        let forced_header = parts
            .headers
            .get(X_COHORT_VARIANT)
            .and_then(|v| v.to_str().ok());
        let forced = forced_variant(exp, forced_header)
            .map_err(|e| fail(StatusCode::BAD_REQUEST, e.to_string(), None, None))?;
        let variant_index = match (forced, &unit) {
            (Some(v), _) => v,
            (None, Some(u)) => assign(exp, u).variant,
            (None, None) => exp.control,
        };
        let variant = &exp.variants[variant_index];
        let rid = request_id::mint(&exp.name, &variant.name, &routes.version);
        let span = info_span!("request", route = %route.name, experiment = %exp.name, variant = %variant.name, request_id = %rid);

        // Where it goes.
        let path = parts.uri.path();
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
        let up = &variant.upstream;
        let target = match parts.uri.query() {
            Some(q) => format!(
                "{}://{}{}{}?{}",
                up.scheme, up.authority, up.base_path, path, q
            ),
            None => format!("{}://{}{}{}", up.scheme, up.authority, up.base_path, path),
        };
        let uri: Uri = target.parse().map_err(|_| {
            fail(
                StatusCode::BAD_REQUEST,
                "the request path cannot be forwarded".into(),
                Some(&variant.name),
                Some(&rid),
            )
        })?;

        // Headers: hygiene, forwarding info, identity.
        headers::strip_hop_by_hop(&mut parts.headers, true, false);
        let trusted = routes
            .file
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&peer.ip()));
        let peer_ip = peer.ip().to_string();
        let xff = match parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) if trusted => format!("{prev}, {peer_ip}"),
            _ => peer_ip,
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            parts.headers.insert("x-forwarded-for", v);
        }
        if !trusted || !parts.headers.contains_key("x-forwarded-proto") {
            parts
                .headers
                .insert("x-forwarded-proto", HeaderValue::from_static("http"));
        }
        if !trusted || !parts.headers.contains_key("x-forwarded-host") {
            match host.as_deref().and_then(|h| HeaderValue::from_str(h).ok()) {
                Some(h) => parts.headers.insert("x-forwarded-host", h),
                None => parts.headers.remove("x-forwarded-host"),
            };
        }
        match &variant.host_header {
            HostHeader::Upstream => {
                if let Ok(h) = HeaderValue::from_str(up.authority.as_str()) {
                    parts.headers.insert(HOST, h);
                }
            }
            HostHeader::Preserve => {
                if let Some(h) = host.as_deref().and_then(|h| HeaderValue::from_str(h).ok()) {
                    parts.headers.insert(HOST, h);
                }
            }
            HostHeader::Literal(h) => {
                parts.headers.insert(HOST, h.clone());
            }
        }
        if let Ok(v) = HeaderValue::from_str(&rid) {
            parts.headers.insert(X_COHORT_REQUEST_ID, v);
        }
        parts.uri = uri;
        let client = match variant.protocol {
            Protocol::Http1 => {
                parts.version = Version::HTTP_11;
                &self.http1
            }
            Protocol::H2c => {
                parts.version = Version::HTTP_2;
                &self.h2c
            }
        };
        let upstream_req = Request::from_parts(parts, body.boxed());

        let result = tokio::time::timeout(route.timeout, client.request(upstream_req))
            .instrument(span.clone())
            .await;
        let resp = match result {
            Err(_) => {
                return Err(fail(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "upstream {} sent no response head within {} ms",
                        up.url,
                        route.timeout.as_millis()
                    ),
                    Some(&variant.name),
                    Some(&rid),
                ))
            }
            Ok(Err(e)) => {
                span.in_scope(|| warn!(error = %e, upstream = %up.url, "upstream failed"));
                return Err(fail(
                    StatusCode::BAD_GATEWAY,
                    format!("upstream {} failed: {}", up.url, describe(&e)),
                    Some(&variant.name),
                    Some(&rid),
                ));
            }
            Ok(Ok(resp)) => resp,
        };
        let (mut parts, body) = resp.into_parts();
        // Answer in the client's protocol, whatever the upstream spoke (an HTTP/1.0 or h2c
        // upstream must not turn the client's keep-alive HTTP/1.1 connection into 1.0).
        parts.version = inbound_version;
        headers::strip_hop_by_hop(&mut parts.headers, false, false);
        let h = &mut parts.headers;
        for (name, value) in [
            (X_COHORT_EXPERIMENT, exp.name.as_str()),
            (X_COHORT_VARIANT, variant.name.as_str()),
            (X_COHORT_REQUEST_ID, rid.as_str()),
        ] {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name, v);
            }
        }
        if let (Some(id), Some(cookie)) = (&generated, &exp.generated_cookie) {
            let secure = if exp.cookie.secure { "; Secure" } else { "" };
            let set = format!(
                "{cookie}={id}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
                exp.cookie.max_age_s
            );
            if let Ok(v) = HeaderValue::from_str(&set) {
                h.append(SET_COOKIE, v);
            }
            if let Ok(v) = HeaderValue::from_str(id) {
                h.insert(X_COHORT_UNIT, v);
            }
        }
        Ok(Response::from_parts(parts, body.boxed()))
    }
}

/// A short reason for an upstream client error (the whole source chain).
fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let mut s = if e.is_connect() {
        "connect error".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
