//! Shadow traffic end to end: `cohort serve` in front of fake models on 127.0.0.1:0, copies
//! sent to shadows that agree, differ, fail, hang or never existed; the client's answers
//! byte for byte the same as without shadows; sampling by unit as the hash says; every
//! count in metrics, the log and the report equal to what the test sent and computes.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::net::{client, dead_port, serve_with};
use common::process::{admin_call, free_port, CohortProcess};
use futures_util::StreamExt;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

/// How a fake model answers `{"x": i}`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Model {
    /// `{"predictions": [i, i/2, "c{i%3}"]}`.
    Primary,
    /// The primary's answer with known differences ([`candidate`]).
    Candidate,
    /// The primary's answer, two seconds late.
    Slow,
    /// 500 with a JSON error.
    Fails,
    /// 200 with a body that is not JSON.
    Garbage,
    /// Reads the request and never answers.
    Hangs,
    /// Server-sent events: `data: <the text>`.
    Events(&'static str),
}

/// What a model received: (x-user-id, x-cohort-shadow, Host, body).
type Seen = Arc<Mutex<Vec<(String, Option<String>, String, Bytes)>>>;

fn x_of(body: &[u8]) -> i64 {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["x"].as_i64())
        .unwrap_or(-1)
}

fn primary(i: i64) -> Value {
    json!({"predictions": [i, i as f64 / 2.0, format!("c{}", i.rem_euclid(3))]})
}

/// The candidate: element 0 off by 0.25 when i % 5 == 0, element 1 off by 1e-9 (within the
/// default tolerance) when i % 4 == 0, the label changed when i % 7 == 0.
fn candidate(i: i64) -> Value {
    let first = i as f64 + if i % 5 == 0 { 0.25 } else { 0.0 };
    let second = i as f64 / 2.0 + if i % 4 == 0 { 1e-9 } else { 0.0 };
    let label = if i % 7 == 0 {
        "other".to_owned()
    } else {
        format!("c{}", i.rem_euclid(3))
    };
    json!({"predictions": [first, second, label]})
}

async fn model(kind: Model) -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let got = seen.clone();
    let addr = serve_with(move |req: Request<hyper::body::Incoming>| {
        let got = got.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let h = |n: &str| parts.headers.get(n).map(|v| v.to_str().unwrap().to_owned());
            got.lock().unwrap().push((
                h("x-user-id").unwrap_or_default(),
                h("x-cohort-shadow"),
                h("host").unwrap_or_default(),
                body.clone(),
            ));
            let i = x_of(&body);
            let (status, answer) = match kind {
                Model::Primary => (200, primary(i).to_string()),
                Model::Candidate => (200, candidate(i).to_string()),
                Model::Slow => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    (200, primary(i).to_string())
                }
                Model::Fails => (500, r#"{"error": "boom"}"#.to_owned()),
                Model::Garbage => (200, "not json {".to_owned()),
                Model::Hangs => std::future::pending().await,
                Model::Events(text) => (200, format!("data: {text}\n\n")),
            };
            let content_type = match kind {
                Model::Events(_) => "text/event-stream",
                _ => "application/json",
            };
            let mut resp = Response::new(Full::new(Bytes::from(answer)));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap();
            resp.headers_mut()
                .insert("content-type", content_type.parse().unwrap());
            resp
        }
    })
    .await;
    (addr, seen)
}

struct Served {
    dir: tempfile::TempDir,
    cohort: CohortProcess,
    proxy: SocketAddr,
    admin: SocketAddr,
}

