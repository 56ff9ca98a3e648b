//! Model monitoring end to end: a real model behind `cohort serve`, calls captured from the
//! request path, drift gauges per variant and column on /metrics, bad payloads counted, and
//! the client's answers the same with monitoring on and off.

use crate::common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::net::{client, serve_with};
use common::process::{admin_call, admin_post, cohort_stdout, free_port, CohortProcess};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// A model that scores each row of a `dataframe_split` body as x0 + x1; any other JSON
/// gets `{"predictions": [0]}`, and a body that is not JSON a 400.
pub(crate) async fn model() -> SocketAddr {
    serve_with(|req: Request<hyper::body::Incoming>| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let (status, answer) = match serde_json::from_slice::<Value>(&body) {
            Ok(v) => {
                let rows = v["dataframe_split"]["data"].as_array().cloned();
                let scores: Vec<f64> = rows.map_or(vec![0.0], |rows| {
                    rows.iter()
                        .map(|r| r[0].as_f64().unwrap_or(0.0) + r[1].as_f64().unwrap_or(0.0))
                        .collect()
                });
                (StatusCode::OK, json!({ "predictions": scores }))
            }
            Err(_) => (StatusCode::BAD_REQUEST, json!({"error": "not JSON"})),
        };
        let mut resp = Response::new(Full::new(Bytes::from(answer.to_string())));
        *resp.status_mut() = status;
        resp
    })
    .await
}

struct Served {
    dir: tempfile::TempDir,
    _cohort: CohortProcess,
    proxy: SocketAddr,
    admin: SocketAddr,
}

type Deliveries = Arc<Mutex<Vec<(http::HeaderMap, Value, Bytes)>>>;

/// A webhook receiver that keeps every POST (headers, JSON, bytes) and answers 200.
async fn receiver() -> (SocketAddr, Deliveries) {
    let got: Deliveries = Arc::default();
    let seen = got.clone();
    let addr = serve_with(move |req: Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            let json = serde_json::from_slice(&bytes).unwrap();
            seen.lock().unwrap().push((parts.headers, json, bytes));
            Response::new(Full::new(Bytes::new()))
        }
    })
    .await;
    (addr, got)
}

/// cohort in front of `model` with two routes: `/on` runs experiment `e` (rf and lr, both
/// the same model, monitored, with `monitor_extra` keys), `/off` experiment `plain` (not
/// monitored).
fn serve(model: SocketAddr, monitor_extra: &str, env: &[(&str, &str)]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        "listen: 127.0.0.1:{port}\n\
         admin: {{ listen: 127.0.0.1:{admin} }}\n\
         events: {{ dir: {events} }}\n\
         routes:\n\
         \x20 - {{ name: on, match: {{ path_prefix: /on }}, experiment: e }}\n\
         \x20 - {{ name: off, match: {{ path_prefix: /off }}, experiment: plain }}\n\
         experiments:\n\
         \x20 - name: e\n\
         \x20   control: rf\n\
         \x20   allow_override: true\n\
         \x20   decision: {{ attribution_window_s: 5 }}\n\
         \x20   variants:\n\
         \x20     - {{ name: rf, weight: 50, upstream: \"http://{model}\" }}\n\
         \x20     - {{ name: lr, weight: 50, upstream: \"http://{model}\" }}\n\
         \x20   monitor: {{ sample: 1.0, max_per_s: 100000, window_s: 60, min_rows: 300, reference_rows: 500, ks_rows: 256{monitor_extra} }}\n\
         \x20 - name: plain\n\
         \x20   control: rf\n\
         \x20   variants:\n\
         \x20     - {{ name: rf, weight: 50, upstream: \"http://{model}\" }}\n\
         \x20     - {{ name: lr, weight: 50, upstream: \"http://{model}\" }}\n",
        events = dir.path().join("events").display(),
    );
    let config = dir.path().join("routes.yaml");
    std::fs::write(&config, yaml).unwrap();
    let cohort = CohortProcess::start(&config, env);
    Served {
        dir,
        _cohort: cohort,
        proxy: format!("127.0.0.1:{port}").parse().unwrap(),
        admin: format!("127.0.0.1:{admin}").parse().unwrap(),
    }
}

/// POSTs `body` to `path`, forced to `variant`: (status, body bytes, x-cohort-variant).
async fn call(
    proxy: SocketAddr,
    path: &str,
    variant: &str,
    user: &str,
    body: String,
) -> (StatusCode, Bytes, String) {
    let req = Request::post(format!("http://{proxy}{path}"))
        .header("content-type", "application/json")
        .header("x-user-id", user)
        .header("x-cohort-variant", variant)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    let status = resp.status();
    let served = resp
        .headers()
        .get("x-cohort-variant")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        status,
        resp.into_body().collect().await.unwrap().to_bytes(),
        served,
    )
}

