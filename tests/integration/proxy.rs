//! The data plane over real sockets: model backends on 127.0.0.1:0, cohort in front,
//! a real HTTP client.

use crate::common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cohort_config::assign;
use cohort_proxy::request_id;
use common::net::{backend, client, dead_port, raw_status, routes, send, start_proxy, two_arm};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::net::TcpListener;

#[tokio::test]
async fn users_stick_to_their_variant_across_requests_and_instances() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let cfg = routes(&two_arm(rf, lr, ""));
    let exp = cfg.experiments[0].clone();
    let a = start_proxy(cfg.clone()).await;
    let b = start_proxy(routes(&two_arm(rf, lr, ""))).await;
    let c = client();
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut per_variant: HashMap<String, usize> = HashMap::new();
    for i in 0u32..1000 {
        let user = format!("user-{}", i % 100);
        let proxy = if i.is_multiple_of(2) { a } else { b };
        let ans = send(&c, proxy, "/invocations", &[("x-user-id", &user)]).await;
        assert_eq!(ans.status, StatusCode::OK);
        let variant = ans.headers["x-cohort-variant"].to_str().unwrap().to_owned();
        // The backend that answered is the variant cohort says it chose …
        assert_eq!(ans.body["backend"], variant.as_str());
        // … the one the pure assignment function gives …
        assert_eq!(exp.variants[assign(&exp, &user).variant].name, variant);
        // … and the same on every request of this user, on either instance.
        if let Some(prev) = seen.insert(user.clone(), variant.clone()) {
            assert_eq!(prev, variant, "{user} moved");
        }
        *per_variant.entry(variant).or_default() += 1;
    }
    assert_eq!(per_variant.len(), 2, "both variants serve: {per_variant:?}");
}

#[tokio::test]
async fn request_ids_are_minted_and_the_clients_id_is_only_forwarded() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let proxy = start_proxy(routes(&two_arm(rf, lr, ""))).await;
    let c = client();
    let mut ids = std::collections::HashSet::new();
    for _ in 0..50 {
        let ans = send(
            &c,
            proxy,
            "/invocations",
            &[("x-user-id", "alice"), ("x-request-id", "client-chosen")],
        )
        .await;
        let rid = ans.headers["x-cohort-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let parsed = request_id::parse(&rid).expect("cohort's own format");
        assert_eq!(parsed.experiment, "iris-model");
        assert_eq!(
            parsed.variant,
            ans.headers["x-cohort-variant"].to_str().unwrap()
        );
        assert_eq!(ans.body["headers"]["x-cohort-request-id"], rid.as_str());
        assert_eq!(ans.body["headers"]["x-request-id"], "client-chosen");
        assert!(ids.insert(rid));
    }
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_and_forwarding_headers_set() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let proxy = start_proxy(routes(&two_arm(rf, lr, ""))).await;
    let ans = send(
        &client(),
        proxy,
        "/invocations/x?y=1",
        &[
            ("x-user-id", "alice"),
            ("connection", "x-hop"),
            ("x-hop", "secret"),
            ("x-forwarded-for", "6.6.6.6"),
        ],
    )
    .await;
    let seen = &ans.body["headers"];
    assert_eq!(ans.body["path"], "/invocations/x?y=1");
    assert!(seen.get("x-hop").is_none(), "{seen}");
    // The peer is not trusted: its X-Forwarded-For is replaced, not appended to.
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], proxy.to_string());
    let upstream = ans.headers["x-cohort-variant"].to_str().unwrap();
    let expect_host = if upstream == "rf" { rf } else { lr };
    assert_eq!(seen["host"], expect_host.to_string());
}

#[tokio::test]
async fn no_route_is_a_json_404() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let proxy = start_proxy(routes(&two_arm(rf, lr, ""))).await;
    let ans = send(&client(), proxy, "/elsewhere", &[]).await;
    assert_eq!(ans.status, StatusCode::NOT_FOUND);
    assert_eq!(ans.body["error"], "no route matches /elsewhere");
}

