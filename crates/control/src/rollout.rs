//! Rollouts in force: the weights each rollout's state gives (a layer over the file and
//! the runtime weights), and the task that evaluates the guardrails and acts.
//!
//! Every action goes through the reloader ([`Reloader::rollout_action`]), under the control
//! plane's one lock: recorded (state file, then rollouts.jsonl) before its weights go into
//! force by the same plan and install as a file reload, so the config-versions log,
//! `cohort_config_info` and the move log see each step.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts};
use serde::Serialize;
use tracing::{error, warn};

use cohort_analysis::LiveCounts;
use cohort_clickhouse::live::FleetLive;
use cohort_config::schema::RolloutConfig;
use cohort_config::{rollout_weights, FileConfig, Rollout, Routes};
use cohort_proxy::Proxy;
use cohort_rollout::record::RolloutTag;
use cohort_rollout::tally::Watch;
use cohort_rollout::{
    evaluate, fold, ArmStats, Evaluation, Guardrails, Kind, RolloutEvent, RolloutState, Status,
    Verdicts,
};

use crate::overrides::Overrides;
use crate::reload::{Reloader, RolloutAction, RolloutError, RolloutListener, RolloutOutcome};
use crate::webhooks::{Notice, Webhooks};

/// What the rollouts of a file do to its weights.
struct Layer {
    /// experiment → the weights its rollout's state gives.
    weights: BTreeMap<String, BTreeMap<String, f64>>,
    /// Rollouts without a record: they start now, at their first step.
    starts: Vec<RolloutEvent>,
}

impl Layer {
    /// `file` with the rollouts' weights laid over it.
    fn over(&self, mut file: FileConfig) -> FileConfig {
        // The layer is made from this file's own experiments and variants: nothing is
        // unknown.
        for (name, weights) in &self.weights {
            file.set_weights(name, weights);
        }
        file
    }
}

/// What a file compiles to with the runtime weights and the rollouts' steps over it.
pub struct Layered {
    pub routes: Routes,
    /// Rollouts without a record, which start now.
    pub starts: Vec<RolloutEvent>,
    /// Runtime weights the file no longer fits ("runtime weights for experiment …").
    pub ignored: Vec<String>,
}

/// `file` with `overrides`' runtime weights and its rollouts' steps laid over it,
/// compiled. Its `base_version` is that of the table without the steps.
pub fn layered(
    file: &Routes,
    overrides: &Overrides,
) -> Result<Layered, cohort_config::ConfigError> {
    let layer = layer(file, &overrides.rollouts);
    if overrides.experiments.is_empty() && layer.weights.is_empty() {
        return Ok(Layered {
            routes: file.clone(),
            starts: layer.starts,
            ignored: Vec::new(),
        });
    }
    let (effective, ignored) = overrides.overlay(&file.file);
    let base_version = cohort_config::version_of(&effective);
    let mut routes = cohort_config::compile_file(layer.over(effective), file.source.clone())?;
    routes.base_version = base_version;
    Ok(Layered {
        routes,
        starts: layer.starts,
        ignored,
    })
}

/// The state of `experiment`'s rollout in `file`, from `records` (None: `experiment` has
/// no rollout, or it has not started).
pub fn state_of(
    file: &Routes,
    experiment: &str,
    records: &BTreeMap<String, Vec<RolloutEvent>>,
) -> Option<RolloutState> {
    let rollout = file.experiment(experiment)?.rollout.as_ref()?;
    fold(&rollout.id, records.get(experiment).into_iter().flatten())
}

/// The rollout layer of `file` given the recorded actions.
fn layer(file: &Routes, records: &BTreeMap<String, Vec<RolloutEvent>>) -> Layer {
    let mut out = Layer {
        weights: BTreeMap::new(),
        starts: Vec::new(),
    };
    for e in &file.experiments {
        let Some(r) = &e.rollout else { continue };
        let Some(cfg) = file.file.experiments.iter().find(|c| c.name == e.name) else {
            continue;
        };
        let share = match state_of(file, &e.name, records) {
            Some(s) => s.share(&r.config.steps),
            None => {
                let start = event(
                    &e.name,
                    &r.id,
                    0,
                    0,
                    Kind::Start,
                    r.config.steps[0],
                    "the rollout block went into force".to_owned(),
                    "cohort",
                );
                out.starts.push(start);
                r.config.steps[0]
            }
        };
        out.weights.insert(
            e.name.clone(),
            rollout_weights(cfg, &r.config.treatment, share),
        );
    }
    out
}

