//! The serving state every connection shares, and a request's run through the phases.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use http_body_util::BodyExt;

use crate::body::Body;
use crate::capture::{Captures, Skip, Slot};
use crate::errors::{is_grpc, ProxyError};
use crate::idle::IdleTimeoutBody;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::phases::{record, respond, rewrite, route, send, upgrade, Exchange};
use crate::pool::UpstreamBody;
use crate::server::{serve_http, Connections, Shutdown};
use crate::serving::Serving;
use crate::shadow::{self, Shadows};
use crate::tap::Tapped;
use crate::upstream::Clients;
use crate::workers::Workers;
use cohort_config::{ConfigError, Routes};
use cohort_events::EventLog;

/// The serving state shared by every connection.
pub struct Proxy {
    tables: Installer,
    /// The outcome log; None when the process records no events (tests, demo).
    events: Option<EventLog>,
    /// Where calls sampled for model monitoring go; None: nothing is captured.
    captures: Option<Captures>,
    /// The threads that serve connections.
    workers: Workers,
}

/// The handle that puts routing tables in force: what the control plane holds, rather than
/// the whole proxy. Cloning is cheap.
#[derive(Clone)]
pub struct Installer {
    shared: Arc<Tables>,
}

struct Tables {
    live: Live<Serving>,
    clients: Clients,
    metrics: Arc<Metrics>,
    /// What shadows keep across tables, and their thread.
    shadows: Shadows,
    /// Probe each variant's upstream whenever a table goes in force ([`crate::probe`]).
    probe: std::sync::atomic::AtomicBool,
}

impl Installer {
    /// Puts a new table in force for every request that starts from now on. Clients of
    /// unchanged upstream settings are reused, with their warm connections. With probing
    /// on ([`Proxy::probe_upstreams`]), each variant's upstream is then probed in the
    /// background.
    pub fn install(&self, routes: Routes) -> Result<(), ConfigError> {
        let t = &self.shared;
        let serving = Serving::build(routes, &t.clients, &t.metrics, &t.shadows)?;
        if t.probe.load(std::sync::atomic::Ordering::Relaxed) {
            crate::probe::spawn(&serving);
        }
        t.live.swap(serving);
        Ok(())
    }

