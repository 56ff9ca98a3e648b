//! `cohort serve --config routes.yaml [--workers N]`: run the proxy.
//!
//! Binds the public and admin listeners, starts the reload task (file watch, SIGHUP, 30 s
//! poll, `POST /v1/reload`) and the rollouts' task, and serves until SIGINT/SIGTERM, then shuts down gracefully:
//!
//! 1. `/readyz` turns 503 and serving continues for `shutdown.grace_ms` (Kubernetes takes
//!    a terminating pod out of its endpoints on its own schedule; the grace covers that);
//! 2. the listeners close (new connections are refused) and every open connection is shut
//!    down gracefully (HTTP/1: closed after its current response; HTTP/2: GOAWAY);
//! 3. in-flight requests get up to `shutdown.drain_timeout_ms`; what remains is aborted;
//! 4. exit 0. A second signal at any point exits at once with 130 (tokio never restores a
//!    signal's default action once a handler is registered, so this is coded here).
//!
//! `grace_ms + drain_timeout_ms` plus a margin must fit in the pod's
//! `terminationGracePeriodSeconds`, or the kubelet's SIGKILL cuts the drain short.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::exit;
use cohort_analysis::LiveCounts;
use cohort_clickhouse::live::{FleetLive, LiveMetrics};
use cohort_config as config;
use cohort_control::admin::auth::AdminAuth;
use cohort_control::admin::{Admin, ReloadHandle};
use cohort_control::overrides::at_startup;
use cohort_control::reload::{self, Reloader, Trigger};
use cohort_events::writer::record_config_version;
use cohort_events::{SegmentLog, SpoolBound};
use cohort_proxy::metrics::Metrics;
use cohort_proxy::server::{Connections, Shutdown};
use cohort_proxy::workers::Workers;
use cohort_proxy::Proxy;

/// The number of serving threads: `--workers`, else the environment's `COHORT_WORKERS` (in
/// Kubernetes, the pod's CPU request through the downward API); a positive number sets it,
/// 0 or neither means one per core this process may use (`available_parallelism` honours a
/// cgroup CPU quota, not a CPU request, hence the variable).
pub fn worker_count(flag: Option<usize>, env: Option<&str>) -> Result<usize, String> {
    let asked = match (flag, env.map(str::trim)) {
        (Some(n), _) => n,
        (None, None | Some("")) => 0,
        (None, Some(v)) => v.parse::<usize>().map_err(|_| {
            format!(
                "COHORT_WORKERS must be a whole number of worker threads (0 or unset: one per core), got {v:?}"
            )
        })?,
    };
    Ok(match asked {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    })
}