/// A rollout event stamped now.
#[allow(clippy::too_many_arguments)]
pub fn event(
    experiment: &str,
    rollout_id: &str,
    attempt: u32,
    step: usize,
    kind: Kind,
    share: f64,
    reason: String,
    by: &str,
) -> RolloutEvent {
    RolloutEvent {
        kind_of_line: RolloutTag::Rollout,
        ts: cohort_events::clock::now(),
        experiment: experiment.to_owned(),
        rollout_id: rollout_id.to_owned(),
        attempt,
        step,
        kind,
        share,
        reason,
        by: by.to_owned(),
        guardrails: BTreeMap::new(),
    }
}

/// Points the guardrail tallies at every rollout of `file` the guardrails watch (and away
/// from the others). Call it before the event log is replayed, so that the replay
/// rebuilds the tallies, and after every change.
pub fn watch_all(
    guardrails: &Guardrails,
    file: &Routes,
    records: &BTreeMap<String, Vec<RolloutEvent>>,
) {
    for e in &file.experiments {
        let state = state_of(file, &e.name, records);
        match (&e.rollout, state) {
            (Some(r), Some(s)) if s.status.guarded() => guardrails.watch(
                &e.name,
                Watch {
                    control: e.variants[e.control].name.clone(),
                    treatment: e.variants[r.treatment].name.clone(),
                    attempt_started_ns: s.attempt_started_ns(),
                    step_started_ns: s.step_started_ns(),
                    latency_window_s: r.config.guardrails.latency_window_s,
                },
            ),
            _ => guardrails.unwatch(&e.name),
        }
    }
}

/// The rollout families on /metrics.
#[derive(Clone)]
pub struct RolloutMetrics {
    /// `cohort_rollout_info{experiment,rollout_id}`: 1 for the rollout in force.
    pub info: IntGaugeVec,
    pub step: IntGaugeVec,
    pub state: IntGaugeVec,
    pub guardrail: GaugeVec,
    pub bound: GaugeVec,
    pub actions: IntCounterVec,
}

impl Default for RolloutMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RolloutMetrics {
    pub fn new() -> Self {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            GaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let int_gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        RolloutMetrics {
            info: int_gauge(
                "cohort_rollout_info",
                "1 for the rollout in force of each experiment, named by its rollout id (the id in rollouts.jsonl, the report and webhooks).",
                &["experiment", "rollout_id"],
            ),
            step: int_gauge(
                "cohort_rollout_step",
                "The rollout's step in force, from 1 (the step a rollback left, while rolled back).",
                &["experiment"],
            ),
            state: int_gauge(
                "cohort_rollout_state",
                "1 for the rollout's state: running, paused, rolled_back, promoted or done.",
                &["experiment", "state"],
            ),
            guardrail: gauge(
                "cohort_rollout_guardrail",
                "Each guardrail's last value: error_rate (lower end of the difference's confidence sequence), latency_p99_ratio, primary_metric (1: roll back).",
                &["experiment", "guardrail"],
            ),
            bound: gauge(
                "cohort_rollout_guardrail_bound",
                "The bound each guardrail's value is compared with (it fails above it).",
                &["experiment", "guardrail"],
            ),
            actions: IntCounterVec::new(
                Opts::new(
                    "cohort_rollout_actions_total",
                    "Rollout actions this replica took or recorded, by kind (start, advance, rollback, promote, done, pause, resume).",
                ),
                &["experiment", "kind"],
            )
            .expect("valid metric"),
        }
    }