/// cohort with one route to experiment `e`: variants rf and lr (50/50) both at `primary`,
/// with `shadows` (YAML flow mappings) as its `shadow` list.
fn serve(primary: SocketAddr, shadows: &[String]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let shadow = if shadows.is_empty() {
        String::new()
    } else {
        format!(
            "\x20   shadow:\n{}",
            shadows
                .iter()
                .map(|s| format!("\x20     - {s}\n"))
                .collect::<String>()
        )
    };
    let yaml = format!(
        "listen: 127.0.0.1:{port}\n\
         admin: {{ listen: 127.0.0.1:{admin} }}\n\
         events: {{ dir: {events} }}\n\
         routes:\n\
         \x20 - {{ name: r, match: {{ path_prefix: / }}, experiment: e }}\n\
         experiments:\n\
         \x20 - name: e\n\
         \x20   control: rf\n\
         \x20   variants:\n\
         \x20     - {{ name: rf, weight: 50, upstream: \"http://{primary}\" }}\n\
         \x20     - {{ name: lr, weight: 50, upstream: \"http://{primary}\" }}\n\
         {shadow}",
        events = dir.path().join("events").display(),
    );
    let config = dir.path().join("routes.yaml");
    std::fs::write(&config, yaml).unwrap();
    let cohort = CohortProcess::start(&config, &[]);
    Served {
        dir,
        cohort,
        proxy: format!("127.0.0.1:{port}").parse().unwrap(),
        admin: format!("127.0.0.1:{admin}").parse().unwrap(),
    }
}

/// What the client got: status, headers (but `date` and cohort's request id, which differ
/// from call to call), body.
#[derive(Debug, PartialEq)]
struct Got {
    status: StatusCode,
    headers: Vec<(String, Vec<u8>)>,
    body: Bytes,
    request_id: String,
    variant: String,
}

async fn post(proxy: SocketAddr, user: Option<&str>, body: Vec<u8>) -> Got {
    let mut req = Request::post(format!("http://{proxy}/invocations"))
        .header("content-type", "application/json");
    if let Some(u) = user {
        req = req.header("x-user-id", u);
    }
    let resp = client()
        .request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let h: HeaderMap = resp.headers().clone();
    let text = |n: &str| {
        h.get(n)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let headers = h
        .iter()
        .filter(|(n, _)| !matches!(n.as_str(), "date" | "x-cohort-request-id"))
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    Got {
        status,
        headers,
        request_id: text("x-cohort-request-id"),
        variant: text("x-cohort-variant"),
        body: resp.into_body().collect().await.unwrap().to_bytes(),
    }
}

fn call_body(i: i64) -> Vec<u8> {
    json!({"x": i}).to_string().into_bytes()
}

/// `cohort_shadow_requests_total{shadow}` by result.
async fn results(admin: SocketAddr, shadow: &str) -> BTreeMap<String, u64> {
    let (_, m) = admin_call(admin, "GET", "/metrics", None).await;
    let text = m.as_str().unwrap().to_owned();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cohort_shadow_requests_total{") else {
            continue;
        };
        let (labels, value) = rest.split_once("} ").unwrap();
        if !labels.contains(&format!("shadow=\"{shadow}\"")) {
            continue;
        }
        let result = labels
            .split(',')
            .find_map(|l| l.strip_prefix("result=\""))
            .unwrap()
            .trim_end_matches('"');
        let n: u64 = value.trim().parse().unwrap();
        if n > 0 {
            out.insert(result.to_owned(), n);
        }
    }
    out
}