pub fn run(config_path: &Path, workers: Option<usize>) -> u8 {
    let from_file = match config::load(config_path) {
        Ok(r) if r.routes.is_empty() => {
            eprintln!("{}", super::check::no_routes(&r));
            return exit::INVALID;
        }
        Ok(r) => r,
        Err(err) => {
            eprintln!("{err}");
            return exit::INVALID;
        }
    };
    // Runtime weights set through the admin API survive a restart of this process, and
    // rollouts resume where their recorded actions left them.
    let state_path = from_file.file.admin.state_file.clone();
    let events_on = from_file.file.events.enabled;
    let events_dir = from_file.file.events.dir.clone();
    let recorded = if events_on {
        match cohort_rollout::record::read(&events_dir) {
            Ok((events, bad)) => {
                if bad > 0 {
                    tracing::warn!(
                        skipped = bad,
                        "lines of rollouts.jsonl that are not rollout events were skipped"
                    );
                }
                events
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read rollouts.jsonl; rollouts resume from the state file alone");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let mut recorded = recorded;
    recorded.extend(fleet_rollouts_at_start(&from_file));
    let start = at_startup(&state_path, &from_file, recorded);
    for n in &start.notices {
        tracing::error!("{n}");
    }
    if !start.starts.is_empty() {
        if let Err(e) = start.overrides.save(&state_path) {
            eprintln!(
                "cohort serve: cannot record the rollouts that start now in {}: {e}",
                state_path.display()
            );
            return exit::INVALID;
        }
        for s in &start.starts {
            if events_on {
                if let Err(e) = cohort_rollout::record::append(&events_dir, s) {
                    tracing::error!(error = %e, "cannot append to rollouts.jsonl (the state file has the start)");
                }
            }
            tracing::info!(target: "cohort::rollout", experiment = %s.experiment, rollout = %s.rollout_id, share = s.share, "rollout start");
        }
    }
    // The guardrails' tallies are rebuilt by the replay below: point them first.
    let guardrails = Arc::new(cohort_rollout::Guardrails::new());
    cohort_control::rollout::watch_all(&guardrails, &from_file, &start.overrides.rollouts);
    if !start.overrides.experiments.is_empty() {
        tracing::info!(state = %state_path.display(), "runtime weights in force");
    }
    let (overrides, routes, starts) = (start.overrides, start.routes, start.starts);
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
    // Worker threads, each with a current-thread runtime (src/workers.rs says why); the
    // main thread's runtime is worker 0 and also runs the reload task, the admin listener
    // and the signal handlers.
    let workers = match worker_count(workers, std::env::var("COHORT_WORKERS").ok().as_deref()) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("cohort serve: {e}");
            return exit::USAGE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
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
        let worker_threads = workers;
        let workers = match Workers::start(workers) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("cohort serve: cannot start {workers} worker threads: {e}");
                return exit::INVALID;
            }
        };
        let metrics = Arc::new(Metrics::new());
        let events_cfg = routes.file.events.clone();
        let counts = Arc::new(LiveCounts::new());
        // Shared by the writer (adds what it writes), the shipper (sets what is left) and
        // the conversions endpoint (refuses while full).
        let spool_bound = events_cfg
            .spool_max_bytes
            .filter(|_| events_cfg.clickhouse.is_some())
            .map(|max| Arc::new(SpoolBound::new(max)));
        // Calls sampled for model monitoring go to the monitor thread, started below.
        let (capture_tx, capture_rx) = crossbeam_channel::bounded(CAPTURE_QUEUE);
        let skipped = prometheus::IntCounterVec::new(
            prometheus::Opts::new("cohort_monitor_skipped_total", "Calls sampled for monitoring but not captured, by reason: too_large, incomplete, queue_full, status."),
            &["experiment", "reason"],
        )
        .expect("valid metric");
        if let Err(e) = metrics.register(Box::new(skipped.clone())) {
            eprintln!("cohort serve: {e}");
            return exit::INVALID;
        }
        let captures = cohort_proxy::capture::Captures::new(capture_tx, skipped);
        // Conversions as the writer writes them: the labels of monitoring's online quality.
        let conversion_feed = Arc::new(cohort_control::monitoring::ConversionFeed::default());
        let (proxy, writer) = if events_cfg.enabled {
            let sink = match SegmentLog::open(&events_cfg) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cohort serve: cannot open the event log in {}: {e}", events_cfg.dir.display());
                    return exit::INVALID;
                }
            };
            if let Err(e) = record_config_version(&events_cfg.dir, &routes) {
                tracing::error!(error = %e, "cannot append to config-versions.jsonl");
            }
            // Live counts and guardrail tallies: rebuilt from the log on start, then kept
            // by the writer thread.
            replay(&events_cfg.dir, &counts, &guardrails);
            let (event_log, writer) = cohort_events::writer::start(
                Box::new(sink),
                metrics
                    .event_writer_options(&events_cfg)
                    .observed_by(counts.clone())
                    .observed_by(guardrails.clone())
                    .observed_by(conversion_feed.clone())
                    .with_spool_bound(spool_bound.clone()),
            );
            match Proxy::served_by(routes, metrics, workers) {
                Ok(p) => (Arc::new(p.with_events(event_log).with_captures(captures)), Some(writer)),
                Err(err) => {
                    eprintln!("{err}");
                    return exit::INVALID;
                }
            }
        } else {
            tracing::warn!("events.enabled is false: no exposures are recorded and conversions are refused");
            match Proxy::served_by(routes, metrics, workers) {
                Ok(p) => (Arc::new(p.with_captures(captures)), None),
                Err(err) => {
                    eprintln!("{err}");
                    return exit::INVALID;
                }
            }
        };
        // Name every upstream that does not listen now and after each reload.
        proxy.probe_upstreams();
        let monitor_gauges = cohort_control::monitoring::gauges();
        for family in monitor_gauges.collectors() {
            if let Err(e) = proxy.metrics().register(family) {
                eprintln!("cohort serve: {e}");
                return exit::INVALID;
            }
        }
        let recent_windows = Arc::new(cohort_control::monitoring::RecentWindows::default());
        let drift_webhooks = cohort_control::monitoring::webhook_metric();
        if let Err(e) = proxy.metrics().register(Box::new(drift_webhooks.clone())) {
            eprintln!("cohort serve: {e}");
            return exit::INVALID;
        }
        let trigger = cohort_control::monitoring::Trigger {
            webhooks: cohort_control::webhooks::Webhooks::start(drift_webhooks),
            admin: admin_listen,
        };
        let ship_window = Duration::from_millis(proxy.routes().routes.file.shutdown.ship_timeout_ms);
        let shipping = match super::shipping::Shipping::start(&events_cfg, ship_window, proxy.metrics(), spool_bound) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cohort serve: events.clickhouse: {e}");
                return exit::INVALID;
            }
        };

        // With shipping, the live report and the gauges are the fleet's, from ClickHouse.
        let live_metrics = LiveMetrics::new();
        for c in live_metrics.collectors() {
            if let Err(e) = proxy.metrics().register(c) {
                eprintln!("cohort serve: {e}");
                return exit::INVALID;
            }
        }
        let (fleet, live_every) = match fleet_live(&events_cfg) {
            Ok(Some((f, every))) => (Some(f), Some(every)),
            Ok(None) => (None, None),
            Err(e) => {
                eprintln!("cohort serve: events.clickhouse: {e}");
                return exit::INVALID;
            }
        };
        // With the fleet's live view, online quality is labelled from ClickHouse (every
        // replica's predictions and conversions); this replica only writes its predictions.
        let fleet_quality = fleet.is_some() && live_every.is_some();
        if let Err(e) = cohort_control::monitoring::start(
            capture_rx,
            proxy.clone(),
            monitor_gauges.clone(),
            trigger,
            conversion_feed,
            recent_windows.clone(),
            fleet_quality,
        ) {
            eprintln!("cohort serve: cannot start the monitor thread: {e}");
            return exit::INVALID;
        }

        // One reload task; file events, SIGHUP, the poll and the admin API feed it.
        let mut reloader = Reloader::with_overrides(path.clone(), &proxy, from_file.clone(), overrides, state_path);
        if events_cfg.enabled {
            reloader = reloader.recording_versions_in(events_cfg.dir.clone());
        }
        let reloader = Arc::new(reloader);
        let rollout_metrics = cohort_control::rollout::RolloutMetrics::new();
        for c in rollout_metrics.collectors() {
            if let Err(e) = proxy.metrics().register(c) {
                eprintln!("cohort serve: {e}");
                return exit::INVALID;
            }
        }
        // With shipping, a step is taken only while this replica's events reach ClickHouse
        // within this bound, so that no replica advances on a fleet that lacks its data.
        let fleet_rollouts = match (&fleet, &shipping, &events_cfg.clickhouse) {
            (Some(live), Some(s), Some(ch)) => Some(cohort_control::rollout::FleetRollouts::new(
                live.clone(),
                s.lag.clone(),
                (3 * Duration::from_millis(ch.flush_interval_ms)).max(FLEET_STALE_MIN),
            )),
            _ => None,
        };
        let rollouts = Arc::new(cohort_control::rollout::Rollouts::new(
            reloader.clone(),
            proxy.clone(),
            guardrails,
            events_cfg.enabled.then_some(counts.clone()),
            fleet_rollouts,
            rollout_metrics,
        ));
        let webhook_outcomes = cohort_control::webhooks::Webhooks::metric();
        if let Err(e) = proxy.metrics().register(Box::new(webhook_outcomes.clone())) {
            eprintln!("cohort serve: {e}");
            return exit::INVALID;
        }
        let webhooks = cohort_control::webhooks::Webhooks::start(webhook_outcomes);
        let told = rollouts.listener(Some(webhooks));
        // The starts recorded before the reloader existed are told like every later action.
        for s in &starts {
            let hooks = from_file
                .experiment(&s.experiment)
                .and_then(|e| e.rollout.as_ref())
                .map_or(&[][..], |r| &r.config.webhooks[..]);
            told(&cohort_control::webhooks::Notice {
                event: s,
                from: None,
                webhooks: hooks,
                admin: admin_listen,
            });
        }
        reloader.on_rollout_action(told);
        rollouts.sync();
        tokio::spawn(rollouts.clone().run());
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

        let ready = Arc::new(AtomicBool::new(true));
        let admin = Arc::new(Admin {
            proxy: proxy.clone(),
            ready: ready.clone(),
            auth,
            reload: Some(ReloadHandle {
                reloader,
                trigger: tx,
            }),
            counts: events_cfg.enabled.then_some(counts.clone()),
            fleet: fleet.clone(),
            rollouts: Some(rollouts),
            monitoring: Some(recent_windows),
        });
        match (fleet, live_every) {
            (Some(fleet), Some(every)) => spawn_fleet_analysis(proxy.clone(), fleet, live_metrics, every, monitor_gauges),
            _ if events_cfg.enabled => spawn_analysis(proxy.clone(), counts),
            _ => {}
        }
        let shutdown = Shutdown::new();
        let grace = Duration::from_millis(proxy.routes().routes.file.shutdown.grace_ms);
        let drain = Duration::from_millis(proxy.routes().routes.file.shutdown.drain_timeout_ms);
        let connections = Connections::new(proxy.routes().routes.file.limits.max_connections);
        let public = tokio::spawn(proxy.clone().serve_with(listener, connections.clone(), shutdown.clone()));
        let admin_task = tokio::spawn(admin.serve_with(admin_listener, shutdown.clone()));
        // Handlers first, then the log line that says we serve: a signal sent as soon as
        // that line appears must find them registered.
        let mut signals = signals();
        tracing::info!(%listen, admin = %admin_listen, %version, workers = worker_threads, "serving");
        // Start-up's code is not needed again once the first passes of the background tasks
        // (analysis, probes, rollouts) are done; serving maps back the little it runs.
        tokio::spawn(async {
            tokio::time::sleep(START_UP_SETTLES).await;
            cohort_sys::release_start_up_code();
        });
        signals.recv().await;
        // From here on, a second signal means "now".
        tokio::spawn(async move {
            if signals.recv().await.is_some() {
                tracing::warn!("second signal: exiting at once");
                std::process::exit(130);
            }
        });
        ready.store(false, Ordering::Release);
        tracing::info!(grace_ms = grace.as_millis() as u64, "shutting down: /readyz answers 503, still serving during the grace period");
        tokio::time::sleep(grace).await;
        shutdown.begin();
        let _ = public.await;
        let _ = admin_task.await;
        tracing::info!(open = connections.open(), drain_timeout_ms = drain.as_millis() as u64, "listeners closed; draining connections");
        let left = connections.drained(drain).await;
        if left > 0 {
            tracing::warn!(aborted = left, "drain timeout: aborting the remaining connections");
        }
        // Every exposure recorded so far is written and synced before exiting.
        if let Some(writer) = writer {
            let _ = tokio::task::spawn_blocking(move || writer.finish()).await;
        }
        if let Some(s) = shipping {
            let _ = tokio::task::spawn_blocking(move || s.stop()).await;
        }
        tracing::info!("shut down");
        exit::OK
    })
}