    /// Everything to register on /metrics.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.info.clone()),
            Box::new(self.step.clone()),
            Box::new(self.state.clone()),
            Box::new(self.guardrail.clone()),
            Box::new(self.bound.clone()),
            Box::new(self.actions.clone()),
        ]
    }

    /// Removes `experiment`'s info series, whatever rollout it named.
    fn forget_info(&self, experiment: &str) {
        use prometheus::core::Collector;
        for family in self.info.collect() {
            for m in family.get_metric() {
                let value = |name: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_owned())
                };
                if let (Some(e), Some(id)) = (value("experiment"), value("rollout_id")) {
                    if e == experiment {
                        let _ = self.info.remove_label_values(&[&e, &id]);
                    }
                }
            }
        }
    }

    /// Removes every series of `experiment` but its action counts.
    fn forget(&self, experiment: &str) {
        self.forget_info(experiment);
        let _ = self.step.remove_label_values(&[experiment]);
        for st in Status::ALL {
            let _ = self.state.remove_label_values(&[experiment, st.label()]);
        }
        for g in ["error_rate", "latency_p99_ratio", "primary_metric"] {
            let _ = self.guardrail.remove_label_values(&[experiment, g]);
            let _ = self.bound.remove_label_values(&[experiment, g]);
        }
    }

    fn publish_state(&self, experiment: &str, s: &RolloutState) {
        // One series per experiment: the rollout in force names it.
        self.forget_info(experiment);
        self.info
            .with_label_values(&[experiment, &s.rollout_id])
            .set(1);
        self.step
            .with_label_values(&[experiment])
            .set(i64::try_from(s.step + 1).unwrap_or(i64::MAX));
        for st in Status::ALL {
            self.state
                .with_label_values(&[experiment, st.label()])
                .set(i64::from(st == s.status));
        }
    }

    fn publish_evaluation(&self, experiment: &str, e: &Evaluation) {
        for g in &e.guardrails {
            if let Some(v) = g.value {
                self.guardrail
                    .with_label_values(&[experiment, g.name])
                    .set(v);
            }
            self.bound
                .with_label_values(&[experiment, g.name])
                .set(g.bound);
        }
    }
}

/// What an evaluation of one rollout left, for the API.
#[derive(Debug, Clone, Default)]
struct Track {
    /// The (rollout id, attempt, step, status) it was made on.
    on: Option<(String, u32, usize, Status)>,
    latency_failures: u32,
    last: Option<Evaluation>,
    evaluated_at: Option<String>,
    arms: Option<[ArmStats; 2]>,
    next_at: Option<Instant>,
}

/// Whether `state` is where a promotion waits on a win: running on the last step of a
/// rollout with `on_last_step: promote`.
fn promote_due(cfg: &RolloutConfig, state: &RolloutState) -> bool {
    cfg.on_last_step == cohort_config::schema::OnLastStep::Promote
        && state.status == Status::Running
        && state.step + 1 == cfg.steps.len()
}

/// Whether `decision` names `treatment` the winner.
fn wins(decision: &cohort_stats::decision::Decision, treatment: &str) -> bool {
    decision.status == cohort_stats::decision::Status::Winner
        && decision.variant.as_deref() == Some(treatment)
}

/// What one evaluation starts from.
struct Look {
    rollout: Rollout,
    state: RolloutState,
    /// (rollout id, attempt, step, status) the evaluation is made on.
    key: (String, u32, usize, Status),
    control: String,
    treatment: String,
    /// This replica's tallies, `[control, treatment]`.
    arms: [ArmStats; 2],
    verdicts: Verdicts,
    failures: u32,
    now_ns: i64,
    /// The experiment in force (for the fleet's report).
    experiment: cohort_config::Experiment,
}

