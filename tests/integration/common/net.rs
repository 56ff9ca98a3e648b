//! Real servers and clients on loopback for the integration tests.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cohort_config::{self as config, Routes};
use cohort_proxy::metrics::Metrics;
use cohort_proxy::Proxy;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;

/// A server on 127.0.0.1:0 (HTTP/1.1 and h2c) that answers every request with `answer`.
pub async fn serve_with<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let reply = answer(req);
                    async move { Ok::<_, Infallible>(reply.await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A model backend that answers every request with what it saw, as JSON; `/slow` waits 2 s.
pub async fn backend(name: &'static str) -> SocketAddr {
    backend_on(SocketAddr::from(([127, 0, 0, 1], 0)), name).await
}

/// [`backend`] on `addr` (port 0: any free port).
pub async fn backend_on(addr: SocketAddr, name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| async move {
                    if req.uri().path() == "/slow" {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                    let headers: HashMap<String, String> = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                        .collect();
                    let body = serde_json::json!({
                        "backend": name,
                        "path": req.uri().path_and_query().map(|p| p.to_string()),
                        "headers": headers,
                    });
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body.to_string()))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A port with nothing listening on it.
pub async fn dead_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

pub fn routes(yaml: &str) -> Routes {
    config::parse("test.yaml", yaml).unwrap_or_else(|e| panic!("{e}"))
}

/// Starts a proxy on 127.0.0.1:0 serving `routes`; returns its address and the proxy.
pub async fn start_proxy_with(routes: Routes) -> (SocketAddr, Arc<Proxy>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxy = Arc::new(Proxy::new(routes, Arc::new(Metrics::new())).expect("proxy"));
    tokio::spawn(proxy.clone().serve(listener));
    (addr, proxy)
}

pub async fn start_proxy(routes: Routes) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxy = Arc::new(Proxy::new(routes, Arc::new(Metrics::new())).expect("proxy"));
    tokio::spawn(proxy.serve(listener));
    addr
}

pub fn two_arm(rf: SocketAddr, lr: SocketAddr, extra: &str) -> String {
    two_arm_weights(rf, lr, 50, 50, extra)
}

/// A route `/invocations` to experiment iris-model with variants rf (control) and lr.
pub fn two_arm_weights(
    rf: SocketAddr,
    lr: SocketAddr,
    rf_w: u32,
    lr_w: u32,
    extra: &str,
) -> String {
    format!(
        r#"
routes:
  - name: iris
    match: {{ path_prefix: /invocations }}
    experiment: iris-model
    timeout_ms: 300
experiments:
  - name: iris-model
    salt: proxy-test
    control: rf
{extra}    variants:
      - {{ name: rf, weight: {rf_w}, upstream: "http://{rf}" }}
      - {{ name: lr, weight: {lr_w}, upstream: "http://{lr}" }}
"#
    )
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Value,
}

pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    proxy: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = Request::builder()
        .method("POST")
        .uri(format!("http://{proxy}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(
            req.body(Full::new(Bytes::from_static(
                b"{\"inputs\": [[5.1, 3.5, 1.4, 0.2]]}",
            )))
            .unwrap(),
        )
        .await
        .expect("proxy answers");
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// The HTTP client the tests use.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Reads from `conn` until a message head is complete (`\r\n\r\n`) or the peer closes:
/// the bytes read so far.
pub async fn read_head(conn: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    head
}

/// Sends `request` as it is on a new connection to `addr` and returns the answer's status
/// line (empty if the connection closed without one).
pub async fn raw_status(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::AsyncWriteExt;
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let head = read_head(&mut conn).await;
    let head = String::from_utf8_lossy(&head);
    head.lines().next().unwrap_or_default().to_owned()
}
