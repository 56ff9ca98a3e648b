//! The floor: the least a sticky 50/50 forwarder does, on the same hyper as cohort.
//!
//!     cargo run --release --example floor -- 127.0.0.1:18140 http://127.0.0.1:18101 http://127.0.0.1:18102 [WORKERS]
//!
//! Per request: hash `x-user-id` (XXH3), pick one of two upstreams by one bit, forward
//! the request (streamed, pooled keep-alive HTTP/1.1) and stream the answer back. No
//! config, no metrics, no events, no header hygiene: bench/run.sh measures it beside cohort
//! as the ceiling for cohort's design on this machine. Threads as in cohort
//! (src/workers.rs): one current-thread runtime per worker, connections accepted on the
//! first and handed round-robin to the others, one upstream client (pool) per worker.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};

type Out = http_body_util::combinators::BoxBody<bytes::Bytes, hyper::Error>;
type HttpClient = Client<HttpConnector, Incoming>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: floor LISTEN UPSTREAM_A UPSTREAM_B [WORKERS]");
        std::process::exit(2);
    }
    let listen: SocketAddr = args[1].parse().expect("LISTEN is host:port");
    let upstreams: Arc<[Uri; 2]> = Arc::new([
        args[2].parse().expect("UPSTREAM_A is a URL"),
        args[3].parse().expect("UPSTREAM_B is a URL"),
    ]);
    let workers: usize = args.get(4).and_then(|w| w.parse().ok()).unwrap_or(1).max(1);
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    };
    // Workers 1..n: a thread each, driving its runtime; worker 0 is the main thread.
    let mut handles = Vec::new();
    for _ in 1..workers {
        let rt = runtime();
        handles.push(rt.handle().clone());
        std::thread::spawn(move || rt.block_on(std::future::pending::<()>()));
    }
    runtime().block_on(serve(listen, upstreams, handles));
}

async fn serve(listen: SocketAddr, upstreams: Arc<[Uri; 2]>, others: Vec<tokio::runtime::Handle>) {
    let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
    let n = others.len() + 1;
    // One client per worker, each used only on its thread (clients are made lazily there).
    let mut next = 0usize;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let upstreams = upstreams.clone();
        let worker = next % n;
        next += 1;
        if worker == 0 {
            tokio::spawn(connection(stream, upstreams));
        } else if let Ok(std_stream) = stream.into_std() {
            others[worker - 1].spawn(async move {
                if let Ok(stream) = tokio::net::TcpStream::from_std(std_stream) {
                    connection(stream, upstreams).await;
                }
            });
        }
    }
}

thread_local! {
    static CLIENT: HttpClient = Client::builder(TokioExecutor::new()).build_http();
}

async fn connection(stream: tokio::net::TcpStream, upstreams: Arc<[Uri; 2]>) {
    let client = CLIENT.with(Clone::clone);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (client, upstreams) = (client.clone(), upstreams.clone());
        async move { Ok::<_, hyper::Error>(forward(req, &client, &upstreams).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn forward(
    req: Request<Incoming>,
    client: &HttpClient,
    upstreams: &[Uri; 2],
) -> Response<Out> {
    let unit = req
        .headers()
        .get("x-user-id")
        .map_or(&b""[..], |v| v.as_bytes());
    let upstream = &upstreams[(xxhash_rust::xxh3::xxh3_64(unit) & 1) as usize];
    let (mut parts, body) = req.into_parts();
    let mut target = upstream.clone().into_parts();
    target.path_and_query = parts.uri.path_and_query().cloned();
    parts.uri = match Uri::from_parts(target) {
        Ok(u) => u,
        Err(_) => return error(StatusCode::BAD_REQUEST),
    };
    match client.request(Request::from_parts(parts, body)).await {
        Ok(resp) => resp.map(|b| b.boxed()),
        Err(_) => error(StatusCode::BAD_GATEWAY),
    }
}

fn error(status: StatusCode) -> Response<Out> {
    let mut r = Response::new(
        Full::new(bytes::Bytes::new())
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r
}
