//! gRPC through cohort with tonic on both sides: unary, server streaming, an error status
//! with details in trailers, and cohort's own errors shaped as gRPC. The test server, like
//! gRPC C-core, refuses a request without `te: trailers`, so these fail if cohort drops it.
//! The same calls against Python grpcio run in `interop` (the `external-tests` feature).

#[cfg(feature = "external-tests")]
mod interop;

use crate::common;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use common::net::{dead_port, routes, start_proxy};
use http::uri::PathAndQuery;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

pub(crate) fn config(rf: SocketAddr, lr: SocketAddr, protocol_lr: &str, timeout_ms: u32) -> String {
    format!(
        "routes:\n  - {{ name: grpc, match: {{ path_prefix: /cohort.test.Echo }}, experiment: e, timeout_ms: {timeout_ms} }}\nexperiments:\n  - name: e\n    control: rf\n    variants:\n      - {{ name: rf, weight: 50, upstream: \"http://{rf}\", protocol: h2c }}\n      - {{ name: lr, weight: 50, upstream: \"http://{lr}\", protocol: {protocol_lr} }}\n"
    )
}

/// The first of the users u0, u1, … that `exp` assigns to variant `want`.
pub(crate) fn user_of(exp: &cohort_config::Experiment, want: &str) -> String {
    (0..)
        .map(|i| format!("u{i}"))
        .find(|u| exp.variants[cohort_config::assign(exp, u).variant].name == want)
        .unwrap()
}

/// The one message of the test service, written by hand: no protoc, no build script.
#[derive(Clone, PartialEq, prost::Message)]
struct Text {
    #[prost(string, tag = "1")]
    text: String,
}

fn text(s: impl Into<String>) -> Text {
    Text { text: s.into() }
}

type Reply<T> = Pin<Box<dyn Future<Output = Result<tonic::Response<T>, Status>> + Send>>;
type Replies = Pin<Box<dyn tokio_stream::Stream<Item = Result<Text, Status>> + Send>>;

/// `Say`: answers "<name>: <request>". `Fail`: INVALID_ARGUMENT with details in the
/// trailers. `Slow`: answers after 2 s.
#[derive(Clone)]
struct Unary {
    name: Arc<str>,
    method: &'static str,
}

impl tonic::server::UnaryService<Text> for Unary {
    type Response = Text;
    type Future = Reply<Text>;
    fn call(&mut self, request: tonic::Request<Text>) -> Self::Future {
        let (name, method) = (self.name.clone(), self.method);
        Box::pin(async move {
            match method {
                "Say" => Ok(tonic::Response::new(text(format!(
                    "{name}: {}",
                    request.get_ref().text
                )))),
                "Fail" => Err(Status::with_details(
                    Code::InvalidArgument,
                    "bad input",
                    bytes::Bytes::from_static(b"\x08\x03details"),
                )),
                _ => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    Ok(tonic::Response::new(text("late")))
                }
            }
        })
    }
}

/// `Count`: streams "<name> 0", "<name> 1", … (the request is the count).
struct Count(Arc<str>);

impl tonic::server::ServerStreamingService<Text> for Count {
    type Response = Text;
    type ResponseStream = Replies;
    type Future = Reply<Replies>;
    fn call(&mut self, request: tonic::Request<Text>) -> Self::Future {
        let name = self.0.clone();
        Box::pin(async move {
            let n: usize =
                request.get_ref().text.parse().map_err(|_| {
                    Status::invalid_argument("the request is the number of replies")
                })?;
            let replies: Vec<Result<Text, Status>> =
                (0..n).map(|i| Ok(text(format!("{name} {i}")))).collect();
            let stream: Replies = Box::pin(tokio_stream::iter(replies));
            Ok(tonic::Response::new(stream))
        })
    }
}

async fn serve_grpc(
    name: Arc<str>,
    req: http::Request<Incoming>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    // gRPC C-core's rule, which tonic's server does not enforce.
    if req.headers().get("te").is_none_or(|v| v != "trailers") {
        return Ok(Status::internal("request without te: trailers").into_http());
    }
    let mut grpc = tonic::server::Grpc::new(ProstCodec::<Text, Text>::default());
    let method = match req.uri().path().rsplit('/').next().unwrap_or("") {
        "Say" => "Say",
        "Fail" => "Fail",
        "Slow" => "Slow",
        "Count" => "Count",
        other => return Ok(Status::unimplemented(format!("no method {other}")).into_http()),
    };
    Ok(match method {
        "Count" => grpc.server_streaming(Count(name), req).await,
        _ => grpc.unary(Unary { name, method }, req).await,
    })
}

