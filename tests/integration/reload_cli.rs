//! Hot reload through the real binary: a file edit, an atomic rename, a ConfigMap-style
//! `..data` symlink swap, SIGHUP and `POST /v1/reload`, each seen as a changed split; bad
//! files and reshuffles refused while the old table keeps serving; token scopes.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::net::{backend, client, send};
use common::process::{admin_call, free_port, CohortProcess};
use http::StatusCode;
use serde_json::Value;

struct Setup {
    port: u16,
    admin: u16,
    rf: SocketAddr,
    lr: SocketAddr,
}

impl Setup {
    async fn new() -> Setup {
        Setup {
            port: free_port(),
            admin: free_port(),
            rf: backend("rf").await,
            lr: backend("lr").await,
        }
    }

    /// The config with weights rf:lr and extra experiment keys.
    fn yaml(&self, rf_w: u32, lr_w: u32, extra: &str) -> String {
        format!(
            "listen: 127.0.0.1:{}\nadmin:\n  listen: 127.0.0.1:{}\n{}routes:\n  - {{ name: iris, match: {{ path_prefix: /invocations }}, experiment: iris-model }}\nexperiments:\n  - name: iris-model\n    salt: reload-test\n    control: rf\n{extra}    variants:\n      - {{ name: rf, weight: {rf_w}, upstream: \"http://{}\" }}\n      - {{ name: lr, weight: {lr_w}, upstream: \"http://{}\" }}\n",
            self.port, self.admin, "", self.rf, self.lr
        )
    }

