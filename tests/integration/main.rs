//! cohort's integration tests, one binary: the command run as a real process, and the
//! proxy, admin API and reloads over real sockets with real backends on 127.0.0.1:0.
//! Tests that change process-wide state (tests/tls.rs sets `SSL_CERT_FILE`) have a binary
//! of their own.

mod common;

mod admin;
#[cfg(feature = "external-tests")]
mod browser;
mod check_cli;
#[cfg(feature = "external-tests")]
mod clickhouse;
mod config;
mod demo;
mod disk_full;
mod events;
mod golden;
mod grpc;
mod limits;
mod monitor;
mod outcomes_cli;
mod pool;
mod proxy;
mod ramps;
#[cfg(feature = "external-tests")]
mod readme;
mod reload_cli;
mod reload_load;
mod report_cli;
mod rollout;
mod runtime_cli;
mod serve_cli;
mod shadow;
mod shutdown;
mod split;
mod streaming;
mod websocket;

/// Without the `external-tests` feature, says which suites were left out and how to run
/// them; the list must name suites that exist.
#[cfg(not(feature = "external-tests"))]
#[test]
fn external_suites_left_out() {
    use std::io::Write;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let suites = [
        (
            "tests/integration/grpc/interop.rs",
            "gRPC interop with Python grpcio",
        ),
        (
            "tests/integration/browser.rs",
            "the HTML report and admin pages in headless Chromium",
        ),
        (
            "tests/integration/clickhouse/",
            "fleet outcomes against a real ClickHouse server",
        ),
        (
            "tests/integration/readme.rs",
            "README's first steps in order, with curl on the documented ports",
        ),
    ];
    let mut notice = String::from("\nleft out (they need more than Rust):\n");
    for (file, what) in suites {
        assert!(root.join(file).exists(), "{file} is listed but missing");
        notice += &format!("  {what} ({file})\n");
    }
    notice += "run every suite with: scripts/test\n\n";
    // Straight to stderr: the test harness captures only the print macros.
    let _ = std::io::stderr().write_all(notice.as_bytes());
}