/// With shipping: where the fleet's actions and tallies are read, and how stale they may
/// be for a step.
pub struct FleetRollouts {
    pub live: Arc<FleetLive>,
    /// This replica's `cohort_clickhouse_lag_seconds`: the age of its oldest event not
    /// shipped yet.
    pub lag: prometheus::Gauge,
    /// A step is taken only while `lag` is at most this.
    pub stale_after: Duration,
    /// (experiment, what) of the fleet reads failing now: each failure is logged when it
    /// starts and when it ends, not at every evaluation.
    failing: Mutex<std::collections::HashSet<(String, &'static str)>>,
}

/// What the fleet said at one evaluation.
struct FleetLook {
    /// The fleet's tallies (None: ClickHouse could not be read).
    arms: Option<[ArmStats; 2]>,
    /// The fleet's decision rule says roll back for the treatment.
    roll_back: bool,
    /// On the last step of a rollout that promotes: the treatment wins on that step's
    /// units, in the fleet's report.
    win_last_step: Option<bool>,
    /// This replica's own events are in ClickHouse within the bound.
    fresh: bool,
}

impl FleetRollouts {
    /// Fleet reads of `experiment` from `live`, lag bounded by `stale_after`.
    pub fn new(live: Arc<FleetLive>, lag: prometheus::Gauge, stale_after: Duration) -> Self {
        Self {
            live,
            lag,
            stale_after,
            failing: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Logs a read of `what` that failed (once, until it works again) or worked (once,
    /// after it had failed); hands back the value.
    fn noted<T>(
        &self,
        experiment: &str,
        what: &'static str,
        consequence: &str,
        read: Result<T, cohort_clickhouse::Error>,
    ) -> Option<T> {
        let key = (experiment.to_owned(), what);
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        match read {
            Ok(v) => {
                if failing.remove(&key) {
                    tracing::info!(experiment = %experiment, "the fleet's {what} can be read again");
                }
                Some(v)
            }
            Err(e) => {
                if failing.insert(key) {
                    warn!(experiment = %experiment, error = %e, "cannot read the fleet's {what}; {consequence}");
                }
                None
            }
        }
    }

    async fn look(&self, look: &Look) -> FleetLook {
        let fresh = self.lag.get() <= self.stale_after.as_secs_f64();
        let arms = cohort_clickhouse::query::Arms {
            experiment: &look.experiment.name,
            control: &look.control,
            treatment: &look.treatment,
        };
        let g = &look.rollout.config.guardrails;
        let read = self
            .live
            .fleet()
            .guardrail_arms(
                &arms,
                look.state.attempt_started_ns(),
                look.state.step_started_ns(),
                look.now_ns,
                g.latency_window_s,
            )
            .await;
        let name = look.experiment.name.as_str();
        let arms = self.noted(
            name,
            "guardrail tallies",
            "no step until it can; this replica's own tallies may still roll back",
            read,
        );
        let roll_back = if g.primary_metric {
            let report = self.live.report(&look.experiment).await;
            self.noted(name, "report", "the primary-metric guardrail waits", report)
                .is_some_and(|c| c.report.decision.roll_back.contains(&look.treatment))
        } else {
            false
        };
        let win_last_step = if promote_due(&look.rollout.config, &look.state) {
            let since = look.state.step_started_ns();
            let decision = self.live.decision_since(&look.experiment, since).await;
            self.noted(
                name,
                "verdict on the last step's units",
                "no promotion until it can",
                decision,
            )
            .map(|d| d.is_some_and(|d| wins(&d, &look.treatment)))
        } else {
            None
        };
        FleetLook {
            arms,
            roll_back,
            win_last_step,
            fresh,
        }
    }
}

/// The rollouts of one process: evaluates each every `evaluate_every_s` and acts.
pub struct Rollouts {
    reloader: Arc<Reloader>,
    proxy: Arc<Proxy>,
    guardrails: Arc<Guardrails>,
    /// The live counts, for the primary metric's verdict (None: no event log).
    counts: Option<Arc<LiveCounts>>,
    /// With shipping: the fleet's actions and tallies.
    fleet: Option<FleetRollouts>,
    metrics: RolloutMetrics,
    tracks: Mutex<HashMap<String, Track>>,
    /// Experiments whose rollout series are on /metrics.
    shown: Mutex<std::collections::BTreeSet<String>>,
}

/// How often the task looks for a rollout due for evaluation.
const TICK: Duration = Duration::from_millis(100);

impl Rollouts {
    pub fn new(
        reloader: Arc<Reloader>,
        proxy: Arc<Proxy>,
        guardrails: Arc<Guardrails>,
        counts: Option<Arc<LiveCounts>>,
        fleet: Option<FleetRollouts>,
        metrics: RolloutMetrics,
    ) -> Self {
        Self {
            reloader,
            proxy,
            guardrails,
            counts,
            fleet,
            metrics,
            tracks: Mutex::new(HashMap::new()),
            shown: Mutex::new(std::collections::BTreeSet::new()),
        }
    }

    fn tracks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Track>> {
        self.tracks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings the tallies and the state gauges in step with the recorded actions.
    pub fn sync(&self) {
        let (file, records) = self.reloader.rollouts();
        watch_all(&self.guardrails, &file, &records);
        let mut shown = self.shown();
        for e in &file.experiments {
            if let Some(s) = state_of(&file, &e.name, &records) {
                self.metrics.publish_state(&e.name, &s);
                shown.insert(e.name.clone());
            }
        }
        // A rollout that is gone leaves no series behind (its alert would fire forever).
        shown.retain(|name| {
            let kept = file.experiment(name).is_some_and(|e| e.rollout.is_some());
            if !kept {
                self.metrics.forget(name);
            }
            kept
        });
    }

    fn shown(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<String>> {
        self.shown.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is told of every recorded action: it is counted and its webhooks queued (the
    /// reloader calls it under its lock, so it only counts and queues).
    pub fn listener(&self, webhooks: Option<Webhooks>) -> RolloutListener {
        let actions = self.metrics.actions.clone();
        Box::new(move |n: &Notice<'_>| {
            actions
                .with_label_values(&[&n.event.experiment, n.event.kind.label()])
                .inc();
            if let Some(w) = &webhooks {
                w.notify(n);
            }
        })
    }

    /// Evaluates every rollout when it is due, until the process ends.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut version = String::new();
        loop {
            tick.tick().await;
            // A new table (a reload, a step) may add or remove rollouts: bring the tallies
            // and the series in step.
            let now_in_force = self.proxy.routes().routes.version.clone();
            if now_in_force != version {
                version = now_in_force;
                let me = self.clone();
                let _ = tokio::task::spawn_blocking(move || me.sync()).await;
            }
            // The table in force (one shared load) says which experiments have rollouts:
            // without any, a tick costs next to nothing on the thread it shares.
            let due: Vec<String> = {
                let serving = self.proxy.routes();
                let now = Instant::now();
                let tracks = self.tracks();
                serving
                    .routes
                    .experiments
                    .iter()
                    .filter(|e| e.rollout.is_some())
                    .filter(|e| {
                        tracks
                            .get(&e.name)
                            .and_then(|t| t.next_at)
                            .is_none_or(|at| at <= now)
                    })
                    .map(|e| e.name.clone())
                    .collect()
            };
            for name in due {
                self.clone().evaluate(name).await;
            }
        }
    }

    /// One evaluation of `experiment`'s rollout, and its action. With a fleet: first the
    /// fleet's recorded actions are adopted, then the fleet's tallies are read.
    async fn evaluate(self: Arc<Self>, experiment: String) {
        if let Some(f) = &self.fleet {
            let read = f.live.fleet().rollout_events(&experiment).await;
            let consequence = "this replica acts on the actions it has";
            if let Some(events) = f.noted(&experiment, "rollout actions", consequence, read) {
                let (me, exp) = (self.clone(), experiment.clone());
                let _ = tokio::task::spawn_blocking(move || me.adopt(&exp, events)).await;
            }
        }
        let (me, exp) = (self.clone(), experiment.clone());
        let Ok(Some(look)) = tokio::task::spawn_blocking(move || me.look(&exp)).await else {
            return;
        };
        let fleet = match &self.fleet {
            Some(f) => Some(f.look(&look).await),
            None => None,
        };
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || me.decide(&experiment, look, fleet)).await;
    }

    /// Takes the fleet's recorded actions of `experiment` into this replica's state.
    fn adopt(&self, experiment: &str, events: Vec<RolloutEvent>) {
        match self.reloader.merge_rollouts(experiment, events) {
            Ok(true) => self.sync(),
            Ok(false) => {}
            Err(e) => {
                error!(experiment = %experiment, error = %e, "cannot take the fleet's rollout actions")
            }
        }
    }

    /// What this replica knows of `experiment`'s rollout now (None: nothing to evaluate).
    fn look(&self, experiment: &str) -> Option<Look> {
        let (file, records) = self.reloader.rollouts();
        // A reload may have started, changed or removed a rollout since the last look.
        watch_all(&self.guardrails, &file, &records);
        let rollout = file.experiment(experiment)?.rollout.clone()?;
        let every = Duration::from_secs_f64(rollout.config.evaluate_every_s);
        let Some(state) = state_of(&file, experiment, &records) else {
            self.tracks()
                .entry(experiment.to_owned())
                .or_default()
                .next_at = Some(Instant::now() + every);
            return None;
        };
        self.metrics.publish_state(experiment, &state);
        let key = (
            state.rollout_id.clone(),
            state.attempt,
            state.step,
            state.status,
        );
        let failures = {
            let mut tracks = self.tracks();
            let t = tracks.entry(experiment.to_owned()).or_default();
            if t.on.as_ref() != Some(&key) {
                // A new step (or attempt) judges latency afresh.
                if t.on
                    .as_ref()
                    .is_none_or(|on| on.0 != key.0 || on.1 != key.1 || on.2 != key.2)
                {
                    t.latency_failures = 0;
                }
                t.on = Some(key.clone());
            }
            t.next_at = Some(Instant::now() + every);
            t.latency_failures
        };
        let now_ns = cohort_events::clock::parse_nanos(&cohort_events::clock::now()).unwrap_or(0);
        let arms = self.guardrails.snapshot(experiment, now_ns)?;
        let e = file.experiment(experiment)?;
        let (control, treatment) = (
            e.variants[e.control].name.clone(),
            e.variants[rollout.treatment].name.clone(),
        );
        // With a fleet the primary verdict is the fleet's: one replica's units would be a
        // test of its own, and several replicas' tests would multiply false rollbacks.
        let verdicts = if self.fleet.is_some() {
            Verdicts::default()
        } else {
            self.verdicts(experiment, &treatment, &rollout.config, &state)
        };
        Some(Look {
            rollout,
            state,
            key,
            control,
            treatment,
            arms,
            verdicts,
            failures,
            now_ns,
            experiment: e.clone(),
        })
    }

    /// Evaluates and acts. Without a fleet: on this replica's tallies. With one: on the
    /// fleet's tallies; a rollback on any reading of them, a step only when they are fresh
    /// (this replica's shipping lag within the bound); when ClickHouse cannot be read, this
    /// replica's own tallies may still roll back, never advance.
    fn decide(&self, experiment: &str, look: Look, fleet: Option<FleetLook>) {
        let cfg = &look.rollout.config;
        let local = evaluate(
            cfg,
            &look.state,
            &look.arms,
            look.verdicts,
            look.failures,
            look.now_ns,
        );
        let (shown, arms, action) = match fleet {
            None => (local.clone(), look.arms.clone(), local.action.clone()),
            Some(FleetLook {
                arms: Some(arms),
                roll_back,
                win_last_step,
                fresh,
            }) => {
                let verdicts = Verdicts {
                    roll_back,
                    win_last_step,
                };
                let ev = evaluate(
                    cfg,
                    &look.state,
                    &arms,
                    verdicts,
                    look.failures,
                    look.now_ns,
                );
                let action = match &ev.action {
                    Some((Kind::Rollback, _)) => ev.action.clone(),
                    Some(_) if fresh => ev.action.clone(),
                    _ => None,
                };
                (ev, arms, action)
            }
            Some(FleetLook { arms: None, .. }) => {
                let action = local
                    .action
                    .clone()
                    .filter(|(kind, _)| *kind == Kind::Rollback);
                (local.clone(), look.arms.clone(), action)
            }
        };
        self.metrics.publish_evaluation(experiment, &shown);
        {
            let mut tracks = self.tracks();
            let t = tracks.entry(experiment.to_owned()).or_default();
            t.latency_failures = shown.latency_failures;
            t.last = Some(shown.clone());
            t.arms = Some(arms);
            t.evaluated_at = Some(cohort_events::clock::now());
        }
        let Some((kind, reason)) = action else {
            return;
        };
        let action = RolloutAction::Decided {
            on: look.key,
            kind,
            reason,
            guardrails: shown.records(),
        };
        match self.reloader.rollout_action(experiment, action, "cohort") {
            Ok(RolloutOutcome {
                event: Some(event), ..
            }) => {
                if kind == Kind::Rollback {
                    warn!(experiment = %experiment, rollout = %event.rollout_id, reason = %event.reason, "rollout rolled back: the treatment's share is 0");
                }
                self.sync();
            }
            Ok(_) => {}
            Err(e) => {
                error!(experiment = %experiment, error = %e, "the rollout could not {}", kind.label())
            }
        }
    }

    /// The decision rule's verdicts for `treatment`, from this process' live report: roll
    /// back (with the primary-metric guardrail), and on the last step of a rollout that
    /// promotes, win on the units first exposed during that step.
    fn verdicts(
        &self,
        experiment: &str,
        treatment: &str,
        cfg: &RolloutConfig,
        state: &RolloutState,
    ) -> Verdicts {
        let Some(counts) = &self.counts else {
            return Verdicts::default();
        };
        let serving = self.proxy.routes();
        let Some(exp) = serving.routes.experiment(experiment) else {
            return Verdicts::default();
        };
        let dir = &serving.routes.file.events.dir;
        let roll_back = cfg.guardrails.primary_metric
            && counts
                .report(exp, dir)
                .decision
                .roll_back
                .iter()
                .any(|v| v == treatment);
        let win_last_step = promote_due(cfg, state).then(|| {
            counts
                .decision_since(exp, dir, state.step_started_ns())
                .is_some_and(|d| wins(&d, treatment))
        });
        Verdicts {
            roll_back,
            win_last_step,
        }
    }

    /// What `GET /v1/experiments/{name}/rollout` shows.
    pub fn view(&self, experiment: &str) -> Result<RolloutView, RolloutError> {
        let (file, records) = self.reloader.rollouts();
        let Some(e) = file.experiment(experiment) else {
            return Err(RolloutError::UnknownExperiment(format!(
                "no experiment named {experiment:?}"
            )));
        };
        let Some(r) = &e.rollout else {
            return Err(RolloutError::UnknownExperiment(format!(
                "experiment {experiment} has no rollout block"
            )));
        };
        let state = state_of(&file, experiment, &records);
        let tracks = self.tracks();
        let track = tracks.get(experiment).cloned().unwrap_or_default();
        let next_in = track
            .next_at
            .map(|at| at.saturating_duration_since(Instant::now()).as_secs_f64());
        Ok(RolloutView {
            experiment: experiment.to_owned(),
            rollout_id: r.id.clone(),
            control: e.variants[e.control].name.clone(),
            treatment: e.variants[r.treatment].name.clone(),
            steps: r.config.steps.clone(),
            state: state.as_ref().map(|s| s.status.label()),
            step: state.as_ref().map(|s| s.step + 1),
            share: state.as_ref().map(|s| s.share(&r.config.steps)),
            attempt: state.as_ref().map(|s| s.attempt),
            step_started_at: state.as_ref().map(|s| s.step_started_at.clone()),
            reason: state.as_ref().map(|s| s.reason.clone()),
            evaluated_at: track.evaluated_at,
            next_evaluation_in_s: next_in,
            guardrails: track.last.map(|l| l.guardrails).unwrap_or_default(),
            arms: track.arms.map(|[c, t]| RolloutArms {
                control: arm_view(&c),
                treatment: arm_view(&t),
            }),
            history: state.map(|s| s.history).unwrap_or_default(),
        })
    }
}

fn arm_view(a: &ArmStats) -> ArmView {
    ArmView {
        units: a.units,
        requests: a.requests,
        failed_requests: a.failures,
        error_rate: (a.units > 0).then_some(a.error_rates.mean),
        step_units: a.step_units,
        window_requests: a.window_requests,
        p99_ms: a.p99_ms,
    }
}

/// A rollout as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutView {
    pub experiment: String,
    pub rollout_id: String,
    pub control: String,
    pub treatment: String,
    pub steps: Vec<f64>,
    pub state: Option<&'static str>,
    /// From 1.
    pub step: Option<usize>,
    /// The treatment's share now.
    pub share: Option<f64>,
    pub attempt: Option<u32>,
    pub step_started_at: Option<String>,
    pub reason: Option<String>,
    pub evaluated_at: Option<String>,
    pub next_evaluation_in_s: Option<f64>,
    pub guardrails: Vec<cohort_rollout::GuardrailValue>,
    pub arms: Option<RolloutArms>,
    pub history: Vec<RolloutEvent>,
}

/// The two arms' tallies.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutArms {
    pub control: ArmView,
    pub treatment: ArmView,
}

/// One arm's tallies, as the API shows them.
#[derive(Debug, Clone, Serialize)]
pub struct ArmView {
    pub units: u64,
    pub requests: u64,
    pub failed_requests: u64,
    /// The mean of the units' error rates.
    pub error_rate: Option<f64>,
    pub step_units: u64,
    pub window_requests: u64,
    pub p99_ms: Option<f64>,
}
