//! The floor: the least a sticky 50/50 forwarder does, on the same hyper as cohort.
//!
//!     cargo run --release --example floor -- 127.0.0.1:18140 http://127.0.0.1:18101 http://127.0.0.1:18102 [WORKERS]
//!
//! Per request: hash `x-user-id` (XXH3), pick one of two upstreams by one bit, forward
//! the request (streamed, pooled keep-alive HTTP/1.1) and stream the answer back. No
//! config, no metrics, no events, no header hygiene: bench/run.sh measures it beside cohort
//! as the ceiling for cohort's design on this machine.

use std::net::SocketAddr;

use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};

type Out = http_body_util::combinators::BoxBody<bytes::Bytes, hyper::Error>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: floor LISTEN UPSTREAM_A UPSTREAM_B [WORKERS]");
        std::process::exit(2);
    }
    let listen: SocketAddr = args[1].parse().expect("LISTEN is host:port");
    let upstreams: [Uri; 2] = [
        args[2].parse().expect("UPSTREAM_A is a URL"),
        args[3].parse().expect("UPSTREAM_B is a URL"),
    ];
    let workers: usize = args.get(4).and_then(|w| w.parse().ok()).unwrap_or(1);
    // One worker: a current-thread runtime (no work-stealing machinery); more: the
    // multi-threaded one, as cohort uses.
    let runtime = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    };
    runtime
        .expect("a runtime")
        .block_on(serve(listen, upstreams));
}

async fn serve(listen: SocketAddr, upstreams: [Uri; 2]) {
    let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build_http();
    let upstreams = std::sync::Arc::new(upstreams);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (client, upstreams) = (client.clone(), upstreams.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (client, upstreams) = (client.clone(), upstreams.clone());
                async move { Ok::<_, hyper::Error>(forward(req, &client, &upstreams).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn forward(
    req: Request<Incoming>,
    client: &Client<HttpConnector, Incoming>,
    upstreams: &[Uri; 2],
) -> Response<Out> {
    let unit = req
        .headers()
        .get("x-user-id")
        .map_or(&b""[..], |v| v.as_bytes());
    let upstream = &upstreams[(xxhash_rust::xxh3::xxh3_64(unit) & 1) as usize];
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = match format!("{upstream}{}", path.trim_start_matches('/')).parse() {
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
