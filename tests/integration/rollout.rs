//! Rollouts in the real binary: a failing treatment rolled back by the error guardrail, a
//! slow one by the latency guardrail, a healthy one stepped to the end; the state kept
//! across a restart; the admin calls; no unit moved from treatment to control except by
//! a rollback.

use crate::common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::net::{client, send, HttpClient};
use common::process::{admin_call, free_port, CohortProcess};
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;

/// A model that fails one request in `fail_every` (500; 0: never) and answers after
/// `delay`.
async fn model(fail_every: u64, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let n = seen.fetch_add(1, Ordering::Relaxed) + 1;
                    async move {
                        tokio::time::sleep(delay).await;
                        let status = if fail_every > 0 && n.is_multiple_of(fail_every) {
                            StatusCode::INTERNAL_SERVER_ERROR
                        } else {
                            StatusCode::OK
                        };
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"{}")));
                        *resp.status_mut() = status;
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

struct Setup {
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    proxy: SocketAddr,
    admin: SocketAddr,
}

/// A config with rf (control) and lr under `rollout` (YAML, indented for the block).
fn setup(rf: SocketAddr, lr: SocketAddr, rollout: &str) -> Setup {
    setup_with(rf, lr, rollout, "")
}

/// [`setup`] with more keys of `admin` (`, key: value…`).
fn setup_with(rf: SocketAddr, lr: SocketAddr, rollout: &str, admin_keys: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:{admin}{admin_keys} }}\nshutdown: {{ grace_ms: 20 }}\n\
         events: {{ segment_max_age_s: 0.2 }}\n\
         routes:\n  - {{ name: iris, match: {{ path_prefix: / }}, experiment: iris-model }}\n\
         experiments:\n  - name: iris-model\n    salt: rollout-test\n    control: rf\n    variants:\n      \
         - {{ name: rf, weight: 50, upstream: \"http://{rf}\" }}\n      \
         - {{ name: lr, weight: 50, upstream: \"http://{lr}\" }}\n    rollout:\n{rollout}"
    );
    let config = dir.path().join("routes.yaml");
    std::fs::write(&config, yaml).unwrap();
    Setup {
        proxy: SocketAddr::from(([127, 0, 0, 1], port)),
        admin: SocketAddr::from(([127, 0, 0, 1], admin)),
        config,
        dir,
    }
}

/// Sends one request for each of `users`; each user's variant.
async fn round(
    c: &HttpClient,
    proxy: SocketAddr,
    users: std::ops::Range<u32>,
) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for u in users {
        let id = format!("user-{u}");
        let a = send(c, proxy, "/invocations", &[("x-user-id", &id)]).await;
        let v = a.headers["x-cohort-variant"].to_str().unwrap().to_owned();
        out.push((u, v));
    }
    out
}