/// Captured calls waiting for the monitor thread, at most; past it a capture is dropped
/// and counted (`cohort_monitor_skipped_total{reason="queue_full"}`).
const CAPTURE_QUEUE: usize = 1024;

/// How long after cohort starts serving its start-up code pages are let go
/// ([`cohort_sys::release_start_up_code`]): by then the background tasks' first passes have
/// run. Earlier is harmless but lets go of less.
const START_UP_SETTLES: Duration = Duration::from_secs(1);

/// The least shipping lag a replica tolerates before it stops stepping rollouts.
const FLEET_STALE_MIN: Duration = Duration::from_secs(10);

/// With shipping: every replica's recorded rollout actions of the file's rollouts, read
/// from ClickHouse before serving, so that a new replica starts at the fleet's step. A
/// store that cannot be read leaves this replica with its own records (logged).
fn fleet_rollouts_at_start(file: &config::Routes) -> Vec<cohort_rollout::RolloutEvent> {
    let Some(cfg) = &file.file.events.clickhouse else {
        return Vec::new();
    };
    let names: Vec<&str> = file
        .experiments
        .iter()
        .filter(|e| e.rollout.is_some())
        .map(|e| e.name.as_str())
        .collect();
    if names.is_empty() {
        return Vec::new();
    }
    let fleet = match cohort_clickhouse::connect(cfg, |v| std::env::var(v).ok()) {
        Ok((client, tables)) => cohort_clickhouse::fleet::Fleet {
            client,
            tables,
            timeout: Duration::from_millis(cfg.timeout_ms),
            settings: Vec::new(),
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the fleet's rollout actions at start");
            return Vec::new();
        }
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in names {
        match rt.block_on(fleet.rollout_events(name)) {
            Ok(events) => out.extend(events),
            Err(e) => {
                tracing::warn!(experiment = %name, error = %e, "cannot read the fleet's rollout actions at start; starting from this replica's own")
            }
        }
    }
    out
}

/// How often the live analysis refreshes the `cohort_experiment_*` gauges (and checks
/// the sample ratio, whose failure latches).
const ANALYSIS_EVERY: Duration = Duration::from_secs(30);

fn spawn_analysis(proxy: Arc<cohort_proxy::Proxy>, counts: Arc<LiveCounts>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(ANALYSIS_EVERY);
        loop {
            every.tick().await;
            let (proxy, counts) = (proxy.clone(), counts.clone());
            let _ = tokio::task::spawn_blocking(move || {
                let serving = proxy.routes();
                for exp in &serving.routes.experiments {
                    let r = counts.report(exp, &serving.routes.file.events.dir);
                    cohort_control::gauges::publish(proxy.metrics(), &r);
                }
            })
            .await;
        }
    });
}

