//! The serving table: a compiled [`Routes`] plus what the data plane attaches to it.
//!
//! Built once per config (at start, on every reload), never on the hot path: for each
//! route and each variant of its experiment, the upstream client and pre-resolved metric
//! handles. Indices follow the routes' match order and the experiment's variant order, so
//! the handler goes from a matched route and an assignment to its handles by indexing.

use std::sync::Arc;

use crate::metrics::{Metrics, RequestMetrics, VariantMetrics};
use crate::pool::{H1Pool, WorkerPools};
use crate::shadow::{Lane, Shadows};
use crate::upstream::{Clients, HttpClient, WorkerClients};
use cohort_config::{ConfigError, Problem, Routes};

/// A routing table with its per-variant runtime handles.
pub struct Serving {
    pub routes: Routes,
    /// `[route index][variant index]`.
    pub by_route: Vec<Vec<VariantHandles>>,
    /// Requests that matched no route.
    pub unrouted: RequestMetrics,
    /// `cohort_client_errors_total{kind="body"}`.
    pub client_body_errors: prometheus::IntCounter,
    /// Per experiment (by index): its sampling for model monitoring, when monitored.
    pub sampling: Vec<Option<crate::capture::Sampling>>,
    /// Per experiment (by index): its shadows ([`crate::shadow`]).
    pub shadows: Vec<Vec<Arc<Lane>>>,
    /// Per route, the requests its variants had answered when this table went into force.
    served_before: Vec<u64>,
}

/// What one variant needs to serve one route.
pub struct VariantHandles {
    /// One client per worker thread.
    pub clients: WorkerClients,
    /// Plain-HTTP/1.1 upstreams: one lean pool per worker thread ([`super::pool`]).
    pub pools: Option<WorkerPools>,
    pub requests: RequestMetrics,
    pub metrics: Arc<VariantMetrics>,
    /// What every request id minted for this variant starts with
    /// ([`crate::request_id::prefix`]).
    pub request_id_prefix: String,
}

impl VariantHandles {
    /// The client of the worker thread this runs on.
    #[inline]
    pub fn client(&self) -> Option<&HttpClient> {
        crate::workers::pick(&self.clients)
    }

    /// The lean pool of the worker thread this runs on, for plain-HTTP/1.1 upstreams.
    #[inline]
    pub fn pool(&self) -> Option<&Arc<H1Pool>> {
        crate::workers::pick(self.pools.as_deref()?)
    }
}

impl Serving {
    /// Attaches clients and metric handles to `routes`.
    pub fn build(
        routes: Routes,
        clients: &Clients,
        metrics: &Arc<Metrics>,
        shadows: &Shadows,
    ) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut by_route = Vec::with_capacity(routes.routes.len());
        for route in &routes.routes {
            let exp = &routes.experiments[route.experiment];
            let mut variants = Vec::with_capacity(exp.variants.len());
            for v in &exp.variants {
                match clients.get(v, route.connect_timeout) {
                    Ok(worker_clients) => variants.push(VariantHandles {
                        clients: worker_clients,
                        pools: clients.pools(v, route.connect_timeout),
                        requests: metrics.request_handles(&route.name, &exp.name, &v.name),
                        metrics: Arc::new(metrics.variant_handles(
                            &exp.name,
                            &v.name,
                            f64::from(v.buckets) / f64::from(cohort_assign::BUCKETS),
                        )),
                        request_id_prefix: crate::request_id::prefix(
                            &exp.name,
                            &v.name,
                            &routes.version,
                        ),
                    }),
                    Err(reason) => {
                        let path = format!(
                            "experiments[{}].variants[{}].tls.ca_file",
                            route.experiment,
                            exp.variant_index(&v.name).unwrap_or(0)
                        );
                        if !problems.iter().any(|p: &Problem| p.path == path) {
                            problems.push(Problem {
                                file: routes.source.file.clone(),
                                position: None,
                                path,
                                reason,
                            });
                        }
                    }
                }
            }
            by_route.push(variants);
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        metrics.config_info.reset();
        metrics
            .config_info
            .with_label_values(&[&routes.version, &routes.base_version])
            .set(1);
        let served_before = by_route.iter().map(|v| served(v)).collect();
        let sampling = routes
            .experiments
            .iter()
            .map(|e| e.monitor.as_ref().map(crate::capture::Sampling::of))
            .collect();
        let shadows = routes
            .experiments
            .iter()
            .map(|e| {
                e.shadows
                    .iter()
                    .map(|s| {
                        let inflight = shadows.inflight(&e.name, &s.name);
                        Arc::new(Lane::new(&e.name, s, inflight, metrics))
                    })
                    .collect()
            })
            .collect();
        Ok(Serving {
            sampling,
            shadows,
            served_before,
            unrouted: metrics.request_handles("", "", ""),
            client_body_errors: metrics.client_errors.with_label_values(&["body"]),
            routes,
            by_route,
        })
    }
}

impl Serving {
    /// Whether route `index` answered any request since this table went into force (read
    /// from the request histograms, which count every answer: nothing is added per request).
    pub fn served_since_install(&self, index: usize) -> bool {
        self.by_route
            .get(index)
            .is_some_and(|v| served(v) > self.served_before[index])
    }
}

/// Requests answered by the variants of one route, as their histograms count them.
fn served(variants: &[VariantHandles]) -> u64 {
    variants
        .iter()
        .map(|v| v.requests.duration.get_sample_count())
        .sum()
}
