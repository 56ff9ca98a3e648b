//! `cohort serve` as a real process: users keep their variant across a restart (onto a
//! one-worker, current-thread process), the admin listener answers, SIGTERM exits 0.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::net::{backend, client, send, two_arm};
use common::process::{free_port, CohortProcess};

/// A config of [`two_arm`] on free loopback ports, in a scratch directory: (dir, config
/// path, public port, admin port).
fn config_for(rf: SocketAddr, lr: SocketAddr) -> (tempfile::TempDir, std::path::PathBuf, u16, u16) {
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nshutdown: {{ grace_ms: 50 }}\n{}",
        two_arm(rf, lr, "")
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routes.yaml");
    std::fs::write(&config, yaml).unwrap();
    (dir, config, port, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_keep_their_variant_across_a_restart() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let (_dir, config, port, admin) = config_for(rf, lr);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let c = client();

    let mut first = CohortProcess::start(&config, &[]);
    let mut before = Vec::new();
    for i in 0..100 {
        let ans = send(
            &c,
            addr,
            "/invocations",
            &[("x-user-id", &format!("user-{i}"))],
        )
        .await;
        before.push(ans.headers["x-cohort-variant"].to_str().unwrap().to_owned());
    }
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let req = http::Request::get(format!("http://{admin_addr}/readyz"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(c.request(req).await.unwrap().status(), 200);
    assert_eq!(first.terminate(), Some(0));

    let c = client(); // fresh connections to the new process
                      // The restarted process runs one worker: the current-thread runtime serves the same.
    let mut second = CohortProcess::start_with_workers(&config, &[], "1");
    for (i, expected) in before.iter().enumerate() {
        let ans = send(
            &c,
            addr,
            "/invocations",
            &[("x-user-id", &format!("user-{i}"))],
        )
        .await;
        assert_eq!(
            ans.headers["x-cohort-variant"].to_str().unwrap(),
            expected,
            "user-{i} moved across the restart"
        );
    }
    assert!(before.iter().any(|v| v == "rf") && before.iter().any(|v| v == "lr"));
    assert_eq!(second.terminate(), Some(0));
}

/// Without `--workers`, `COHORT_WORKERS` (the pod's CPU request in Kubernetes) sets the
/// serving threads; 0 means one per core; anything else stops the start with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohort_workers_sets_the_serving_threads() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let (_dir, config, _, _) = config_for(rf, lr);
    let cores = std::thread::available_parallelism().unwrap().get();
    for (env, want) in [("3", 3), ("0", cores)] {
        let mut p = CohortProcess::start_with(&config, &[("COHORT_WORKERS", env)], &[]);
        assert_eq!(p.serving["fields"]["workers"], want, "COHORT_WORKERS={env}");
        assert_eq!(p.terminate(), Some(0));
    }
    // --workers wins over the variable.
    let mut p = CohortProcess::start_with(&config, &[("COHORT_WORKERS", "3")], &["--workers", "1"]);
    assert_eq!(p.serving["fields"]["workers"], 1);
    assert_eq!(p.terminate(), Some(0));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("COHORT_WORKERS", "250m")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("COHORT_WORKERS must be a whole number") && err.contains("\"250m\""),
        "{err}"
    );
}

/// At start (and after each reload) every variant's upstream is probed once: one that does
/// not listen is named in the log, and `cohort_upstream_up` says which are up; requests
/// keep the gauge current afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstreams_are_named_at_start_and_tracked() {
    let rf = backend("rf").await;
    let lr_port = free_port();
    let lr: SocketAddr = format!("127.0.0.1:{lr_port}").parse().unwrap();
    let (_dir, config, port, admin) = config_for(rf, lr);
    let mut p = CohortProcess::start(&config, &[]);
    let warned = p
        .wait_log(
            "upstream does not accept connections: its users get 502 until it does",
            Duration::from_secs(10),
        )
        .expect("the dead upstream is named");
    assert_eq!(warned["fields"]["variant"], "lr", "{warned}");
    assert_eq!(warned["level"], "WARN");
    let probed = p
        .wait_log("upstreams probed", Duration::from_secs(10))
        .expect("the probe ends");
    assert_eq!(probed["fields"]["reachable"], 1);
    assert_eq!(probed["fields"]["unreachable"], 1);
    let c = client();
    let up = |metrics: &str, variant: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("cohort_upstream_up{")
                    && l.contains(&format!("variant=\"{variant}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    };
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let m = metrics_text(&c, admin_addr).await;
    assert_eq!(up(&m, "rf").as_deref(), Some("1"), "{m}");
    assert_eq!(up(&m, "lr").as_deref(), Some("0"), "{m}");
    // The model comes up later: its first answered request sets the gauge.
    let _lr = common::net::backend_on(lr, "lr").await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let user = (0..)
        .map(|i| format!("u{i}"))
        .find(|u| {
            let routes = common::net::routes(&std::fs::read_to_string(&config).unwrap());
            let e = &routes.experiments[0];
            e.variants[cohort_config::assign(e, u).variant].name == "lr"
        })
        .unwrap();
    let ans = send(&c, addr, "/invocations", &[("x-user-id", &user)]).await;
    assert_eq!(ans.status, 200);
    let m = metrics_text(&c, admin_addr).await;
    assert_eq!(up(&m, "lr").as_deref(), Some("1"), "{m}");
    // A reload that points lr at a port nothing listens on is probed too.
    let moved: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let yaml = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&lr.to_string(), &moved.to_string());
    std::fs::write(&config, yaml).unwrap();
    p.signal("HUP");
    let warned = p
        .wait_log(
            "upstream does not accept connections: its users get 502 until it does",
            Duration::from_secs(10),
        )
        .expect("the reload's dead upstream is named");
    assert_eq!(
        warned["fields"]["upstream"],
        format!("http://{moved}"),
        "{warned}"
    );
    assert_eq!(p.terminate(), Some(0));
}

async fn metrics_text(c: &common::net::HttpClient, admin: SocketAddr) -> String {
    let req = http::Request::get(format!("http://{admin}/metrics"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    use http_body_util::BodyExt;
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}
