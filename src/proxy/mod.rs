//! The data plane: accept, match the route, identify the unit, assign, forward, answer.
//!
//! ```text
//! accept → match route → identify unit → assign variant → forward (streamed) → answer
//! ```
//!
//! One [`Proxy`] serves a listener; every request loads the routing table once from
//! [`crate::live::Live`] and keeps it to the end, so a reload never changes a request midway.
//! Bodies stream both ways (hyper's `Incoming` is passed through, never collected).
//! Errors before the upstream's response head become JSON responses ([`errors`]).
//!
//! Modules: [`serving`] (the table plus per-variant clients and metric handles),
//! [`upstream`] (clients: http1/h2c, http/https), [`headers`] (hop-by-hop hygiene),
//! [`errors`] (JSON and gRPC error responses), [`idle`] (the mid-stream idle timeout).

pub mod errors;
pub mod headers;
pub mod idle;
pub mod pool;
pub mod record;
pub mod serving;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, HOST, SET_COOKIE};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, info_span, warn, Instrument};

use crate::assign::{assign, forced_variant, unit::find_unit};
use crate::config::schema::{OnMissingUnit, Protocol, UnitKind};
use crate::config::{ConfigError, HostHeader, Routes};
use crate::events::{EventLog, EventRef, ExposureRef, LazyEvent};
use crate::live::Live;
use crate::metrics::{Metrics, UpstreamErrorKind};
use crate::request_id;
use crate::workers::Workers;
use errors::{is_grpc, ProxyError};
use pool::{UpstreamBody, UpstreamFailure};
use record::RecordOnEnd;
use serving::Serving;
use upstream::Clients;

/// Any error a body may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response cohort sends and every request it forwards.
pub type Body = BoxBody<Bytes, BoxError>;

/// Response headers cohort adds.
pub const X_COHORT_EXPERIMENT: &str = "x-cohort-experiment";
pub const X_COHORT_VARIANT: &str = "x-cohort-variant";
pub const X_COHORT_REQUEST_ID: &str = "x-cohort-request-id";
pub const X_COHORT_UNIT: &str = "x-cohort-unit";
static H_EXPERIMENT: http::HeaderName = http::HeaderName::from_static(X_COHORT_EXPERIMENT);
static H_VARIANT: http::HeaderName = http::HeaderName::from_static(X_COHORT_VARIANT);
static H_REQUEST_ID: http::HeaderName = http::HeaderName::from_static(X_COHORT_REQUEST_ID);
static H_UNIT: http::HeaderName = http::HeaderName::from_static(X_COHORT_UNIT);

/// The serving state shared by every connection.
pub struct Proxy {
    live: Live<Serving>,
    clients: Clients,
    metrics: Arc<Metrics>,
    /// The outcome log; None when the process records no events (tests, demo).
    events: Option<EventLog>,
    /// The threads that serve connections.
    workers: Workers,
}

/// What a request was assigned (for its metrics and its exposure event).
struct Chosen {
    route: usize,
    variant: usize,
    /// None when served by the control without a unit id.
    unit: Option<String>,
    forced: bool,
    /// cohort's request id, as sent upstream and back (one allocation shared by both).
    request_id: HeaderValue,
    client_request_id: Option<HeaderValue>,
    /// Time from arrival to the upstream's response head.
    head: Option<std::time::Duration>,
}

impl Proxy {
    /// A proxy serving `routes`; fails if an upstream cannot be set up (e.g. a CA file).
    pub fn new(routes: Routes, metrics: Arc<Metrics>) -> Result<Self, ConfigError> {
        Self::served_by(routes, metrics, Workers::here())
    }

    /// A proxy whose connections are served by `workers` ([`crate::workers`]).
    pub fn served_by(
        routes: Routes,
        metrics: Arc<Metrics>,
        workers: Workers,
    ) -> Result<Self, ConfigError> {
        let clients = Clients::for_workers(workers.len());
        let serving = Serving::build(routes, &clients, &metrics)?;
        Ok(Self {
            live: Live::new(serving),
            clients,
            metrics,
            events: None,
            workers,
        })
    }

    /// Records an exposure event for every request that runs an experiment.
    pub fn with_events(mut self, log: EventLog) -> Self {
        self.events = Some(log);
        self
    }

    /// Puts a new table in force for every request that starts from now on. Clients of
    /// unchanged upstream settings are reused, with their warm connections.
    pub fn install(&self, routes: Routes) -> Result<(), ConfigError> {
        let serving = Serving::build(routes, &self.clients, &self.metrics)?;
        self.live.swap(serving);
        Ok(())
    }

