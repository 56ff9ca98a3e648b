//! `cohort serve` as a real process: users keep their variant across a restart, the admin
//! listener answers, SIGTERM exits 0.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use common::net::{backend, client, send, two_arm};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `cohort serve` and waits for its "serving" log line (the bind is done then).
fn serve(config: &std::path::Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--workers",
            "2",
            "--log-format",
            "json",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("cohort serve logs a line").unwrap();
        let json: serde_json::Value = serde_json::from_str(&line).expect("--log-format json");
        if json["fields"]["message"] == "serving" {
            break;
        }
    }
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    child
}

fn sigterm(child: &mut Child) -> Option<i32> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap().code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_keep_their_variant_across_a_restart() {
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:{admin} }}\n{}",
        two_arm(rf, lr, "")
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routes.yaml");
    std::fs::write(&config, yaml).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let c = client();

    let mut first = serve(&config);
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
    assert_eq!(sigterm(&mut first), Some(0));

    let c = client(); // fresh connections to the new process
    let mut second = serve(&config);
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
    assert_eq!(sigterm(&mut second), Some(0));
}
