//! Interop: the same calls as the tonic tests, against a real gRPC C-core server (Python
//! grpcio) with a real grpcio client. Behind the `external-tests` feature; scripts/test
//! installs grpcio.

use crate::common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::{config, user_of};
use common::net::{dead_port, routes, start_proxy};
use serde_json::Value;

fn script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/grpc")
        .join(name)
        .display()
        .to_string()
}

fn require_grpcio() {
    let ok = Command::new("python3")
        .args(["-c", "import grpc"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "these tests need Python grpcio: pip install grpcio (scripts/test installs it)"
    );
}

/// A grpcio server; killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(name: &str) -> Server {
        let mut child = Command::new("python3")
            .arg(script("server.py"))
            .arg(name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("the server prints its port");
        Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the grpcio client against `target` and returns its JSON outcome.
async fn call(target: SocketAddr, method: &str, request: &str, user: &str) -> Value {
    let args = [
        script("client.py"),
        target.to_string(),
        method.to_owned(),
        request.to_owned(),
        user.to_owned(),
    ];
    let out =
        tokio::task::spawn_blocking(move || Command::new("python3").args(&args).output().unwrap())
            .await
            .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "client said: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_streaming_and_error_statuses_pass_through() {
    require_grpcio();
    let (rf, lr) = (Server::start("rf"), Server::start("lr"));
    let cfg = routes(&config(rf.addr, lr.addr, "h2c", 5000));
    let exp = cfg.experiments[0].clone();
    let proxy = start_proxy(cfg).await;
    for user in ["alice", "bob", "carol", "dave", "erin"] {
        let variant = exp.variants[cohort_config::assign(&exp, user).variant]
            .name
            .clone();
        let out = call(proxy, "Say", "hi", user).await;
        assert_eq!(out["code"], "OK", "{out}");
        assert_eq!(out["replies"][0], format!("{variant}: hi"));
        assert_eq!(out["initial"]["x-cohort-variant"], variant.as_str());
    }
    let out = call(proxy, "Count", "3", "alice").await;
    assert_eq!(out["code"], "OK", "{out}");
    let variant = exp.variants[cohort_config::assign(&exp, "alice").variant]
        .name
        .clone();
    let expected: Vec<String> = (0..3).map(|i| format!("{variant} {i}")).collect();
    assert_eq!(out["replies"], serde_json::json!(expected));

    let out = call(proxy, "Fail", "x", "alice").await;
    assert_eq!(out["code"], "INVALID_ARGUMENT", "{out}");
    assert_eq!(out["details"], "bad input");
    assert_eq!(
        out["trailers"]["grpc-status-details-bin"],
        "080364657461696c73"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohorts_own_errors_are_grpc_statuses() {
    require_grpcio();
    let rf = Server::start("rf");
    // lr is dead: UNAVAILABLE (14).
    let cfg = routes(&config(rf.addr, dead_port().await, "h2c", 300));
    let exp = cfg.experiments[0].clone();
    let proxy = start_proxy(cfg).await;
    let user_of = |want: &str| user_of(&exp, want);
    let out = call(proxy, "Say", "hi", &user_of("lr")).await;
    assert_eq!(out["code"], "UNAVAILABLE", "{out}");
    // A trailers-only response: grpcio reports its headers as trailing metadata.
    assert_eq!(out["trailers"]["x-cohort-variant"], "lr", "{out}");
    // A slow upstream past timeout_ms: DEADLINE_EXCEEDED (4).
    let out = call(proxy, "Slow", "x", &user_of("rf")).await;
    assert_eq!(out["code"], "DEADLINE_EXCEEDED", "{out}");
    assert!(
        out["details"].as_str().unwrap().contains("within 300 ms"),
        "{out}"
    );

    // A gRPC request routed to an http1 variant: UNAVAILABLE, saying why.
    let cfg = routes(&config(rf.addr, rf.addr, "http1", 5000));
    let proxy = start_proxy(cfg).await;
    let out = call(proxy, "Say", "hi", &user_of("lr")).await;
    assert_eq!(out["code"], "UNAVAILABLE", "{out}");
    assert!(
        out["details"].as_str().unwrap().contains("protocol: h2c"),
        "{out}"
    );
}