    /// The routing table in force.
    pub fn routes(&self) -> Arc<Serving> {
        self.live.load()
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The outcome log, if this process records events.
    pub fn event_log(&self) -> Option<&EventLog> {
        self.events.as_ref()
    }

    /// Serves `listener` until the task is dropped, with the config's limits.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let max = self.routes().routes.file.limits.max_connections;
        self.serve_with(
            listener,
            crate::server::Connections::new(max),
            crate::server::Shutdown::new(),
        )
        .await
    }

    /// Serves `listener` until `shutdown` begins, counting connections in `connections`.
    pub async fn serve_with(
        self: Arc<Self>,
        listener: TcpListener,
        connections: crate::server::Connections,
        shutdown: crate::server::Shutdown,
    ) {
        let limits = self.routes().routes.file.limits.clone();
        crate::server::serve_http(
            listener,
            "public",
            limits,
            connections,
            shutdown,
            self.workers.clone(),
            move |req, peer| {
                let proxy = self.clone();
                async move { proxy.handle(req, peer).await }
            },
        )
        .await
    }

    /// One request, start to finish.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let start = std::time::Instant::now();
        let arrival = std::time::SystemTime::now();
        let serving = self.live.load();
        if let Some(public) = &serving.routes.file.conversions.public_path {
            if req.uri().path() == public {
                return self.public_conversions(req, &serving).await;
            }
        }
        let grpc = is_grpc(req.headers());
        let mut chosen = None;
        // The upstream's body stays unboxed until the one wrapper that needs it is chosen.
        let resp = self
            .forward(&serving, req, peer, grpc, start, &mut chosen)
            .await
            .map_err(|err| err.into_response(grpc));
        let status = match &resp {
            Ok(r) => r.status(),
            Err(r) => r.status(),
        }
        .as_u16();
        let handles = match &chosen {
            Some(c) => &serving.by_route[c.route][c.variant].requests,
            None => &serving.unrouted,
        };
        handles.count(status);
        // The time to the response head (the upstream's, or cohort's own answer): one clock
        // read serves the histogram and the exposure.
        let elapsed = chosen
            .as_ref()
            .and_then(|c| c.head)
            .unwrap_or_else(|| start.elapsed());
        handles.duration.observe(elapsed.as_secs_f64());
        let pending = match (&self.events, chosen) {
            (Some(log), Some(c)) => Some((
                log,
                Box::new(PendingExposure {
                    latency: elapsed,
                    serving,
                    chosen: c,
                    arrival,
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
            // Written when the response ends: complete, or aborted mid-body.
            (Ok(resp), Some((log, pending))) => {
                resp.map(|body| RecordOnEnd::new(body, pending, log.clone()).boxed())
            }
            (Ok(resp), None) => resp.map(|body| body.boxed()),
        }
    }

    /// `conversions.public_path`: conversions from browsers, with a body size limit.
    async fn public_conversions(
        &self,
        req: Request<Incoming>,
        serving: &Arc<Serving>,
    ) -> Response<Body> {
        if req.method() != http::Method::POST {
            return ProxyError::new(StatusCode::METHOD_NOT_ALLOWED, "conversions are POSTed")
                .into_response(false);
        }
        let Some(log) = self.events.clone() else {
            return ProxyError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "this process records no events",
            )
            .into_response(false);
        };
        let limit = serving.routes.file.conversions.max_body_bytes as usize;
        let body = match http_body_util::Limited::new(req.into_body(), limit)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return ProxyError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body exceeds conversions.max_body_bytes ({limit} bytes)"),
                )
                .into_response(false)
            }
        };
        let (serving, metrics) = (serving.clone(), self.metrics.clone());
        let result = tokio::task::spawn_blocking(move || {
            crate::events::conversions::accept(&body, &serving.routes, &log, &metrics)
        })
        .await;
        conversions_response(result)
    }

    async fn forward(
        &self,
        serving: &Serving,
        req: Request<Incoming>,
        peer: SocketAddr,
        grpc: bool,
        start: std::time::Instant,
        chosen: &mut Option<Chosen>,
    ) -> Result<Response<idle::IdleTimeoutBody<UpstreamBody>>, ProxyError> {
        let routes = &serving.routes;
        let mut req = req;
        // A WebSocket (HTTP/1.1 Upgrade) passes through: keep the client's half of the
        // upgrade to join it with the upstream's once both sides agree (101).
        let client_upgrade = is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let inbound_version = parts.version;
        // The client's Host (HTTP/1) or :authority (HTTP/2), kept as a header value: it is
        // forwarded as it came (X-Forwarded-Host, `host_header: preserve`).
        let host_value: Option<HeaderValue> = match parts.uri.authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => parts.headers.get(HOST).cloned(),
        };
        let host = host_value.as_ref().and_then(|h| h.to_str().ok());
        let Some(route_index) = routes
            .routes
            .iter()
            .position(|r| r.matches(host, parts.uri.path(), &parts.headers))
        else {
            return Err(ProxyError::new(
                StatusCode::NOT_FOUND,
                format!("no route matches {}", parts.uri.path()),
            ));
        };
        let route = &routes.routes[route_index];
        let exp = &routes.experiments[route.experiment];
        let fail = |status, message: String, variant: Option<&str>, rid: Option<&str>| ProxyError {
            status,
            message,
            experiment: Some(exp.name.clone()),
            variant: variant.map(str::to_owned),
            request_id: rid.map(str::to_owned),
        };

        // Identify the unit. With `unit: request` it is the random part of cohort's own
        // request id, never anything the client sent.
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
        // Looked up only where it can count: without `allow_override` it is ignored.
        let forced_header = exp
            .allow_override
            .then(|| parts.headers.get(&H_VARIANT))
            .flatten()
            .and_then(|v| v.to_str().ok());
        let forced = forced_variant(exp, forced_header)
            .map_err(|e| fail(StatusCode::BAD_REQUEST, e.to_string(), None, None))?;
        let variant_index = match (forced, &unit) {
            (Some(v), _) => v,
            (None, Some(u)) => assign(exp, u).variant,
            (None, None) => exp.control,
        };
        let variant = &exp.variants[variant_index];
        // Names are validated to header-safe characters, so the id always is a header value.
        let runtime = &serving.by_route[route_index][variant_index];
        let rid_value =
            HeaderValue::try_from(request_id::mint_after(&runtime.request_id_prefix, nonce))
                .map_err(|_| {
                    fail(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "cannot make a request id from these names".into(),
                        Some(&variant.name),
                        None,
                    )
                })?;
        let rid = rid_value.to_str().unwrap_or_default();
        *chosen = Some(Chosen {
            route: route_index,
            variant: variant_index,
            unit,
            forced: forced.is_some(),
            request_id: rid_value.clone(),
            client_request_id: parts.headers.get(&headers::X_REQUEST_ID).cloned(),
            head: None,
        });
        // The request's span, made only where something is logged in it: a span the
        // subscriber records is allocated and its fields formatted, on every request.
        let make_span = || info_span!("request", route = %route.name, experiment = %exp.name, variant = %variant.name, request_id = rid);
        let upstream_span = if tracing::enabled!(tracing::Level::DEBUG) {
            make_span()
        } else {
            tracing::Span::none()
        };

        // Where it goes: the upstream's scheme and authority (parsed once, at load) and the
        // request's path and query, reused as they are unless a prefix or base path changes
        // them.
        let up = &variant.upstream;
        let path_and_query = match parts.uri.path_and_query() {
            Some(pq)
                if !route.strip_prefix
                    && up.base_path.is_empty()
                    && pq.as_str().starts_with('/') =>
            {
                Ok(pq.clone())
            }
            _ => {
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
                let joined = match parts.uri.query() {
                    Some(q) => format!("{}{}?{}", up.base_path, path, q),
                    None => format!("{}{}", up.base_path, path),
                };
                http::uri::PathAndQuery::try_from(joined)
            }
        };
        let mut target = http::uri::Parts::default();
        target.scheme = Some(up.scheme.clone());
        target.authority = Some(up.authority.clone());
        target.path_and_query = path_and_query.ok();
        let uri = Uri::from_parts(target).map_err(|_| {
            fail(
                StatusCode::BAD_REQUEST,
                "the request path cannot be forwarded".into(),
                Some(&variant.name),
                Some(rid),
            )
        })?;

        // Headers: hygiene, forwarding info, identity (room made once for what is added).
        headers::strip_hop_by_hop(&mut parts.headers, true, client_upgrade.is_some());
        parts.headers.reserve(5);
        let trusted = routes
            .file
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&peer.ip()));
        // A chain from a trusted proxy is extended; anyone else's is replaced.
        let previous = trusted
            .then(|| parts.headers.get(&headers::X_FORWARDED_FOR))
            .flatten()
            .and_then(|v| v.to_str().ok());
        let xff = match previous {
            Some(prev) => HeaderValue::try_from(format!("{prev}, {}", peer.ip())).ok(),
            None => headers::peer_value(peer.ip()),
        };
        if let Some(v) = xff {
            parts.headers.insert(&headers::X_FORWARDED_FOR, v);
        }
        if !trusted || !parts.headers.contains_key(&headers::X_FORWARDED_PROTO) {
            parts.headers.insert(
                &headers::X_FORWARDED_PROTO,
                HeaderValue::from_static("http"),
            );
        }
        if !trusted || !parts.headers.contains_key(&headers::X_FORWARDED_HOST) {
            match &host_value {
                Some(h) => parts.headers.insert(&headers::X_FORWARDED_HOST, h.clone()),
                None => parts.headers.remove(&headers::X_FORWARDED_HOST),
            };
        }
        let host = match (&variant.host_header, &host_value) {
            (HostHeader::Literal(h), _) => h,
            (HostHeader::Preserve, Some(h)) => h,
            // HTTP/1.1 needs one (a client without a Host, with `preserve`).
            (HostHeader::Upstream, _) | (HostHeader::Preserve, None) => &up.host_value,
        };
        parts.headers.insert(HOST, host.clone());
        parts.headers.insert(&H_REQUEST_ID, rid_value.clone());
        parts.uri = uri;
        parts.version = match variant.protocol {
            Protocol::Http1 if grpc => {
                return Err(fail(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "gRPC request routed to variant {:?}, whose upstream speaks http1: set `protocol: h2c`",
                        variant.name
                    ),
                    Some(&variant.name),
                    Some(rid),
                ));
            }
            Protocol::Http1 => Version::HTTP_11,
            Protocol::H2c => Version::HTTP_2,
        };
        let upstream_req = Request::from_parts(parts, body.map_err(BoxError::from).boxed());

        // Plain-HTTP/1.1 upstreams go through this worker's lean pool; https, h2c and
        // protocol upgrades through the general client.
        let pooled = if client_upgrade.is_none() {
            runtime.pool()
        } else {
            None
        };
        // `Clients` makes one client per worker, so there always is one.
        let Some(general) = runtime.client() else {
            return Err(fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no upstream client on this worker thread (a cohort bug: please report it)".into(),
                Some(&variant.name),
                Some(rid),
            ));
        };
        let call = async {
            match pooled {
                Some(pool) => pool
                    .send(upstream_req)
                    .await
                    .map(|r| r.map(UpstreamBody::Pooled))
                    .map_err(UpstreamFailure::from),
                None => general
                    .request(upstream_req)
                    .await
                    .map(|r| r.map(UpstreamBody::General))
                    .map_err(UpstreamFailure::from),
            }
        };
        let result = tokio::time::timeout(route.timeout, call)
            .instrument(upstream_span)
            .await;
        let resp = match result {
            Err(_) => {
                runtime.metrics.upstream_error(UpstreamErrorKind::Timeout);
                return Err(fail(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "upstream {} sent no response head within {} ms",
                        up.url,
                        route.timeout.as_millis()
                    ),
                    Some(&variant.name),
                    Some(rid),
                ));
            }
            Ok(Err(e)) => {
                runtime.metrics.upstream_error(if e.is_connect() {
                    UpstreamErrorKind::Connect
                } else {
                    UpstreamErrorKind::Reset
                });
                make_span().in_scope(|| warn!(error = %e, upstream = %up.url, "upstream failed"));
                return Err(fail(
                    StatusCode::BAD_GATEWAY,
                    format!("upstream {} failed: {}", up.url, describe(&e)),
                    Some(&variant.name),
                    Some(rid),
                ));
            }
            Ok(Ok(resp)) => resp,
        };
        if let Some(c) = chosen.as_mut() {
            c.head = Some(start.elapsed());
        }
        let mut resp = resp;
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if let (true, Some(client_side)) = (switching, client_upgrade) {
            // What `hyper::upgrade::on` takes, from a response of either body type.
            let upstream_side = resp.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
            let span = make_span();
            tokio::spawn(
                async move {
                    let Some(upstream_side) = upstream_side else {
                        warn!("the upstream switched protocols without an upgradable connection");
                        return;
                    };
                    match tokio::try_join!(client_side, upstream_side) {
                        Ok((client_io, upstream_io)) => {
                            let mut client_io = TokioIo::new(client_io);
                            let mut upstream_io = TokioIo::new(upstream_io);
                            if let Err(e) =
                                tokio::io::copy_bidirectional(&mut client_io, &mut upstream_io)
                                    .await
                            {
                                debug!(error = %e, "upgraded connection ended with an error");
                            }
                        }
                        Err(e) => warn!(error = %e, "upgrade failed"),
                    }
                }
                .instrument(span),
            );
        }
        let (mut parts, body) = resp.into_parts();
        // Answer in the client's protocol, whatever the upstream spoke (an HTTP/1.0 or h2c
        // upstream must not turn the client's keep-alive HTTP/1.1 connection into 1.0).
        parts.version = inbound_version;
        headers::strip_hop_by_hop(&mut parts.headers, false, switching);
        let h = &mut parts.headers;
        h.reserve(3);
        h.insert(&H_EXPERIMENT, exp.name_value.clone());
        h.insert(&H_VARIANT, variant.name_value.clone());
        h.insert(&H_REQUEST_ID, rid_value);
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
                h.insert(&H_UNIT, v);
            }
        }
        let body = idle::IdleTimeoutBody::new(body, route.idle_timeout, runtime.metrics.clone());
        Ok(Response::from_parts(parts, body))
    }
}

