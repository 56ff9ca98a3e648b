//! `cohort serve` as a real process: users keep their variant across a restart (onto a
//! one-worker, current-thread process), the admin listener answers, SIGTERM exits 0.

use crate::common;

use std::net::SocketAddr;

use common::net::{backend, client, send, two_arm};
use common::process::{free_port, CohortProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_keep_their_variant_across_a_restart() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nshutdown: {{ grace_ms: 50 }}\n{}",
        two_arm(rf, lr, "")
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routes.yaml");
    std::fs::write(&config, yaml).unwrap();
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
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nshutdown: {{ grace_ms: 50 }}\n{}",
        two_arm(rf, lr, "")
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routes.yaml");
    std::fs::write(&config, yaml).unwrap();
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
