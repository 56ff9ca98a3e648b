//! Reloads under traffic: no request fails or is mis-routed, long-lived streams and
//! HTTP/2 connections keep flowing, and a ramp moves only the control's units.

use crate::common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cohort_config::assign;
use cohort_control::reload::{Outcome, Reloader, Trigger};
use common::net::{backend, client, routes, send, start_proxy_with, two_arm_weights};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{mpsc, oneshot};

/// A reloader for `path` driving `proxy`, and a function that reloads through its task.
fn reload_task(path: std::path::PathBuf, proxy: Arc<cohort_proxy::Proxy>) -> mpsc::Sender<Trigger> {
    let reloader = Arc::new(Reloader::new(path, &proxy));
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(reloader.run(rx));
    tx
}

async fn reload(tx: &mpsc::Sender<Trigger>) -> Outcome {
    let (reply, answer) = oneshot::channel();
    tx.send(Trigger::Admin(reply)).await.unwrap();
    answer.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_reloads_under_load_fail_nothing_and_misroute_nothing() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let a = two_arm_weights(rf, lr, 90, 10, "");
    let b = two_arm_weights(rf, lr, 20, 80, "");
    let (ra, rb) = (routes(&a), routes(&b));
    let (ea, eb) = (ra.experiments[0].clone(), rb.experiments[0].clone());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.yaml");
    std::fs::write(&path, &a).unwrap();
    let (proxy, handle) = start_proxy_with(ra).await;
    let tx = reload_task(path.clone(), handle);

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = Vec::new();
    for w in 0..8 {
        let (stop, ok, failed, ea, eb) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            ea.clone(),
            eb.clone(),
        );
        clients.push(tokio::spawn(async move {
            let c = client();
            let mut i = 0u64;
            // Bounded: at most 20 000 requests per client, and it stops with the reloads.
            while !stop.load(Ordering::Relaxed) && i < 20_000 {
                let user = format!("w{w}-u{}", i % 500);
                let ans = send(&c, proxy, "/invocations", &[("x-user-id", &user)]).await;
                let got = ans
                    .headers
                    .get("x-cohort-variant")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let valid = [
                    &ea.variants[assign(&ea, &user).variant].name,
                    &eb.variants[assign(&eb, &user).variant].name,
                ];
                if ans.status == StatusCode::OK
                    && valid.iter().any(|v| v.as_str() == got)
                    && ans.body["backend"] == got
                {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    let mut applied = 0;
    for n in 0u32..200 {
        std::fs::write(&path, if n.is_multiple_of(2) { &b } else { &a }).unwrap();
        match reload(&tx).await {
            Outcome::Applied { .. } => applied += 1,
            other => panic!("reload {n}: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("200 reloads: {applied} applied, {ok} requests ok, {failed} failed or mis-routed");
    assert_eq!(applied, 200);
    assert_eq!(failed, 0);
    assert!(ok > 100, "only {ok} requests ran during the reloads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramp_over_real_requests_moves_only_control_units() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let before = two_arm_weights(rf, lr, 90, 10, "");
    let after = two_arm_weights(rf, lr, 80, 20, "");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.yaml");
    std::fs::write(&path, &before).unwrap();
    let (proxy, handle) = start_proxy_with(routes(&before)).await;
    let tx = reload_task(path.clone(), handle);
    let c = client();
    let users = 2000;
    let mut seen = HashMap::new();
    for i in 0..users {
        let ans = send(
            &c,
            proxy,
            "/invocations",
            &[("x-user-id", &format!("user-{i}"))],
        )
        .await;
        seen.insert(
            i,
            ans.headers["x-cohort-variant"].to_str().unwrap().to_owned(),
        );
    }
    std::fs::write(&path, &after).unwrap();
    assert!(matches!(reload(&tx).await, Outcome::Applied { .. }));
    let mut moved = 0;
    for i in 0..users {
        let ans = send(
            &c,
            proxy,
            "/invocations",
            &[("x-user-id", &format!("user-{i}"))],
        )
        .await;
        let now = ans.headers["x-cohort-variant"].to_str().unwrap();
        if now != seen[&i] {
            assert_eq!(
                (seen[&i].as_str(), now),
                ("rf", "lr"),
                "user-{i} moved the wrong way"
            );
            moved += 1;
        }
    }
    // About 10% of all users (binomial, n=2000: 5 standard errors ≈ 3.4 points).
    let share = f64::from(moved) / f64::from(users);
    assert!((share - 0.10).abs() < 0.034, "{moved} of {users} moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_stream_and_an_http2_connection_keep_flowing_across_50_reloads() {
    // An upstream that streams one event every 10 ms for as long as the client reads.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = upstream.accept().await {
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        if req.uri().path() == "/events" {
                            let stream = futures_util::stream::unfold(0u32, |n| async move {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                (n < 400).then(|| {
                                    (
                                        Ok::<_, std::convert::Infallible>(
                                            hyper::body::Frame::data(Bytes::from(format!(
                                                "data: {n}\n\n"
                                            ))),
                                        ),
                                        n + 1,
                                    )
                                })
                            });
                            let body = http_body_util::StreamBody::new(stream).boxed();
                            Ok::<_, std::convert::Infallible>(http::Response::new(body))
                        } else {
                            Ok(http::Response::new(
                                Full::new(Bytes::from_static(b"{}"))
                                    .map_err(|n| match n {})
                                    .boxed(),
                            ))
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let yaml = |w: u32| {
        format!("routes:\n  - {{ name: r, match: {{ path_prefix: / }}, experiment: e }}\nexperiments:\n  - name: e\n    control: a\n    variants:\n      - {{ name: a, weight: {w}, upstream: \"http://{up}\" }}\n      - {{ name: b, weight: 10, upstream: \"http://{up}\" }}\n")
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.yaml");
    std::fs::write(&path, yaml(90)).unwrap();
    let (proxy, handle) = start_proxy_with(routes(&yaml(90))).await;
    let tx = reload_task(path.clone(), handle);

    let sse_client = client();
    let req = Request::get(format!("http://{proxy}/events"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let mut events = sse_client.request(req).await.unwrap().into_body();
    let h2: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let mut h2_ok = 0;
    let mut received = 0;
    for n in 0u32..50 {
        std::fs::write(&path, yaml(if n.is_multiple_of(2) { 80 } else { 90 })).unwrap();
        assert!(matches!(reload(&tx).await, Outcome::Applied { .. }));
        // The stream keeps delivering …
        let frame = tokio::time::timeout(Duration::from_secs(2), events.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(frame.into_data().unwrap().starts_with(b"data: "));
        received += 1;
        // … and the one HTTP/2 connection keeps answering.
        let req = Request::get(format!("http://{proxy}/ping"))
            .header("x-user-id", "h2")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = h2.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        h2_ok += 1;
    }
    assert_eq!((received, h2_ok), (50, 50));
}

/// An emptied or truncated routes.yaml, or one that drops a route that is serving, is
/// refused like a reshuffle: the old table keeps serving. Naming what goes in
/// `allow_remove` accepts it, and a route that served nothing since the last reload may go.
#[tokio::test]
async fn removing_what_serves_traffic_needs_allow_remove() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let two_routes = |extra: &str| {
        format!(
            "{extra}{}",
            two_arm_weights(rf, lr, 50, 50, "").replacen(
                "routes:\n",
                "routes:\n  - name: spare\n    match: { path_prefix: /spare }\n    experiment: iris-model\n",
                1
            )
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.yaml");
    std::fs::write(&path, two_routes("")).unwrap();
    let (proxy, handle) = start_proxy_with(routes(&two_routes(""))).await;
    let tx = reload_task(path.clone(), handle.clone());
    let c = client();
    let served = send(&c, proxy, "/invocations", &[("x-user-id", "alice")]).await;
    assert_eq!(served.status, StatusCode::OK);

    // An emptied file (a truncated ConfigMap, a half-written save).
    std::fs::write(&path, "").unwrap();
    match reload(&tx).await {
        Outcome::Refused {
            reason, message, ..
        } => {
            assert_eq!(serde_json::to_value(reason).unwrap(), "removal");
            assert!(
                message.contains("route iris") && message.contains("route spare"),
                "{message}"
            );
        }
        other => panic!("an empty file was not refused: {other:?}"),
    }
    assert_eq!(
        send(&c, proxy, "/invocations", &[("x-user-id", "bob")])
            .await
            .status,
        StatusCode::OK
    );

    // Dropping the route that served alice: refused. `spare` served nothing: it could go.
    let only_spare = two_routes("").replace(
        "  - name: iris\n    match: { path_prefix: /invocations }\n    experiment: iris-model\n    timeout_ms: 300\n",
        "",
    );
    assert!(!only_spare.contains("name: iris\n"), "{only_spare}");
    std::fs::write(&path, &only_spare).unwrap();
    match reload(&tx).await {
        Outcome::Refused { message, .. } => {
            assert!(
                message.contains("route iris") && !message.contains("spare"),
                "{message}"
            )
        }
        other => panic!("removing a serving route was not refused: {other:?}"),
    }
    // Acknowledged: applied.
    std::fs::write(&path, format!("allow_remove: [iris]\n{only_spare}")).unwrap();
    assert!(matches!(reload(&tx).await, Outcome::Applied { .. }));
    assert_eq!(
        send(&c, proxy, "/invocations", &[("x-user-id", "carol")])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Back to both routes, then drop `spare`, which has served nothing: no acknowledgment
    // needed.
    std::fs::write(&path, two_routes("")).unwrap();
    assert!(matches!(reload(&tx).await, Outcome::Applied { .. }));
    let without_spare = two_arm_weights(rf, lr, 50, 50, "");
    std::fs::write(&path, &without_spare).unwrap();
    assert!(
        matches!(reload(&tx).await, Outcome::Applied { .. }),
        "an idle route can go"
    );
}
