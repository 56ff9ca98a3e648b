//! Streaming limits: a 100 MB upload passes with flat memory; an upstream that goes quiet
//! mid-stream is cut off after `idle_timeout_ms` and counted.

use crate::common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::net::{routes, start_proxy_with};
use futures_util::stream;
use http::{Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

fn one_variant(upstream: std::net::SocketAddr, extra_route: &str) -> String {
    format!(
        "routes:\n  - {{ name: r, match: {{ path_prefix: / }}, experiment: e{extra_route} }}\nexperiments:\n  - name: e\n    control: only\n    variants:\n      - {{ name: only, weight: 1, upstream: \"http://{upstream}\" }}\n"
    )
}

/// Resident memory of this process, from /proc/self/status.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_upload_streams_with_flat_memory() {
    // The backend counts what arrives and answers with the count.
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = upstream.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let mut body = req.into_body();
                    let mut n = 0u64;
                    while let Some(Ok(frame)) = body.frame().await {
                        n += frame.data_ref().map_or(0, |d| d.len() as u64);
                    }
                    Ok::<_, Infallible>(Response::new(http_body_util::Full::new(Bytes::from(
                        n.to_string(),
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let (proxy, _) = start_proxy_with(routes(&one_variant(up, ""))).await;

    let total: u64 = 100 * 1024 * 1024;
    let chunks = total / CHUNK.len() as u64;
    let body = StreamBody::new(stream::iter(
        (0..chunks).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from_static(&CHUNK)))),
    ));
    let body: BoxBody<Bytes, Infallible> = BodyExt::boxed(body);
    let client: Client<_, BoxBody<Bytes, Infallible>> =
        Client::builder(TokioExecutor::new()).build_http();

    // Sample memory while the upload runs.
    let baseline = rss_bytes();
    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let req = Request::post(format!("http://{proxy}/upload"))
        .header("x-user-id", "u")
        .body(body)
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let received = resp.into_body().collect().await.unwrap().to_bytes();
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&received),
        total.to_string(),
        "every byte arrived"
    );
    let growth = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    assert!(
        growth < 32 * 1024 * 1024,
        "memory grew by {} MiB while 100 MiB streamed",
        growth / (1024 * 1024)
    );
}

/// An upstream that sends its head and one chunk, then nothing.
async fn quiet_upstream() -> std::net::SocketAddr {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = upstream.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n",
                    )
                    .await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    up
}

#[tokio::test]
async fn a_quiet_upstream_is_cut_off_mid_stream_and_counted() {
    let up = quiet_upstream().await;
    let (proxy, handle) =
        start_proxy_with(routes(&one_variant(up, ", idle_timeout_ms: 200"))).await;
    let client: Client<_, http_body_util::Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let req = Request::get(format!("http://{proxy}/stream"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "first");
    let start = Instant::now();
    // The response is aborted (no final chunk): the client sees an error, not a clean end.
    let next = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("cut off in time");
    assert!(
        matches!(next, Some(Err(_))),
        "expected an aborted body, got {next:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let idle = handle
        .metrics()
        .upstream_errors
        .with_label_values(&["e", "only", "idle_timeout"])
        .get();
    assert_eq!(idle, 1);
}

#[tokio::test]
async fn over_http2_an_aborted_response_resets_only_its_stream() {
    let up = quiet_upstream().await;
    let (proxy, _) = start_proxy_with(routes(&one_variant(up, ", idle_timeout_ms: 200"))).await;
    let client: Client<_, http_body_util::Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = Request::get(format!("http://{proxy}/stream"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let mut body = resp.into_body();
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "first"
    );
    let next = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("reset in time");
    let err = match next {
        Some(Err(e)) => e,
        other => panic!("expected a reset stream, got {other:?}"),
    };
    assert!(
        format!("{err:?}").to_lowercase().contains("reset")
            || format!("{err:?}").contains("INTERNAL_ERROR"),
        "{err:?}"
    );
    // The connection survives: another stream on it still works (it is aborted again,
    // after its first chunk).
    let req = Request::get(format!("http://{proxy}/again"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = client
        .request(req)
        .await
        .expect("the HTTP/2 connection is still usable");
    assert_eq!(resp.status(), 200);
}

/// One HTTP/2 frame: length, type, flags, stream id, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A rapid-reset flood on one connection, written in one go (so every reset arrives before
/// its stream is accepted): the error code of the GOAWAY the server answers with, if any.
async fn rapid_reset(proxy: std::net::SocketAddr, streams: u32) -> Option<u32> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // HPACK, literals without indexing: :method GET, :scheme http, :path /invocations,
    // :authority t, x-user-id u.
    let mut block = vec![0x82, 0x86, 0x04, 12];
    block.extend_from_slice(b"/invocations");
    block.extend_from_slice(&[0x01, 1, b't', 0x00, 9]);
    block.extend_from_slice(b"x-user-id");
    block.extend_from_slice(&[1, b'u']);
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(4, 0, 0, &[]));
    for i in 0..streams {
        let id = 2 * i + 1;
        out.extend(h2_frame(1, 0x5, id, &block)); // HEADERS, END_STREAM | END_HEADERS
        out.extend(h2_frame(3, 0, id, &8u32.to_be_bytes())); // RST_STREAM CANCEL
    }
    let mut conn = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let _ = conn.write_all(&out).await;
    // Frames from the server until GOAWAY (type 7) or the end.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            if buf[3] == 7 && len >= 8 {
                let code = &buf[9 + 4..9 + 8];
                return Some(u32::from_be_bytes([code[0], code[1], code[2], code[3]]));
            }
            buf.drain(..9 + len);
        }
        match tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

/// HTTP/2 rapid reset: a client that opens and resets streams faster than they are served
/// has its connection closed (GOAWAY ENHANCE_YOUR_CALM), and a flood of such connections
/// is logged once a second by cohort, not once per connection by the h2 library.
#[tokio::test]
async fn a_rapid_reset_flood_is_closed_and_logged_once_a_second() {
    use common::process::free_port;
    let dir = tempfile::tempdir().unwrap();
    let backend = common::net::backend("rf").await;
    let (port, admin) = (free_port(), free_port());
    let config = dir.path().join("routes.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nevents: {{ enabled: false }}\n{}",
            common::net::two_arm(backend, backend, "").replace("path_prefix: /invocations", "path_prefix: /")
        ),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--workers",
            "1",
        ])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let proxy = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let admin_addr = std::net::SocketAddr::from(([127, 0, 0, 1], admin));
    let mut up = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(admin_addr).await.is_ok()
            && common::net::raw_status(admin_addr, b"GET /readyz HTTP/1.1\r\nhost: t\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 200")
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        up,
        "cohort did not start: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    let start = Instant::now();
    let mut goaways = Vec::new();
    for _ in 0..5 {
        goaways.push(rapid_reset(proxy, 500).await);
    }
    let seconds = start.elapsed().as_secs() + 1;
    // The service goes on serving.
    let ok = common::net::raw_status(
        proxy,
        b"GET /invocations HTTP/1.1\r\nhost: t\r\nx-user-id: u\r\n\r\n",
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    // ENHANCE_YOUR_CALM is 0xb.
    assert_eq!(goaways, vec![Some(0xb); 5], "{text}");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let ours = text.matches("too many stream resets").count() as u64;
    assert!(
        ours >= 1 && ours <= seconds,
        "{ours} lines in {seconds} s:\n{text}"
    );
    assert!(
        !text.contains("reached limit"),
        "h2's own warnings are in the log:\n{text}"
    );
}