/// How often the fleet's gauges refresh: per-variant counts, and the whole report.
#[derive(Clone, Copy)]
struct LiveEvery {
    counts: Duration,
    report: Duration,
}

/// The fleet's live report (None without shipping) and how often the gauges refresh.
fn fleet_live(
    events: &config::schema::EventsConfig,
) -> Result<Option<(Arc<FleetLive>, LiveEvery)>, String> {
    let Some(cfg) = &events.clickhouse else {
        return Ok(None);
    };
    let (client, tables) = cohort_clickhouse::connect(cfg, |v| std::env::var(v).ok())?;
    let fleet = cohort_clickhouse::fleet::Fleet {
        client,
        tables,
        timeout: cohort_clickhouse::live::QUERY_TIMEOUT,
        settings: Vec::new(),
    };
    Ok(Some((
        Arc::new(FleetLive::new(
            fleet,
            Duration::from_secs_f64(cfg.live_max_age_s),
        )),
        LiveEvery {
            counts: Duration::from_secs_f64(cfg.live_counts_s),
            report: Duration::from_secs_f64(cfg.live_refresh_s),
        },
    )))
}

/// How often the age gauges are updated, at the most.
const AGE_EVERY: Duration = Duration::from_secs(10);

/// With shipping: `cohort_experiment_units` and `_conversion_rate` from per-variant counts
/// summed in ClickHouse every `every.counts`, and every gauge from the fleet's whole
/// report every `every.report` (a report the endpoints computed meanwhile is reused). A
/// failed refresh keeps the last values; `cohort_fleet_counts_age_seconds` and
/// `cohort_fleet_report_age_seconds` say how old they are.
fn spawn_fleet_analysis(
    proxy: Arc<cohort_proxy::Proxy>,
    fleet: Arc<FleetLive>,
    metrics: LiveMetrics,
    every: LiveEvery,
    monitor_gauges: cohort_control::monitoring::Gauges,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.counts.min(AGE_EVERY));
        let (mut counts_at, mut report_at) = (None::<Instant>, None::<Instant>);
        let mut counted: HashMap<String, Instant> = HashMap::new();
        let mut failing: HashSet<String> = HashSet::new();
        let due = |at: Option<Instant>, period: Duration| at.is_none_or(|t| t.elapsed() >= period);
        loop {
            tick.tick().await;
            let (counts_due, report_due) =
                (due(counts_at, every.counts), due(report_at, every.report));
            let serving = proxy.routes();
            for exp in &serving.routes.experiments {
                let mut failed = None;
                if report_due {
                    match fleet.report_within(exp, every.report / 2).await {
                        Ok(c) => {
                            cohort_control::gauges::publish(proxy.metrics(), &c.report);
                            counted.insert(exp.name.clone(), c.at);
                        }
                        Err(e) => failed = Some(e),
                    }
                    if let Err(e) = cohort_control::monitoring::publish_fleet_quality(
                        &monitor_gauges,
                        fleet.fleet(),
                        exp,
                    )
                    .await
                    {
                        failed.get_or_insert(e);
                    }
                } else if counts_due {
                    match fleet.counts(exp).await {
                        Ok(c) => {
                            cohort_control::gauges::publish_counts(proxy.metrics(), &exp.name, &c);
                            counted.insert(exp.name.clone(), Instant::now());
                        }
                        Err(e) => failed = Some(e),
                    }
                }
                match failed {
                    Some(e) => {
                        metrics.errors.with_label_values(&[&exp.name]).inc();
                        if failing.insert(exp.name.clone()) {
                            tracing::warn!(experiment = %exp.name, error = %e, "cannot compute the fleet's report; the gauges keep their last values");
                        }
                    }
                    None if (counts_due || report_due) && failing.remove(&exp.name) => {
                        tracing::info!(experiment = %exp.name, "the fleet's report is computed again");
                    }
                    None => {}
                }
                if let Some(c) = fleet.last(exp).await {
                    metrics
                        .age
                        .with_label_values(&[&exp.name])
                        .set(c.at.elapsed().as_secs_f64());
                }
                if let Some(at) = counted.get(&exp.name) {
                    metrics
                        .counts_age
                        .with_label_values(&[&exp.name])
                        .set(at.elapsed().as_secs_f64());
                }
            }
            if report_due {
                report_at = Some(Instant::now());
            }
            if counts_due || report_due {
                counts_at = Some(Instant::now());
            }
        }
    });
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

