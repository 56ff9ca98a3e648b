//! cohort's own error responses, before any upstream response head was sent.
//!
//! JSON `{"error", "experiment", "variant", "request_id"}` with the status that says what
//! happened: 400 bad request, 404 no route, 502 upstream refused or reset, 503 shutting
//! down, 504 upstream timeout.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::Body;

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

    pub fn into_response(self) -> Response<Body> {
        let body = serde_json::json!({
            "error": self.message,
            "experiment": self.experiment,
            "variant": self.variant,
            "request_id": self.request_id,
        });
        let mut resp = Response::new(
            Full::new(Bytes::from(body.to_string()))
                .map_err(|never| match never {})
                .boxed(),
        );
        *resp.status_mut() = self.status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}
