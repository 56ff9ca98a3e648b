//! Runtime weights through the admin API of the real binary: set, promote, reset, scopes,
//! persistence across a restart, divergence across replicas, and file reloads on top.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use common::net::{backend, client, send};
use common::process::{admin_call, free_port, CohortProcess};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

struct Instance {
    port: u16,
    admin: u16,
}

impl Instance {
    fn new() -> Self {
        Instance {
            port: free_port(),
            admin: free_port(),
        }
    }
    fn proxy(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
    fn admin(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.admin))
    }
    fn yaml(
        &self,
        rf: SocketAddr,
        lr: SocketAddr,
        state: &Path,
        tokens: &str,
        lr_weight: u32,
    ) -> String {
        format!(
            "listen: 127.0.0.1:{}\nadmin:\n  listen: 127.0.0.1:{}\n  state_file: {:?}\n{tokens}shutdown: {{ grace_ms: 20 }}\nroutes:\n  - {{ name: iris, match: {{ path_prefix: /invocations }}, experiment: iris-model }}\nexperiments:\n  - name: iris-model\n    salt: runtime-test\n    control: rf\n    variants:\n      - {{ name: rf, weight: 50, upstream: \"http://{rf}\" }}\n      - {{ name: lr, weight: {lr_weight}, upstream: \"http://{lr}\" }}\n",
            self.port,
            self.admin,
            state.display().to_string()
        )
    }
}