/// Polls until `shadow`'s results add up to `total` (each copy is counted once it is
/// done): the results then.
async fn settled(admin: SocketAddr, shadow: &str, total: u64) -> BTreeMap<String, u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = results(admin, shadow).await;
        if r.values().sum::<u64>() >= total {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{shadow}: {r:?} of {total} after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every `"type": "shadow"` line of the log under `dir`.
fn shadow_lines(dir: &Path) -> Vec<Value> {
    common::process::typed_lines(&dir.join("events"), "shadow")
}

#[tokio::test]
async fn the_client_gets_the_primarys_answer_whatever_the_shadows_do() {
    let (p, _) = model(Model::Primary).await;
    let (slow, _) = model(Model::Slow).await;
    let (fails, _) = model(Model::Fails).await;
    let (garbage, _) = model(Model::Garbage).await;
    let (hangs, _) = model(Model::Hangs).await;
    let dead = dead_port().await;
    let shadows = [
        format!("{{ name: slow, upstream: \"http://{slow}\", sample: 1.0, timeout_ms: 200 }}"),
        format!("{{ name: fails, upstream: \"http://{fails}\", sample: 1.0 }}"),
        format!("{{ name: garbage, upstream: \"http://{garbage}\", sample: 1.0 }}"),
        format!("{{ name: hangs, upstream: \"http://{hangs}\", sample: 1.0, timeout_ms: 300, max_inflight: 8 }}"),
        format!("{{ name: dead, upstream: \"http://{dead}\", sample: 1.0 }}"),
    ];
    let with = serve(p, &shadows);
    let without = serve(p, &[]);
    const N: i64 = 2000;
    let pairs: Vec<(Got, Got)> = futures_util::stream::iter(0..N)
        .map(|i| {
            let user = format!("u{}", i % 300);
            async move {
                (
                    post(with.proxy, Some(&user), call_body(i)).await,
                    post(without.proxy, Some(&user), call_body(i)).await,
                )
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for (a, b) in &pairs {
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(
            (a.status, &a.headers, &a.body, &a.variant),
            (b.status, &b.headers, &b.body, &b.variant)
        );
    }
    let n = N as u64;
    let slow = settled(with.admin, "slow", n).await;
    assert_eq!(
        slow.get("timeout").copied().unwrap_or(0)
            + slow.get("skipped_inflight").copied().unwrap_or(0),
        n,
        "{slow:?}"
    );
    assert!(slow.get("timeout").copied().unwrap_or(0) > 0, "{slow:?}");
    let fails = settled(with.admin, "fails", n).await;
    assert_eq!(
        fails.get("disagree").copied().unwrap_or(0)
            + fails.get("skipped_inflight").copied().unwrap_or(0),
        n,
        "{fails:?}"
    );
    let garbage = settled(with.admin, "garbage", n).await;
    assert_eq!(
        garbage.get("disagree").copied().unwrap_or(0)
            + garbage.get("skipped_inflight").copied().unwrap_or(0),
        n,
        "{garbage:?}"
    );
    let hangs = settled(with.admin, "hangs", n).await;
    assert_eq!(
        hangs.keys().collect::<Vec<_>>(),
        ["skipped_inflight", "timeout"],
        "{hangs:?}"
    );
    let dead = settled(with.admin, "dead", n).await;
    assert_eq!(
        dead.get("error").copied().unwrap_or(0)
            + dead.get("skipped_inflight").copied().unwrap_or(0),
        n,
        "{dead:?}"
    );
    assert!(dead["error"] > 0);
}

/// The units a shadow named `shadow` of experiment `e` takes at `sample`, computed here from
/// the documented rule: XXH3-64(unit, seed = XXH3-64("shadow:e:<shadow>")) < sample × 2⁶⁴.
fn expected_units(shadow: &str, sample: f64, units: &[String]) -> BTreeSet<String> {
    use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};
    let seed = xxh3_64(format!("shadow:e:{shadow}").as_bytes());
    units
        .iter()
        .filter(|u| (xxh3_64_with_seed(u.as_bytes(), seed) as f64) < sample * 2f64.powi(64))
        .cloned()
        .collect()
}

#[tokio::test]
async fn units_are_shadowed_by_their_hash_in_every_variant_and_every_time() {
    let (p, _) = model(Model::Primary).await;
    let (cand, seen) = model(Model::Primary).await;
    let s = serve(
        p,
        // Room for every copy: on a loaded machine the shadow thread, at a lower priority
        // than the serving threads, may fall behind the requests.
        &[format!(
            "{{ name: cand, upstream: \"http://{cand}\", sample: 0.3, max_inflight: 1000 }}"
        )],
    );
    let units: Vec<String> = (0..400).map(|i| format!("user-{i}")).collect();
    let mut variant_of = BTreeMap::new();
    for round in 0..2 {
        for (i, u) in units.iter().enumerate() {
            let got = post(s.proxy, Some(u), call_body(i as i64 + 1000 * round)).await;
            variant_of.insert(u.clone(), got.variant);
        }
    }
    for _ in 0..7 {
        post(s.proxy, None, call_body(-1)).await;
    }
    let expected = expected_units("cand", 0.3, &units);
    let r = settled(s.admin, "cand", 2 * expected.len() as u64 + 7).await;
    assert_eq!(r.get("skipped_no_unit"), Some(&7), "{r:?}");
    assert_eq!(
        r.get("agree").copied(),
        Some(2 * expected.len() as u64),
        "{r:?}"
    );
    let seen = seen.lock().unwrap().clone();
    let mut times: BTreeMap<String, u32> = BTreeMap::new();
    for (user, shadow_header, host, body) in &seen {
        assert_eq!(shadow_header.as_deref(), Some("1"));
        assert_eq!(host, &cand.to_string());
        let i = x_of(body);
        let idx = (i % 1000) as usize;
        assert_eq!(
            &units[idx], user,
            "the copy carries the request's body and headers"
        );
        *times.entry(user.clone()).or_default() += 1;
    }
    let got: BTreeSet<String> = times.keys().cloned().collect();
    assert_eq!(got, expected);
    assert!(
        times.values().all(|&n| n == 2),
        "each unit's two requests were both copied"
    );
    // Within a few points of 30%, and in both variants.
    assert!((90..150).contains(&expected.len()), "{}", expected.len());
    let lanes: BTreeSet<&String> = expected.iter().map(|u| &variant_of[u]).collect();
    assert_eq!(lanes.len(), 2, "shadowed units are in both variants");
}

#[tokio::test]
async fn agreement_and_differences_equal_what_the_two_models_answer() {
    let (p, _) = model(Model::Primary).await;
    let (cand, _) = model(Model::Candidate).await;
    let mut s = serve(
        p,
        // Room for every copy (see above), and every disagreement's answers logged.
        &[format!("{{ name: cand, upstream: \"http://{cand}\", sample: 1.0, max_inflight: 1000, log_payloads: true, max_diff_events_per_s: 1000 }}")],
    );
    const N: i64 = 300;
    let mut sent = BTreeMap::new();
    for i in 0..N {
        let got = post(s.proxy, Some(&format!("u{i}")), call_body(i)).await;
        assert_eq!(got.body, Bytes::from(primary(i).to_string()));
        sent.insert(got.request_id.clone(), (i, got.variant));
    }
    // What the test computes from the two models' answers.
    let expect = |i: i64| {
        let (a, b) = (primary(i), candidate(i));
        let (pa, ca) = (
            a["predictions"].as_array().unwrap(),
            b["predictions"].as_array().unwrap(),
        );
        let mut agreed = 0;
        let mut max_diff: f64 = 0.0;
        for (x, y) in pa.iter().zip(ca) {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => {
                    let d = (x - y).abs();
                    max_diff = max_diff.max(d);
                    agreed += u64::from(d <= 1e-6_f64.max(1e-6 * x.abs().max(y.abs())));
                }
                _ => agreed += u64::from(x == y),
            }
        }
        (agreed, max_diff)
    };
    let agree_n = (0..N).filter(|&i| expect(i).0 == 3).count() as u64;
    let r = settled(s.admin, "cand", N as u64).await;
    assert_eq!(
        r,
        BTreeMap::from([
            ("agree".to_owned(), agree_n),
            ("disagree".to_owned(), N as u64 - agree_n)
        ])
    );

    assert_eq!(s.cohort.terminate(), Some(0));
    let lines = shadow_lines(s.dir.path());
    assert_eq!(lines.len(), N as usize);
    let mut diffs: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for l in &lines {
        let (i, variant) = &sent[l["request_id"].as_str().unwrap()];
        let (agreed, max_diff) = expect(*i);
        assert_eq!(l["experiment"], "e");
        assert_eq!(l["variant"], variant.as_str());
        assert_eq!(l["unit"], format!("u{i}"));
        assert_eq!(l["elements"], 3);
        assert_eq!(l["elements_agreed"], agreed);
        assert_eq!(l["max_abs_diff"].as_f64(), Some(max_diff), "{l}");
        assert_eq!(l["agree"], agreed == 3);
        assert_eq!(
            (l["primary_status"].as_u64(), l["shadow_status"].as_u64()),
            (Some(200), Some(200))
        );
        assert!(l["primary_ms"].as_f64().unwrap() > 0.0 && l["shadow_ms"].as_f64().unwrap() > 0.0);
        if agreed == 3 {
            assert!(l.get("shadow_answer").is_none());
        } else {
            assert_eq!(l["shadow_answer"], candidate(*i).to_string());
            assert_eq!(l["primary_answer"], primary(*i).to_string());
        }
        diffs.entry(variant.clone()).or_default().push(max_diff);
    }

    // The report's section, from the same lines.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args(["report", "--events"])
        .arg(s.dir.path().join("events"))
        .arg("--config")
        .arg(s.dir.path().join("routes.yaml"))
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = if report.is_array() {
        report[0].clone()
    } else {
        report
    };
    let rows = report["shadow"]["shadows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in rows {
        let variant = row["variant"].as_str().unwrap();
        let mine: Vec<i64> = sent
            .values()
            .filter(|(_, v)| v == variant)
            .map(|(i, _)| *i)
            .collect();
        let agreed = mine.iter().filter(|&&i| expect(i).0 == 3).count() as u64;
        let elements_agreed: u64 = mine.iter().map(|&i| expect(i).0).sum();
        assert_eq!(row["shadow"], "cand");
        assert_eq!(row["compared"], mine.len() as u64);
        assert_eq!(row["agreed"], agreed);
        assert_eq!(row["elements"], 3 * mine.len() as u64);
        assert_eq!(row["elements_agreed"], elements_agreed);
        let rate = agreed as f64 / mine.len() as f64;
        assert_eq!(row["agreement"]["rate"].as_f64(), Some(rate));
        let (lo, hi) = (
            row["agreement"]["low"].as_f64().unwrap(),
            row["agreement"]["high"].as_f64().unwrap(),
        );
        assert!(lo < rate && rate < hi, "{lo} {rate} {hi}");
        let mut d = diffs[variant].clone();
        d.sort_by(f64::total_cmp);
        let q = |q: f64| {
            let h = (d.len() - 1) as f64 * q;
            let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
            d[lo] + (h - h.floor()) * (d[hi] - d[lo])
        };
        for (key, want) in [
            ("p50", q(0.5)),
            ("p90", q(0.9)),
            ("p99", q(0.99)),
            ("max", d[d.len() - 1]),
        ] {
            let got = row["abs_diff"][key].as_f64().unwrap();
            assert!((got - want).abs() <= 1e-12, "{key}: {got} vs {want}");
        }
        assert_eq!(
            (row["errors"].as_u64(), row["timeouts"].as_u64()),
            (Some(0), Some(0))
        );
    }
    // Text, Markdown and HTML carry the section too.
    for (format, needle) in [
        ("text", "shadow traffic:"),
        ("markdown", "**shadow traffic:"),
        ("html", "<h3>Shadow traffic</h3>"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cohort"))
            .args(["report", "--events"])
            .arg(s.dir.path().join("events"))
            .args(["--config"])
            .arg(s.dir.path().join("routes.yaml"))
            .args(["--format", format])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(needle), "{format}: {text}");
        assert!(
            text.contains(&format!("{N} answers compared")),
            "{format}: {text}"
        );
    }
}

#[tokio::test]
async fn bodies_over_the_limit_and_requests_without_a_permit_are_skipped_and_counted() {
    let (p, _) = model(Model::Primary).await;
    let (cand, seen) = model(Model::Primary).await;
    let (hangs, _) = model(Model::Hangs).await;
    let s = serve(
        p,
        &[
            format!("{{ name: small, upstream: \"http://{cand}\", sample: 1.0, max_body_bytes: 1000 }}"),
            format!("{{ name: hangs, upstream: \"http://{hangs}\", sample: 1.0, max_inflight: 2, timeout_ms: 60000 }}"),
        ],
    );
    for i in 0..3 {
        let got = post(s.proxy, Some(&format!("u{i}")), call_body(i)).await;
        assert_eq!(got.status, StatusCode::OK);
    }
    for i in 0..5 {
        // Over the limit: a padded body.
        let body = json!({"x": i, "pad": "p".repeat(2000)})
            .to_string()
            .into_bytes();
        let got = post(s.proxy, Some(&format!("v{i}")), body).await;
        assert_eq!(got.body, Bytes::from(primary(i).to_string()));
    }
    let small = settled(s.admin, "small", 8).await;
    assert_eq!(
        small,
        BTreeMap::from([("agree".to_owned(), 3), ("skipped_body".to_owned(), 5)])
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
    // The two permits are held by copies that never end; every later request finds none.
    let hangs = settled(s.admin, "hangs", 6).await;
    assert_eq!(hangs, BTreeMap::from([("skipped_inflight".to_owned(), 6)]));
}

/// VmRSS of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

#[tokio::test]
async fn memory_stays_bounded_with_a_shadow_that_never_answers() {
    let (p, _) = model(Model::Primary).await;
    let (hangs, _) = model(Model::Hangs).await;
    let s = serve(
        p,
        &[format!("{{ name: hangs, upstream: \"http://{hangs}\", sample: 1.0, max_inflight: 64, timeout_ms: 150, max_body_bytes: 65536 }}")],
    );
    let body = |i: i64| {
        json!({"x": i, "pad": "p".repeat(48 * 1024)})
            .to_string()
            .into_bytes()
    };
    const N: i64 = 4000;
    let mut baseline = 0;
    let mut peak = 0;
    for chunk in 0..N / 250 {
        let _: Vec<Got> = futures_util::stream::iter(chunk * 250..(chunk + 1) * 250)
            .map(|i| {
                let user = format!("u{i}");
                async move { post(s.proxy, Some(&user), body(i)).await }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let now = rss(s.cohort.pid());
        if chunk == 1 {
            baseline = now;
        }
        peak = peak.max(now);
    }
    let r = settled(s.admin, "hangs", N as u64).await;
    assert_eq!(
        r.keys().collect::<Vec<_>>(),
        ["skipped_inflight", "timeout"],
        "{r:?}"
    );
    // 64 copies of a 48 KiB body in flight are 3 MiB; what grows past a bound is a leak.
    assert!(
        peak < baseline + (24 << 20),
        "RSS grew from {} to {} MiB",
        baseline >> 20,
        peak >> 20
    );
}

#[tokio::test]
async fn streamed_answers_are_compared_on_status_and_latency_only() {
    let (p, _) = model(Model::Events("served")).await;
    let (cand, _) = model(Model::Events("something else")).await;
    let (fails, _) = model(Model::Fails).await;
    let mut s = serve(
        p,
        &[
            format!("{{ name: cand, upstream: \"http://{cand}\", sample: 1.0 }}"),
            format!("{{ name: fails, upstream: \"http://{fails}\", sample: 1.0 }}"),
        ],
    );
    for i in 0..20 {
        let got = post(s.proxy, Some(&format!("u{i}")), call_body(i)).await;
        assert_eq!(got.body, Bytes::from_static(b"data: served\n\n"));
    }
    let agree = BTreeMap::from([("agree".to_owned(), 20)]);
    assert_eq!(settled(s.admin, "cand", 20).await, agree);
    let disagree = BTreeMap::from([("disagree".to_owned(), 20)]);
    assert_eq!(settled(s.admin, "fails", 20).await, disagree);
    assert_eq!(s.cohort.terminate(), Some(0));
    for l in shadow_lines(s.dir.path()) {
        assert_eq!(l["compared"], "status", "{l}");
        assert!(l.get("elements").is_none(), "{l}");
    }
}

#[tokio::test]
async fn a_shadow_added_and_removed_by_a_reload_starts_and_stops_copying() {
    let (p, _) = model(Model::Primary).await;
    let (cand, seen) = model(Model::Primary).await;
    let s = serve(p, &[]);
    let config = s.dir.path().join("routes.yaml");
    let without = std::fs::read_to_string(&config).unwrap();
    let with = format!(
        "{without}\x20   shadow:\n\x20     - {{ name: cand, upstream: \"http://{cand}\", sample: 1.0 }}\n"
    );
    // The file watcher may have applied the edit already: then the call finds it
    // unchanged, which is as good.
    let reload = || async {
        let (status, body) = admin_call(s.admin, "POST", "/v1/reload", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            matches!(body["result"].as_str(), Some("applied" | "unchanged")),
            "{body}"
        );
    };
    for i in 0..5 {
        post(s.proxy, Some(&format!("u{i}")), call_body(i)).await;
    }
    std::fs::write(&config, &with).unwrap();
    reload().await;
    for i in 0..20 {
        post(s.proxy, Some(&format!("u{i}")), call_body(i)).await;
    }
    let r = settled(s.admin, "cand", 20).await;
    assert_eq!(r, BTreeMap::from([("agree".to_owned(), 20)]));
    std::fs::write(&config, &without).unwrap();
    reload().await;
    for i in 0..10 {
        post(s.proxy, Some(&format!("u{i}")), call_body(i)).await;
    }
    // Only the 20 requests served while the shadow was configured were copied.
    assert_eq!(seen.lock().unwrap().len(), 20);
    assert_eq!(results(s.admin, "cand").await, r);
}