/// Rebuilds the live counts from the event directory, logging progress for large logs.
fn replay(dir: &Path, counts: &LiveCounts, guardrails: &cohort_rollout::Guardrails) {
    let started = std::time::Instant::now();
    // Applied in batches, in log order: memory holds one batch, never the log.
    let mut batch = Vec::with_capacity(REPLAY_BATCH);
    let apply = |batch: &[cohort_events::Event]| {
        counts.apply(batch.iter());
        guardrails.add(batch.iter().map(cohort_events::Event::view));
    };
    let replayed = cohort_events::reader::replay(dir, |e| {
        batch.push(e);
        if batch.len() == REPLAY_BATCH {
            apply(&batch);
            batch.clear();
        }
    });
    apply(&batch);
    match replayed {
        Ok(r) => tracing::info!(
            files = r.segments,
            events = r.events,
            malformed = r.malformed,
            other_types = r.other_types,
            units = counts.units(),
            ms = started.elapsed().as_millis() as u64,
            "event log replayed"
        ),
        Err(e) => {
            tracing::error!(error = %e, "cannot replay the event log; counts start with what was read")
        }
    }
}

/// Events applied to the live counts at a time during replay.
const REPLAY_BATCH: usize = 4096;

/// Forwards SIGHUP to the reload task. The handler is registered before this returns.
fn spawn_sighup(tx: mpsc::Sender<Trigger>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP");
            return;
        };
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                if tx.send(Trigger::Signal).await.is_err() {
                    return;
                }
            }
        });
    }
    #[cfg(not(unix))]
    drop(tx);
}

/// Every SIGINT and SIGTERM, as they arrive (the handlers are registered once, up front,
/// so a quick second signal is never missed).
fn signals() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(4);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            _ = term.recv() => {}
                            _ = int.recv() => {}
                        }
                        if tx.send(()).await.is_err() {
                            return;
                        }
                    }
                });
            }
            _ => tracing::warn!("cannot listen for SIGTERM/SIGINT"),
        }
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::worker_count;

    #[test]
    fn workers_come_from_the_flag_then_cohort_workers_then_the_cores() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(worker_count(Some(3), Some("7")), Ok(3));
        assert_eq!(worker_count(None, Some("7")), Ok(7));
        assert_eq!(worker_count(None, Some(" 2\n")), Ok(2));
        assert_eq!(worker_count(None, Some("0")), Ok(cores));
        assert_eq!(worker_count(None, Some("")), Ok(cores));
        assert_eq!(worker_count(None, None), Ok(cores));
        assert_eq!(worker_count(Some(0), None), Ok(cores));
        for bad in ["250m", "-1", "1.5", "two"] {
            let e = worker_count(None, Some(bad)).unwrap_err();
            assert!(e.contains("COHORT_WORKERS") && e.contains(bad), "{e}");
        }
    }
}
