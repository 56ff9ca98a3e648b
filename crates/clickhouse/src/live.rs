//! The fleet's live report, for a replica's admin endpoints and gauges: the same per-unit
//! report as `cohort report --clickhouse` ([`crate::fleet`]), over every replica's
//! shipped events, kept for a while so that page views and the gauge refresh share one
//! computation.
//!
//! * A report younger than the cache's age is served as it is; an older one is computed
//!   again. Requests for the same experiment that arrive meanwhile wait for that one
//!   computation instead of each starting their own.
//! * The cache is keyed by the experiment's config (salt, window, variants): a reload that
//!   changes what the report means computes a fresh one.
//! * A failed computation is an error for that request; the last good report stays in the
//!   cache for the gauges to keep (their age says how old it is).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cohort_analysis::{analyze_with, ExperimentTally, Report, RolloutLog, Setup};
use cohort_config::Experiment;
use prometheus::{GaugeVec, IntCounterVec, Opts};

use crate::client::Error;
use crate::fleet::Fleet;
use crate::query::Scope;

/// A report and when it was computed.
#[derive(Clone)]
pub struct Computed {
    pub report: Arc<Report>,
    pub at: Instant,
}

/// One experiment's cache slot: the last good report, for the config it was made for.
#[derive(Default)]
struct Slot {
    last: Option<(String, Computed)>,
}

/// The fleet's reports, cached per experiment.
pub struct FleetLive {
    fleet: Fleet,
    max_age: Duration,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl FleetLive {
    /// Reports from `fleet`, each served for up to `max_age` before it is computed again.
    pub fn new(fleet: Fleet, max_age: Duration) -> FleetLive {
        FleetLive {
            fleet,
            max_age,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The fleet's events, for other reads than reports.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// The report of `exp`: the cached one if it is younger than `max_age` (and for this
    /// config), else a new one.
    pub async fn report(&self, exp: &Experiment) -> Result<Computed, Error> {
        self.report_within(exp, self.max_age).await
    }

    /// The report of `exp`, computed anew unless the cached one is younger than `age`.
    pub async fn report_within(&self, exp: &Experiment, age: Duration) -> Result<Computed, Error> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(exp.name.clone()).or_default().clone()
        };
        // Held across the computation: a second caller waits for this one's answer.
        let mut slot = slot.lock().await;
        let key = config_key(exp);
        if let Some((k, c)) = &slot.last {
            if *k == key && c.at.elapsed() < age {
                return Ok(c.clone());
            }
        }
        let report = self.compute(exp).await?;
        let c = Computed {
            report: Arc::new(report),
            at: Instant::now(),
        };
        slot.last = Some((key, c.clone()));
        Ok(c)
    }

    /// The last good report of `exp`, whatever its age (None: none yet).
    pub async fn last(&self, exp: &Experiment) -> Option<Computed> {
        let slot = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.get(&exp.name)?.clone()
        };
        let slot = slot.lock().await;
        slot.last
            .as_ref()
            .filter(|(k, _)| *k == config_key(exp))
            .map(|(_, c)| c.clone())
    }

    /// Per variant of `exp`: counted units and converted units, from a query that sums
    /// where the data is (cheap enough to run often; see [`Fleet::variant_counts`]).
    /// Before the tables exist: none.
    pub async fn counts(&self, exp: &Experiment) -> Result<Vec<(String, u64, u64)>, Error> {
        match self
            .fleet
            .variant_counts(
                &exp.name,
                Some(&exp.salt),
                exp.decision.attribution_window_s,
            )
            .await
        {
            Err(e) if no_tables_yet(&e) => Ok(Vec::new()),
            other => other,
        }
    }

    /// The decision on `exp`'s units first exposed at or after `since` (ns), computed
    /// now (not cached): what a rollout's promotion is judged on. None: no rollout record.
    pub async fn decision_since(
        &self,
        exp: &Experiment,
        since: i64,
    ) -> Result<Option<cohort_stats::decision::Decision>, Error> {
        let r = self.compute_judged(exp, Some(since)).await?;
        Ok(r.rollout.is_some().then_some(r.decision))
    }

    async fn compute(&self, exp: &Experiment) -> Result<Report, Error> {
        self.compute_judged(exp, None).await
    }

