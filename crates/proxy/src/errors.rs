//! cohort's own error responses, before any upstream response head was sent.
//!
//! JSON `{"error", "experiment", "variant", "request_id"}` with the status that says what
//! happened: 400 bad request, 404 no route, 502 upstream refused or reset, 503 shutting
//! down, 504 upstream timeout. A gRPC request (`content-type: application/grpc…`) is
//! answered as gRPC instead: a trailers-only response (HTTP 200, `grpc-status`,
//! `grpc-message`), since gRPC clients ignore HTTP statuses and bodies.

use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{empty, json_response, Body};

/// What went wrong, and for which experiment and variant (where known).
#[derive(Debug, Clone)]
pub struct ProxyError {
    pub status: StatusCode,
    pub message: String,
    pub experiment: Option<String>,
    pub variant: Option<String>,
    pub request_id: Option<String>,
}

impl ProxyError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            experiment: None,
            variant: None,
            request_id: None,
        }
    }

    /// The response for this error: JSON, or gRPC trailers-only for a gRPC request.
    pub fn into_response(self, grpc: bool) -> Response<Body> {
        if grpc {
            return self.into_grpc_response();
        }
        let body = serde_json::json!({
            "error": self.message,
            "experiment": self.experiment,
            "variant": self.variant,
            "request_id": self.request_id,
        });
        let mut resp = json_response(self.status, &body);
        self.identify(resp.headers_mut());
        resp
    }
}

impl ProxyError {
    /// The gRPC status code for this error (UNAVAILABLE for 502/503, DEADLINE_EXCEEDED for
    /// 504, UNIMPLEMENTED for no route, INVALID_ARGUMENT for a bad request).
    pub fn grpc_status(&self) -> u8 {
        match self.status.as_u16() {
            502 | 503 => 14,
            504 => 4,
            404 => 12,
            400 => 3,
            _ => 13,
        }
    }

    fn into_grpc_response(self) -> Response<Body> {
        let mut resp = Response::new(empty());
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert(
            "grpc-status",
            HeaderValue::from(u16::from(self.grpc_status())),
        );
        if let Ok(v) = HeaderValue::from_str(&percent_encode(&self.message)) {
            h.insert("grpc-message", v);
        }
        self.identify(h);
        resp
    }

    /// The `x-cohort-experiment`, `x-cohort-variant` and `x-cohort-request-id` headers a
    /// proxied response carries, as far as they are known: cohort's own answers carry them
    /// too.
    fn identify(&self, h: &mut http::HeaderMap) {
        for (name, value) in [
            ("x-cohort-experiment", &self.experiment),
            ("x-cohort-variant", &self.variant),
            ("x-cohort-request-id", &self.request_id),
        ] {
            if let Some(v) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                h.insert(name, v);
            }
        }
    }
}

/// gRPC's `grpc-message` encoding: printable ASCII except `%` as is, the rest as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a request is gRPC (by its content type).
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}
