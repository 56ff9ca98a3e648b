//! `cohort serve --config routes.yaml [--workers N]`: run the proxy.
//!
//! Binds the public and admin listeners, starts the reload task (file watch, SIGHUP, 30 s
//! poll, `POST /v1/reload`) and serves until SIGINT/SIGTERM.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::exit;
use crate::admin::auth::AdminAuth;
use crate::admin::{Admin, ReloadHandle};
use crate::config;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::reload::{self, Reloader, Trigger};

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
    let auth = match AdminAuth::from_config(&routes.file.admin, |name| std::env::var(name).ok()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{}: {e}", config_path.display());
            return exit::INVALID;
        }
    };
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
    let path = config_path.to_path_buf();
    runtime.block_on(async move {
        let listen = routes.file.listen;
        let admin_listen = routes.file.admin.listen;
        let version = routes.version.clone();
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cohort serve: cannot listen on {listen}: {e}");
                return exit::INVALID;
            }
        };
        let admin_listener = match tokio::net::TcpListener::bind(admin_listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cohort serve: cannot listen on {admin_listen} (admin): {e}");
                return exit::INVALID;
            }
        };
        let proxy = match Proxy::new(routes, Arc::new(Metrics::new())) {
            Ok(p) => Arc::new(p),
            Err(err) => {
                eprintln!("{err}");
                return exit::INVALID;
            }
        };

        // One reload task; file events, SIGHUP, the poll and the admin API feed it.
        let reloader = Arc::new(Reloader::new(path.clone(), proxy.clone()));
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(reloader.clone().run(rx));
        let _watcher = match reload::watch(&path, tx.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the config file; relying on SIGHUP, the admin API and the 30 s poll");
                None
            }
        };
        spawn_poll(tx.clone());
        spawn_sighup(tx.clone());

        let admin = Arc::new(Admin {
            proxy: proxy.clone(),
            ready: Arc::new(AtomicBool::new(true)),
            auth,
            reload: Some(ReloadHandle {
                reloader,
                trigger: tx,
            }),
        });
        tracing::info!(%listen, admin = %admin_listen, %version, "serving");
        tokio::select! {
            () = proxy.serve(listener) => {}
            () = admin.serve(admin_listener) => {}
            () = shutdown_signal() => tracing::info!("signal received, exiting"),
        }
        exit::OK
    })
}

fn spawn_poll(tx: mpsc::Sender<Trigger>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(reload::POLL);
        every.tick().await; // the first tick is immediate
        loop {
            every.tick().await;
            if tx.send(Trigger::Poll).await.is_err() {
                return;
            }
        }
    });
}

fn spawn_sighup(tx: mpsc::Sender<Trigger>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP");
            return;
        };
        while hup.recv().await.is_some() {
            if tx.send(Trigger::Signal).await.is_err() {
                return;
            }
        }
    });
    #[cfg(not(unix))]
    drop(tx);
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