async fn rollout_view(admin: SocketAddr) -> Value {
    let (status, v) = admin_call(admin, "GET", "/v1/experiments/iris-model/rollout", None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

/// (version, base_version) of `cohort_config_info`.
async fn config_info(admin: SocketAddr) -> (String, String) {
    let (_, m) = admin_call(admin, "GET", "/metrics", None).await;
    let line = m
        .as_str()
        .unwrap()
        .lines()
        .find(|l| l.starts_with("cohort_config_info{"))
        .unwrap()
        .to_owned();
    let label = |name: &str| {
        let labels = &line[line.find('{').unwrap() + 1..line.find('}').unwrap()];
        labels
            .split(',')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
            .unwrap()
            .trim_end_matches('"')
            .to_owned()
    };
    (label("version"), label("base_version"))
}

fn recorded(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("data/events/rollouts.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A treatment that fails 1 request in 10 against a control that fails none is rolled
/// back by the error-rate guardrail; its users return to the control; the rollback is
/// recorded, latched across a restart, and blocks runtime weights.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_treatment_is_rolled_back_and_stays_rolled_back() {
    let rf = model(0, Duration::ZERO).await;
    let lr = model(10, Duration::ZERO).await;
    let s = setup(
        rf,
        lr,
        "      treatment: lr\n      steps: [0.5]\n      step_min_s: 600\n      step_min_units: 30\n      \
         evaluate_every_s: 0.2\n      guardrails: { max_latency_p99_ratio: null, primary_metric: false }\n",
    );
    let cohort = CohortProcess::start(&s.config, &[]);
    let c = client();
    let v = rollout_view(s.admin).await;
    assert_eq!(
        (v["state"].as_str(), v["step"].as_u64()),
        (Some("running"), Some(1))
    );
    let mut sent = 0u32;
    let rolled_back = loop {
        let users = sent..sent + 50;
        round(&c, s.proxy, users.clone()).await;
        round(&c, s.proxy, users).await;
        sent += 50;
        if let Some(line) = cohort.wait_log(
            "rollout rolled back: the treatment's share is 0",
            Duration::from_millis(300),
        ) {
            break line;
        }
        assert!(sent < 4000, "no rollback after {sent} users");
    };
    assert!(
        rolled_back["fields"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("error_rate:"),
        "{rolled_back}"
    );
    // Every user is on the control now, the new ones and those lr had.
    for (_, v) in round(&c, s.proxy, 0..sent + 20).await {
        assert_eq!(v, "rf");
    }
    let v = rollout_view(s.admin).await;
    assert_eq!(v["state"], "rolled_back");
    assert_eq!(v["share"], 0.0);
    let g = &v["guardrails"][0];
    assert_eq!(g["name"], "error_rate");
    let events = recorded(s.dir.path());
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["start", "rollback"]);
    let rb = &events[1];
    assert_eq!(rb["type"], "rollout");
    assert!(
        rb["guardrails"]["error_rate"]["value"].as_f64().unwrap() > 0.005,
        "{rb}"
    );
    assert_eq!(rb["rollout_id"], v["rollout_id"]);
    // Runtime weights answer 409 while the rollout owns the weights.
    let (status, body) =
        admin_call(s.admin, "POST", "/v1/experiments/iris-model/reset", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("rolled_back"),
        "{body}"
    );
    // The metrics say so.
    let (_, metrics) = admin_call(s.admin, "GET", "/metrics", None).await;
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(
        metrics.contains("cohort_rollout_state{experiment=\"iris-model\",state=\"rolled_back\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains(
        "cohort_rollout_guardrail_bound{experiment=\"iris-model\",guardrail=\"error_rate\"} 0.005"
    ));
    let info = format!(
        "cohort_rollout_info{{experiment=\"iris-model\",rollout_id=\"{}\"}} 1",
        v["rollout_id"].as_str().unwrap()
    );
    assert!(metrics.contains(&info), "{metrics}");

    // A restart restores the rollback before serving.
    drop(cohort);
    let cohort = CohortProcess::start(&s.config, &[]);
    assert_eq!(rollout_view(s.admin).await["state"], "rolled_back");
    for (_, v) in round(&c, s.proxy, 0..200).await {
        assert_eq!(v, "rf");
    }
    // Resume starts a new attempt at the first step.
    let (status, body) = admin_call(
        s.admin,
        "POST",
        "/v1/experiments/iris-model/rollout/resume",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"]["status"], "running");
    assert_eq!(body["state"]["attempt"], 1);
    let lr_users = round(&c, s.proxy, 0..200)
        .await
        .iter()
        .filter(|(_, v)| v == "lr")
        .count();
    assert!(
        (60..140).contains(&lr_users),
        "{lr_users} of 200 on lr at 50%"
    );
    drop(cohort);
}

/// A healthy treatment steps through every step and is done; a restart mid-rollout
/// serves the step it had reached; no unit ever goes from treatment back to control.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_treatment_steps_to_the_end_across_a_restart_moving_no_unit_back() {
    let rf = model(0, Duration::ZERO).await;
    let lr = model(0, Duration::ZERO).await;
    let s = setup(
        rf,
        lr,
        "      treatment: lr\n      steps: [0.1, 0.3, 0.6]\n      step_min_s: 1\n      step_min_units: 10\n      \
         evaluate_every_s: 0.2\n      guardrails: { latency_min_requests: 100000 }\n",
    );
    let mut cohort = CohortProcess::start(&s.config, &[]);
    let c = client();
    let before = config_info(s.admin).await;
    let users = 0..300;
    let mut seen: HashMap<u32, String> = HashMap::new();
    let mut check = |rows: Vec<(u32, String)>| {
        for (u, v) in rows {
            if let Some(before) = seen.insert(u, v.clone()) {
                assert!(
                    !(before == "lr" && v == "rf"),
                    "user-{u} moved from lr back to rf"
                );
            }
        }
    };
    let mut restarted = false;
    for _ in 0..200 {
        check(round(&c, s.proxy, users.clone()).await);
        let v = rollout_view(s.admin).await;
        if v["state"] == "done" {
            break;
        }
        // Restarted once past the first step, whichever step a round of requests last saw
        // (a slow round can outlast a step).
        if !restarted && v["step"].as_u64() >= Some(2) {
            let reached = v["step"].clone();
            drop(cohort);
            cohort = CohortProcess::start(&s.config, &[]);
            let after = rollout_view(s.admin).await;
            assert_eq!(after["step"], reached, "a restart went back to {after}");
            restarted = true;
        }
    }
    assert!(restarted);
    let v = rollout_view(s.admin).await;
    assert_eq!(v["state"], "done", "{v}");
    assert_eq!(v["share"], 0.6);
    let kinds: Vec<String> = recorded(s.dir.path())
        .iter()
        .map(|e| format!("{}@{}", e["kind"].as_str().unwrap(), e["step"]))
        .collect();
    assert_eq!(kinds, ["start@0", "advance@1", "advance@2", "done@2"]);
    // Each step is a version of its own; the version without the steps stays.
    let after = config_info(s.admin).await;
    assert_ne!(after.0, before.0, "{before:?} {after:?}");
    assert_eq!(after.1, before.1);
    check(round(&c, s.proxy, users.clone()).await);
    let on_lr = seen.values().filter(|v| *v == "lr").count();
    assert!((140..220).contains(&on_lr), "{on_lr} of 300 on lr at 60%");
    // Pausing a finished rollout is refused; aborting it rolls back.
    let (status, _) = admin_call(
        s.admin,
        "POST",
        "/v1/experiments/iris-model/rollout/pause",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = admin_call(
        s.admin,
        "POST",
        "/v1/experiments/iris-model/rollout/abort",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"]["status"], "rolled_back");
    for (_, v) in round(&c, s.proxy, users).await {
        assert_eq!(v, "rf");
    }
    drop(cohort);
}

/// A treatment 3× slower at p99 is rolled back after exactly `failures_before_rollback`
/// failing evaluations in a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_treatment_is_rolled_back_after_the_failing_evaluations_in_a_row() {
    let rf = model(0, Duration::from_millis(10)).await;
    let lr = model(0, Duration::from_millis(30)).await;
    let s = setup(
        rf,
        lr,
        "      treatment: lr\n      steps: [0.5]\n      step_min_s: 600\n      evaluate_every_s: 0.3\n      \
         guardrails: { max_latency_p99_ratio: 1.5, latency_min_requests: 20, failures_before_rollback: 3, primary_metric: false }\n",
    );
    let cohort = CohortProcess::start(&s.config, &[]);
    let c = client();
    let mut sent = 0;
    let line = loop {
        round(&c, s.proxy, sent..sent + 20).await;
        sent += 20;
        if let Some(line) = cohort.wait_log(
            "rollout rolled back: the treatment's share is 0",
            Duration::from_millis(10),
        ) {
            break line;
        }
        assert!(sent < 20_000, "no rollback");
    };
    let reason = line["fields"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("latency_p99_ratio:"), "{reason}");
    assert!(
        reason.contains("failing 3 of 3 evaluations in a row"),
        "{reason}"
    );
    let events = recorded(s.dir.path());
    let ratio = events[1]["guardrails"]["latency_p99_ratio"]["value"]
        .as_f64()
        .unwrap();
    assert!(ratio > 1.5, "{ratio}");
    drop(cohort);
}

/// What a webhook receiver got: (headers, body, raw body) per request, in order.
type Received = Arc<std::sync::Mutex<Vec<(http::HeaderMap, Value, Bytes)>>>;

/// A webhook receiver that answers 503 to its first request and 200 after.
async fn receiver() -> (
    SocketAddr,
    Received,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    use http_body_util::BodyExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got: Received = Arc::default();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let seen = got.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (seen, tx) = (seen.clone(), tx.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (seen, tx) = (seen.clone(), tx.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let bytes = body.collect().await.unwrap().to_bytes();
                        let first = {
                            let mut seen = seen.lock().unwrap();
                            let json = serde_json::from_slice(&bytes).unwrap();
                            seen.push((parts.headers, json, bytes));
                            seen.len() == 1
                        };
                        let _ = tx.send(());
                        let mut resp = Response::new(Full::new(Bytes::new()));
                        if first {
                            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, got, rx)
}

/// The start and the rollback reach the webhook: signed, with one idempotency key per
/// action (the same on the retry after a 503), from and to shares, the reason and the
/// guardrails; `done` and actions the hook did not ask for are not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_keyed_and_retried() {
    let rf = model(0, Duration::ZERO).await;
    let lr = model(5, Duration::ZERO).await;
    let (hook, got, mut arrived) = receiver().await;
    let s = setup(
        rf,
        lr,
        &format!(
            "      treatment: lr\n      steps: [0.4]\n      step_min_s: 600\n      step_min_units: 30\n      \
             evaluate_every_s: 0.2\n      guardrails: {{ max_latency_p99_ratio: null, primary_metric: false }}\n      \
             webhooks:\n        - {{ url: \"http://{hook}/cohort\", secret_env: HOOK_SECRET, events: [step, rollback] }}\n        \
             - {{ url: \"http://{hook}/paused-only\", events: [paused] }}\n"
        ),
    );
    let cohort = CohortProcess::start(&s.config, &[("HOOK_SECRET", "s3cret")]);
    let c = client();
    let mut sent = 0;
    while cohort
        .wait_log(
            "rollout rolled back: the treatment's share is 0",
            Duration::from_millis(50),
        )
        .is_none()
    {
        round(&c, s.proxy, sent..sent + 50).await;
        sent += 50;
        assert!(sent < 4000, "no rollback");
    }
    // The start (refused once, then retried after 1 s) and the rollback.
    while got.lock().unwrap().len() < 3 {
        tokio::time::timeout(Duration::from_secs(10), arrived.recv())
            .await
            .expect("the webhook deliveries arrive");
    }
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "{got:?}");
    let id = rollout_view(s.admin).await["rollout_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Deliveries are independent: the rollback may arrive before the start's retry.
    let keyed = |key: String| -> Vec<&(http::HeaderMap, Value, Bytes)> {
        got.iter()
            .filter(|(h, _, _)| h["x-cohort-idempotency-key"] == key.as_str())
            .collect()
    };
    let starts = keyed(format!("{id}-0-0-start"));
    assert_eq!(
        starts.len(),
        2,
        "the start, refused once, then retried with its key"
    );
    assert_eq!(starts[0].1, starts[1].1);
    let rollbacks = keyed(format!("{id}-0-0-rollback"));
    assert_eq!(rollbacks.len(), 1);
    for (headers, body, raw) in &got {
        // Signed over the bytes as sent, which is how a receiver checks it.
        let sig = headers["x-cohort-signature"].to_str().unwrap();
        assert_eq!(
            sig,
            cohort_control::webhooks::signature(b"s3cret", raw),
            "{body}"
        );
        assert_eq!(body["experiment"], "iris-model");
        assert_eq!(body["rollout_id"], id.as_str());
        assert!(body["report_url"]
            .as_str()
            .unwrap()
            .ends_with("/v1/experiments/iris-model/report.html"));
    }
    assert_eq!(starts[0].0["x-cohort-event"], "step");
    assert_eq!(
        starts[0].1["to"],
        serde_json::json!({"step": 1, "share": 0.4})
    );
    let (headers, rb, _) = rollbacks[0];
    assert_eq!(headers["x-cohort-event"], "rollback");
    assert_eq!(rb["from"], serde_json::json!({"step": 1, "share": 0.4}));
    assert_eq!(rb["to"]["share"], 0.0);
    assert!(rb["reason"].as_str().unwrap().starts_with("error_rate:"));
    assert!(rb["guardrails"]["error_rate"]["value"].as_f64().unwrap() > 0.005);
    let (_, metrics) = admin_call(s.admin, "GET", "/metrics", None).await;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("cohort_rollout_webhooks_total{result=\"delivered\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cohort_rollout_webhooks_total{result=\"retried\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("cohort_rollout_actions_total{experiment=\"iris-model\",kind=\"start\"} 1"),
        "{metrics}"
    );
    drop(cohort);
}

/// A treatment 30% worse on conversions (35% against 50%) is rolled back by the
/// primary-metric guardrail: the decision rule's verdict for it is roll back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_treatment_worse_on_conversions_is_rolled_back_by_the_primary_metric() {
    let rf = model(0, Duration::ZERO).await;
    let lr = model(0, Duration::ZERO).await;
    let s = setup(
        rf,
        lr,
        "      treatment: lr\n      steps: [0.5]\n      step_min_s: 600\n      evaluate_every_s: 0.3\n      \
         guardrails: { max_latency_p99_ratio: null }\n    decision: { baseline_rate: 0.5, conversion_delay_s: 0 }\n",
    );
    let cohort = CohortProcess::start(&s.config, &[]);
    let c = client();
    let mut users = 0;
    let line = loop {
        let rows = round(&c, s.proxy, users..users + 200).await;
        users += 200;
        // rf's users convert 10 in 20, lr's 7 in 20.
        let lines: String = rows
            .iter()
            .filter(|(u, v)| u % 20 < if v == "rf" { 10 } else { 7 })
            .map(|(u, _)| format!("{{\"experiment\": \"iris-model\", \"unit\": \"user-{u}\"}}\n"))
            .collect();
        let (status, body) = common::process::admin_post(s.admin, "/v1/conversions", &lines).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        if let Some(line) = cohort.wait_log(
            "rollout rolled back: the treatment's share is 0",
            Duration::from_millis(400),
        ) {
            break line;
        }
        assert!(users < 20_000, "no rollback after {users} users");
    };
    let reason = line["fields"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("primary_metric:"), "{reason}");
    let events = recorded(s.dir.path());
    assert_eq!(
        events.last().unwrap()["guardrails"]["primary_metric"]["value"],
        1.0
    );
    eprintln!("rolled back on the primary metric after {users} users");
    drop(cohort);
}

/// With `on_last_step: promote`, the last step holds until the treatment wins on the units
/// first exposed during it; then it gets every unit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_waits_for_a_win_on_the_last_steps_units() {
    let rf = model(0, Duration::ZERO).await;
    let lr = model(0, Duration::ZERO).await;
    let s = setup(
        rf,
        lr,
        "      treatment: lr\n      steps: [0.2, 0.5]\n      step_min_s: 0.3\n      step_min_units: 20\n      \
         evaluate_every_s: 0.2\n      on_last_step: promote\n      \
         guardrails: { max_latency_p99_ratio: null, primary_metric: false }\n    \
         decision: { baseline_rate: 0.3, conversion_delay_s: 0 }\n",
    );
    let cohort = CohortProcess::start(&s.config, &[]);
    let c = client();
    let mut users = 0;
    // To the last step, without conversions.
    loop {
        round(&c, s.proxy, users..users + 50).await;
        users += 50;
        if rollout_view(s.admin).await["step"] == 2 {
            break;
        }
        assert!(users < 5000, "the last step was never reached");
    }
    // Several evaluations on the last step without a win: it holds.
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 4 {
        round(&c, s.proxy, users..users + 30).await;
        users += 30;
        let v = rollout_view(s.admin).await;
        assert_eq!(
            (v["state"].as_str(), v["step"].as_u64()),
            (Some("running"), Some(2)),
            "{v}"
        );
        if let Some(at) = v["evaluated_at"].as_str() {
            seen.insert(at.to_owned());
        }
    }
    // New users of the last step: lr converts 3 in 5, rf 1 in 5.
    let line = loop {
        let rows = round(&c, s.proxy, users..users + 100).await;
        users += 100;
        let lines: String = rows
            .iter()
            .filter(|(u, v)| u % 5 < if v == "lr" { 3 } else { 1 })
            .map(|(u, _)| format!("{{\"experiment\": \"iris-model\", \"unit\": \"user-{u}\"}}\n"))
            .collect();
        let (status, body) = common::process::admin_post(s.admin, "/v1/conversions", &lines).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        if let Some(line) = cohort.wait_log("rollout promote", Duration::from_millis(300)) {
            break line;
        }
        assert!(users < 20_000, "never promoted after {users} users");
    };
    assert!(
        line["fields"]["reason"]
            .as_str()
            .unwrap()
            .contains("wins on the units first exposed during the last step"),
        "{line}"
    );
    let v = rollout_view(s.admin).await;
    assert_eq!(
        (v["state"].as_str(), v["share"].as_f64()),
        (Some("promoted"), Some(1.0))
    );
    for (_, v) in round(&c, s.proxy, 0..200).await {
        assert_eq!(v, "lr");
    }
    drop(cohort);
}

/// With tokens, the rollout's state and its calls need the `control` scope; a token of
/// another scope is refused, as is no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollout_api_needs_the_control_scope() {
    let rf = model(0, Duration::ZERO).await;
    let lr = model(0, Duration::ZERO).await;
    let s = setup_with(
        rf,
        lr,
        "      treatment: lr\n      steps: [0.5]\n",
        ", tokens: [{ name: ops, env: OPS_TOKEN, scopes: [control] }, { name: biz, env: BIZ_TOKEN, scopes: [conversions] }]",
    );
    let cohort = CohortProcess::start(
        &s.config,
        &[("OPS_TOKEN", "ops-secret"), ("BIZ_TOKEN", "biz-secret")],
    );
    let path = "/v1/experiments/iris-model/rollout";
    let (status, _) = admin_call(s.admin, "GET", path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = admin_call(s.admin, "GET", path, Some("biz-secret")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = admin_call(s.admin, "GET", path, Some("ops-secret")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "running");
    let (status, _) = admin_call(
        s.admin,
        "POST",
        &format!("{path}/pause"),
        Some("biz-secret"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = admin_call(
        s.admin,
        "POST",
        &format!("{path}/pause"),
        Some("ops-secret"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"]["status"], "paused");
    drop(cohort);
}