/// A gRPC server over h2c on 127.0.0.1:0; stops when dropped.
struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(name: &str) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let name: Arc<str> = name.into();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let name = name.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| serve_grpc(name.clone(), req));
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Server { addr, task }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a call came back with.
#[derive(Debug)]
struct Outcome {
    code: Code,
    message: String,
    details: Vec<u8>,
    replies: Vec<String>,
    /// Response headers on success; on an error, the headers of a trailers-only answer or
    /// the trailers.
    metadata: MetadataMap,
}

async fn call(target: SocketAddr, method: &str, request: &str, user: &str) -> Outcome {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{target}"))
        .unwrap()
        .connect()
        .await
        .expect("cohort accepts the connection");
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let mut req = tonic::Request::new(text(request));
    req.metadata_mut()
        .insert("x-user-id", user.parse().unwrap());
    req.set_timeout(Duration::from_secs(10));
    let path = PathAndQuery::try_from(format!("/cohort.test.Echo/{method}")).unwrap();
    let codec = ProstCodec::<Text, Text>::default();
    let result = if method == "Count" {
        match client.server_streaming(req, path, codec).await {
            Ok(response) => {
                let metadata = response.metadata().clone();
                let mut stream = response.into_inner();
                let mut replies = Vec::new();
                loop {
                    match stream.message().await {
                        Ok(Some(m)) => replies.push(m.text),
                        Ok(None) => break Ok((replies, metadata)),
                        Err(status) => break Err(status),
                    }
                }
            }
            Err(status) => Err(status),
        }
    } else {
        client
            .unary(req, path, codec)
            .await
            .map(|r| (vec![r.get_ref().text.clone()], r.metadata().clone()))
    };
    match result {
        Ok((replies, metadata)) => Outcome {
            code: Code::Ok,
            message: String::new(),
            details: Vec::new(),
            replies,
            metadata,
        },
        Err(status) => Outcome {
            code: status.code(),
            message: status.message().to_owned(),
            details: status.details().to_vec(),
            replies: Vec::new(),
            metadata: status.metadata().clone(),
        },
    }
}