async fn call(
    admin: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{admin}{path}"))
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = client()
        .request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn lr_share(proxy: SocketAddr) -> f64 {
    let c = client();
    let mut lr = 0;
    for i in 0..400 {
        let ans = send(
            &c,
            proxy,
            "/invocations",
            &[("x-user-id", &format!("u{i}"))],
        )
        .await;
        if ans.headers["x-cohort-variant"] == "lr" {
            lr += 1;
        }
    }
    f64::from(lr) / 400.0
}

fn variant<'a>(experiments: &'a Value, name: &str) -> &'a Value {
    experiments["experiments"][0]["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_promote_and_reset_persist_across_a_restart() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state/state.json");
    let config = dir.path().join("routes.yaml");
    let i = Instance::new();
    std::fs::write(&config, i.yaml(rf, lr, &state, "", 50)).unwrap();
    let mut cohort = CohortProcess::start(&config, &[]);

    let (status, body) = call(
        i.admin(),
        "PUT",
        "/v1/experiments/iris-model/weights",
        None,
        json!({"rf": 90, "lr": 10}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"], "applied");
    assert_eq!(body["moves"][0], "iris-model: lr → rf 40.000%");
    assert_eq!(
        body["permanent_change"][0],
        "experiments[0].variants[0].weight: 50 → 90   # rf"
    );
    let share = lr_share(i.proxy()).await;
    assert!((share - 0.10).abs() < 0.06, "lr share {share}");
    let (_, exps) = admin_call(i.admin(), "GET", "/v1/experiments", None).await;
    let v = variant(&exps, "lr");
    assert_eq!(
        (
            v["file_weight"].as_f64(),
            v["runtime_weight"].as_f64(),
            v["share"].as_f64()
        ),
        (Some(50.0), Some(10.0), Some(0.1))
    );
    assert!(exps["experiments"][0]["runtime"]["set_by"]
        .as_str()
        .unwrap()
        .contains("loopback"));

    // Persisted: a restart keeps the runtime weights.
    assert_eq!(cohort.terminate(), Some(0));
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(
        saved["experiments"]["iris-model"]["weights"],
        json!({"lr": 10.0, "rf": 90.0})
    );
    let _cohort = CohortProcess::start(&config, &[]);
    let (_, exps) = admin_call(i.admin(), "GET", "/v1/experiments", None).await;
    assert_eq!(variant(&exps, "lr")["runtime_weight"].as_f64(), Some(10.0));
    let share = lr_share(i.proxy()).await;
    assert!(
        (share - 0.10).abs() < 0.06,
        "after restart: lr share {share}"
    );

    // Promote: everyone gets lr.
    let (status, body) = call(
        i.admin(),
        "POST",
        "/v1/experiments/iris-model/promote",
        None,
        json!({"variant": "lr"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(lr_share(i.proxy()).await, 1.0);
    // Reset: back to the file's 50/50.
    let (status, body) = call(
        i.admin(),
        "POST",
        "/v1/experiments/iris-model/reset",
        None,
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["runtime_weights"].is_null());
    let (_, exps) = admin_call(i.admin(), "GET", "/v1/experiments", None).await;
    assert_eq!(variant(&exps, "lr")["share"].as_f64(), Some(0.5));
    assert!(variant(&exps, "lr")["runtime_weight"].is_null());

    // Bad requests.
    let (status, _) = call(
        i.admin(),
        "PUT",
        "/v1/experiments/nope/weights",
        None,
        json!({"rf": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(
        i.admin(),
        "PUT",
        "/v1/experiments/iris-model/weights",
        None,
        json!({"xx": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("not a variant"),
        "{body}"
    );
    let (status, _) = call(
        i.admin(),
        "PUT",
        "/v1/experiments/iris-model/weights",
        None,
        json!({"rf": -1}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(
        i.admin(),
        "PUT",
        "/v1/experiments/iris-model/weights",
        None,
        json!({"rf": 0, "lr": 0}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_reload_keeps_runtime_weights_and_replicas_diverge_visibly() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Instance::new(), Instance::new());
    let (ca, cb) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
    std::fs::write(
        &ca,
        a.yaml(rf, lr, &dir.path().join("a-state.json"), "", 50),
    )
    .unwrap();
    std::fs::write(
        &cb,
        b.yaml(rf, lr, &dir.path().join("b-state.json"), "", 50),
    )
    .unwrap();
    let _pa = CohortProcess::start(&ca, &[]);
    let _pb = CohortProcess::start(&cb, &[]);
    let info = |m: &Value| {
        m.as_str()
            .unwrap()
            .lines()
            .find(|l| l.starts_with("cohort_config_info{"))
            .unwrap()
            .to_owned()
    };
    let (_, ma) = admin_call(a.admin(), "GET", "/metrics", None).await;
    let (_, mb) = admin_call(b.admin(), "GET", "/metrics", None).await;
    let before_a = info(&ma);
    let (status, _) = call(
        a.admin(),
        "PUT",
        "/v1/experiments/iris-model/weights",
        None,
        json!({"lr": 25}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, ma2) = admin_call(a.admin(), "GET", "/metrics", None).await;
    let (_, mb2) = admin_call(b.admin(), "GET", "/metrics", None).await;
    assert_ne!(
        info(&ma2),
        before_a,
        "a runtime change shows in cohort_config_info"
    );
    assert_eq!(info(&mb2), info(&mb), "the other replica is unchanged");

    // The file changes lr's weight to 70: the file weight updates, the runtime weight stays.
    let v0 = admin_call(a.admin(), "GET", "/v1/config", None).await.1["version"].clone();
    std::fs::write(
        &ca,
        a.yaml(rf, lr, &dir.path().join("a-state.json"), "", 70),
    )
    .unwrap();
    let (status, body) = admin_call(a.admin(), "POST", "/v1/reload", None).await;
    assert!(status == StatusCode::OK, "{body}");
    let (_, exps) = admin_call(a.admin(), "GET", "/v1/experiments", None).await;
    let v = variant(&exps, "lr");
    assert_eq!(
        (v["file_weight"].as_f64(), v["runtime_weight"].as_f64()),
        (Some(70.0), Some(25.0))
    );
    // The effective weights did not change (runtime 25 over rf 50), so neither did the version.
    assert_eq!(
        admin_call(a.admin(), "GET", "/v1/config", None).await.1["version"],
        v0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_changes_need_the_control_scope() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let dir = tempfile::tempdir().unwrap();
    let i = Instance::new();
    let config = dir.path().join("routes.yaml");
    let tokens = "  tokens:\n    - { name: ops, env: T_OPS, scopes: [control] }\n    - { name: shop, env: T_SHOP, scopes: [conversions] }\n";
    std::fs::write(
        &config,
        i.yaml(rf, lr, &dir.path().join("s.json"), tokens, 50),
    )
    .unwrap();
    let _p = CohortProcess::start(&config, &[("T_OPS", "o"), ("T_SHOP", "s")]);
    let path = "/v1/experiments/iris-model/weights";
    assert_eq!(
        call(i.admin(), "PUT", path, None, json!({"lr": 10}))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(i.admin(), "PUT", path, Some("s"), json!({"lr": 10}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (status, body) = call(i.admin(), "PUT", path, Some("o"), json!({"lr": 10})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // With tokens configured, reading needs one too.
    let (_, exps) = admin_call(i.admin(), "GET", "/v1/experiments", Some("o")).await;
    assert!(exps["experiments"][0]["runtime"]["set_by"]
        .as_str()
        .unwrap()
        .starts_with("token ops"));
}

/// Without tokens, a loopback admin takes changes from local programs only: a web page
/// (a cross-site form, or a name of the attacker's rebound to 127.0.0.1) cannot promote a
/// variant, however it words the request.
#[tokio::test]
async fn a_web_page_cannot_change_weights_on_a_tokenless_loopback_admin() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let dir = tempfile::tempdir().unwrap();
    let i = Instance::new();
    let config = dir.path().join("routes.yaml");
    std::fs::write(
        &config,
        i.yaml(rf, lr, &dir.path().join("state.json"), "", 50),
    )
    .unwrap();
    let _cohort = CohortProcess::start(&config, &[]);
    let body = r#"{"variant": "lr"}"#;
    let promote = |host: &str, origin: Option<&str>, content_type: &str| {
        let origin = origin
            .map(|o| format!("origin: {o}\r\n"))
            .unwrap_or_default();
        format!(
            "POST /v1/experiments/iris-model/promote HTTP/1.1\r\nhost: {host}\r\n{origin}content-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let local = format!("127.0.0.1:{}", i.admin);
    for (what, head) in [
        (
            "the attack as reported",
            promote(
                "rebind.evil.example",
                Some("http://evil.example"),
                "text/plain",
            ),
        ),
        (
            "a rebound name",
            promote("rebind.evil.example", None, "application/json"),
        ),
        (
            "a foreign origin",
            promote(&local, Some("http://evil.example"), "application/json"),
        ),
        (
            "a form's content type",
            promote(&local, None, "application/x-www-form-urlencoded"),
        ),
        ("text/plain", promote(&local, None, "text/plain")),
    ] {
        let status = common::net::raw_status(i.admin(), head.as_bytes()).await;
        assert!(status.starts_with("HTTP/1.1 403"), "{what}: {status}");
    }
    let (_, exps) = admin_call(i.admin(), "GET", "/v1/experiments", None).await;
    assert!(variant(&exps, "lr")["runtime_weight"].is_null(), "{exps}");
    // A local program's call is taken.
    let ok = common::net::raw_status(
        i.admin(),
        promote(
            &format!("localhost:{}", i.admin),
            Some(&format!("http://localhost:{}", i.admin)),
            "application/json",
        )
        .as_bytes(),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "a local call: {ok}");
    let (_, exps) = admin_call(i.admin(), "GET", "/v1/experiments", None).await;
    assert_eq!(
        variant(&exps, "lr")["runtime_weight"].as_f64(),
        Some(100.0),
        "{exps}"
    );
}