/// A `dataframe_split` body of one row: x0, x1 (shifted by `shift`) and a plan.
fn row(rng: &mut SmallRng, shift: f64) -> String {
    let normal = |rng: &mut SmallRng| -> f64 {
        // Box–Muller: the test needs no more than a normal draw.
        let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    };
    let plan = ["free", "pro"][rng.random_range(0..2)];
    json!({"dataframe_split": {"columns": ["x0", "x1", "plan"], "data": [[normal(rng), normal(rng) + shift, plan]]}})
        .to_string()
}

/// The value of the series `name{labels}` on /metrics, if present (labels in the order
/// the registry prints them: by name).
fn series(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

async fn metrics(admin: SocketAddr) -> String {
    let (_, m) = admin_call(admin, "GET", "/metrics", None).await;
    m.as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_shifted_feature_in_one_variant_raises_that_variant_and_column_only() {
    let (hook, deliveries) = receiver().await;
    let s = serve(
        model().await,
        &format!(", on_drift: {{ psi_above: 0.2, webhook: {{ url: \"http://{hook}/retrain\", secret_env: DRIFT_SECRET }} }}"),
        &[("DRIFT_SECRET", "s3cret")],
    );
    let mut rng = SmallRng::seed_from_u64(11);
    // The first 500 rows of each variant are its reference; the next 400 its live window,
    // lr's x1 shifted by one standard deviation.
    for (shift_lr, n) in [(0.0, 500), (1.0, 400)] {
        for i in 0..n {
            for (variant, shift) in [("rf", 0.0), ("lr", shift_lr)] {
                let (status, _, served) = call(
                    s.proxy,
                    "/on",
                    variant,
                    &format!("u{i}"),
                    row(&mut rng, shift),
                )
                .await;
                assert_eq!((status, served.as_str()), (StatusCode::OK, variant));
            }
        }
    }
    let lr_x1 = r#"column="x1",experiment="e",variant="lr""#;
    // The window is evaluated when its sub-window (10 s) closes.
    let deadline = Instant::now() + Duration::from_secs(40);
    let m = loop {
        let m = metrics(s.admin).await;
        let rf_rows = series(
            &m,
            "cohort_drift_psi",
            r#"column="x1",experiment="e",variant="rf""#,
        );
        if series(&m, "cohort_drift_psi", lr_x1).is_some() && rf_rows.is_some() {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no drift gauges within 40 s:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let psi = |variant: &str, column: &str| {
        series(
            &m,
            "cohort_drift_psi",
            &format!(r#"column="{column}",experiment="e",variant="{variant}""#),
        )
        .unwrap_or_else(|| panic!("no PSI for {variant}/{column}:\n{m}"))
    };
    assert!(psi("lr", "x1") > 0.2, "lr x1: {}", psi("lr", "x1"));
    assert!(psi("lr", "x0") < 0.2, "lr x0: {}", psi("lr", "x0"));
    assert!(psi("rf", "x1") < 0.2, "rf x1: {}", psi("rf", "x1"));
    // The model's scores move with x1: the prediction drifts in lr too.
    assert!(
        psi("lr", "prediction") > 0.2,
        "lr prediction: {}",
        psi("lr", "prediction")
    );
    // KS for numbers, chi-square for the categorical column.
    let ks = series(&m, "cohort_drift_ks_p_value", lr_x1).unwrap();
    assert!(ks < 1e-6, "KS p of lr x1: {ks}");
    assert!(
        series(
            &m,
            "cohort_drift_chi2_p_value",
            r#"column="plan",experiment="e",variant="rf""#
        )
        .is_some(),
        "{m}"
    );
    let captured = series(
        &m,
        "cohort_monitor_captured_total",
        r#"experiment="e",variant="lr""#,
    )
    .unwrap();
    assert_eq!(captured, 900.0);

    // The retrain trigger: one signed POST per drifted column of lr, none for rf.
    let deadline = Instant::now() + Duration::from_secs(20);
    while deliveries.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "no drift webhook within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Another window is evaluated with the columns still over the bound: no new call.
    let lr = r#"experiment="e",variant="lr""#;
    let windows = |m: &str| series(m, "cohort_monitor_windows_total", lr).unwrap();
    let seen = windows(&metrics(s.admin).await);
    let deadline = Instant::now() + Duration::from_secs(30);
    while windows(&metrics(s.admin).await) < seen + 1.0 {
        assert!(Instant::now() < deadline, "no further window within 30 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The live report shows this replica's windows.
    let (status, live) = admin_call(s.admin, "GET", "/v1/experiments/e/report", None).await;
    assert_eq!(status, StatusCode::OK, "{live}");
    let live_lr_x1 = live["monitoring"]["columns"]
        .as_array()
        .unwrap_or_else(|| panic!("no monitoring in the live report: {live}"))
        .iter()
        .find(|c| c["variant"] == "lr" && c["column"] == "x1")
        .cloned()
        .unwrap();
    assert!(live_lr_x1["psi"].as_f64().unwrap() > 0.2, "{live_lr_x1}");
    // Each evaluated window is a monitor line in the event log, with its bin counts.
    let lines = monitor_lines(&s);
    let lr_line = lines
        .iter()
        .rev()
        .find(|l| l["variant"] == "lr" && l["rows"].as_u64() >= Some(300))
        .unwrap_or_else(|| panic!("no monitor line for lr: {lines:?}"));
    let x1 = lr_line["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["column"] == "x1")
        .unwrap();
    assert!(x1["psi"].as_f64().unwrap() > 0.2, "{x1}");
    assert_eq!(x1["kind"], "numeric");
    let counts: u64 = x1["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(counts, x1["rows"].as_u64().unwrap());
    assert_eq!(
        x1["reference_counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .sum::<u64>(),
        500
    );
    assert_eq!(lr_line["phase"], "e");

    // The report reads them back: a monitoring section in every format.
    let events = s.dir.path().join("events");
    let config = s.dir.path().join("routes.yaml");
    let report = |format: &str| {
        cohort_stdout(&[
            "report",
            "--events",
            events.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--experiment",
            "e",
            "--format",
            format,
        ])
    };
    let json: Value = serde_json::from_str(&report("json")).unwrap();
    let json = if json.is_array() {
        json[0].clone()
    } else {
        json
    };
    let m = &json["monitoring"];
    let lr_x1 = m["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["variant"] == "lr" && c["column"] == "x1")
        .unwrap_or_else(|| panic!("no lr/x1 in {m}"));
    assert!(lr_x1["psi"].as_f64().unwrap() > 0.2, "{lr_x1}");
    assert!(!lr_x1["psi_series"].as_array().unwrap().is_empty());
    assert_eq!(m["worst"]["variant"], "lr", "{m}");
    let text = report("text");
    assert!(
        text.contains("drifted in the latest window (PSI above 0.2): lr/"),
        "{text}"
    );
    let html = report("html");
    assert!(
        html.contains("<h3>Model monitoring</h3>"),
        "no monitoring section in the HTML"
    );
    assert!(html.contains("PSI of x1 per window"), "no PSI chart of x1");
    assert!(
        html.contains("reference against its latest window"),
        "no histogram"
    );
    assert!(report("markdown").contains("| variant | column | kind | rows | PSI | max PSI | p |"));

    let got = deliveries.lock().unwrap().clone();
    let mut columns: Vec<&str> = got
        .iter()
        .map(|(_, j, _)| j["column"].as_str().unwrap())
        .collect();
    columns.sort_unstable();
    assert_eq!(columns, ["prediction", "x1"], "{got:?}");
    for (headers, json, raw) in &got {
        assert_eq!(
            (json["event"].as_str(), json["variant"].as_str()),
            (Some("drift"), Some("lr"))
        );
        assert!(json["psi"].as_f64().unwrap() > 0.2, "{json}");
        assert_eq!(headers["x-cohort-event"], "drift");
        let start = window_start_s(json);
        assert_eq!(
            headers["x-cohort-idempotency-key"].to_str().unwrap(),
            format!("e/lr/{}/{start}", json["column"].as_str().unwrap())
        );
        assert_eq!(
            headers["x-cohort-signature"].to_str().unwrap(),
            cohort_control::webhooks::signature(b"s3cret", raw)
        );
    }
}

/// The `"type": "monitor"` lines of the served cohort's event log, in order.
fn monitor_lines(s: &Served) -> Vec<Value> {
    common::process::typed_lines(&s.dir.path().join("events"), "monitor")
}

/// The window start of a drift body, in seconds since the epoch (its RFC 3339
/// `window.start` read back).
fn window_start_s(json: &Value) -> i64 {
    let start = json["window"]["start"].as_str().unwrap();
    cohort_events::clock::parse_nanos(start).unwrap() / 1_000_000_000
}

#[tokio::test]
async fn answers_are_the_same_with_monitoring_on_and_off_and_bad_bodies_are_counted() {
    let s = serve(model().await, "", &[]);
    let mut rng = SmallRng::seed_from_u64(5);
    for i in 0..20 {
        let body = row(&mut rng, 0.0);
        let on = call(s.proxy, "/on", "lr", &format!("u{i}"), body.clone()).await;
        let off = call(s.proxy, "/off", "lr", &format!("u{i}"), body).await;
        assert_eq!((on.0, &on.1), (off.0, &off.1), "call {i}");
    }
    // JSON the model takes but no known shape: the client gets the model's answer, and
    // the request side is counted unreadable.
    let (status, body, _) = call(s.proxy, "/on", "rf", "x", r#"{"features": [1, 2]}"#.into()).await;
    assert_eq!(
        (status, &body[..]),
        (StatusCode::OK, &br#"{"predictions":[0.0]}"#[..])
    );
    // Not JSON: the model's 400 reaches the client; the call is not monitored.
    let (status, _, _) = call(s.proxy, "/on", "rf", "y", "not json".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics(s.admin).await;
        let unreadable = series(
            &m,
            "cohort_monitor_unreadable_total",
            r#"experiment="e",reason="unknown_shape",side="request""#,
        );
        let status = series(
            &m,
            "cohort_monitor_skipped_total",
            r#"experiment="e",reason="status""#,
        );
        if unreadable == Some(1.0) && status == Some(1.0) {
            assert_eq!(
                series(
                    &m,
                    "cohort_monitor_captured_total",
                    r#"experiment="e",variant="lr""#
                ),
                Some(20.0),
                "{m}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "counts not seen within 10 s:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn model_quality_comes_from_conversions_once_their_window_closes() {
    let s = serve(
        model().await,
        ", quality: { threshold: 0.5, min_labels: 10 }",
        &[],
    );
    let mut rng = SmallRng::seed_from_u64(3);
    // The model scores x0 + x1 = p; the units it scores above 0.5 convert, the others not:
    // a perfect ranking, with a log loss the test computes itself.
    let mut expected_loss = 0.0;
    // Per tenth of the score: (sum of scores, conversions, predictions).
    let mut tenths = [(0.0f64, 0u32, 0u32); 10];
    let n = 60;
    for i in 0..n {
        let p: f64 = rng.random_range(0.05..0.95);
        let body =
            json!({"dataframe_split": {"columns": ["x0", "x1"], "data": [[p, 0.0]]}}).to_string();
        let (status, _, _) = call(s.proxy, "/on", "lr", &format!("q{i}"), body).await;
        assert_eq!(status, StatusCode::OK);
        let converts = p > 0.5;
        expected_loss -= if converts { p.ln() } else { (1.0 - p).ln() };
        let t = &mut tenths[((p * 10.0).ceil() as usize).clamp(1, 10) - 1];
        *t = (t.0 + p, t.1 + u32::from(converts), t.2 + 1);
        // The conversion right after the call: well within the 5 s window.
        if converts {
            let line = format!("{{\"experiment\": \"e\", \"unit\": \"q{i}\"}}");
            let (status, body) = admin_post(s.admin, "/v1/conversions", &line).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        }
    }
    let expected_loss = expected_loss / f64::from(n);
    // Labelled once the 5 s attribution window after each call has closed.
    let lr = |measure: &str| format!(r#"experiment="e",measure="{measure}",variant="lr""#);
    let deadline = Instant::now() + Duration::from_secs(20);
    let m = loop {
        let m = metrics(s.admin).await;
        if series(&m, "cohort_model_quality", &lr("labelled")) == Some(f64::from(n)) {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "predictions not labelled within 20 s:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let q = |measure: &str| {
        series(&m, "cohort_model_quality", &lr(measure))
            .unwrap_or_else(|| panic!("no {measure}:\n{m}"))
    };
    assert_eq!(q("auc"), 1.0);
    assert_eq!(q("accuracy"), 1.0);
    assert_eq!(q("f1"), 1.0);
    let loss = q("log_loss");
    assert!(
        (loss - expected_loss).abs() < 1e-9,
        "log loss {loss}, expected {expected_loss}"
    );
    let expected_ece: f64 = tenths
        .iter()
        .filter(|t| t.2 > 0)
        .map(|&(sum, pos, k)| {
            (sum / f64::from(k) - f64::from(pos) / f64::from(k)).abs() * f64::from(k)
        })
        .sum::<f64>()
        / f64::from(n);
    let ece = q("calibration_error");
    assert!(
        (ece - expected_ece).abs() < 1e-9,
        "calibration error {ece}, expected {expected_ece}"
    );
}