    /// The report of `exp`; with `since` and a rollout record, judged on the units first
    /// exposed since then.
    async fn compute_judged(&self, exp: &Experiment, since: Option<i64>) -> Result<Report, Error> {
        let mut notes = vec!["the whole fleet's events, as shipped to ClickHouse".to_owned()];
        let read = async {
            let versions = self.fleet.versions().await?;
            let tally = self
                .fleet
                .tally(
                    &exp.name,
                    &Scope::default(),
                    Some(&exp.salt),
                    exp.decision.attribution_window_s,
                )
                .await?;
            Ok::<_, Error>((versions, tally))
        };
        let (versions, tally) = match read.await {
            Ok(r) => r,
            Err(e) if no_tables_yet(&e) => {
                notes.push("ClickHouse has no cohort tables yet: nothing is shipped".to_owned());
                (Default::default(), None)
            }
            Err(e) => return Err(e),
        };
        let versions = Arc::new(versions);
        if tally.is_none() {
            notes.push(format!(
                "ClickHouse has no events of experiment {} yet",
                exp.name
            ));
        }
        let mut rollouts = RolloutLog::default();
        match self.fleet.rollout_events(&exp.name).await {
            Ok(events) => rollouts.extend(events),
            Err(e) if no_tables_yet(&e) => {}
            Err(e) => return Err(e),
        }
        let rollout =
            rollouts
                .rollout(&exp.name, Some(exp), &versions)
                .map(|r| cohort_analysis::Rollout {
                    judged_since: since,
                    ..r
                });
        let empty = ExperimentTally::default();
        let setup = Setup::of(exp, versions);
        Ok(analyze_with(
            tally.as_ref().unwrap_or(&empty),
            &setup,
            rollout,
            cohort_events::clock::now(),
            notes,
        ))
    }
}

/// ClickHouse's error codes for a table or database that does not exist.
const UNKNOWN_TABLE: u32 = 60;
const UNKNOWN_DATABASE: u32 = 81;

/// Whether `e` says the tables are not there: before the first replica has created them
/// nothing is shipped yet, which is no failure.
pub fn no_tables_yet(e: &Error) -> bool {
    matches!(
        e,
        Error::Server {
            code: Some(UNKNOWN_TABLE | UNKNOWN_DATABASE),
            ..
        }
    )
}

/// How long one query of a live report may take: a per-unit report of a large experiment
/// takes longer than an insert.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// `cohort_fleet_report_age_seconds{experiment}` (the age of the fleet report the gauges
/// were last set from; it grows while refreshes fail), `cohort_fleet_counts_age_seconds`
/// (likewise for the units and rate gauges' counts) and
/// `cohort_fleet_report_errors_total{experiment}`.
#[derive(Clone)]
pub struct LiveMetrics {
    pub age: GaugeVec,
    pub counts_age: GaugeVec,
    pub errors: IntCounterVec,
}

impl LiveMetrics {
    pub fn new() -> Self {
        LiveMetrics {
            age: GaugeVec::new(
                Opts::new(
                    "cohort_fleet_report_age_seconds",
                    "Age of the fleet-wide report (from ClickHouse) the experiment gauges were last set from.",
                ),
                &["experiment"],
            )
            .expect("valid metric"),
            counts_age: GaugeVec::new(
                Opts::new(
                    "cohort_fleet_counts_age_seconds",
                    "Age of the fleet-wide per-variant counts (from ClickHouse) behind cohort_experiment_units and _conversion_rate.",
                ),
                &["experiment"],
            )
            .expect("valid metric"),
            errors: IntCounterVec::new(
                Opts::new(
                    "cohort_fleet_report_errors_total",
                    "Fleet-wide reports that could not be computed (ClickHouse unreachable, slow or refusing).",
                ),
                &["experiment"],
            )
            .expect("valid metric"),
        }
    }

    /// Everything to register on /metrics.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.age.clone()),
            Box::new(self.counts_age.clone()),
            Box::new(self.errors.clone()),
        ]
    }
}

impl Default for LiveMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// What a report depends on besides the events: a change computes a new one.
fn config_key(exp: &Experiment) -> String {
    format!(
        "{}|{:?}|{:?}|{:?}",
        exp.salt,
        exp.decision,
        exp.control,
        exp.variants
            .iter()
            .map(|v| (&v.name, v.weight))
            .collect::<Vec<_>>()
    )
}