    /// The routing table in force.
    pub fn routes(&self) -> Arc<Serving> {
        self.shared.live.load()
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }
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
        let shadows = Shadows::default();
        let serving = Serving::build(routes, &clients, &metrics, &shadows)?;
        let shared = Arc::new(Tables {
            live: Live::new(serving),
            clients,
            metrics,
            shadows,
            probe: std::sync::atomic::AtomicBool::new(false),
        });
        Ok(Self {
            tables: Installer { shared },
            events: None,
            captures: None,
            workers,
        })
    }

    /// Records an exposure event for every request that runs an experiment.
    /// Hands the calls that experiments' `monitor` sections sample to `captures`.
    pub fn with_captures(mut self, captures: Captures) -> Self {
        self.captures = Some(captures);
        self
    }

    pub fn with_events(mut self, log: EventLog) -> Self {
        self.tables.shared.shadows.log_to(log.clone());
        self.events = Some(log);
        self
    }

    /// Probes each variant's upstream now (in the background) and whenever a table goes in
    /// force from now on: what `cohort serve` does. Off by default, since a probe is a
    /// connection an embedded proxy's upstream may not expect.
    pub fn probe_upstreams(&self) {
        let t = &self.tables.shared;
        t.probe.store(true, std::sync::atomic::Ordering::Relaxed);
        crate::probe::spawn(&t.live.load());
    }

    /// Puts a new table in force ([`Installer::install`]).
    pub fn install(&self, routes: Routes) -> Result<(), ConfigError> {
        self.tables.install(routes)
    }

    /// The handle that puts tables in force, for the control plane.
    pub fn installer(&self) -> Installer {
        self.tables.clone()
    }

    /// The routing table in force.
    pub fn routes(&self) -> Arc<Serving> {
        self.tables.routes()
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.tables.metrics()
    }

    /// The outcome log, if this process records events.
    pub fn event_log(&self) -> Option<&EventLog> {
        self.events.as_ref()
    }

    /// Serves `listener` until the task is dropped, with the config's limits.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let max = self.routes().routes.file.limits.max_connections;
        self.serve_with(listener, Connections::new(max), Shutdown::new())
            .await
    }

    /// Serves `listener` until `shutdown` begins, counting connections in `connections`.
    pub async fn serve_with(
        self: Arc<Self>,
        listener: TcpListener,
        connections: Connections,
        shutdown: Shutdown,
    ) {
        let limits = self.routes().routes.file.limits.clone();
        serve_http(
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

    /// One request, start to finish: the phases in order, then the record phase with
    /// whatever answer they came to.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let serving = self.tables.routes();
        if let Some(public) = &serving.routes.file.conversions.public_path {
            if req.uri().path() == public {
                return self.public_conversions(req, serving).await;
            }
        }
        let mut ex = Exchange::new(serving, peer, is_grpc(req.headers()));
        let shadows = &self.tables.shared.shadows;
        let resp = forward(&mut ex, req, self.captures.as_ref(), shadows)
            .await
            .map_err(|err| err.into_response(ex.grpc));
        // The served answer goes to the shadows as the client gets it.
        let shadow = ex.shadow.take().and_then(|call| match &resp {
            Ok(r) => {
                let head = ex.head.unwrap_or_else(|| ex.start.elapsed());
                Some(call.answer_tap(r.status().as_u16(), r.headers(), head))
            }
            Err(_) => {
                call.no_answer();
                None
            }
        });
        // Only the model's own successful answer is monitored.
        let capture = ex.capture.take().filter(|slot| match &resp {
            Ok(r) if r.status().is_success() => true,
            Ok(_) => {
                slot.abandon(Skip::Status);
                false
            }
            Err(_) => false,
        });
        let resp = record::record(ex, resp, self.events.as_ref());
        let resp = match capture {
            Some(slot) => resp.map(|body| Tapped::new(body, slot.response_tap()).boxed()),
            None => resp,
        };
        match shadow {
            Some(copy) => resp.map(|body| Tapped::new(body, copy).boxed()),
            None => resp,
        }
    }

    /// `conversions.public_path`: conversions from browsers.
    async fn public_conversions(
        &self,
        req: Request<Incoming>,
        serving: Arc<Serving>,
    ) -> Response<Body> {
        if req.method() != Method::POST {
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
        crate::conversions::receive(req.into_body(), serving, log, self.metrics().clone()).await
    }
}

/// Whether this call is captured for model monitoring ([`crate::capture`]).
fn sample(ex: &mut Exchange, captures: &Captures) {
    let (Some(route), Some(pick)) = (ex.route, &ex.pick) else {
        return;
    };
    let routes = &ex.serving.routes;
    let e = routes.routes[route].experiment;
    let Some(sampling) = &ex.serving.sampling[e] else {
        return;
    };
    if sampling.take(ex.arrival) {
        let exp = &routes.experiments[e];
        ex.capture = Some(Slot::new(
            captures.clone(),
            sampling.max_body_bytes,
            &exp.name,
            &exp.variants[pick.variant].name,
            pick.unit.as_deref(),
            &exp.salt,
            ex.arrival,
        ));
    }
}

/// The phases from route to respond; the upstream's body stays unboxed until the record
/// phase wraps it.
async fn forward(
    ex: &mut Exchange,
    mut req: Request<Incoming>,
    captures: Option<&Captures>,
    shadows: &Shadows,
) -> Result<Response<IdleTimeoutBody<UpstreamBody>>, ProxyError> {
    let client_upgrade = upgrade::client_half(&mut req);
    let (mut parts, body) = req.into_parts();
    let version = parts.version;
    route::route(ex, &parts)?;
    if client_upgrade.is_none() {
        if let Some(captures) = captures {
            sample(ex, captures);
        }
    }
    ex.shadow = shadow::plan(ex, client_upgrade.is_some(), shadows);
    // The client's URI, which the shadows' URIs are made from once the head is rewritten.
    let client_uri = ex.shadow.as_ref().map(|_| parts.uri.clone());
    rewrite::rewrite(ex, &mut parts, client_upgrade.is_some())?;
    if let (Some(call), Some(uri)) = (&ex.shadow, &client_uri) {
        call.set_head(ex, uri, &parts);
    }
    let mut resp = send::send(ex, parts, body, client_upgrade.is_some()).await?;
    ex.head = Some(ex.start.elapsed());
    upgrade::join(ex, &mut resp, client_upgrade);
    respond::respond(ex, resp, version)
}
