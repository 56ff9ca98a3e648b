//! The admin listener: probes, metrics and the read API.
//!
//! Open endpoints (kubelet and Prometheus reach them; deploy/ binds the admin port to
//! 0.0.0.0, the default is loopback):
//! * `GET /metrics`: Prometheus text format, every family of the contract;
//! * `GET /healthz`: 200 while the process serves;
//! * `GET /readyz`: 200 once the config is loaded and the public listener is bound, 503
//!   before (and, with graceful shutdown, while draining);
//! * `GET /v1/assign?experiment=E&unit=U`: the variant and bucket a unit gets.
//!
//! Mutating calls (reload, runtime weights, conversions) come with their issues and need a
//! bearer token (`admin.tokens`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::assign::{assign, unit::query_param};
use crate::proxy::{Body, BoxError, Proxy};

/// What the admin endpoints read.
pub struct Admin {
    pub proxy: Arc<Proxy>,
    /// Set once the public listener is bound (and cleared while shutting down).
    pub ready: Arc<AtomicBool>,
}

impl Admin {
    /// Serves `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        crate::server::serve_http(listener, "admin", move |req, _peer| {
            let response = self.handle(req);
            async move { response }
        })
        .await
    }

    fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path();
        let known = matches!(path, "/metrics" | "/healthz" | "/readyz" | "/v1/assign");
        if known && req.method() != Method::GET && req.method() != Method::HEAD {
            return json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": format!("{path} answers GET only")}),
            );
        }
        match path {
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
            _ => json_response(
                StatusCode::NOT_FOUND,
                json!({"error": format!("no admin endpoint {path}"), "endpoints": ["/metrics", "/healthz", "/readyz", "/v1/assign?experiment=E&unit=U"]}),
            ),
        }
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

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| -> BoxError { match never {} })
            .boxed(),
    );
    *resp.status_mut() = status;
    resp
}

fn json_response(status: StatusCode, body: Value) -> Response<Body> {
    let mut resp = text(status, body.to_string());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
