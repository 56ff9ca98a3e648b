//! Exposures and conversions end to end through the real binary: the log holds exactly
//! what was served and reported, live counts agree with it, and a restart replays them.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cohort_events::reader::read_dir;
use cohort_events::Event;
use common::net::{backend, client, send};
use common::process::{admin_call, admin_post, free_port, CohortProcess};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

/// Two backends, a config with the event log in a scratch directory, and the addresses.
struct Setup {
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    events: std::path::PathBuf,
    proxy: SocketAddr,
    admin: SocketAddr,
}

impl Setup {
    /// `settings` are extra top-level keys (`EVENTS` stands for the events directory);
    /// `extra` goes into the experiment.
    async fn new(settings: &str, extra: &str) -> Setup {
        let (rf, lr) = (backend("rf").await, backend("lr").await);
        let dir = tempfile::tempdir().unwrap();
        let (port, admin) = (free_port(), free_port());
        let events = dir.path().join("events");
        let settings = settings.replace("EVENTS", &format!("{:?}", events.display().to_string()));
        let yaml = format!(
            "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:{admin} }}\n{settings}{}",
            common::net::two_arm(rf, lr, extra)
        );
        let config = dir.path().join("routes.yaml");
        std::fs::write(&config, yaml).unwrap();
        Setup {
            _dir: dir,
            config,
            events,
            proxy: SocketAddr::from(([127, 0, 0, 1], port)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
        }
    }
}

/// Waits (bounded) until the live counts hold `requests` exposures; returns the counts.
async fn counts_when(admin: SocketAddr, experiment: &str, requests: u64) -> Value {
    let start = Instant::now();
    loop {
        let (_, c) = admin_call(
            admin,
            "GET",
            &format!("/v1/experiments/{experiment}/counts"),
            None,
        )
        .await;
        let total: u64 = c["counts"]["variants"].as_object().map_or(0, |v| {
            v.values()
                .map(|x| x["requests"].as_u64().unwrap_or(0))
                .sum()
        });
        if total == requests {
            return c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "counts stuck at {total} of {requests}: {c}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `cohort report --format json` on the log, for the configured experiment.
fn report_cli(events: &std::path::Path, config: &std::path::Path) -> Value {
    let out = common::process::cohort_stdout(&[
        "report",
        "--events",
        events.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--experiment",
        "iris-model",
        "--format",
        "json",
    ]);
    let all: Value = serde_json::from_str(&out).unwrap();
    all[0].clone()
}

fn without_time(report: &Value) -> Value {
    let mut r = report.clone();
    r.as_object_mut().unwrap().remove("computed_at");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposures_and_conversions_are_logged_counted_and_replayed() {
    let s = Setup::new("shutdown: { grace_ms: 20 }\nevents: { dir: EVENTS }\nconversions: { public_path: /cohort/conversions, max_body_bytes: 8192 }\n", "").await;
    let (proxy, admin, events, config) = (s.proxy, s.admin, s.events.clone(), s.config.clone());
    let mut cohort = CohortProcess::start(&config, &[]);

    // 100 users, 2 requests each.
    let c = client();
    let mut variant_of = HashMap::new();
    for round in 0..2 {
        for u in 0..100 {
            let ans = send(
                &c,
                proxy,
                "/invocations",
                &[("x-user-id", &format!("user-{u}"))],
            )
            .await;
            let v = ans.headers["x-cohort-variant"].to_str().unwrap().to_owned();
            if round == 0 {
                variant_of.insert(format!("user-{u}"), v);
            }
        }
    }
    // Conversions: users 0..30 convert (value 2), users 0..10 twice; one via the public path.
    let mut lines = String::new();
    for u in 0..30 {
        lines.push_str(&format!(
            "{{\"experiment\": \"iris-model\", \"unit\": \"user-{u}\", \"value\": 2}}\n"
        ));
    }
    for u in 0..10 {
        lines.push_str(&format!(
            "{{\"experiment\": \"iris-model\", \"unit\": \"user-{u}\", \"value\": 2}}\n"
        ));
    }
    let (status, body) = admin_post(admin, "/v1/conversions", &lines).await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (StatusCode::ACCEPTED, Some(40)),
        "{body}"
    );
    let (status, body) = admin_post(
        proxy,
        "/cohort/conversions",
        "{\"experiment\": \"iris-model\", \"unit\": \"user-99\"}",
    )
    .await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (StatusCode::ACCEPTED, Some(1)),
        "{body}"
    );
    // A bad batch is rejected whole, with line numbers; nothing of it is recorded.
    let bad = "{\"experiment\": \"iris-model\", \"unit\": \"user-50\"}\n{\"experiment\": \"nope\", \"unit\": \"x\"}\n{\"experiment\": \"iris-model\"}\n";
    let (status, body) = admin_post(admin, "/v1/conversions", bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let bad_lines: Vec<u64> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(bad_lines, [2, 3]);
    let (status, _) = admin_post(proxy, "/cohort/conversions", &"x".repeat(10_000)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // Live counts equal what the users did.
    counts_when(admin, "iris-model", 200).await;
    let mut expect: HashMap<&str, (u64, u64, f64)> = HashMap::new(); // units, converted, value
    for (u, v) in &variant_of {
        let e = expect.entry(v.as_str()).or_default();
        e.0 += 1;
        let n: u64 = u.trim_start_matches("user-").parse().unwrap();
        if n < 30 || n == 99 {
            e.1 += 1;
            e.2 += if n < 10 {
                4.0
            } else if n < 30 {
                2.0
            } else {
                1.0
            };
        }
    }
    // Conversions are written after the exposures; wait until the value sums are in.
    let start = Instant::now();
    let live = loop {
        let (_, c) = admin_call(admin, "GET", "/v1/experiments/iris-model/counts", None).await;
        let sum: f64 = c["counts"]["variants"]
            .as_object()
            .unwrap()
            .values()
            .map(|x| x["value_sum"].as_f64().unwrap())
            .sum();
        if (sum - 81.0).abs() < 1e-9 || start.elapsed() > Duration::from_secs(10) {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for (v, (units, converted, value)) in &expect {
        let got = &live["counts"]["variants"][*v];
        assert_eq!(got["requests"].as_u64(), Some(units * 2), "{v}: {got}");
        assert_eq!(got["units"].as_u64(), Some(*units), "{v}");
        assert_eq!(got["converted_units"].as_u64(), Some(*converted), "{v}");
        assert!(
            (got["value_sum"].as_f64().unwrap() - value).abs() < 1e-9,
            "{v}"
        );
    }
    let (_, metrics) = admin_call(admin, "GET", "/metrics", None).await;
    let text = metrics.as_str().unwrap();
    for (v, (units, _, _)) in &expect {
        let line = format!(
            "cohort_exposures_total{{experiment=\"iris-model\",variant=\"{v}\"}} {}",
            units * 2
        );
        assert!(text.contains(&line), "missing {line}");
    }

    // The live report and `cohort report` over the same log agree to the last digit.
    let (status, live_report) =
        admin_call(admin, "GET", "/v1/experiments/iris-model/report", None).await;
    assert_eq!(status, StatusCode::OK, "{live_report}");
    let cli_report = report_cli(&events, &config);
    assert_eq!(without_time(&live_report), without_time(&cli_report));
    for v in live_report["variants"].as_array().unwrap() {
        let (units, converted, value) = expect[v["name"].as_str().unwrap()];
        assert_eq!(v["units"].as_u64(), Some(units), "{v}");
        assert_eq!(v["conversions"].as_u64(), Some(converted), "{v}");
        assert!(
            (v["value_sum"].as_f64().unwrap() - value).abs() < 1e-9,
            "{v}"
        );
    }
    // The report refreshed the analysis gauges.
    let (_, metrics) = admin_call(admin, "GET", "/metrics", None).await;
    let lines = metrics.as_str().unwrap().lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    for v in live_report["variants"].as_array().unwrap() {
        let gauge = scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "cohort_experiment_units"
                    && s.labels.get("variant") == v["name"].as_str()
            })
            .unwrap_or_else(|| panic!("no cohort_experiment_units for {v}"));
        assert_eq!(
            gauge.value,
            prometheus_parse::Value::Gauge(v["units"].as_f64().unwrap())
        );
    }
    let (status, html) =
        admin_call(admin, "GET", "/v1/experiments/iris-model/report.html", None).await;
    assert_eq!(status, StatusCode::OK);
    let html = html.as_str().unwrap();
    assert!(html.contains("<svg") && html.contains("Experiment iris-model"));

    // The log holds exactly 200 exposures and 41 conversions, with the right variants.
    assert_eq!(cohort.terminate(), Some(0));
    let read = read_dir(&events).unwrap();
    let (mut exposures, mut conversions) = (0, 0);
    let mut conversion_ids = HashSet::new();
    for e in &read.events {
        match e {
            Event::Exposure(x) => {
                exposures += 1;
                assert_eq!(&x.variant, &variant_of[&x.unit]);
            }
            Event::Conversion(c) => {
                conversions += 1;
                assert_eq!(
                    c.variant.as_ref(),
                    Some(&variant_of[&c.unit]),
                    "attributed at receipt"
                );
                // Each accepted conversion gets an id of its own: 128 random bits.
                let id = c.event_id.clone().expect("an event_id");
                assert!(id.len() == 32 && id.chars().all(|ch| ch.is_ascii_hexdigit()));
                assert!(conversion_ids.insert(id), "a repeated event_id");
            }
        }
    }
    assert_eq!((exposures, conversions, read.malformed), (200, 41, 0));

    // A restart replays the log: the counts come back the same.
    let _again = CohortProcess::start(&config, &[]);
    let replayed = counts_when(admin, "iris-model", 200).await;
    assert_eq!(replayed["counts"], live["counts"]);
    let (_, replayed_report) =
        admin_call(admin, "GET", "/v1/experiments/iris-model/report", None).await;
    assert_eq!(without_time(&replayed_report), without_time(&cli_report));
    let units: HashSet<&String> = variant_of.keys().collect();
    assert_eq!(units.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_unit_request_a_conversion_names_the_request_id() {
    let s = Setup::new("events: { dir: EVENTS }\n", "    unit: request\n").await;
    let (proxy, admin, config) = (s.proxy, s.admin, s.config.clone());
    let _cohort = CohortProcess::start(&config, &[]);
    let ans = send(&client(), proxy, "/invocations", &[]).await;
    let rid = ans.headers["x-cohort-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let variant = ans.headers["x-cohort-variant"].to_str().unwrap().to_owned();
    let (status, body) = admin_post(
        admin,
        "/v1/conversions",
        &format!("{{\"experiment\": \"iris-model\", \"request_id\": \"{rid}\", \"value\": 5}}"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    counts_when(admin, "iris-model", 1).await;
    let start = Instant::now();
    loop {
        let (_, c) = admin_call(admin, "GET", "/v1/experiments/iris-model/counts", None).await;
        if c["counts"]["variants"][&variant]["converted_units"] == 1 {
            assert_eq!(c["counts"]["variants"][&variant]["value_sum"], 5.0);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{c}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_under_load_a_restart_skips_the_torn_line_and_counts_what_is_complete() {
    let s = Setup::new("events: { dir: EVENTS, fsync: never }\n", "").await;
    let (proxy, admin, events, config) = (s.proxy, s.admin, s.events.clone(), s.config.clone());
    let mut cohort = CohortProcess::start(&config, &[]);
    // Load from 4 clients (bounded: 400 requests each), then SIGKILL mid-load.
    let mut load = Vec::new();
    for w in 0..4 {
        load.push(tokio::spawn(async move {
            let c = client();
            for i in 0..400 {
                let req = Request::post(format!("http://{proxy}/invocations"))
                    .header("x-user-id", format!("w{w}-{i}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                if c.request(req).await.is_err() {
                    return;
                }
            }
        }));
    }
    // Kill once a good part of the load has been written.
    counts_when_at_least(admin, 200).await;
    cohort.signal("KILL");
    let _ = cohort.wait();
    for l in load {
        let _ = l.await;
    }
    // Simulate the worst tear: half a line at the end of the newest segment.
    let newest = cohort_events::reader::segments(&events)
        .unwrap()
        .pop()
        .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"type\":\"exposure\",\"ts\":\"2026-").unwrap();
    drop(f);
    let on_disk = read_dir(&events).unwrap();
    assert_eq!(on_disk.malformed, 1);
    let complete = on_disk.events.len() as u64;
    assert!(complete > 0, "some exposures were written before the kill");

    // The restart succeeds and its counts equal the complete lines.
    let _again = CohortProcess::start(&config, &[]);
    let c = counts_when(admin, "iris-model", complete).await;
    let units: u64 = c["counts"]["variants"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v["units"].as_u64().unwrap())
        .sum();
    assert_eq!(units, complete, "every user was distinct");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_leaves_every_answered_request_in_the_log() {
    let s = Setup::new("shutdown: { grace_ms: 300, drain_timeout_ms: 5000 }\nevents: { dir: EVENTS, fsync: interval }\n", "").await;
    let (proxy, admin, events, config) = (s.proxy, s.admin, s.events.clone(), s.config.clone());
    let mut cohort = CohortProcess::start(&config, &[]);
    // 4 clients (bounded: 2000 requests each) keep going until the proxy stops answering.
    let mut load = Vec::new();
    for w in 0..4 {
        load.push(tokio::spawn(async move {
            let c = client();
            let mut answered = Vec::new();
            for i in 0..2000 {
                let req = Request::post(format!("http://{proxy}/invocations"))
                    .header("x-user-id", format!("w{w}-{i}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                match c.request(req).await {
                    Ok(resp) if resp.status() == StatusCode::OK => {
                        answered.push(
                            resp.headers()["x-cohort-request-id"]
                                .to_str()
                                .unwrap()
                                .to_owned(),
                        );
                        let _ = resp.into_body().collect().await;
                    }
                    _ => break,
                }
            }
            answered
        }));
    }
    // SIGTERM once traffic is flowing.
    counts_when_at_least(admin, 100).await;
    cohort.signal("TERM");
    assert_eq!(
        tokio::task::spawn_blocking(move || cohort.wait())
            .await
            .unwrap(),
        Some(0)
    );
    let mut answered = HashSet::new();
    for l in load {
        answered.extend(l.await.unwrap());
    }
    let read = read_dir(&events).unwrap();
    let logged: HashSet<String> = read
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Exposure(x) => x.request_id.clone(),
            Event::Conversion(_) => None,
        })
        .collect();
    assert!(answered.len() > 100, "{} answered", answered.len());
    let missing: Vec<&String> = answered.iter().filter(|r| !logged.contains(*r)).collect();
    assert!(
        missing.is_empty(),
        "{} answered requests have no exposure, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert_eq!(read.malformed, 0);
}

/// Waits (bounded) until the live counts hold at least `n` exposures.
async fn counts_when_at_least(admin: SocketAddr, n: u64) {
    let start = Instant::now();
    loop {
        let (_, c) = admin_call(admin, "GET", "/v1/experiments/iris-model/counts", None).await;
        let total: u64 = c["counts"]["variants"].as_object().map_or(0, |v| {
            v.values()
                .map(|x| x["requests"].as_u64().unwrap_or(0))
                .sum()
        });
        if total >= n {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "only {total} exposures"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
