//! ClickHouse's HTTP interface: a statement in the body of a POST, or an insert whose
//! rows are the body (`INSERT … FORMAT RowBinary` in the query string). Only what every
//! release from 18.16 on accepts: no session, no settings the old ones reject.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use rustls::{ClientConfig, RootCertStore};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Why a request to ClickHouse failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing was sent: no connection (refused, DNS, TLS).
    #[error("cannot connect to ClickHouse at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// No answer in time. The statement may or may not have run (an insert may be in).
    #[error("ClickHouse did not answer within {0} ms")]
    Timeout(u128),
    /// The connection broke before the answer was complete.
    #[error("the connection to ClickHouse failed: {0}")]
    Transport(String),
    /// ClickHouse answered with an error: its HTTP status, its error code when the body
    /// names one, and its message.
    #[error("ClickHouse refused it (HTTP {status}{}): {message}", code.map_or(String::new(), |c| format!(", code {c}")))]
    Server {
        status: u16,
        code: Option<u32>,
        message: String,
    },
}

impl Error {
    /// The metric label of this failure (`cohort_clickhouse_errors_total{kind}`).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Connect { .. } => "connect",
            Error::Timeout(_) => "timeout",
            Error::Transport(_) => "transport",
            Error::Server { .. } if self.is_permanent() => "rejected",
            Error::Server { .. } => "server",
        }
    }

    /// Whether retrying the same request cannot help until someone changes something: wrong
    /// credentials, a missing database or table, a statement or rows it cannot parse.
    /// (Such failures are still retried, with backoff: an operator may fix them.)
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Server { status, code, .. } => {
                // Authentication, access, unknown database/table/column, syntax, bad data.
                const PERMANENT: [u32; 14] =
                    [16, 27, 33, 47, 60, 62, 81, 117, 192, 193, 194, 497, 516, 6];
                code.is_some_and(|c| PERMANENT.contains(&c))
                    || matches!(*status, 400..=499) && *status != 408 && *status != 429
            }
            _ => false,
        }
    }
}

/// A client of one ClickHouse server. Cloning is cheap.
#[derive(Clone)]
pub struct Client {
    base: Arc<str>,
    auth: Option<HeaderValue>,
    timeout: Duration,
    http: HttpClient<Connector, Full<Bytes>>,
}

impl std::fmt::Debug for Client {
    // The credentials stay out of every log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("url", &self.base).finish()
    }
}

impl Client {
    /// A client of the server at `url` (scheme, host, port), as `user` with `password`.
    /// Fails only if TLS cannot be set up.
    pub fn new(
        url: &str,
        user: &str,
        password: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls()?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let credentials = format!("{user}:{}", password.unwrap_or(""));
        let auth = HeaderValue::from_str(&format!("Basic {}", base64(credentials.as_bytes())))
            .ok()
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        Ok(Client {
            base: url.trim_end_matches('/').into(),
            auth,
            timeout,
            http: HttpClient::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
        })
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Runs `sql` and returns what the server answered (e.g. rows in the format the
    /// statement names).
    pub async fn execute(&self, sql: &str) -> Result<Bytes, Error> {
        self.post("/", Bytes::from(sql.to_owned())).await
    }

    /// Inserts `rows` (RowBinary, in the column order of `columns`) into `table`.
    pub async fn insert(&self, table: &str, columns: &[&str], rows: Bytes) -> Result<(), Error> {
        let query = format!(
            "INSERT INTO {table} ({}) FORMAT RowBinary",
            columns.join(", ")
        );
        let path = format!("/?query={}", percent_encode(&query));
        self.post(&path, rows).await.map(drop)
    }

    /// Runs a SELECT and hands its answer to `chunk` piece by piece as it arrives, so
    /// that a large answer is never held whole. `settings` go in the query string (only
    /// settings every supported release knows). The server buffers the answer until the
    /// query has finished (`wait_end_of_query`), so an error is a status, never text in
    /// the middle of rows. `timeout` bounds the whole exchange.
    pub async fn select(
        &self,
        sql: &str,
        settings: &[(&str, String)],
        timeout: Duration,
        mut chunk: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), Error> {
        let mut path = "/?wait_end_of_query=1".to_owned();
        for (k, v) in settings {
            path.push_str(&format!("&{k}={}", percent_encode(v)));
        }
        let exchange = async {
            let resp = self.send(&path, Bytes::from(sql.to_owned())).await?;
            let status = resp.status();
            let mut body = resp.into_body();
            if status != StatusCode::OK {
                let bytes = body
                    .collect()
                    .await
                    .map_err(|e| Error::Transport(e.to_string()))?
                    .to_bytes();
                return Err(refusal(status, &bytes));
            }
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| Error::Transport(e.to_string()))?;
                if let Some(data) = frame.data_ref() {
                    chunk(data).map_err(Error::Transport)?;
                }
            }
            Ok(())
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Error::Timeout(timeout.as_millis()))?
    }

    async fn send(
        &self,
        path_and_query: &str,
        body: Bytes,
    ) -> Result<http::Response<hyper::body::Incoming>, Error> {
        let mut req = Request::post(format!("{}{path_and_query}", self.base));
        if let Some(a) = &self.auth {
            req = req.header(http::header::AUTHORIZATION, a.clone());
        }
        let req = req.body(Full::new(body)).map_err(|e| Error::Connect {
            url: self.base.to_string(),
            reason: e.to_string(),
        })?;
        self.http.request(req).await.map_err(|e| {
            if e.is_connect() {
                Error::Connect {
                    url: self.base.to_string(),
                    reason: source_chain(&e),
                }
            } else {
                Error::Transport(source_chain(&e))
            }
        })
    }

    async fn post(&self, path_and_query: &str, body: Bytes) -> Result<Bytes, Error> {
        let exchange = async {
            let resp = self.send(path_and_query, body).await?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| Error::Transport(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| Error::Timeout(self.timeout.as_millis()))??;
        if status == StatusCode::OK {
            return Ok(body);
        }
        Err(refusal(status, &body))
    }
}

/// The error of a non-200 answer.
fn refusal(status: StatusCode, body: &[u8]) -> Error {
    let message = String::from_utf8_lossy(body).trim().to_owned();
    Error::Server {
        status: status.as_u16(),
        code: error_code(&message),
        message,
    }
}

/// ClickHouse's error code from an error body ("Code: 60, e.displayText() = …").
fn error_code(message: &str) -> Option<u32> {
    let rest = message.strip_prefix("Code: ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// The system's CA roots, for an https URL.
fn tls() -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    Ok(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup failed: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Standard base64 with padding (for the Basic credentials).
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A query string value: everything but unreserved characters percent-encoded.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn error_codes_and_permanence() {
        let body = "Code: 60, e.displayText() = DB::Exception: Table cohort.x doesn't exist., e.what() = DB::Exception";
        assert_eq!(error_code(body), Some(60));
        let e = Error::Server {
            status: 500,
            code: error_code(body),
            message: body.into(),
        };
        assert!(e.is_permanent());
        assert_eq!(e.kind(), "rejected");
        let busy = Error::Server {
            status: 503,
            code: None,
            message: "overloaded".into(),
        };
        assert!(!busy.is_permanent());
        assert_eq!(busy.kind(), "server");
        assert!(!Error::Timeout(10).is_permanent());
    }

    #[test]
    fn the_client_never_prints_its_credentials() {
        let c = Client::new(
            "http://127.0.0.1:8123",
            "user",
            Some("s3cret"),
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(!format!("{c:?}").contains(&base64(b"user:s3cret")));
    }
}