    fn proxy(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn admin(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.admin))
    }

    /// Share of 200 users served by lr.
    async fn lr_share(&self) -> f64 {
        let c = client();
        let mut lr = 0;
        for i in 0..200 {
            let ans = send(
                &c,
                self.proxy(),
                "/invocations",
                &[("x-user-id", &format!("u{i}"))],
            )
            .await;
            assert_eq!(ans.status, StatusCode::OK);
            if ans.headers["x-cohort-variant"] == "lr" {
                lr += 1;
            }
        }
        f64::from(lr) / 200.0
    }

    async fn version(&self) -> String {
        let (_, cfg) = admin_call(self.admin(), "GET", "/v1/config", None).await;
        cfg["version"].as_str().unwrap().to_owned()
    }

    /// Waits (bounded) until the version in force differs from `old`; returns how long.
    async fn changed_from(&self, old: &str, within: Duration) -> Duration {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.version().await != old {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the config version did not change within {within:?}");
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_edit_and_atomic_rename_are_live_within_a_second() {
    let s = Setup::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routes.yaml");
    write(&config, &s.yaml(100, 0, ""));
    let _cohort = CohortProcess::start(&config, &[]);
    assert_eq!(s.lr_share().await, 0.0);

    // An in-place edit (a promotion of lr: not a reshuffle).
    let v0 = s.version().await;
    write(&config, &s.yaml(0, 100, ""));
    let took = s.changed_from(&v0, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(1), "live after {took:?}");
    assert_eq!(s.lr_share().await, 1.0);

    // An editor's rename-write: the new content lands under a temporary name first.
    let v1 = s.version().await;
    let tmp = dir.path().join(".routes.yaml.swp");
    write(&tmp, &s.yaml(100, 0, ""));
    std::fs::rename(&tmp, &config).unwrap();
    let took = s.changed_from(&v1, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(1), "live after {took:?}");
    assert_eq!(s.lr_share().await, 0.0);

    // Other files in the directory (logs) trigger nothing.
    let (_, before) = admin_call(s.admin(), "GET", "/metrics", None).await;
    write(&dir.path().join("cohort.log"), "noise\n");
    let v2 = s.version().await;
    write(&config, &s.yaml(50, 50, ""));
    s.changed_from(&v2, Duration::from_secs(5)).await;
    let (_, after) = admin_call(s.admin(), "GET", "/metrics", None).await;
    let successes = |m: &Value| {
        m.as_str()
            .unwrap()
            .lines()
            .find(|l| l.starts_with("cohort_config_reloads_total{result=\"success\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap()
    };
    assert_eq!(
        successes(&after) - successes(&before),
        1.0,
        "exactly one reload for one config edit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_style_data_symlink_swap_is_picked_up() {
    let s = Setup::new().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // kubelet's layout: routes.yaml -> ..data/routes.yaml, ..data -> ..TIMESTAMP_1
    std::fs::create_dir(d.join("..2026_11_25_1")).unwrap();
    write(&d.join("..2026_11_25_1/routes.yaml"), &s.yaml(100, 0, ""));
    std::os::unix::fs::symlink("..2026_11_25_1", d.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/routes.yaml", d.join("routes.yaml")).unwrap();
    let _cohort = CohortProcess::start(&d.join("routes.yaml"), &[]);
    assert_eq!(s.lr_share().await, 0.0);

    // The atomic swap: a new timestamped dir, ..data_tmp pointing at it, renamed over ..data.
    let v0 = s.version().await;
    std::fs::create_dir(d.join("..2026_11_25_2")).unwrap();
    write(&d.join("..2026_11_25_2/routes.yaml"), &s.yaml(0, 100, ""));
    std::os::unix::fs::symlink("..2026_11_25_2", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    std::fs::remove_dir_all(d.join("..2026_11_25_1")).unwrap();
    let took = s.changed_from(&v0, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(1), "live after {took:?}");
    assert_eq!(s.lr_share().await, 1.0);
}

/// A config path whose real file lives in another directory: edits there make no event in
/// the watched directory, so only SIGHUP, the admin API (or the 30 s poll) can notice.
fn unwatched(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    std::fs::create_dir(dir.join("watched")).unwrap();
    std::fs::create_dir(dir.join("elsewhere")).unwrap();
    let real = dir.join("elsewhere/routes.yaml");
    let link = dir.join("watched/routes.yaml");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    (real, link)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_the_admin_call_reload() {
    let s = Setup::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (real, link) = unwatched(dir.path());
    write(&real, &s.yaml(100, 0, ""));
    let cohort = CohortProcess::start(&link, &[]);

    let v0 = s.version().await;
    write(&real, &s.yaml(0, 100, ""));
    cohort.signal("HUP");
    let took = s.changed_from(&v0, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(2), "SIGHUP reload took {took:?}");
    assert_eq!(s.lr_share().await, 1.0);

    write(&real, &s.yaml(100, 0, ""));
    let (status, body) = admin_call(s.admin(), "POST", "/v1/reload", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"], "applied");
    assert_eq!(body["version"].as_str().unwrap(), s.version().await);
    assert_eq!(body["moves"][0], "iris-model: lr → rf 100.000%");
    assert_eq!(s.lr_share().await, 0.0);
    // Nothing changed since: "unchanged".
    let (status, body) = admin_call(s.admin(), "POST", "/v1/reload", None).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (StatusCode::OK, Some("unchanged"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_and_reshuffles_leave_the_old_table_serving() {
    let s = Setup::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (real, link) = unwatched(dir.path());
    write(&real, &s.yaml(90, 10, ""));
    let _cohort = CohortProcess::start(&link, &[]);
    let v0 = s.version().await;
    let share = s.lr_share().await;

    let bad: [(&str, String, &str); 3] = [
        (
            "yaml syntax",
            s.yaml(90, 10, "").replace("control: rf", "control: \"rf"),
            "",
        ),
        (
            "unknown key",
            s.yaml(90, 10, "    colour: blue\n"),
            "experiments[0].colour",
        ),
        (
            "bad weights",
            s.yaml(90, 10, "").replace("weight: 10", "weight: -10"),
            "experiments[0].variants[1].weight",
        ),
    ];
    for (what, text, path) in bad {
        write(&real, &text);
        let (status, body) = admin_call(s.admin(), "POST", "/v1/reload", None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {body}");
        assert_eq!(body["result"], "error");
        let first = &body["errors"][0];
        assert!(first["line"].as_u64().is_some(), "{what}: {first}");
        assert_eq!(first["path"], path, "{what}");
        let (_, cfg) = admin_call(s.admin(), "GET", "/v1/config", None).await;
        assert_eq!(
            cfg["version"],
            v0.as_str(),
            "{what}: the old table keeps serving"
        );
        assert_eq!(cfg["pending"]["reason"], "invalid");
        assert_eq!(cfg["last_error"][0]["path"], path);
        assert_eq!(s.lr_share().await, share);
    }
    let (_, metrics) = admin_call(s.admin(), "GET", "/metrics", None).await;
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("cohort_config_reloads_total{result=\"error\"} 3"),
        "{text}"
    );
    assert!(text.contains("cohort_config_pending{reason=\"invalid\"} 1"));

    // A reshuffle (the control changes): refused, pending shown.
    write(
        &real,
        &s.yaml(90, 10, "").replace("control: rf", "control: lr"),
    );
    let (status, body) = admin_call(s.admin(), "POST", "/v1/reload", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["result"], "refused");
    assert_eq!(body["reason"], "reshuffle");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("the control changed"),
        "{body}"
    );
    let (_, cfg) = admin_call(s.admin(), "GET", "/v1/config", None).await;
    assert_eq!(cfg["pending"]["reason"], "reshuffle");
    assert_eq!(cfg["version"], v0.as_str());
    // Acknowledged with allow_reshuffle: applied, nothing pending.
    write(
        &real,
        &s.yaml(90, 10, "    allow_reshuffle: true\n")
            .replace("control: rf", "control: lr"),
    );
    let (status, body) = admin_call(s.admin(), "POST", "/v1/reload", None).await;
    assert_eq!(
        (status, &body["result"]),
        (StatusCode::OK, &Value::from("applied")),
        "{body}"
    );
    let (_, cfg) = admin_call(s.admin(), "GET", "/v1/config", None).await;
    assert!(cfg["pending"].is_null());
    // A new salt is a new phase: accepted too.
    write(
        &real,
        &s.yaml(50, 50, "")
            .replace("salt: reload-test", "salt: reload-test-2"),
    );
    let (status, body) = admin_call(s.admin(), "POST", "/v1/reload", None).await;
    assert_eq!(
        (status, &body["result"]),
        (StatusCode::OK, &Value::from("applied")),
        "{body}"
    );

    // A new listener address cannot apply live.
    let moved = s
        .yaml(50, 50, "")
        .replace("salt: reload-test", "salt: reload-test-2")
        .replace(
            &format!("listen: 127.0.0.1:{}", s.port),
            "listen: 127.0.0.1:1",
        );
    write(&real, &moved);
    let (status, body) = admin_call(s.admin(), "POST", "/v1/reload", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["reason"], "restart_required");
    assert!(
        body["message"].as_str().unwrap().contains("restart cohort"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_needs_a_token_with_the_control_scope() {
    let s = Setup::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routes.yaml");
    let tokens = "admin:\n  listen: 127.0.0.1:ADMIN\n  tokens:\n    - { name: ops, env: T_OPS, scopes: [control] }\n    - { name: shop, env: T_SHOP, scopes: [conversions] }\n"
        .replace("ADMIN", &s.admin.to_string());
    let yaml = s.yaml(50, 50, "").replace(
        &format!("admin:\n  listen: 127.0.0.1:{}\n", s.admin),
        &tokens,
    );
    write(&config, &yaml);
    let _cohort = CohortProcess::start(
        &config,
        &[("T_OPS", "ops-secret"), ("T_SHOP", "shop-secret")],
    );
    let (status, body) = admin_call(s.admin(), "POST", "/v1/reload", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = admin_call(s.admin(), "POST", "/v1/reload", Some("guess")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = admin_call(s.admin(), "POST", "/v1/reload", Some("shop-secret")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"].as_str().unwrap().contains("scope control"),
        "{body}"
    );
    let (status, body) = admin_call(s.admin(), "POST", "/v1/reload", Some("ops-secret")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // With tokens configured, reads need one too (any scope): experiment names, weights
    // and upstream addresses are not for whoever reaches the port. Probes and /metrics
    // stay open for kubelet and Prometheus.
    for path in [
        "/v1/config",
        "/v1/experiments",
        "/v1/assign?experiment=iris-model&unit=a",
    ] {
        let (status, _) = admin_call(s.admin(), "GET", path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} without a token");
        let (status, _) = admin_call(s.admin(), "GET", path, Some("shop-secret")).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{path} with a token of another scope"
        );
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            admin_call(s.admin(), "GET", path, None).await.0,
            StatusCode::OK,
            "{path}"
        );
    }
}
