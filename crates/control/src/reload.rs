//! Hot reload: three ways in (file change, SIGHUP, `POST /v1/reload`), one path.
//!
//! Every trigger goes through one task ([`Reloader::run`]), which serialises them:
//! read → parse → validate → compile → compare → swap. A file reload and a runtime weight
//! change take the same path: the file's table with the runtime weights over it is
//! planned (compiled, checked for restart-only keys and reshuffles, compared with the
//! table in force) and then installed through the proxy's [`Installer`]; one lock
//! serialises them and guards everything the control plane knows. A file change is noticed by watching
//! the file's *directory* (editors replace files by rename; kubelet swaps the `..data`
//! symlink of a ConfigMap volume), reacting only to events that name the file, `..data` or
//! `..data_tmp`, debounced by [`DEBOUNCE`]; a 30 s poll is the safety net. The file is
//! re-read through its symlinks and only a changed content hash is acted on.
//!
//! All or nothing: on any error the whole old table keeps serving, the error is logged,
//! counted (`cohort_config_reloads_total{result="error"}`) and shown by `GET /v1/config`.
//! A change that would reshuffle units ([`cohort_config::compare`]) without `allow_reshuffle` or a
//! new salt is refused like an invalid file (`result="refused"`), and so is one that only a
//! restart can apply (listener addresses, limits, tokens). While the file on disk is not
//! the table in force, `cohort_config_pending{reason}` is 1: a replica that starts now would
//! load the file as it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::overrides::{permanent_change, ExperimentOverride, Overrides};
use crate::webhooks::Notice;
use cohort_config::compare::{compare, pct, unacknowledged_removals, Comparison, Removed};
use cohort_config::{self as config, ConfigError, FileConfig, Problem, Routes};
use cohort_proxy::{Installer, Proxy, Serving};
use cohort_rollout::record::GuardrailRecord;
use cohort_rollout::{Kind, RolloutEvent, RolloutState, Status};

/// How long file events are gathered before one reload.
pub const DEBOUNCE: Duration = Duration::from_millis(150);
/// The safety-net poll.
pub const POLL: Duration = Duration::from_secs(30);

/// What asked for a reload.
#[derive(Debug)]
pub enum Trigger {
    File,
    Poll,
    Signal,
    /// `POST /v1/reload`: the outcome is sent back.
    Admin(oneshot::Sender<Outcome>),
}

/// What a reload did.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// The file's content is the one in force (or the one last refused).
    Unchanged { version: String },
    /// The new table serves every request from now on.
    Applied {
        version: String,
        /// "iris-model: rf → lr 10.000%", one per move.
        moves: Vec<String>,
    },
    /// The file is invalid; the old table keeps serving.
    Error { errors: Vec<Problem> },
    /// The file is valid but was not applied.
    Refused {
        reason: Refusal,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        comparison: Option<Comparison>,
    },
}

/// Why a file or a change is not in force.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The file does not validate.
    Invalid,
    /// It would move units between variants unacknowledged.
    Reshuffle,
    /// It changes keys only a restart applies.
    RestartRequired,
    /// It removes routes or experiments that serve traffic, or every route, unacknowledged.
    Removal,
}

impl Refusal {
    /// As written in the API and the `reason` label of `cohort_config_pending`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Invalid => "invalid",
            Refusal::Reshuffle => "reshuffle",
            Refusal::RestartRequired => "restart_required",
            Refusal::Removal => "removal",
        }
    }
}

/// A change of runtime weights.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightChange {
    /// Set these variants' weights (the others keep theirs).
    Weights(BTreeMap<String, f64>),
    /// All traffic to one variant.
    Promote(String),
    /// Back to the file's weights.
    Reset,
}

/// What a runtime change did.
#[derive(Debug, Clone, Serialize)]
pub struct WeightOutcome {
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The runtime weights now in force for the experiment (none after a reset).
    pub runtime_weights: Option<BTreeMap<String, f64>>,
    /// The routes.yaml edit that would make this permanent.
    pub permanent_change: Vec<String>,
}

/// Why a runtime change was not applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightError {
    #[error("{0}")]
    UnknownExperiment(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Persist(String),
    /// A rollout owns the experiment's weights.
    #[error("{0}")]
    Conflict(String),
}