#[tokio::test]
async fn a_dead_variant_answers_502_while_the_other_keeps_serving() {
    let rf = backend("rf").await;
    let dead = dead_port().await;
    let cfg = routes(&two_arm(rf, dead, ""));
    let exp = cfg.experiments[0].clone();
    let proxy = start_proxy(cfg).await;
    let c = client();
    let (mut ok, mut bad) = (0, 0);
    for i in 0..100 {
        let user = format!("u{i}");
        let ans = send(&c, proxy, "/invocations", &[("x-user-id", &user)]).await;
        if exp.variants[assign(&exp, &user).variant].name == "lr" {
            assert_eq!(ans.status, StatusCode::BAD_GATEWAY);
            assert_eq!(ans.body["variant"], "lr");
            assert_eq!(ans.body["experiment"], "iris-model");
            assert!(request_id::parse(ans.body["request_id"].as_str().unwrap()).is_some());
            // What a client needs, not the upstream's address or the OS error (those are
            // in the log); and the same identifying headers a proxied response has.
            assert_eq!(ans.body["error"], "variant lr is unavailable");
            assert_eq!(ans.headers["x-cohort-variant"], "lr");
            assert_eq!(ans.headers["x-cohort-experiment"], "iris-model");
            assert_eq!(
                ans.headers["x-cohort-request-id"].to_str().unwrap(),
                ans.body["request_id"].as_str().unwrap()
            );
            bad += 1;
        } else {
            assert_eq!(ans.status, StatusCode::OK);
            ok += 1;
        }
    }
    assert!(ok > 20 && bad > 20, "ok {ok}, bad {bad}");
}

#[tokio::test]
async fn a_slow_upstream_is_a_504_within_the_timeout_bound() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let proxy = start_proxy(routes(
        &two_arm(rf, lr, "").replace("path_prefix: /invocations", "path_prefix: /"),
    ))
    .await;
    let start = Instant::now();
    let ans = send(&client(), proxy, "/slow", &[("x-user-id", "alice")]).await;
    let took = start.elapsed();
    assert_eq!(ans.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(ans.body["error"]
        .as_str()
        .unwrap()
        .contains("within 300 ms"));
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "{took:?}"
    );
}

#[tokio::test]
async fn on_missing_unit_modes() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let c = client();
    // control: served by control.
    let proxy = start_proxy(routes(&two_arm(rf, lr, ""))).await;
    for _ in 0..5 {
        let ans = send(&c, proxy, "/invocations", &[]).await;
        assert_eq!(ans.headers["x-cohort-variant"], "rf");
    }
    // reject: 400 with JSON.
    let proxy = start_proxy(routes(&two_arm(rf, lr, "    on_missing_unit: reject\n"))).await;
    let ans = send(&c, proxy, "/invocations", &[]).await;
    assert_eq!(ans.status, StatusCode::BAD_REQUEST);
    assert!(ans.body["error"]
        .as_str()
        .unwrap()
        .contains("header x-user-id"));
    // generate: a cookie is set and honoured.
    let extra = "    unit_from: [{ header: x-user-id }, { cookie: cohort_uid }]\n    on_missing_unit: generate\n";
    let cfg = routes(&two_arm(rf, lr, extra));
    let exp = cfg.experiments[0].clone();
    let proxy = start_proxy(cfg).await;
    let ans = send(&c, proxy, "/invocations", &[]).await;
    let unit = ans.headers["x-cohort-unit"].to_str().unwrap().to_owned();
    let cookie = ans.headers["set-cookie"].to_str().unwrap();
    assert_eq!(
        cookie,
        format!("cohort_uid={unit}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax")
    );
    let variant = ans.headers["x-cohort-variant"].to_str().unwrap().to_owned();
    assert_eq!(exp.variants[assign(&exp, &unit).variant].name, variant);
    let again = send(
        &c,
        proxy,
        "/invocations",
        &[("cookie", &format!("cohort_uid={unit}"))],
    )
    .await;
    assert_eq!(again.headers["x-cohort-variant"].to_str().unwrap(), variant);
    assert!(again.headers.get("set-cookie").is_none());
}

#[tokio::test]
async fn overrides_are_honoured_only_where_allowed() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let c = client();
    let cfg = routes(&two_arm(rf, lr, ""));
    let exp = cfg.experiments[0].clone();
    let refused = start_proxy(cfg).await;
    // A user assigned to rf asks for lr: refused, stays rf.
    let user = (0..)
        .map(|i| format!("u{i}"))
        .find(|u| exp.variants[assign(&exp, u).variant].name == "rf")
        .unwrap();
    let ans = send(
        &c,
        refused,
        "/invocations",
        &[("x-user-id", &user), ("x-cohort-variant", "lr")],
    )
    .await;
    assert_eq!(ans.headers["x-cohort-variant"], "rf");
    let allowed = start_proxy(routes(&two_arm(rf, lr, "    allow_override: true\n"))).await;
    let ans = send(
        &c,
        allowed,
        "/invocations",
        &[("x-user-id", &user), ("x-cohort-variant", "lr")],
    )
    .await;
    assert_eq!(ans.headers["x-cohort-variant"], "lr");
    assert_eq!(ans.body["backend"], "lr");
    let ans = send(
        &c,
        allowed,
        "/invocations",
        &[("x-user-id", &user), ("x-cohort-variant", "nope")],
    )
    .await;
    assert_eq!(ans.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn http2_prior_knowledge_inbound_and_h2c_upstream() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let yaml = two_arm(rf, lr, "").replace(
        &format!("upstream: \"http://{lr}\" }}"),
        &format!("upstream: \"http://{lr}\", protocol: h2c }}"),
    );
    let cfg = routes(&yaml);
    let exp = cfg.experiments[0].clone();
    let proxy = start_proxy(cfg).await;
    let h2: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let user = (0..)
        .map(|i| format!("u{i}"))
        .find(|u| exp.variants[assign(&exp, u).variant].name == "lr")
        .unwrap();
    let req = Request::builder()
        .uri(format!("http://{proxy}/invocations"))
        .header("x-user-id", &user)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = h2.request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.headers()["x-cohort-variant"], "lr");
    let body: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["backend"], "lr");
}

