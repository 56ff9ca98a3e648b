//! The admin listener: probes, metrics and the read API.
//!
//! Open endpoints (kubelet and Prometheus reach them; deploy/ binds the admin port to
//! 0.0.0.0, the default is loopback):
//! * `GET /metrics`: Prometheus text format, every family of the contract;
//! * `GET /healthz`: 200 while the process serves;
//! * `GET /readyz`: 200 once the config is loaded and the public listener is bound, 503
//!   before (and, with graceful shutdown, while draining);
//! * `GET /v1/assign?experiment=E&unit=U`: the variant and bucket a unit gets;
//! * `GET /v1/config`: the version in force, when it was loaded, the source file's hash,
//!   the last reload's result and error, and what is pending;
//! * `GET /v1/experiments`: each experiment's variants, weights and shares.
//!
//! Mutating calls need a bearer token with the right scope ([`auth`]):
//! * `POST /v1/reload` (scope `control`): 200 with the new version, or 422 with the error
//!   or refusal as JSON;
//! * `PUT /v1/experiments/{name}/weights` `{"rf": 90, "lr": 10}`, `POST …/promote`
//!   `{"variant": "lr"}`, `POST …/reset` (scope `control`): runtime weights
//!   ([`crate::overrides`]), answered with the routes.yaml change that would make them
//!   permanent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::net::TcpListener;

pub mod auth;

use tokio::sync::{mpsc, oneshot};
use tracing::info;

use crate::reload::{
    Outcome, Reloader, RolloutAction, RolloutError, Trigger, WeightChange, WeightError,
};
use crate::rollout::Rollouts;
use auth::{AdminAuth, Caller, Denied};
use cohort_analysis::LiveCounts;
use cohort_assign::unit::query_param;
use cohort_clickhouse::live::FleetLive;
use cohort_config::assign;
use cohort_config::schema::Scope;
use cohort_proxy::{Body, Proxy};

/// Connections the admin listener holds at once.
pub const ADMIN_CONNECTIONS: u32 = 1024;

/// How long an admin connection may take to send a request head (probes send theirs at
/// once); the public listener uses `limits.header_read_timeout_ms`.
pub const ADMIN_FIRST_REQUEST: std::time::Duration = std::time::Duration::from_secs(1);

/// What the admin endpoints read.
pub struct Admin {
    pub proxy: Arc<Proxy>,
    /// Set once the public listener is bound (and cleared while shutting down).
    pub ready: Arc<AtomicBool>,
    pub auth: AdminAuth,
    /// The reload task, where there is a config file to reload.
    pub reload: Option<ReloadHandle>,
    /// Live per-variant counts, where the process keeps an event log.
    pub counts: Option<Arc<LiveCounts>>,
    /// With shipping: the fleet's report from ClickHouse, which the live report endpoints
    /// serve instead of this replica's counts.
    pub fleet: Option<Arc<FleetLive>>,
    /// The rollouts' task, where rollouts are evaluated.
    pub rollouts: Option<Arc<Rollouts>>,
    /// Model monitoring's latest windows, for the live report's monitoring section.
    pub monitoring: Option<Arc<crate::monitoring::RecentWindows>>,
}

/// How the admin listener reaches the reload task.
#[derive(Clone)]
pub struct ReloadHandle {
    pub reloader: Arc<Reloader>,
    pub trigger: mpsc::Sender<Trigger>,
}