/// What is asked of a rollout.
#[derive(Debug, Clone, PartialEq)]
pub enum RolloutAction {
    /// Decided by an evaluation of `on` (rollout id, attempt, step, status); dropped when
    /// the rollout has moved on meanwhile.
    Decided {
        on: (String, u32, usize, Status),
        kind: Kind,
        reason: String,
        guardrails: BTreeMap<String, GuardrailRecord>,
    },
    /// Hold the current step (guardrails still roll back).
    Pause,
    /// Go on from a pause; after a rollback, start again at the first step.
    Resume,
    /// Roll back now.
    Abort,
}

/// Why a rollout action was not taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RolloutError {
    #[error("{0}")]
    UnknownExperiment(String),
    /// Not possible in the rollout's state.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Persist(String),
    #[error("{0}")]
    Invalid(String),
}

/// What a rollout action did.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutOutcome {
    pub state: RolloutState,
    /// The action recorded (None: nothing to do).
    pub event: Option<RolloutEvent>,
}

/// The file on disk differs from the table in force because it was not applied.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Pending {
    pub reason: Refusal,
    pub message: String,
    pub file_hash: String,
    pub since: String,
}

/// What `GET /v1/config` shows.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigStatus {
    pub file: String,
    /// Hash of the effective table in force.
    pub version: String,
    pub loaded_at: String,
    /// Hash of the file bytes the table in force came from.
    pub source_hash: String,
    pub last_result: Option<Outcome>,
    pub last_attempt_at: Option<String>,
    pub last_error: Option<Vec<Problem>>,
    pub pending: Option<Pending>,
}

/// Serialises every reload of one config file, and every runtime weight change.
pub struct Reloader {
    path: PathBuf,
    tables: Installer,
    /// Held for the whole of a reload or a runtime change (one at a time), and by readers
    /// of the status: the one lock of the control plane.
    state: Mutex<State>,
    state_path: PathBuf,
    /// Where `config-versions.jsonl` is appended on every swap, and rollouts.jsonl on
    /// every rollout action (None: not recorded).
    versions_dir: Option<PathBuf>,
    /// Told of every rollout action once it is recorded (metrics, webhooks).
    rollout_listener: std::sync::OnceLock<RolloutListener>,
}

