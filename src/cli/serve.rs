//! `cohort serve --config routes.yaml [--workers N]`: run the proxy.
//!
//! This first version serves the public listener until SIGINT/SIGTERM. Hot reload, the
//! admin listener, metrics and graceful draining come with their issues (#10, #11).

use std::path::Path;
use std::sync::Arc;

use super::exit;
use std::sync::atomic::AtomicBool;

use crate::admin::Admin;
use crate::config;
use crate::metrics::Metrics;
use crate::proxy::Proxy;

pub fn run(config_path: &Path, workers: Option<usize>) -> u8 {
    let routes = match config::load(config_path) {
        Ok(r) => r,
        Err(err) => {
            eprintln!("{err}");
            return exit::INVALID;
        }
    };
    for w in &routes.warnings {
        tracing::warn!("{w}");
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cohort serve: cannot start the runtime: {e}");
            return exit::INVALID;
        }
    };
    runtime.block_on(async move {
        let listen = routes.file.listen;
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cohort serve: cannot listen on {listen}: {e}");
                return exit::INVALID;
            }
        };
        let admin_listen = routes.file.admin.listen;
        let admin_listener = match tokio::net::TcpListener::bind(admin_listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cohort serve: cannot listen on {admin_listen} (admin): {e}");
                return exit::INVALID;
            }
        };
        tracing::info!(%listen, admin = %admin_listen, version = %routes.version, "serving");
        let proxy = match Proxy::new(routes, Arc::new(Metrics::new())) {
            Ok(p) => Arc::new(p),
            Err(err) => {
                eprintln!("{err}");
                return exit::INVALID;
            }
        };
        let admin = Arc::new(Admin {
            proxy: proxy.clone(),
            ready: Arc::new(AtomicBool::new(true)),
        });
        tokio::select! {
            () = proxy.serve(listener) => {}
            () = admin.serve(admin_listener) => {}
            () = shutdown_signal() => tracing::info!("signal received, exiting"),
        }
        exit::OK
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
