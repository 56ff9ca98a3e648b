//! `cohort demo`: the real proxy, two built-in model backends and simulated users, on
//! loopback, with nothing to set up.
//!
//! The backends answer like an MLflow `models serve` endpoint (`POST /invocations` →
//! `{"predictions": [...]}`) with different latency profiles; each also has a true
//! conversion probability that later demos (outcome log, analysis) use to simulate
//! business outcomes. The proxy runs on the built-in copy of the repo's routes.yaml with
//! the backends' ports filled in, and every simulated user sends a few requests with a
//! sticky `x-user-id` over real HTTP.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::Rng;
use tokio::net::TcpListener;

use cohort_config::{self as config, ConfigError, Routes, Source};
use cohort_proxy::metrics::Metrics;
use cohort_proxy::Proxy;

/// The repo's routes.yaml, compiled into the binary so the demo needs nothing else.
pub const DEFAULT_ROUTES: &str = include_str!("../routes.yaml");

/// A built-in model backend.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// Base latency and uniform jitter of one prediction.
    pub latency: Duration,
    pub jitter: Duration,
    /// The probability that a user served by this model converts (used by the simulator).
    pub conversion: f64,
}

/// The relative effect the demo's experiment is planned to detect.
pub const DEMO_MDE: f64 = 0.3;