/// The protocol is picked from the connection's first bytes; they may come in pieces. "P"
/// alone could begin the HTTP/2 preface or a POST, so it must wait for more either way.
#[tokio::test]
async fn first_bytes_in_pieces_still_pick_the_right_protocol() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let proxy = start_proxy(routes(&two_arm(rf, lr, ""))).await;
    async fn split_write(proxy: std::net::SocketAddr, first: &[u8], rest: &[u8]) -> Vec<u8> {
        let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(first).await.unwrap();
        s.flush().await.unwrap();
        // Nothing outside tells when cohort has peeked the first piece, so a pause lets it
        // arrive alone; the answer must be right whether or not it did.
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.write_all(rest).await.unwrap();
        let mut got = vec![0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut got))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        got.truncate(n);
        got
    }
    // HTTP/1.1, its method split after the "P" it shares with the preface.
    let http1 = split_write(
        proxy,
        b"P",
        b"OST /invocations HTTP/1.1\r\nHost: a\r\nx-user-id: u1\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    assert!(
        http1.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&http1)
    );
    // The HTTP/2 preface in two pieces, then an empty SETTINGS frame: the server's own
    // SETTINGS frame (type 4 on stream 0) comes back.
    let mut rest = b"\r\nSM\r\n\r\n".to_vec();
    rest.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let http2 = split_write(proxy, b"PRI * HTTP/2.0\r\n", &rest).await;
    assert!(http2.len() >= 9, "{http2:?}");
    assert_eq!(
        (http2[3], &http2[5..9]),
        (4, &[0u8, 0, 0, 0][..]),
        "{http2:?}"
    );
}

#[tokio::test]
async fn an_http10_upstream_is_answered_as_http11() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A raw HTTP/1.0 server (like Python's http.server): answers and closes.
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..2 {
            let Ok((mut s, _)) = upstream.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await;
        }
    });
    let proxy = start_proxy(routes(&two_arm(up, up, ""))).await;
    let c = client();
    for _ in 0..2 {
        let req = Request::builder()
            .uri(format!("http://{proxy}/invocations"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = c.request(req).await.unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_11);
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
    }
}

#[tokio::test]
async fn trusted_proxies_keep_their_forwarding_headers() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let yaml = format!("trusted_proxies: [127.0.0.0/8]\n{}", two_arm(rf, lr, ""));
    let proxy = start_proxy(routes(&yaml)).await;
    let ans = send(
        &client(),
        proxy,
        "/invocations",
        &[
            ("x-user-id", "alice"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "models.example.com"),
            ("te", "trailers"),
        ],
    )
    .await;
    let seen = &ans.body["headers"];
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(seen["x-forwarded-host"], "models.example.com");
    // te: trailers survives hop-by-hop removal (gRPC servers require it).
    assert_eq!(seen["te"], "trailers");
}

#[tokio::test]
async fn host_header_modes() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let c = client();
    for (mode, expect) in [
        ("preserve", "models.example.com"),
        ("iris.default.example.com", "iris.default.example.com"),
    ] {
        let yaml = two_arm(rf, lr, "")
            .replace(
                &format!("upstream: \"http://{rf}\""),
                &format!("upstream: \"http://{rf}\", host_header: {mode}"),
            )
            .replace(
                &format!("upstream: \"http://{lr}\""),
                &format!("upstream: \"http://{lr}\", host_header: {mode}"),
            );
        let proxy = start_proxy(routes(&yaml)).await;
        let ans = send(
            &c,
            proxy,
            "/invocations",
            &[("x-user-id", "alice"), ("host", "models.example.com")],
        )
        .await;
        assert_eq!(ans.body["headers"]["host"], expect, "host_header: {mode}");
    }
}

#[tokio::test]
async fn the_generated_cookie_can_be_secure() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let extra = "    unit_from: { cookie: uid }\n    on_missing_unit: generate\n    cookie: { max_age_s: 60, secure: true }\n";
    let proxy = start_proxy(routes(&two_arm(rf, lr, extra))).await;
    let ans = send(&client(), proxy, "/invocations", &[]).await;
    let cookie = ans.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.ends_with("; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure"),
        "{cookie}"
    );
}

