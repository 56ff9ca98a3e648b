//! Bodies stream through cohort: the first chunk of a response reaches the client while
//! the upstream still holds the last one back (server-sent events flow event by event).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use cohort_config as config;
use cohort_proxy::metrics::Metrics;
use cohort_proxy::Proxy;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Mutex};

/// A response body fed chunk by chunk from a channel.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

#[tokio::test]
async fn sse_events_reach_the_client_one_by_one() {
    // The test holds the sender: the backend's body yields only what the test sends.
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let rx = Arc::new(Mutex::new(Some(rx)));
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = upstream.accept().await.unwrap();
        let svc = service_fn(move |_req: Request<Incoming>| {
            let rx = rx.clone();
            async move {
                let rx = rx.lock().await.take().expect("one request");
                let mut resp = Response::new(ChannelBody(rx));
                resp.headers_mut()
                    .insert("content-type", "text/event-stream".parse().unwrap());
                Ok::<_, Infallible>(resp)
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), svc)
            .await;
    });

    let yaml = format!(
        "routes:\n  - {{ name: r, match: {{ path_prefix: / }}, experiment: e }}\nexperiments:\n  - name: e\n    control: only\n    variants:\n      - {{ name: only, weight: 1, upstream: \"http://{up_addr}\" }}\n"
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    let routes = config::parse("t.yaml", &yaml).unwrap();
    let proxy = Arc::new(Proxy::new(routes, Arc::new(Metrics::new())).expect("proxy"));
    tokio::spawn(proxy.serve(listener));

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = Request::builder()
        .uri(format!("http://{proxy_addr}/generate"))
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    for i in 0..3 {
        let event = format!("data: token-{i}\n\n");
        tx.send(Bytes::from(event.clone())).await.unwrap();
        // The event must arrive before the next one is even produced: nothing buffers.
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("event {i} arrives while the upstream holds the rest back")
            .expect("a frame")
            .expect("no error");
        assert_eq!(frame.into_data().unwrap(), Bytes::from(event));
    }
    drop(tx);
    let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .unwrap()
        .unwrap();
    assert!(rest.to_bytes().is_empty());
}