/// The demo's two models, by variant name of the built-in routes.yaml.
pub fn models() -> [(&'static str, Model); 2] {
    [
        (
            "rf",
            Model {
                latency: Duration::from_millis(6),
                jitter: Duration::from_millis(6),
                conversion: 0.10,
            },
        ),
        (
            "lr",
            Model {
                latency: Duration::from_millis(2),
                jitter: Duration::from_millis(3),
                conversion: 0.15,
            },
        ),
    ]
}

/// Starts a model backend on `addr` (port 0: any free port).
pub async fn start_model(
    name: &'static str,
    model: Model,
    addr: SocketAddr,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| async move {
                    // Read the request like a model server would, then "predict".
                    let _ = req.into_body().collect().await;
                    let jitter = model.jitter.as_secs_f64() * rand::rng().random::<f64>();
                    tokio::time::sleep(model.latency + Duration::from_secs_f64(jitter)).await;
                    let class = rand::rng().random_range(0..3);
                    let body = format!("{{\"predictions\": [{class}], \"model\": \"{name}\"}}");
                    let mut resp = Response::new(Full::new(Bytes::from(body)));
                    resp.headers_mut().insert(
                        "content-type",
                        http::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Where the built-in routes.yaml sends each variant (the ports `--serve` binds).
pub fn documented_upstreams() -> Result<HashMap<String, SocketAddr>, String> {
    let base =
        config::parse("routes.yaml (built in)", DEFAULT_ROUTES).map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    for v in base.file.experiments.iter().flat_map(|e| &e.variants) {
        let addr = v
            .upstream
            .strip_prefix("http://")
            .and_then(|a| a.trim_end_matches('/').parse().ok())
            .ok_or_else(|| format!("the built-in upstream {} is not http://IP:PORT", v.upstream))?;
        out.insert(v.name.clone(), addr);
    }
    Ok(out)
}

/// The built-in routes.yaml with the variants' upstreams pointed at `upstreams`.
pub fn demo_routes(upstreams: &HashMap<&str, SocketAddr>) -> Result<Routes, ConfigError> {
    let base = config::parse("routes.yaml (built in)", DEFAULT_ROUTES)?;
    let mut file = base.file.clone();
    for exp in &mut file.experiments {
        // A demo of a few thousand users plans for a large effect; routes.yaml's own
        // default (mde 0.10) needs tens of thousands of users per variant.
        exp.decision.mde = DEMO_MDE;
        // Each simulated user's conversion is reported right after their last request, so
        // the estimated baseline need not wait for late ones.
        exp.decision.conversion_delay_s = 0.0;
        for v in &mut exp.variants {
            if let Some(addr) = upstreams.get(v.name.as_str()) {
                v.upstream = format!("http://{addr}");
            }
        }
    }
    config::compile_file(
        file,
        Source {
            file: "routes.yaml (built in, demo ports)".into(),
            hash: base.source.hash.clone(),
        },
    )
}

/// What the simulation saw for one variant.
#[derive(Debug, Default, Clone)]
pub struct VariantStats {
    pub users: u64,
    pub requests: u64,
    pub errors: u64,
    pub latencies_ms: Vec<f64>,
}

/// The simulation's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub routes: Routes,
    pub per_variant: Vec<(String, f64, VariantStats)>,
    /// What the outcome log counted: units, converted units, per variant.
    pub outcomes: cohort_analysis::counts::ExperimentCounts,
    pub users: u64,
    pub requests: u64,
    /// Users seen on more than one variant (must be 0).
    pub unsticky_users: u64,
    pub elapsed: Duration,
    /// `cohort report` on the demo's event log.
    pub report: Option<cohort_analysis::Report>,
}

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Simulated users (1–5 requests each, 32 at a time).
    pub users: u32,
    /// Stop sending after this long, even if users remain.
    pub max_duration: Duration,
    /// Show a progress bar on standard error.
    pub progress: bool,
    /// Bind the model backends on the ports the built-in routes.yaml names (they outlive
    /// the run while the runtime does), instead of any free ports.
    pub documented_ports: bool,
    /// Write the event log here and keep it; None: a scratch directory removed at the end.
    pub events_dir: Option<PathBuf>,
}

/// Runs the demo: backends, proxy, simulated users, then `cohort report` on its log.
pub async fn run(opts: &Options) -> Result<Outcome, String> {
    let (users, max_duration, progress) = (opts.users, opts.max_duration, opts.progress);
    let documented = if opts.documented_ports {
        Some(documented_upstreams()?)
    } else {
        None
    };
    let mut upstreams = HashMap::new();
    for (name, model) in models() {
        let at = documented
            .as_ref()
            .and_then(|d| d.get(name).copied())
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let addr = start_model(name, model, at)
            .await
            .map_err(|e| format!("cannot start the {name} model backend on {at}: {e}"))?;
        upstreams.insert(name, addr);
    }
    let routes = demo_routes(&upstreams).map_err(|e| e.to_string())?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot bind the demo proxy: {e}"))?;
    let proxy_addr = listener.local_addr().map_err(|e| e.to_string())?;
    // The real outcome log, kept where asked, else in a scratch directory removed at the end.
    let scratch = opts.events_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "cohort-demo-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ))
    });
    let events_cfg = cohort_config::schema::EventsConfig {
        dir: scratch.clone(),
        fsync: cohort_config::schema::FsyncMode::Never,
        ..Default::default()
    };
    let metrics = Arc::new(Metrics::new());
    let counts = Arc::new(cohort_analysis::LiveCounts::new());
    let sink = cohort_events::SegmentLog::open(&events_cfg).map_err(|e| {
        format!(
            "cannot open the demo event log in {}: {e}",
            scratch.display()
        )
    })?;
    // As `cohort serve` does: the report then knows the weights in force without a config.
    cohort_events::writer::record_config_version(&scratch, &routes)
        .map_err(|e| format!("cannot write to {}: {e}", scratch.display()))?;
    let (event_log, writer) = cohort_events::writer::start(
        Box::new(sink),
        metrics
            .event_writer_options(&events_cfg)
            .observed_by(counts.clone()),
    );
    let proxy = Arc::new(
        Proxy::new(routes.clone(), metrics.clone())
            .map_err(|e| e.to_string())?
            .with_events(event_log.clone()),
    );
    tokio::spawn(proxy.serve(listener));
    let conversion_of: Arc<HashMap<String, f64>> = Arc::new(
        models()
            .iter()
            .map(|(n, m)| ((*n).to_owned(), m.conversion))
            .collect(),
    );

    let exp = routes
        .experiments
        .first()
        .ok_or("the built-in routes.yaml has no experiment")?
        .clone();
    let path = routes
        .routes
        .iter()
        .find(|r| r.experiment == 0)
        .map_or("/".to_owned(), |r| r.path_prefix.clone());
    // Each user sends 1–5 requests; draw the plan up front so the progress bar knows it.
    let plan: Vec<u32> = (0..users)
        .map(|_| rand::rng().random_range(1..=5))
        .collect();
    let total: u64 = plan.iter().map(|&n| u64::from(n)).sum();
    let bar = if progress {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {bar:40} {pos}/{len} requests ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );

    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let start = Instant::now();
    let deadline = start + max_duration;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u32, Option<String>, u16, f64)>(1024);
    let next_user = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let plan = Arc::new(plan);
    let mut workers = Vec::new();
    for _ in 0..32 {
        let (client, tx, next_user, plan, path) = (
            client.clone(),
            tx.clone(),
            next_user.clone(),
            plan.clone(),
            path.clone(),
        );
        let (event_log, conversion_of, routes, metrics) = (
            event_log.clone(),
            conversion_of.clone(),
            routes.clone(),
            metrics.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let u = next_user.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if u as usize >= plan.len() || Instant::now() >= deadline {
                    return;
                }
                for _ in 0..plan[u as usize] {
                    let req = Request::post(format!("http://{proxy_addr}{path}"))
                        .header("x-user-id", format!("demo-user-{u}"))
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(
                            b"{\"inputs\": [[5.1, 3.5, 1.4, 0.2]]}",
                        )));
                    let Ok(req) = req else { return };
                    let sent = Instant::now();
                    let (variant, status) = match client.request(req).await {
                        Ok(resp) => {
                            let v = resp
                                .headers()
                                .get("x-cohort-variant")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned);
                            let status = resp.status().as_u16();
                            let _ = resp.into_body().collect().await;
                            (v, status)
                        }
                        Err(_) => (None, 0),
                    };
                    let ms = sent.elapsed().as_secs_f64() * 1e3;
                    if tx.send((u, variant, status, ms)).await.is_err() {
                        return;
                    }
                }
                // The business reports whether this user converted, by the true rate of
                // the model that served them (the simulator knows it; cohort must find it).
                let Some(exp) = routes.experiments.first() else {
                    return;
                };
                let unit = format!("demo-user-{u}");
                let served = &exp.variants[cohort_config::assign(exp, &unit).variant].name;
                let p = conversion_of.get(served).copied().unwrap_or(0.0);
                // Whether a user converts is drawn from the user's id (not a fresh random
                // number), so that the same users give the same outcome on every run.
                let draw = xxhash_rust::xxh3::xxh3_64(format!("converts:{unit}").as_bytes()) as f64
                    / 2f64.powi(64);
                if draw < p {
                    let line =
                        format!("{{\"experiment\": \"{}\", \"unit\": \"{unit}\"}}", exp.name);
                    let (routes, log, metrics) =
                        (routes.clone(), event_log.clone(), metrics.clone());
                    let _ = tokio::task::spawn_blocking(move || {
                        cohort_proxy::conversions::accept(line.as_bytes(), &routes, &log, &metrics)
                    })
                    .await;
                }
            }
        }));
    }
    drop(tx);

    let mut by_variant: HashMap<String, VariantStats> = HashMap::new();
    let mut user_variant: HashMap<u32, String> = HashMap::new();
    let mut unsticky = std::collections::HashSet::new();
    let mut requests = 0;
    while let Some((user, variant, status, ms)) = rx.recv().await {
        requests += 1;
        bar.inc(1);
        let name = variant.unwrap_or_else(|| "(no answer)".to_owned());
        let stats = by_variant.entry(name.clone()).or_default();
        stats.requests += 1;
        stats.latencies_ms.push(ms);
        if status != StatusCode::OK.as_u16() {
            stats.errors += 1;
        }
        match user_variant.get(&user) {
            None => {
                stats.users += 1;
                user_variant.insert(user, name);
            }
            Some(prev) if *prev != name => {
                unsticky.insert(user);
            }
            Some(_) => {}
        }
    }
    for w in workers {
        let _ = w.await;
    }
    bar.finish_and_clear();
    let per_variant = exp
        .variants
        .iter()
        .map(|v| {
            let mut stats = by_variant.remove(&v.name).unwrap_or_default();
            stats.latencies_ms.sort_by(f64::total_cmp);
            (
                v.name.clone(),
                f64::from(v.buckets) / f64::from(cohort_assign::BUCKETS),
                stats,
            )
        })
        .collect();
    // Flush the log: the counts then hold every exposure and conversion.
    drop(event_log);
    let _ = tokio::task::spawn_blocking(move || writer.finish()).await;
    let outcomes = counts.experiment(&exp.name).unwrap_or_default();
    // The same analysis `cohort report --events DIR --config routes.yaml` runs.
    let report = cohort_analysis::read::read_dirs(
        std::slice::from_ref(&scratch),
        &cohort_analysis::read::ReadOptions::default(),
    )
    .ok()
    .map(|read| {
        let setup = cohort_analysis::Setup::of(&exp, Arc::new(read.versions));
        let empty = cohort_analysis::ExperimentTally::default();
        let tally = read.tally.experiments.get(&exp.name).unwrap_or(&empty);
        cohort_analysis::analyze(tally, &setup, cohort_events::clock::now(), Vec::new())
    });
    if opts.events_dir.is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(Outcome {
        routes,
        per_variant,
        outcomes,
        users: user_variant.len() as u64,
        requests,
        unsticky_users: unsticky.len() as u64,
        elapsed: start.elapsed(),
        report,
    })
}

/// The `q`-quantile (0–1) of sorted values (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