/// What is told of each recorded rollout action.
pub type RolloutListener = Box<dyn Fn(&Notice<'_>) + Send + Sync>;

/// What the control plane knows besides the table in force.
struct State {
    status: ConfigStatus,
    /// The file's own table behind the one in force (before runtime weights).
    file: Routes,
    /// Runtime weights in force, persisted in `state_path`.
    overrides: Overrides,
    /// Hash of the last file content acted on (applied, refused or rejected), so that the
    /// poll and repeated file events do not redo (and recount) the same work.
    last_seen: String,
}

/// A table that may go into force, and what it does to units.
struct Plan {
    routes: Routes,
    comparison: Comparison,
    /// Rollouts it starts (recorded when it is installed).
    starts: Vec<RolloutEvent>,
}

/// Why a planned table may not go into force.
enum Blocked {
    Invalid(ConfigError),
    /// The keys only a restart can change.
    RestartRequired(Vec<String>),
    /// The experiments whose units would move unacknowledged.
    Reshuffle(Vec<String>, Comparison),
    /// What it would remove unacknowledged ("route iris", "experiment iris-model").
    Removal(Vec<String>),
}

impl Blocked {
    /// Why a change made at runtime (weights, a rollout's step) cannot go into force.
    fn runtime_reason(self) -> String {
        match self {
            Blocked::Invalid(e) => e.to_string(),
            Blocked::Reshuffle(names, _) => {
                format!("the change would reshuffle units in {}", names.join(", "))
            }
            Blocked::Removal(what) => {
                format!(
                    "{} would be removed; reload the file first",
                    what.join(", ")
                )
            }
            Blocked::RestartRequired(keys) => format!(
                "{} differ from the table in force; reload the file first",
                keys.join(", ")
            ),
        }
    }
}

impl Reloader {
    /// A reloader for `path`, whose current content `proxy` is serving, with no runtime
    /// weights (state is not persisted).
    pub fn new(path: PathBuf, proxy: &Proxy) -> Self {
        let file = proxy.routes().routes.clone();
        let state_path = file.file.admin.state_file.clone();
        Self::with_overrides(path, proxy, file, Overrides::default(), state_path)
    }

    /// A reloader whose `proxy` serves the table of `file` with `overrides` (runtime
    /// weights) laid over it.
    pub fn with_overrides(
        path: PathBuf,
        proxy: &Proxy,
        file: Routes,
        overrides: Overrides,
        state_path: PathBuf,
    ) -> Self {
        let tables = proxy.installer();
        let serving = tables.routes();
        let r = &serving.routes;
        let status = ConfigStatus {
            file: path.display().to_string(),
            version: r.version.clone(),
            loaded_at: cohort_events::clock::now(),
            source_hash: r.source.hash.clone(),
            last_result: None,
            last_attempt_at: None,
            last_error: None,
            pending: None,
        };
        let last_seen = r.source.hash.clone();
        tables
            .metrics()
            .config_last_reload_success
            .set(cohort_events::clock::unix_seconds(SystemTime::now()));
        Self {
            path,
            tables,
            state: Mutex::new(State {
                status,
                file,
                overrides,
                last_seen,
            }),
            state_path,
            versions_dir: None,
            rollout_listener: std::sync::OnceLock::new(),
        }
    }

    /// Appends every table that takes effect to `dir/config-versions.jsonl`.
    pub fn recording_versions_in(mut self, dir: PathBuf) -> Self {
        self.versions_dir = Some(dir);
        self
    }

    fn record_version(&self) {
        if let Some(dir) = &self.versions_dir {
            if let Err(e) =
                cohort_events::writer::record_config_version(dir, &self.tables.routes().routes)
            {
                error!(error = %e, "cannot append to config-versions.jsonl");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The file's own config behind the table in force, and the runtime weights over it.
    pub fn layers(&self) -> (FileConfig, Overrides) {
        let st = self.lock();
        (st.file.file.clone(), st.overrides.clone())
    }

    /// The current status (for `GET /v1/config`).
    pub fn status(&self) -> ConfigStatus {
        self.lock().status.clone()
    }

    /// Handles triggers one at a time until every sender is gone. Each reload runs on the
    /// blocking pool: reading, parsing and compiling a file is milliseconds of CPU that
    /// must not stall the requests of the runtime it was triggered on (with one worker,
    /// every request; bench/run.sh measures reloads under load).
    pub async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<Trigger>) {
        while let Some(trigger) = rx.recv().await {
            match trigger {
                Trigger::File => {
                    // Gather the burst of events one save makes (rename, write, chmod…).
                    let until = tokio::time::Instant::now() + DEBOUNCE;
                    let mut deferred = Vec::new();
                    loop {
                        match tokio::time::timeout_at(until, rx.recv()).await {
                            Ok(Some(Trigger::File)) => {}
                            Ok(Some(other)) => deferred.push(other),
                            Ok(None) | Err(_) => break,
                        }
                    }
                    self.off_thread(Trigger::File).await;
                    for t in deferred {
                        self.off_thread(t).await;
                    }
                }
                other => self.off_thread(other).await,
            }
        }
    }

    /// [`Reloader::handle`] on the blocking pool, awaited (triggers stay serialised).
    async fn off_thread(self: &Arc<Self>, trigger: Trigger) {
        let me = self.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || me.handle(trigger)).await {
            error!(error = %e, "the reload task failed");
        }
    }

    fn handle(&self, trigger: Trigger) {
        match trigger {
            Trigger::File | Trigger::Poll => {
                self.reload(false);
            }
            Trigger::Signal => {
                info!("SIGHUP: reloading {}", self.path.display());
                self.reload(true);
            }
            Trigger::Admin(reply) => {
                let outcome = self.reload(true);
                let _ = reply.send(outcome);
            }
        }
    }

    /// The one path by which a table is checked before it may go into force: the file's
    /// table with `overrides` laid over it, compared with the table in force. Changes
    /// nothing.
    fn plan(&self, file: &Routes, overrides: &Overrides) -> Result<Plan, Blocked> {
        let layered = crate::rollout::layered(file, overrides).map_err(Blocked::Invalid)?;
        for i in &layered.ignored {
            warn!("ignoring {i}");
        }
        let routes = layered.routes;
        let serving = self.tables.routes();
        let active = &serving.routes;
        let changed = active.process.changed(&routes.process);
        if !changed.is_empty() {
            return Err(Blocked::RestartRequired(changed));
        }
        let removed = removals(&serving, &routes);
        if !removed.is_empty() {
            return Err(Blocked::Removal(removed));
        }
        let comparison = compare(active, &routes);
        let refused: Vec<String> = comparison
            .unacknowledged()
            .into_iter()
            .map(str::to_owned)
            .collect();
        if !refused.is_empty() {
            return Err(Blocked::Reshuffle(refused, comparison));
        }
        Ok(Plan {
            routes,
            comparison,
            starts: layered.starts,
        })
    }

    /// Records rollout actions where a restart finds them: in the state file (with the
    /// rest of `overrides`, which then become the state in force) and in rollouts.jsonl.
    /// Nothing is in force yet when this fails.
    fn record_rollouts(
        &self,
        st: &mut State,
        routes: &Routes,
        mut overrides: Overrides,
        events: &[RolloutEvent],
    ) -> Result<(), String> {
        let from: Vec<Option<(usize, f64)>> = events
            .iter()
            .map(|e| {
                let r = routes.experiment(&e.experiment)?.rollout.as_ref()?;
                crate::rollout::state_of(routes, &e.experiment, &overrides.rollouts)
                    .map(|s| (s.step, s.share(&r.config.steps)))
            })
            .collect();
        overrides.merge_rollouts(events.iter().cloned());
        overrides.save(&self.state_path).map_err(|e| {
            format!(
                "cannot write {}: {e}; the rollout did not change",
                self.state_path.display()
            )
        })?;
        st.overrides = overrides;
        if let Some(dir) = &self.versions_dir {
            for e in events {
                if let Err(err) = cohort_rollout::record::append(dir, e) {
                    error!(error = %err, "cannot append to rollouts.jsonl (the state file has the action)");
                }
            }
        }
        for e in events {
            info!(
                target: "cohort::rollout",
                experiment = %e.experiment,
                rollout = %e.rollout_id,
                attempt = e.attempt,
                step = e.step + 1,
                kind = e.kind.label(),
                share = e.share,
                by = %e.by,
                reason = %e.reason,
                "rollout {}",
                e.kind.label()
            );
        }
        if let Some(listener) = self.rollout_listener.get() {
            for (e, from) in events.iter().zip(from) {
                let webhooks = routes
                    .experiment(&e.experiment)
                    .and_then(|x| x.rollout.as_ref())
                    .map_or(&[][..], |r| &r.config.webhooks[..]);
                listener(&Notice {
                    event: e,
                    from,
                    webhooks,
                    admin: routes.file.admin.listen,
                });
            }
        }
        Ok(())
    }

    /// Calls `listener` with every rollout action once it is recorded, under the control
    /// plane's lock: it must not wait, nor call back into the reloader. Set once.
    pub fn on_rollout_action(&self, listener: RolloutListener) {
        if self.rollout_listener.set(listener).is_err() {
            warn!("a rollout listener was already set; the second is ignored");
        }
    }

    /// Puts a planned table in force: the version and the moves it made. The rollouts it
    /// starts are recorded first.
    fn install(&self, st: &mut State, plan: Plan) -> Result<(String, Vec<String>), ConfigError> {
        if !plan.starts.is_empty() {
            let overrides = st.overrides.clone();
            self.record_rollouts(st, &plan.routes, overrides, &plan.starts)
                .map_err(|reason| {
                    ConfigError::single(Problem {
                        file: self.path.display().to_string(),
                        position: None,
                        path: String::new(),
                        reason,
                    })
                })?;
        }
        let version = plan.routes.version.clone();
        let moves = describe_moves(&plan.comparison, &plan.routes);
        self.tables.install(plan.routes)?;
        for m in &moves {
            info!("{m}");
        }
        for (name, change) in &plan.comparison.experiments {
            if change.reshuffle && change.acknowledged {
                warn!(experiment = %name, reasons = ?change.reasons, "accepted a reshuffle (allow_reshuffle or a new salt): a new phase");
            }
        }
        self.record_version();
        Ok((version, moves))
    }

    /// One pass of read → parse → validate → compile → compare → swap. `explicit` (SIGHUP,
    /// admin) re-evaluates a file even if its content was already acted on.
    pub fn reload(&self, explicit: bool) -> Outcome {
        let mut st = self.lock();
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) => {
                let problem = Problem {
                    file: self.path.display().to_string(),
                    position: None,
                    path: String::new(),
                    reason: format!("cannot read the config file: {e}"),
                };
                let outcome = Outcome::Error {
                    errors: vec![problem],
                };
                return self.finish(&mut st, outcome, None);
            }
        };
        let hash = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()));
        let serving = self.tables.routes();
        let active = &serving.routes;
        if hash == active.source.hash {
            debug!(file = %self.path.display(), "config unchanged");
            if st.status.pending.take().is_some() {
                info!("the config file is back to the version in force; nothing pending");
                self.tables.metrics().config_pending.reset();
            }
            st.last_seen = hash;
            return Outcome::Unchanged {
                version: active.version.clone(),
            };
        }
        if !explicit && st.last_seen == hash {
            debug!(file = %self.path.display(), "config content already handled");
            return Outcome::Unchanged {
                version: active.version.clone(),
            };
        }
        st.last_seen = hash.clone();
        let from_file = match config::parse(&self.path.display().to_string(), &text) {
            Ok(r) => r,
            Err(e) => {
                let outcome = Outcome::Error { errors: e.problems };
                return self.finish(&mut st, outcome, Some(hash));
            }
        };
        // Runtime weights stay in force over a reloaded file until they are reset.
        let outcome = match self.plan(&from_file, &st.overrides) {
            Ok(plan) => match self.install(&mut st, plan) {
                Ok((version, moves)) => {
                    st.file = from_file;
                    Outcome::Applied { version, moves }
                }
                Err(e) => Outcome::Error { errors: e.problems },
            },
            Err(blocked) => refused_reload(blocked),
        };
        self.finish(&mut st, outcome, Some(hash))
    }

    /// Applies a runtime weight change to `experiment`: the same plan and install as a
    /// file reload, persisted to `admin.state_file` before it goes into force, and logged
    /// for audit.
    pub fn change_weights(
        &self,
        experiment: &str,
        change: WeightChange,
        caller: &str,
    ) -> Result<WeightOutcome, WeightError> {
        let mut st = self.lock();
        let file = &st.file.file;
        let Some(exp) = file.experiments.iter().find(|e| e.name == experiment) else {
            return Err(WeightError::UnknownExperiment(format!(
                "no experiment named {experiment:?} (experiments: {})",
                file.experiments
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if exp.rollout.is_some() {
            let state = crate::rollout::state_of(&st.file, experiment, &st.overrides.rollouts);
            return Err(WeightError::Conflict(format!(
                "experiment {experiment} is under rollout {} ({}): its rollout sets the weights; use /v1/experiments/{experiment}/rollout/pause, /abort or /resume, or remove the rollout block from the file",
                st.file
                    .experiment(experiment)
                    .and_then(|e| e.rollout.as_ref())
                    .map_or("?", |r| r.id.as_str()),
                state.map_or("not started", |s| s.status.label())
            )));
        }
        let known: Vec<&str> = exp.variants.iter().map(|v| v.name.as_str()).collect();
        let weights = new_weights(experiment, &known, &change)?;
        let mut overrides = st.overrides.clone();
        match &weights {
            Some(w) => {
                overrides.experiments.insert(
                    experiment.to_owned(),
                    ExperimentOverride {
                        weights: w.clone(),
                        set_by: caller.to_owned(),
                        set_at: cohort_events::clock::now(),
                    },
                );
            }
            None => {
                overrides.experiments.remove(experiment);
            }
        }
        let plan = match self.plan(&st.file, &overrides) {
            Ok(plan) => plan,
            Err(Blocked::Reshuffle(names, comparison)) => {
                let name = &names[0];
                let change = &comparison.experiments[name.as_str()];
                return Ok(WeightOutcome {
                    outcome: Outcome::Refused {
                        reason: Refusal::Reshuffle,
                        message: format!(
                            "refused: this change reshuffles units in {name} ({}); set `allow_reshuffle: true` in the file to accept it",
                            change.reasons.join("; ")
                        ),
                        comparison: Some(comparison.clone()),
                    },
                    runtime_weights: None,
                    permanent_change: Vec::new(),
                });
            }
            Err(other) => return Err(WeightError::Invalid(other.runtime_reason())),
        };
        overrides.save(&self.state_path).map_err(|e| {
            WeightError::Persist(format!(
                "cannot write {}: {e}; nothing changed",
                self.state_path.display()
            ))
        })?;
        st.overrides = overrides;
        let (version, moves) = self
            .install(&mut st, plan)
            .map_err(|e| WeightError::Invalid(e.to_string()))?;
        info!(target: "cohort::audit", caller = %caller, experiment = %experiment, change = ?change, version = %version, "runtime weights changed");
        let permanent_change = match &weights {
            Some(w) => permanent_change(&st.file.file, experiment, w),
            None => Vec::new(),
        };
        st.status.version = version.clone();
        st.status.loaded_at = cohort_events::clock::now();
        Ok(WeightOutcome {
            outcome: Outcome::Applied { version, moves },
            runtime_weights: weights,
            permanent_change,
        })
    }

    /// The file's table in force and the recorded rollout actions.
    pub fn rollouts(&self) -> (Routes, BTreeMap<String, Vec<RolloutEvent>>) {
        let st = self.lock();
        (st.file.clone(), st.overrides.rollouts.clone())
    }

    /// Installs `plan` unless it routes as the table in force does (a pause, an action
    /// another replica's fold already gave), and says so in the status.
    fn install_if_changed(&self, st: &mut State, plan: Plan) -> Result<(), ConfigError> {
        if plan.routes.version == self.tables.routes().routes.version {
            return Ok(());
        }
        let (version, _) = self.install(st, plan)?;
        st.status.version = version;
        st.status.loaded_at = cohort_events::clock::now();
        Ok(())
    }

    /// Adds actions other replicas recorded (read from the fleet's store) to `experiment`'s
    /// records: kept in the state file (not in rollouts.jsonl, which holds this replica's
    /// own), and the weights their fold gives put in force. Ok(false): nothing new.
    pub fn merge_rollouts(
        &self,
        experiment: &str,
        events: Vec<RolloutEvent>,
    ) -> Result<bool, RolloutError> {
        let mut st = self.lock();
        let mut overrides = st.overrides.clone();
        let held = overrides.rollouts.get(experiment).map_or(0, Vec::len);
        overrides.merge_rollouts(events.into_iter().filter(|e| e.experiment == experiment));
        if overrides.rollouts.get(experiment).map_or(0, Vec::len) == held {
            return Ok(false);
        }
        let before = crate::rollout::state_of(&st.file, experiment, &st.overrides.rollouts);
        let plan = self
            .plan(&st.file, &overrides)
            .map_err(|b| RolloutError::Invalid(b.runtime_reason()))?;
        overrides.save(&self.state_path).map_err(|e| {
            RolloutError::Persist(format!(
                "cannot write {}: {e}; the fleet's rollout actions are not taken",
                self.state_path.display()
            ))
        })?;
        st.overrides = overrides;
        let after = crate::rollout::state_of(&st.file, experiment, &st.overrides.rollouts);
        self.install_if_changed(&mut st, plan)
            .map_err(|e| RolloutError::Invalid(e.to_string()))?;
        if let (Some(b), Some(a)) = (&before, &after) {
            if (b.attempt, b.step, b.status) != (a.attempt, a.step, a.status) {
                info!(
                    target: "cohort::rollout",
                    experiment = %experiment,
                    rollout = %a.rollout_id,
                    step = a.step + 1,
                    state = a.status.label(),
                    reason = %a.reason,
                    "rollout state taken from the fleet"
                );
            }
        }
        Ok(true)
    }

    /// Takes `action` on `experiment`'s rollout: recorded, then its weights in force.
    pub fn rollout_action(
        &self,
        experiment: &str,
        action: RolloutAction,
        caller: &str,
    ) -> Result<RolloutOutcome, RolloutError> {
        let mut st = self.lock();
        let Some(exp) = st.file.experiment(experiment) else {
            return Err(RolloutError::UnknownExperiment(format!(
                "no experiment named {experiment:?}"
            )));
        };
        let Some(rollout) = exp.rollout.clone() else {
            return Err(RolloutError::UnknownExperiment(format!(
                "experiment {experiment} has no rollout block"
            )));
        };
        let Some(state) = crate::rollout::state_of(&st.file, experiment, &st.overrides.rollouts)
        else {
            return Err(RolloutError::Invalid(format!(
                "the rollout of {experiment} has not started: reload the file"
            )));
        };
        let steps = &rollout.config.steps;
        let last = steps.len() - 1;
        let conflict = |what: &str| {
            Err(RolloutError::Conflict(format!(
                "the rollout of {experiment} is {}: it cannot {what}",
                state.status.label()
            )))
        };
        let (kind, attempt, step, reason, guardrails) = match action {
            RolloutAction::Decided {
                on,
                kind,
                reason,
                guardrails,
            } => {
                if on
                    != (
                        state.rollout_id.clone(),
                        state.attempt,
                        state.step,
                        state.status,
                    )
                {
                    return Ok(RolloutOutcome { state, event: None });
                }
                let step = match kind {
                    Kind::Advance => (state.step + 1).min(last),
                    _ => state.step,
                };
                (kind, state.attempt, step, reason, guardrails)
            }
            RolloutAction::Pause => match state.status {
                Status::Running => (
                    Kind::Pause,
                    state.attempt,
                    state.step,
                    format!("paused by {caller}"),
                    BTreeMap::new(),
                ),
                Status::Paused => return Ok(RolloutOutcome { state, event: None }),
                _ => return conflict("be paused"),
            },
            RolloutAction::Resume => match state.status {
                Status::Paused => (
                    Kind::Resume,
                    state.attempt,
                    state.step,
                    format!("resumed by {caller}"),
                    BTreeMap::new(),
                ),
                Status::RolledBack => (
                    Kind::Start,
                    state.attempt + 1,
                    0,
                    format!("resumed by {caller} after a rollback: from the first step again"),
                    BTreeMap::new(),
                ),
                Status::Running => return Ok(RolloutOutcome { state, event: None }),
                _ => return conflict("be resumed"),
            },
            RolloutAction::Abort => match state.status {
                Status::Running | Status::Paused | Status::Done => (
                    Kind::Rollback,
                    state.attempt,
                    state.step,
                    format!("aborted by {caller}"),
                    BTreeMap::new(),
                ),
                Status::RolledBack => return Ok(RolloutOutcome { state, event: None }),
                Status::Promoted => return conflict("be aborted once promoted"),
            },
        };
        let share = match kind {
            Kind::Rollback => 0.0,
            Kind::Promote => 1.0,
            _ => steps[step],
        };
        let mut event = crate::rollout::event(
            experiment,
            &rollout.id,
            attempt,
            step,
            kind,
            share,
            reason,
            caller,
        );
        event.guardrails = guardrails;
        let mut overrides = st.overrides.clone();
        overrides.merge_rollouts([event.clone()]);
        let plan = match self.plan(&st.file, &overrides) {
            Ok(plan) => plan,
            Err(blocked) => return Err(RolloutError::Invalid(blocked.runtime_reason())),
        };
        let before = st.overrides.clone();
        let file = st.file.clone();
        self.record_rollouts(&mut st, &file, before, std::slice::from_ref(&event))
            .map_err(RolloutError::Persist)?;
        self.install_if_changed(&mut st, plan)
            .map_err(|e| RolloutError::Invalid(e.to_string()))?;
        let state =
            crate::rollout::state_of(&st.file, experiment, &st.overrides.rollouts).unwrap_or(state);
        Ok(RolloutOutcome {
            state,
            event: Some(event),
        })
    }

    /// Records an outcome: status, metrics, logs.
    fn finish(&self, st: &mut State, outcome: Outcome, file_hash: Option<String>) -> Outcome {
        let m = self.tables.metrics();
        let st = &mut st.status;
        let now = cohort_events::clock::now();
        st.last_attempt_at = Some(now.clone());
        st.last_result = Some(outcome.clone());
        let pending = |reason: Refusal, message: String| Pending {
            reason,
            message,
            file_hash: file_hash.clone().unwrap_or_default(),
            since: now.clone(),
        };
        match &outcome {
            Outcome::Applied { version, .. } => {
                m.config_reloads.with_label_values(&["success"]).inc();
                m.config_last_reload_success
                    .set(cohort_events::clock::unix_seconds(SystemTime::now()));
                let serving = self.tables.routes();
                st.version = version.clone();
                st.source_hash = serving.routes.source.hash.clone();
                st.loaded_at = now.clone();
                st.last_error = None;
                st.pending = None;
                info!(version = %version, "config reloaded");
            }
            Outcome::Error { errors } => {
                m.config_reloads.with_label_values(&["error"]).inc();
                for p in errors {
                    error!("config not reloaded, the old one keeps serving: {p}");
                }
                st.last_error = Some(errors.clone());
                st.pending = Some(pending(
                    Refusal::Invalid,
                    errors
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join("\n"),
                ));
            }
            Outcome::Refused {
                reason, message, ..
            } => {
                m.config_reloads.with_label_values(&["refused"]).inc();
                error!("config not reloaded, the old one keeps serving: {message}");
                st.pending = Some(pending(*reason, message.clone()));
            }
            Outcome::Unchanged { .. } => {}
        }
        m.config_pending.reset();
        if let Some(p) = &st.pending {
            m.config_pending
                .with_label_values(&[p.reason.label()])
                .set(1);
        }
        outcome
    }
}

/// Of what `new` drops unacknowledged, what a running replica refuses to drop: routes and
/// experiments that answered requests since the table in force went into force, and, when
/// `new` has no route at all (an emptied or truncated file), every route.
fn removals(serving: &Serving, new: &Routes) -> Vec<String> {
    let active = &serving.routes;
    let served_experiment = |e: usize| {
        active
            .routes
            .iter()
            .enumerate()
            .any(|(i, r)| r.experiment == e && serving.served_since_install(i))
    };
    unacknowledged_removals(active, new)
        .into_iter()
        .filter(|removed| match removed {
            Removed::Route(i, _) => new.routes.is_empty() || serving.served_since_install(*i),
            Removed::Experiment(e, _) => served_experiment(*e),
        })
        .map(|removed| removed.to_string())
        .collect()
}

/// What a reload that may not go into force answers.
fn refused_reload(blocked: Blocked) -> Outcome {
    match blocked {
        Blocked::Removal(what) => Outcome::Refused {
            reason: Refusal::Removal,
            message: format!(
                "refused: the change removes {}, which served requests since the last reload (or leaves no route at all); name them in `allow_remove` to accept it",
                what.join(", ")
            ),
            comparison: None,
        },
        Blocked::Invalid(e) => Outcome::Error { errors: e.problems },
        Blocked::RestartRequired(changed) => Outcome::Refused {
            reason: Refusal::RestartRequired,
            message: format!(
                "refused: {} cannot change while serving; restart cohort to apply this file",
                changed.join(", ")
            ),
            comparison: None,
        },
        Blocked::Reshuffle(refused, comparison) => {
            let mut message = format!(
                "refused: the change reshuffles units in {} (set `allow_reshuffle: true` or a new salt to accept it)",
                refused.join(", ")
            );
            for name in &refused {
                let change = &comparison.experiments[name.as_str()];
                for r in &change.reasons {
                    message.push_str(&format!("\n  {name}: {r}"));
                }
                for m in &change.moves {
                    message.push_str(&format!(
                        "\n  {name}: {} → {} {}",
                        m.from,
                        m.to,
                        pct(m.share)
                    ));
                }
            }
            Outcome::Refused {
                reason: Refusal::Reshuffle,
                message,
                comparison: Some(comparison),
            }
        }
    }
}

/// The weights a change sets (None: back to the file's), validated against the
/// experiment's variants.
fn new_weights(
    experiment: &str,
    known: &[&str],
    change: &WeightChange,
) -> Result<Option<BTreeMap<String, f64>>, WeightError> {
    match change {
        WeightChange::Weights(w) => {
            if w.is_empty() {
                return Err(WeightError::Invalid(
                    "give at least one weight, e.g. {\"rf\": 90, \"lr\": 10}".into(),
                ));
            }
            for (name, weight) in w {
                if !known.contains(&name.as_str()) {
                    return Err(WeightError::Invalid(format!(
                        "{name:?} is not a variant of {experiment} (variants: {})",
                        known.join(", ")
                    )));
                }
                if !weight.is_finite() || *weight < 0.0 {
                    return Err(WeightError::Invalid(format!(
                        "the weight of {name} must be a number ≥ 0 (got {weight})"
                    )));
                }
            }
            Ok(Some(w.clone()))
        }
        WeightChange::Promote(variant) => {
            if !known.contains(&variant.as_str()) {
                return Err(WeightError::Invalid(format!(
                    "{variant:?} is not a variant of {experiment} (variants: {})",
                    known.join(", ")
                )));
            }
            Ok(Some(
                known
                    .iter()
                    .map(|n| ((*n).to_owned(), if n == variant { 100.0 } else { 0.0 }))
                    .collect(),
            ))
        }
        WeightChange::Reset => Ok(None),
    }
}

/// One line per move, e.g. "iris-model: rf → lr 10.000%".
fn describe_moves(c: &Comparison, new: &Routes) -> Vec<String> {
    let mut out = Vec::new();
    for (name, change) in &c.experiments {
        for m in &change.moves {
            out.push(format!("{name}: {} → {} {}", m.from, m.to, pct(m.share)));
        }
        if new.experiment(name).is_some()
            && change.moves.is_empty()
            && change.status == cohort_config::compare::ChangeKind::Added
        {
            out.push(format!("{name}: new experiment"));
        }
    }
    out
}

/// Watches `path`'s directory and sends [`Trigger::File`] for events that concern it.
/// Keep the returned watcher alive for as long as events are wanted.
pub fn watch(path: &Path, tx: mpsc::Sender<Trigger>) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        let concerns_us = event.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|n| n == name.as_os_str() || n == "..data" || n == "..data_tmp")
        });
        if concerns_us {
            // Full channel: a reload is already queued, which is what this event wants.
            let _ = tx.try_send(Trigger::File);
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}
