//! Graceful shutdown of the real binary, and the limits that keep the proxy alive.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::net::{client, routes, start_proxy};
use common::process::{admin_call, free_port, CohortProcess};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// A backend whose `/slow` answers after 1.5 s and announces when a request arrives.
async fn slow_backend(arrived: Arc<Notify>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let arrived = arrived.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let arrived = arrived.clone();
                    async move {
                        if req.uri().path() == "/slow" {
                            arrived.notify_one();
                            tokio::time::sleep(Duration::from_millis(1500)).await;
                        }
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"done"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

fn config(port: u16, admin: u16, up: SocketAddr, shutdown: &str, limits: &str) -> String {
    format!(
        "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nshutdown: {shutdown}\nlimits: {limits}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, experiment: e }}\nexperiments:\n  - name: e\n    control: only\n    variants:\n      - {{ name: only, weight: 1, upstream: \"http://{up}\" }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits_0() {
    let arrived = Arc::new(Notify::new());
    let up = slow_backend(arrived.clone()).await;
    let (port, admin) = (free_port(), free_port());
    let proxy: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.yaml");
    std::fs::write(
        &path,
        config(
            port,
            admin,
            up,
            "{ grace_ms: 400, drain_timeout_ms: 5000 }",
            "{}",
        ),
    )
    .unwrap();
    let mut cohort = CohortProcess::start(&path, &[]);

    // A keep-alive connection that has served one request and sits idle.
    let mut idle = TcpStream::connect(proxy).await.unwrap();
    idle.write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    // A slow request in flight …
    let c = client();
    let slow = tokio::spawn(async move {
        let req = Request::get(format!("http://{proxy}/slow"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = c.request(req).await.unwrap();
        let status = resp.status();
        (status, resp.into_body().collect().await.unwrap().to_bytes())
    });
    arrived.notified().await;
    // … when SIGTERM arrives.
    let signalled = Instant::now();
    cohort.signal("TERM");
    // During the grace period: not ready (once the process has taken the signal, which
    // `kill` does not wait for), still serving.
    let status = loop {
        let (status, _) = admin_call(admin_addr, "GET", "/readyz", None).await;
        if status != StatusCode::OK || signalled.elapsed() >= Duration::from_millis(300) {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        signalled.elapsed() < Duration::from_millis(400),
        "checked within the grace"
    );
    let during = TcpStream::connect(proxy).await;
    assert!(
        during.is_ok(),
        "new connections are still accepted during the grace period"
    );

    // After the grace: the idle keep-alive connection is closed gracefully (EOF) …
    let eof = tokio::time::timeout(Duration::from_secs(3), idle.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(eof, Ok(0)), "expected EOF, got {eof:?}");
    assert!(
        signalled.elapsed() >= Duration::from_millis(400),
        "not before the grace ended"
    );
    // … new connections are refused …
    let refused = TcpStream::connect(proxy).await;
    assert!(
        refused.is_err(),
        "the listener is closed after the grace period"
    );
    // … and the slow request still completes.
    let (status, body) = slow.await.unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"done"[..]));
    assert_eq!(cohort.wait(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_with_130() {
    let up = slow_backend(Arc::new(Notify::new())).await;
    let (port, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.yaml");
    std::fs::write(&path, config(port, admin, up, "{ grace_ms: 30000 }", "{}")).unwrap();
    let mut cohort = CohortProcess::start(&path, &[]);
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    cohort.signal("TERM");
    // Wait for the first signal to take effect (readyz turns 503), then send the second.
    let start = Instant::now();
    while admin_call(admin_addr, "GET", "/readyz", None).await.0 != StatusCode::SERVICE_UNAVAILABLE
    {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cohort.signal("INT");
    let code = tokio::task::spawn_blocking(move || cohort.wait())
        .await
        .unwrap();
    assert_eq!(code, Some(130));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "exited well before the 30 s grace"
    );
}

#[tokio::test]
async fn a_slowloris_connection_is_closed_after_the_header_timeout() {
    let up = slow_backend(Arc::new(Notify::new())).await;
    let proxy = start_proxy(routes(&config(
        1,
        2,
        up,
        "{}",
        "{ header_read_timeout_ms: 300 }",
    )))
    .await;
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let start = Instant::now();
    let mut buf = vec![0u8; 1024];
    // hyper answers 408 or just closes; either way the connection ends.
    loop {
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_its_timeout() {
    let up = slow_backend(Arc::new(Notify::new())).await;
    let proxy = start_proxy(routes(&config(
        1,
        2,
        up,
        "{}",
        "{ h2_idle_timeout_ms: 300 }",
    )))
    .await;
    let stream = TcpStream::connect(proxy).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let resp = send
        .send_request(
            Request::get(format!("http://{proxy}/fast"))
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let _ = resp.into_body().collect().await;
    let idle_since = Instant::now();
    // The server sends GOAWAY and the connection ends, without any request from us.
    tokio::time::timeout(Duration::from_secs(3), conn)
        .await
        .expect("closed in time")
        .unwrap()
        .unwrap();
    let took = idle_since.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn at_max_connections_cohort_stops_accepting_instead_of_failing() {
    let up = slow_backend(Arc::new(Notify::new())).await;
    let proxy = start_proxy(routes(&config(1, 2, up, "{}", "{ max_connections: 2 }"))).await;
    let request = |path: &'static str| async move {
        let mut s = TcpStream::connect(proxy).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        s
    };
    let mut a = request("/fast").await;
    let mut b = request("/fast").await;
    let mut buf = vec![0u8; 1024];
    assert!(a.read(&mut buf).await.unwrap() > 0);
    assert!(b.read(&mut buf).await.unwrap() > 0);
    // Both keep-alive connections stay open: a third is queued, not answered, not refused.
    let mut c = request("/fast").await;
    let waited = tokio::time::timeout(Duration::from_millis(300), c.read(&mut buf)).await;
    assert!(
        waited.is_err(),
        "the third connection was served beyond max_connections"
    );
    // One closes: the third is served.
    drop(a);
    let n = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf))
        .await
        .expect("served once a slot frees")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(b);
}
