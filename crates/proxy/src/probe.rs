//! One TCP connect to each variant's upstream whenever a table goes in force (at start and
//! after every reload), so that a model that is not listening is named in the log at once
//! rather than found out through its users' 502s.
//!
//! Never fatal and never in the way: models may start after cohort, so the probe only
//! warns and sets `cohort_upstream_up`; it runs in the background and serving starts
//! without waiting for it. Requests keep the gauge current afterwards.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tracing::{info, warn};

use crate::metrics::VariantMetrics;
use crate::serving::Serving;

/// How long one connect may take before the upstream counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One variant's upstream to probe.
struct Target {
    experiment: String,
    variant: String,
    url: String,
    host: String,
    port: u16,
    metrics: Arc<VariantMetrics>,
}

/// Probes every variant of `serving` in the background, if a tokio runtime is running.
pub(crate) fn spawn(serving: &Serving) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let targets = targets(serving);
    if targets.is_empty() {
        return;
    }
    runtime.spawn(async move {
        let mut set = tokio::task::JoinSet::new();
        for t in targets {
            set.spawn(async move {
                let result = tokio::time::timeout(
                    PROBE_TIMEOUT,
                    TcpStream::connect((t.host.as_str(), t.port)),
                )
                .await;
                let error = match result {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
                };
                t.metrics.set_up(error.is_none());
                if let Some(error) = &error {
                    warn!(
                        experiment = %t.experiment,
                        variant = %t.variant,
                        upstream = %t.url,
                        %error,
                        "upstream does not accept connections: its users get 502 until it does"
                    );
                }
                error.is_none()
            });
        }
        let (mut up, mut down) = (0, 0);
        while let Some(r) = set.join_next().await {
            match r {
                Ok(true) => up += 1,
                _ => down += 1,
            }
        }
        info!(reachable = up, unreachable = down, "upstreams probed");
    });
}

/// Each (experiment, variant) once, with the host and port its upstream URL names.
fn targets(serving: &Serving) -> Vec<Target> {
    let routes = &serving.routes;
    let mut out: Vec<Target> = Vec::new();
    for (route, handles) in routes.routes.iter().zip(&serving.by_route) {
        let exp = &routes.experiments[route.experiment];
        for (v, h) in exp.variants.iter().zip(handles) {
            if out
                .iter()
                .any(|t| t.experiment == exp.name && t.variant == v.name)
            {
                continue;
            }
            let a = &v.upstream.authority;
            let default_port = if v.upstream.scheme == http::uri::Scheme::HTTPS {
                443
            } else {
                80
            };
            out.push(Target {
                experiment: exp.name.clone(),
                variant: v.name.clone(),
                url: v.upstream.url.clone(),
                host: a
                    .host()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
                port: a.port_u16().unwrap_or(default_port),
                metrics: h.metrics.clone(),
            });
        }
    }
    out
}