/// 202 `{"accepted": n}`, or 400 with every bad line.
pub fn conversions_response(
    result: Result<
        Result<usize, Vec<crate::events::conversions::LineError>>,
        tokio::task::JoinError,
    >,
) -> Response<Body> {
    let (status, body) = match result {
        Ok(Ok(n)) => (StatusCode::ACCEPTED, serde_json::json!({"accepted": n})),
        Ok(Err(errors)) => (
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "the batch was rejected as a whole; nothing was recorded", "errors": errors}),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"error": format!("recording failed: {e}")}),
        ),
    };
    let mut resp = Response::new(
        http_body_util::Full::new(Bytes::from(body.to_string()))
            .map_err(|never| -> BoxError { match never {} })
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A request's exposure as the handler knows it: indices into the table it was served by
/// and what the request already owned. The writer thread formats the timestamp and
/// serializes it as an exposure event straight from here, borrowing the names from the
/// table ([`ExposureRef`]): no copy of any name is made per event.
struct PendingExposure {
    serving: Arc<Serving>,
    chosen: Chosen,
    arrival: std::time::SystemTime,
    latency: std::time::Duration,
    status: u16,
    aborted: bool,
    /// `arrival` as RFC 3339, filled in by the writer thread ([`LazyEvent::prepare`]).
    ts: [u8; 24],
    /// `arrival` in nanoseconds since the epoch, to the millisecond (as `ts` has it).
    ts_ns: Option<i64>,
}

impl LazyEvent for PendingExposure {
    fn prepare(&mut self) {
        self.ts = crate::clock::rfc3339_bytes(self.arrival);
        // Millisecond precision, as written: the tally sees what a reader of the log sees.
        self.ts_ns = self
            .arrival
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_nanos()).ok())
            .map(|ns| ns - ns % 1_000_000);
    }

    fn view(&self) -> EventRef<'_> {
        let c = &self.chosen;
        let route = &self.serving.routes.routes[c.route];
        let exp = &self.serving.routes.experiments[route.experiment];
        // Minted by cohort from validated names and hex: ASCII, checked as UTF-8 (a scan
        // several times cheaper than `to_str`'s byte-by-byte one).
        let request_id = std::str::from_utf8(c.request_id.as_bytes()).unwrap_or_default();
        EventRef::Exposure(ExposureRef {
            v: Some(1),
            ts: std::str::from_utf8(&self.ts).unwrap_or_default(),
            experiment: &exp.name,
            // A request without a unit is recorded under its request id, and marked.
            unit: c.unit.as_deref().unwrap_or(request_id),
            variant: &exp.variants[c.variant].name,
            request_id: Some(request_id),
            client_request_id: c.client_request_id.as_ref().and_then(|v| v.to_str().ok()),
            config_version: Some(&self.serving.routes.version),
            route: Some(&route.name),
            status: Some(self.status),
            // To the microsecond: `42.481`, not `42.481270999999996` (the log is
            // written at up to tens of thousands of lines a second; every byte costs).
            latency_ms: Some(self.latency.as_micros() as f64 / 1e3),
            aborted: self.aborted,
            forced: c.forced,
            unit_missing: c.unit.is_none(),
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

/// Whether a request asks for an HTTP/1.1 protocol upgrade (WebSocket).
fn is_upgrade(headers: &http::HeaderMap) -> bool {
    headers.contains_key(http::header::UPGRADE)
        && headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
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