fn header<'a>(metadata: &'a MetadataMap, key: &str) -> Option<&'a str> {
    metadata.get(key).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_server_refuses_a_request_without_te_trailers() {
    let server = Server::start("rf").await;
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake::<
        _,
        _,
        http_body_util::Empty<bytes::Bytes>,
    >(TokioExecutor::new(), TokioIo::new(stream))
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = |te: Option<&str>| {
        let mut b = http::Request::post(format!("http://{}/cohort.test.Echo/Say", server.addr))
            .header("content-type", "application/grpc");
        if let Some(te) = te {
            b = b.header("te", te);
        }
        b.body(http_body_util::Empty::new()).unwrap()
    };
    let without = send.send_request(request(None)).await.unwrap();
    assert_eq!(
        without.headers()["grpc-status"],
        (Code::Internal as i32).to_string().as_str()
    );
    // With it, the same empty body gets past the check and fails on decoding instead.
    let with = send.send_request(request(Some("trailers"))).await.unwrap();
    assert_ne!(
        with.headers().get("grpc-message").map(|v| v.as_bytes()),
        Some(&b"request without te: trailers"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_streaming_and_error_statuses_pass_through() {
    let (rf, lr) = (Server::start("rf").await, Server::start("lr").await);
    let cfg = routes(&config(rf.addr, lr.addr, "h2c", 5000));
    let exp = cfg.experiments[0].clone();
    let proxy = start_proxy(cfg).await;
    let variant_of = |user: &str| {
        exp.variants[cohort_config::assign(&exp, user).variant]
            .name
            .clone()
    };
    for user in ["alice", "bob", "carol", "dave", "erin"] {
        let variant = variant_of(user);
        let out = call(proxy, "Say", "hi", user).await;
        assert_eq!(out.code, Code::Ok, "{out:?}");
        assert_eq!(out.replies, [format!("{variant}: hi")]);
        assert_eq!(
            header(&out.metadata, "x-cohort-variant"),
            Some(variant.as_str())
        );
    }
    let out = call(proxy, "Count", "3", "alice").await;
    assert_eq!(out.code, Code::Ok, "{out:?}");
    let variant = variant_of("alice");
    let expected: Vec<String> = (0..3).map(|i| format!("{variant} {i}")).collect();
    assert_eq!(out.replies, expected);

    let out = call(proxy, "Fail", "x", "alice").await;
    assert_eq!(out.code, Code::InvalidArgument, "{out:?}");
    assert_eq!(out.message, "bad input");
    assert_eq!(out.details, b"\x08\x03details");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohorts_own_errors_are_grpc_statuses() {
    let rf = Server::start("rf").await;
    // lr is dead: UNAVAILABLE.
    let cfg = routes(&config(rf.addr, dead_port().await, "h2c", 300));
    let exp = cfg.experiments[0].clone();
    let proxy = start_proxy(cfg).await;
    let user_of = |want: &str| user_of(&exp, want);
    let out = call(proxy, "Say", "hi", &user_of("lr")).await;
    assert_eq!(out.code, Code::Unavailable, "{out:?}");
    // A trailers-only response: its headers carry the status and cohort's headers.
    assert_eq!(
        header(&out.metadata, "x-cohort-variant"),
        Some("lr"),
        "{out:?}"
    );
    // A slow upstream past timeout_ms: DEADLINE_EXCEEDED.
    let out = call(proxy, "Slow", "x", &user_of("rf")).await;
    assert_eq!(out.code, Code::DeadlineExceeded, "{out:?}");
    assert!(out.message.contains("within 300 ms"), "{out:?}");

    // A gRPC request routed to an http1 variant: UNAVAILABLE, saying why.
    let cfg = routes(&config(rf.addr, rf.addr, "http1", 5000));
    let proxy = start_proxy(cfg).await;
    let out = call(proxy, "Say", "hi", &user_of("lr")).await;
    assert_eq!(out.code, Code::Unavailable, "{out:?}");
    assert!(out.message.contains("protocol: h2c"), "{out:?}");
}

/// An h2c server that answers every call with a trailers-only UNAVAILABLE.
async fn unavailable() -> SocketAddr {
    common::net::serve_with(|_req: http::Request<Incoming>| async {
        http::Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", "14")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    })
    .await
}

/// gRPC copied to shadows is compared on status only: the gRPC status from the trailers
/// (or a trailers-only head), whatever the messages say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadows_of_grpc_calls_are_compared_on_the_grpc_status() {
    let rf = Server::start("rf").await;
    let cand = Server::start("cand").await;
    let down = unavailable().await;
    let yaml = format!(
        "routes:\n  - {{ name: grpc, match: {{ path_prefix: /cohort.test.Echo }}, experiment: e }}\nexperiments:\n  - name: e\n    control: rf\n    variants:\n      - {{ name: rf, weight: 1, upstream: \"http://{}\", protocol: h2c }}\n    shadow:\n      - {{ name: cand, upstream: \"http://{}\", protocol: h2c, sample: 1.0 }}\n      - {{ name: down, upstream: \"http://{down}\", protocol: h2c, sample: 1.0 }}\n",
        rf.addr, cand.addr
    );
    let (proxy, p) = common::net::start_proxy_with(routes(&yaml)).await;
    for (method, request, code) in [
        ("Say", "hi", Code::Ok),
        ("Fail", "x", Code::InvalidArgument),
        ("Count", "3", Code::Ok),
    ] {
        for i in 0..3 {
            let out = call(proxy, method, request, &format!("u{i}")).await;
            assert_eq!(out.code, code, "{method}: {out:?}");
            if method == "Say" {
                assert_eq!(out.replies, ["rf: hi"]);
            }
        }
    }
    let series = |shadow: &str, result: &str| {
        let want = format!(
            "cohort_shadow_requests_total{{experiment=\"e\",result=\"{result}\",shadow=\"{shadow}\"}} "
        );
        p.metrics()
            .render()
            .lines()
            .find_map(|l| {
                l.strip_prefix(&want)
                    .map(|v| v.trim().parse::<u64>().unwrap())
            })
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while series("cand", "agree") + series("down", "disagree") < 18 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            p.metrics().render()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        (series("cand", "agree"), series("cand", "disagree")),
        (9, 0)
    );
    assert_eq!(
        (series("down", "disagree"), series("down", "agree")),
        (9, 0)
    );
}