#[tokio::test]
async fn upstream_connections_survive_a_table_swap() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // A backend that counts the TCP connections it accepts.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        Bytes::from_static(b"{}"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let (proxy, handle) = common::net::start_proxy_with(routes(&two_arm(up, up, ""))).await;
    let c = client();
    for _ in 0..5 {
        assert_eq!(
            send(&c, proxy, "/invocations", &[("x-user-id", "alice")])
                .await
                .status,
            StatusCode::OK
        );
    }
    // A new table (other weights, same upstream): the warm connection is reused.
    handle
        .install(routes(
            &two_arm(up, up, "").replace("weight: 50", "weight: 70"),
        ))
        .unwrap();
    assert_ne!(
        handle.routes().routes.version,
        routes(&two_arm(up, up, "")).version
    );
    for _ in 0..5 {
        assert_eq!(
            send(&c, proxy, "/invocations", &[("x-user-id", "alice")])
                .await
                .status,
            StatusCode::OK
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one upstream connection, kept across the swap"
    );
}

/// HTTP/1.1 needs exactly one Host: without one, or with two (which one would cohort route
/// by, which one would the upstream see?), the request is refused, not forwarded.
#[tokio::test]
async fn an_http11_request_needs_exactly_one_host() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let proxy = start_proxy(routes(&two_arm(rf, lr, ""))).await;
    let none = raw_status(proxy, b"GET /invocations HTTP/1.1\r\nx-user-id: a\r\n\r\n").await;
    assert!(none.starts_with("HTTP/1.1 400"), "no Host: {none}");
    let two = raw_status(
        proxy,
        b"GET /invocations HTTP/1.1\r\nhost: a.example\r\nhost: b.example\r\nx-user-id: a\r\n\r\n",
    )
    .await;
    assert!(two.starts_with("HTTP/1.1 400"), "two Hosts: {two}");
    let one = raw_status(
        proxy,
        b"GET /invocations HTTP/1.1\r\nhost: a.example\r\nx-user-id: a\r\n\r\n",
    )
    .await;
    assert!(one.starts_with("HTTP/1.1 200"), "one Host: {one}");
    // HTTP/1.0 has no Host requirement.
    let old = raw_status(proxy, b"GET /invocations HTTP/1.0\r\nx-user-id: a\r\n\r\n").await;
    assert!(
        old.starts_with("HTTP/1.0 200") || old.starts_with("HTTP/1.1 200"),
        "HTTP/1.0: {old}"
    );
}

/// A model backend that reads the whole request body before it answers.
async fn reading_backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        let answer = format!("{{\"read\": {}}}", body.len());
                        Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from(answer))))
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// The sum of a metric family's samples in Prometheus text, where a line matches `filter`.
fn metric_sum(text: &str, family: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(family) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A client whose upload breaks off, or whose chunked framing is malformed, is answered 400
/// and counted as a client error: never as the variant's upstream failure or 5xx, which
/// anyone could otherwise push up for a treatment until an alert says "roll back".
#[tokio::test]
async fn a_clients_broken_upload_is_not_blamed_on_the_model() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = reading_backend().await;
    let (proxy, state) = common::net::start_proxy_with(routes(&two_arm(up, up, ""))).await;
    let requests: [&[u8]; 2] = [
        // Closes after 10 of 1 000 announced bytes.
        b"POST /invocations HTTP/1.1\r\nhost: t\r\nx-user-id: u1\r\ncontent-length: 1000\r\n\r\n0123456789",
        // A chunk size that is not hexadecimal.
        b"POST /invocations HTTP/1.1\r\nhost: t\r\nx-user-id: u2\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n",
    ];
    for request in requests {
        let mut conn = tokio::net::TcpStream::connect(proxy).await.unwrap();
        conn.write_all(request).await.unwrap();
        conn.shutdown().await.unwrap();
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        // 400, or a closed connection: never a 5xx.
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
            "{answer}"
        );
    }
    let text = state.metrics().render();
    assert_eq!(
        metric_sum(&text, "cohort_client_errors_total", "kind=\"body\""),
        2.0,
        "{text}"
    );
    assert_eq!(metric_sum(&text, "cohort_upstream_errors_total", ""), 0.0);
    assert_eq!(
        metric_sum(&text, "cohort_requests_total", "code=\"502\""),
        0.0
    );
    // A whole upload still goes through.
    let ok = send(&client(), proxy, "/invocations", &[("x-user-id", "u3")]).await;
    assert_eq!(ok.status, StatusCode::OK);
}