impl Admin {
    /// Serves `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        self.serve_with(listener, cohort_proxy::server::Shutdown::new())
            .await
    }

    /// Serves `listener` until `shutdown` begins, with at most [`ADMIN_CONNECTIONS`]
    /// connections, each closed unless it sends a request head within
    /// [`ADMIN_FIRST_REQUEST`]: kubelet's probes must be answered even while something
    /// floods the port with connections that say nothing.
    pub async fn serve_with(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: cohort_proxy::server::Shutdown,
    ) {
        let mut limits = self.proxy.routes().routes.file.limits.clone();
        limits.header_read_timeout_ms = limits
            .header_read_timeout_ms
            .min(ADMIN_FIRST_REQUEST.as_millis() as u64);
        let connections = cohort_proxy::server::Connections::new(ADMIN_CONNECTIONS);
        cohort_proxy::server::serve_http(
            listener,
            "admin",
            limits,
            connections,
            shutdown,
            cohort_proxy::workers::Workers::here(),
            move |req, peer| {
                let admin = self.clone();
                async move { admin.handle(req, peer).await }
            },
        )
        .await
    }

    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let path = path.as_str();
        // The probes and /metrics stay open for kubelet and Prometheus; with tokens
        // configured, everything else needs one.
        if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
            if let Err(denied) = self.auth.check_read(req.headers()) {
                return denied_response(denied);
            }
        }
        if path == "/v1/reload" {
            return self.reload(&req, peer).await;
        }
        if path == "/v1/conversions" {
            return self.conversions(req).await;
        }
        if let Some(name) = path
            .strip_prefix("/v1/experiments/")
            .and_then(|r| r.strip_suffix("/counts"))
        {
            return self.counts(name);
        }
        if let Some(rest) = path.strip_prefix("/v1/experiments/") {
            if let Some(name) = rest.strip_suffix("/report.html") {
                let refresh = refresh_of(req.uri().query().unwrap_or(""));
                return self.report(name, Some(refresh)).await;
            }
            if let Some(name) = rest.strip_suffix("/report") {
                return self.report(name, None).await;
            }
        }
        if let Some(rest) = path.strip_prefix("/v1/experiments/") {
            if let Some((name, op)) = rest.split_once("/rollout") {
                if op.is_empty() || op.starts_with('/') {
                    let (name, op) = (name.to_owned(), op.trim_start_matches('/').to_owned());
                    return self.rollout(req, &name, &op, peer).await;
                }
            }
            let rest = rest.to_owned();
            return self.experiment_action(req, &rest, peer).await;
        }
        let known = matches!(
            path,
            "/" | "/metrics"
                | "/healthz"
                | "/readyz"
                | "/v1/assign"
                | "/v1/config"
                | "/v1/experiments"
        );
        if known && req.method() != Method::GET && req.method() != Method::HEAD {
            return json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": format!("{path} answers GET only")}),
            );
        }
        match path {
            "/" => {
                let serving = self.proxy.routes();
                let names: Vec<String> = serving
                    .routes
                    .experiments
                    .iter()
                    .map(|e| e.name.clone())
                    .collect();
                html_response(cohort_report::html::index_page(
                    &names,
                    &serving.routes.version,
                ))
            }
            "/metrics" => {
                let mut resp = text(StatusCode::OK, self.proxy.metrics().render());
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            "/healthz" => json_response(StatusCode::OK, json!({"status": "ok"})),
            "/readyz" => {
                if self.ready.load(Ordering::Acquire) {
                    json_response(StatusCode::OK, json!({"status": "ready"}))
                } else {
                    json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"status": "not ready"}),
                    )
                }
            }
            "/v1/assign" => self.assign(req.uri().query().unwrap_or("")),
            "/v1/config" => self.config(),
            "/v1/experiments" => self.experiments(),
            _ => json_response(
                StatusCode::NOT_FOUND,
                json!({"error": format!("no admin endpoint {path}"), "endpoints": ["/", "/metrics", "/healthz", "/readyz", "/v1/assign?experiment=E&unit=U", "/v1/config", "/v1/experiments", "/v1/experiments/{name}/counts", "/v1/experiments/{name}/report", "/v1/experiments/{name}/report.html", "POST /v1/reload", "PUT /v1/experiments/{name}/weights", "POST /v1/experiments/{name}/promote", "POST /v1/experiments/{name}/reset", "/v1/experiments/{name}/rollout", "POST /v1/experiments/{name}/rollout/pause|abort|resume", "POST /v1/conversions"]}),
            ),
        }
    }

    /// Who may change the table (scope `control`), and the reload task that changes it.
    fn control(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<(Caller, &ReloadHandle), Box<Response<Body>>> {
        let caller = self
            .auth
            .check(headers, Scope::Control)
            .map_err(|d| Box::new(denied_response(d)))?;
        let handle = self.reload.as_ref().ok_or_else(|| {
            Box::new(json_response(
                StatusCode::CONFLICT,
                json!({"error": "this process serves no config file, so there is nothing to reload or change"}),
            ))
        })?;
        Ok((caller, handle))
    }

    /// `POST /v1/reload`: runs a reload through the reload task and answers its outcome.
    async fn reload(&self, req: &Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        if req.method() != Method::POST {
            return json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": "/v1/reload answers POST only"}),
            );
        }
        let (caller, handle) = match self.control(req.headers()) {
            Ok(ok) => ok,
            Err(resp) => return *resp,
        };
        info!(caller = %caller, %peer, "reload requested through the admin API");
        let (tx, rx) = oneshot::channel();
        if handle.trigger.send(Trigger::Admin(tx)).await.is_err() {
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "the reload task is not running"}),
            );
        }
        match rx.await {
            Ok(outcome) => {
                let status = match outcome {
                    Outcome::Applied { .. } | Outcome::Unchanged { .. } => StatusCode::OK,
                    Outcome::Error { .. } | Outcome::Refused { .. } => {
                        StatusCode::UNPROCESSABLE_ENTITY
                    }
                };
                json_response(
                    status,
                    serde_json::to_value(&outcome).unwrap_or(Value::Null),
                )
            }
            Err(_) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "the reload task stopped before answering"}),
            ),
        }
    }

    /// `GET /v1/experiments/{name}/rollout` (the state, step, guardrails, next evaluation)
    /// and `POST …/rollout/pause`, `…/abort`, `…/resume` (scope `control`).
    async fn rollout(
        &self,
        req: Request<Incoming>,
        name: &str,
        op: &str,
        peer: SocketAddr,
    ) -> Response<Body> {
        let Some(rollouts) = self.rollouts.clone() else {
            return json_response(
                StatusCode::CONFLICT,
                json!({"error": "this process runs no rollouts"}),
            );
        };
        let action = match op {
            "" => {
                if req.method() != Method::GET && req.method() != Method::HEAD {
                    return json_response(
                        StatusCode::METHOD_NOT_ALLOWED,
                        json!({"error": "/v1/experiments/{name}/rollout answers GET only; POST to …/rollout/pause, /abort or /resume"}),
                    );
                }
                if let Err(denied) = self.auth.check_read_scope(req.headers(), Scope::Control) {
                    return denied_response(denied);
                }
                return match rollouts.view(name) {
                    Ok(v) => json_response(
                        StatusCode::OK,
                        serde_json::to_value(&v).unwrap_or(Value::Null),
                    ),
                    Err(e) => json_response(StatusCode::NOT_FOUND, json!({"error": e.to_string()})),
                };
            }
            "pause" => RolloutAction::Pause,
            "abort" => RolloutAction::Abort,
            "resume" => RolloutAction::Resume,
            _ => {
                return json_response(
                    StatusCode::NOT_FOUND,
                    json!({"error": format!("no rollout action {op:?}: use pause, abort or resume")}),
                )
            }
        };
        if req.method() != Method::POST {
            return json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": format!("/v1/experiments/{{name}}/rollout/{op} answers POST only")}),
            );
        }
        let (caller, handle) = match self.control(req.headers()) {
            Ok(ok) => ok,
            Err(resp) => return *resp,
        };
        let who = format!("{caller} from {peer}");
        let reloader = handle.reloader.clone();
        let name = name.to_owned();
        let result = tokio::task::spawn_blocking(move || {
            let r = reloader.rollout_action(&name, action, &who);
            rollouts.sync();
            r
        })
        .await;
        match result {
            Ok(Ok(outcome)) => json_response(
                StatusCode::OK,
                serde_json::to_value(&outcome).unwrap_or(Value::Null),
            ),
            Ok(Err(RolloutError::UnknownExperiment(m))) => {
                json_response(StatusCode::NOT_FOUND, json!({"error": m}))
            }
            Ok(Err(RolloutError::Conflict(m))) => {
                json_response(StatusCode::CONFLICT, json!({"error": m}))
            }
            Ok(Err(RolloutError::Invalid(m))) => {
                json_response(StatusCode::UNPROCESSABLE_ENTITY, json!({"error": m}))
            }
            Ok(Err(RolloutError::Persist(m))) => {
                json_response(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": m}))
            }
            Err(e) => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": format!("the rollout action failed: {e}")}),
            ),
        }
    }

    /// `PUT /v1/experiments/{name}/weights`, `POST …/promote`, `POST …/reset`.
    async fn experiment_action(
        &self,
        req: Request<Incoming>,
        rest: &str,
        peer: SocketAddr,
    ) -> Response<Body> {
        let Some((name, action)) = rest.split_once('/') else {
            return json_response(
                StatusCode::NOT_FOUND,
                json!({"error": "use /v1/experiments/{name}/weights, /promote or /reset"}),
            );
        };
        let expected = match action {
            "weights" => Method::PUT,
            "promote" | "reset" => Method::POST,
            _ => {
                return json_response(
                    StatusCode::NOT_FOUND,
                    json!({"error": format!("no action {action:?}: use weights, promote or reset")}),
                )
            }
        };
        if req.method() != expected {
            return json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": format!("/v1/experiments/{{name}}/{action} answers {expected} only")}),
            );
        }
        let (caller, handle) = match self.control(req.headers()) {
            Ok(ok) => ok,
            Err(resp) => return *resp,
        };
        let body = match http_body_util::Limited::new(req.into_body(), 64 * 1024)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return json_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    json!({"error": format!("cannot read the body: {e}")}),
                )
            }
        };
        let change = match action {
            "weights" => {
                match serde_json::from_slice::<std::collections::BTreeMap<String, f64>>(&body) {
                    Ok(w) => WeightChange::Weights(w),
                    Err(e) => {
                        return json_response(
                            StatusCode::BAD_REQUEST,
                            json!({"error": format!("expected a JSON object of weights, e.g. {{\"rf\": 90, \"lr\": 10}}: {e}")}),
                        )
                    }
                }
            }
            "promote" => match serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["variant"].as_str().map(str::to_owned))
            {
                Some(v) => WeightChange::Promote(v),
                None => {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        json!({"error": "expected {\"variant\": NAME}"}),
                    )
                }
            },
            _ => WeightChange::Reset,
        };
        let who = format!("{caller} from {peer}");
        let reloader = handle.reloader.clone();
        let name = name.to_owned();
        let result =
            tokio::task::spawn_blocking(move || reloader.change_weights(&name, change, &who)).await;
        match result {
            Ok(Ok(outcome)) => {
                let status = match outcome.outcome {
                    Outcome::Applied { .. } | Outcome::Unchanged { .. } => StatusCode::OK,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                json_response(
                    status,
                    serde_json::to_value(&outcome).unwrap_or(Value::Null),
                )
            }
            Ok(Err(WeightError::UnknownExperiment(m))) => {
                json_response(StatusCode::NOT_FOUND, json!({"error": m}))
            }
            Ok(Err(WeightError::Invalid(m))) => {
                json_response(StatusCode::BAD_REQUEST, json!({"error": m}))
            }
            Ok(Err(WeightError::Persist(m))) => {
                json_response(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": m}))
            }
            Ok(Err(WeightError::Conflict(m))) => {
                json_response(StatusCode::CONFLICT, json!({"error": m}))
            }
            Err(e) => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": format!("the change failed: {e}")}),
            ),
        }
    }

    /// `POST /v1/conversions` (scope `conversions`).
    async fn conversions(&self, req: Request<Incoming>) -> Response<Body> {
        if req.method() != Method::POST {
            return json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": "/v1/conversions answers POST only"}),
            );
        }
        if let Err(denied) = self.auth.check(req.headers(), Scope::Conversions) {
            return denied_response(denied);
        }
        let Some(log) = self.proxy.event_log().cloned() else {
            return json_response(
                StatusCode::CONFLICT,
                json!({"error": "this process records no events"}),
            );
        };
        cohort_proxy::conversions::receive(
            req.into_body(),
            self.proxy.routes(),
            log,
            self.proxy.metrics().clone(),
        )
        .await
    }

    /// `GET /v1/experiments/{name}/report` (JSON, one report of `cohort report --format
    /// json`) and `…/report.html` (`html`: Some(auto-refresh period)); also refreshes the
    /// `cohort_experiment_*` gauges.
    async fn report(&self, name: &str, html: Option<Option<u32>>) -> Response<Body> {
        let Some(counts) = self.counts.clone() else {
            return json_response(
                StatusCode::CONFLICT,
                json!({"error": "this process keeps no event log"}),
            );
        };
        let serving = self.proxy.routes();
        let Some(exp) = serving.routes.experiment(name).cloned() else {
            return json_response(
                StatusCode::NOT_FOUND,
                json!({"error": format!("no experiment named {name:?}")}),
            );
        };
        let metrics = self.proxy.metrics().clone();
        let (name, salt) = (exp.name.clone(), exp.salt.clone());
        let mut report = match &self.fleet {
            Some(fleet) => match fleet.report(&exp).await {
                Ok(c) => (*c.report).clone(),
                Err(e) => {
                    tracing::warn!(experiment = %exp.name, error = %e, "cannot compute the fleet's report");
                    return json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"error": format!("the fleet's report needs ClickHouse, which failed: {}", e.kind()), "experiment": exp.name}),
                    );
                }
            },
            None => {
                let dir = serving.routes.file.events.dir.clone();
                let local = tokio::task::spawn_blocking(move || counts.report(&exp, &dir)).await;
                let Ok(r) = local else {
                    return json_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"error": "the analysis failed"}),
                    );
                };
                r
            }
        };
        crate::gauges::publish(&metrics, &report);
        // This replica's windows (the fleet's, every replica's, are `cohort report
        // --clickhouse`'s).
        if let Some(recent) = &self.monitoring {
            report.monitoring = recent.report(&name, &salt);
        }
        if let Some(refresh) = html {
            return html_response(cohort_report::html::live_page(&report, refresh));
        }
        match serde_json::to_value(&report) {
            Ok(v) => json_response(StatusCode::OK, v),
            Err(e) => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": format!("cannot serialize the report: {e}")}),
            ),
        }
    }

    /// `GET /v1/experiments/{name}/counts`.
    fn counts(&self, name: &str) -> Response<Body> {
        let Some(counts) = &self.counts else {
            return json_response(
                StatusCode::CONFLICT,
                json!({"error": "this process keeps no event log"}),
            );
        };
        if self.proxy.routes().routes.experiment(name).is_none() {
            return json_response(
                StatusCode::NOT_FOUND,
                json!({"error": format!("no experiment named {name:?}")}),
            );
        }
        let c = counts.experiment(name).unwrap_or_default();
        json_response(
            StatusCode::OK,
            json!({"experiment": name, "counts": c, "latency_ms_bucket_bounds": cohort_analysis::counts::LATENCY_BUCKETS_MS}),
        )
    }

    /// `GET /v1/config`.
    fn config(&self) -> Response<Body> {
        let serving = self.proxy.routes();
        let r = &serving.routes;
        let body = match &self.reload {
            Some(h) => serde_json::to_value(h.reloader.status()).unwrap_or(Value::Null),
            None => json!({
                "file": r.source.file,
                "version": r.version,
                "source_hash": r.source.hash,
                "last_result": null,
                "last_error": null,
                "pending": null,
            }),
        };
        json_response(StatusCode::OK, body)
    }

    /// `GET /v1/experiments`.
    fn experiments(&self) -> Response<Body> {
        let serving = self.proxy.routes();
        let layers = self.reload.as_ref().map(|h| h.reloader.layers());
        let list: Vec<Value> = serving
            .routes
            .experiments
            .iter()
            .map(|e| {
                let file_exp = layers
                    .as_ref()
                    .and_then(|(file, _)| file.experiments.iter().find(|f| f.name == e.name));
                let runtime = layers
                    .as_ref()
                    .and_then(|(_, rt)| rt.experiments.get(&e.name));
                json!({
                    "name": e.name,
                    "control": e.variants[e.control].name,
                    "salt": e.salt,
                    "runtime": runtime.map(|o| json!({"set_by": o.set_by, "set_at": o.set_at})),
                    "variants": e.variants.iter().map(|v| json!({
                        "name": v.name,
                        "file_weight": file_exp
                            .and_then(|f| f.variants.iter().find(|fv| fv.name == v.name))
                            .map_or(v.weight, |fv| fv.weight),
                        "runtime_weight": runtime.and_then(|o| o.weights.get(&v.name)),
                        "share": f64::from(v.buckets) / f64::from(cohort_assign::BUCKETS),
                        "upstream": v.upstream.url,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json_response(
            StatusCode::OK,
            json!({"version": serving.routes.version, "experiments": list}),
        )
    }

    fn assign(&self, query: &str) -> Response<Body> {
        let (Some(experiment), Some(unit)) =
            (query_param(query, "experiment"), query_param(query, "unit"))
        else {
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({"error": "both query parameters are required: /v1/assign?experiment=E&unit=U"}),
            );
        };
        let serving = self.proxy.routes();
        let Some(exp) = serving.routes.experiment(&experiment) else {
            let known: Vec<&str> = serving
                .routes
                .experiments
                .iter()
                .map(|e| e.name.as_str())
                .collect();
            return json_response(
                StatusCode::NOT_FOUND,
                json!({"error": format!("no experiment named {experiment:?}"), "experiments": known}),
            );
        };
        let a = assign(exp, &unit);
        json_response(
            StatusCode::OK,
            json!({
                "experiment": exp.name,
                "unit": unit,
                "variant": exp.variants[a.variant].name,
                "bucket": a.bucket,
                "config_version": serving.routes.version,
            }),
        )
    }
}

fn denied_response(denied: Denied) -> Response<Body> {
    match denied {
        Denied::Unauthorized(m) => json_response(StatusCode::UNAUTHORIZED, json!({"error": m})),
        Denied::Forbidden(m) => json_response(StatusCode::FORBIDDEN, json!({"error": m})),
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(cohort_proxy::body::full(body));
    *resp.status_mut() = status;
    resp
}

fn json_response(status: StatusCode, body: Value) -> Response<Body> {
    cohort_proxy::json_response(status, &body)
}

/// An HTML page answer.
fn html_response(page: String) -> Response<Body> {
    let mut resp = text(StatusCode::OK, page);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

/// `refresh=SECONDS` of a live page's query, if it is one the page offers.
fn refresh_of(query: &str) -> Option<u32> {
    query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("refresh="))
        .filter_map(|v| v.parse().ok())
        .find(|s| cohort_report::html::REFRESH_CHOICES.contains(s))
}
