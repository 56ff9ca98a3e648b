//! cohort's integration tests, one binary: the command run as a real process, and the
//! proxy, admin API and reloads over real sockets with real backends on 127.0.0.1:0.
//! Tests that change process-wide state (tests/tls.rs sets `SSL_CERT_FILE`) have a binary
//! of their own.

mod common;

mod admin;
mod check_cli;
mod config;
mod demo;
mod disk_full;
mod events;
mod golden;
mod grpc;
mod limits;
mod outcomes_cli;
mod pool;
mod proxy;
mod ramps;
mod reload_cli;
mod reload_load;
mod report_cli;
mod runtime_cli;
mod serve_cli;
mod shutdown;
mod split;
mod streaming;
mod websocket;
