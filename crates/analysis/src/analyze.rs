//! One experiment's analysis: what it needs besides its events ([`Setup`]), the counted
//! population, and the report.

use std::sync::Arc;

use cohort_config::schema::{DecisionConfig, UnitKind};

use crate::population::Population;
use crate::report::{self, Report};
use crate::rollout::Rollout;
use crate::tally::{self, ExperimentTally};
use crate::versions::ConfigVersions;

/// What the analysis knows of an experiment besides its events: from routes.yaml, or
/// from `cohort report`'s flags.
#[derive(Debug, Clone)]
pub struct Setup {
    pub experiment: String,
    pub unit: UnitKind,
    pub control: String,
    /// (name, weight) in configured order.
    pub variants: Vec<(String, f64)>,
    pub decision: DecisionConfig,
    /// The phase to analyse (the salt in force); None: the latest phase in the log.
    pub salt: Option<String>,
    pub versions: Arc<ConfigVersions>,
    /// The tally's version names (set by [`analyze`]).
    pub tally_versions: Vec<String>,
}

impl Setup {
    /// The setup of a configured experiment.
    pub fn of(e: &cohort_config::Experiment, versions: Arc<ConfigVersions>) -> Self {
        Setup {
            experiment: e.name.clone(),
            unit: e.unit,
            control: e.variants[e.control].name.clone(),
            variants: e
                .variants
                .iter()
                .map(|v| (v.name.clone(), v.weight))
                .collect(),
            decision: e.decision.clone(),
            salt: Some(e.salt.clone()),
            versions,
            tally_versions: Vec::new(),
        }
    }

    pub fn unit_name(&self) -> &'static str {
        match self.unit {
            UnitKind::User => "user",
            UnitKind::Request => "request",
        }
    }
}

/// What [`count`] takes from a tally: all [`report::build`] needs, so a caller holding
/// a lock on the tally (the live view) can release it before the statistics run.
pub struct Counted {
    pub setup: Setup,
    pub population: Population,
    pub notes: Vec<String>,
    /// The experiment's rollout; its `frozen_at` is kept only when the counted phase was
    /// cut there.
    pub rollout: Option<Rollout>,
}

/// Analyses one experiment's tally. `notes` are carried into the report (e.g. lines the
/// reader skipped).
pub fn analyze(
    tally: &ExperimentTally,
    setup: &Setup,
    computed_at: String,
    notes: Vec<String>,
) -> Report {
    analyze_with(tally, setup, None, computed_at, notes)
}

/// [`analyze`] with the experiment's rollout (from [`crate::RolloutLog::rollout`]): its
/// timeline in the report, its actions on the charts' markers, and the comparison frozen
/// at its rollback.
pub fn analyze_with(
    tally: &ExperimentTally,
    setup: &Setup,
    rollout: Option<Rollout>,
    computed_at: String,
    notes: Vec<String>,
) -> Report {
    report::build(count(tally, setup, rollout, notes), computed_at)
}

/// The phase a report covers: the configured salt's when it has exposures, else the one
/// with the latest exposure. `phases`: (salt, latest exposure ts) of each phase seen.
pub fn choose_phase<'a>(
    salt: Option<&str>,
    phases: impl Iterator<Item = (&'a str, i64)> + Clone,
) -> Option<String> {
    if let Some(s) = salt.filter(|s| phases.clone().any(|(n, _)| n == *s)) {
        return Some(s.to_owned());
    }
    phases
        .max_by_key(|&(name, last)| (last, name))
        .map(|(name, _)| name.to_owned())
}

/// Counts one experiment's tally: the phase, the population, the notes about what was
/// left out. A rolled-back `rollout` cuts the phase at its rollback, when the phase has
/// units from before it (a rollback of an earlier phase does not cut a later one).
pub fn count(
    tally: &ExperimentTally,
    setup: &Setup,
    rollout: Option<Rollout>,
    mut notes: Vec<String>,
) -> Counted {
    let mut setup = setup.clone();
    setup.tally_versions = tally.versions.clone();
    let chosen = choose_phase(
        setup.salt.as_deref(),
        tally.phases.iter().map(|(n, p)| (n.as_str(), p.last_ts)),
    );
    let chosen = chosen.as_ref();
    if let (Some(salt), Some(c)) = (&setup.salt, chosen) {
        if salt != c && !c.is_empty() {
            notes.push(format!(
                "no exposures yet in the configured phase (salt {salt:?}): showing the latest phase in the log ({c:?})"
            ));
        }
    }
    let empty = tally::PhaseTally::default();
    let phase = chosen.and_then(|c| tally.phases.get(c)).unwrap_or(&empty);
    let other_units: usize = tally
        .phases
        .iter()
        .filter(|(n, _)| Some(*n) != chosen)
        .map(|(_, p)| p.units.len())
        .sum::<usize>()
        + tally.other_phase_units as usize;
    if other_units > 0 {
        notes.push(format!(
            "{other_units} units of other phases (earlier salts) are not analysed; this report covers phase {}",
            chosen.map_or("(none)".to_owned(), |c| format!("{c:?}"))
        ));
    }
    let frozen_at = rollout
        .as_ref()
        .and_then(|r| r.frozen_at)
        .filter(|&f| phase.units.values().any(|u| u.first < f));
    if let Some(f) = frozen_at {
        notes.push(format!(
            "the rollout rolled back at {}: the comparison is frozen there (units returning to the control afterwards are not crossovers)",
            cohort_events::clock::from_nanos(f)
        ));
    }
    let since = rollout.as_ref().and_then(|r| r.judged_since);
    if let Some(s) = since {
        notes.push(format!(
            "judged on the units first exposed since {} (the rollout's last step)",
            cohort_events::clock::from_nanos(s)
        ));
    }
    let rollout = rollout.map(|r| Rollout { frozen_at, ..r });
    let names: Vec<String> = setup.variants.iter().map(|v| v.0.clone()).collect();
    let pop = Population::count(
        tally,
        phase,
        &names,
        setup.decision.attribution_window_s,
        setup.decision.maturity_s().0,
        (since, frozen_at),
    );
    if tally.excluded_exposures > 0 {
        notes.push(format!(
            "{} exposures forced by override or without a unit id are not counted",
            tally.excluded_exposures
        ));
    }
    let crossovers: u64 = pop.crossovers.iter().sum();
    if crossovers > 0 {
        notes.push(format!(
            "{crossovers} units were exposed to more than one variant (a ramp, or a replica with another config) and are excluded"
        ));
    }
    if pop.unattributed > 0 {
        notes.push(format!(
            "{} conversions name units never exposed in this phase (unattributed)",
            pop.unattributed
        ));
    }
    if pop.before_exposure > 0 {
        notes.push(format!(
            "{} conversions precede their unit's first exposure and are not counted",
            pop.before_exposure
        ));
    }
    if pop.outside_window > 0 {
        notes.push(format!(
            "{} conversions fall outside attribution_window_s and are not counted",
            pop.outside_window
        ));
    }
    Counted {
        setup,
        population: pop,
        notes,
        rollout,
    }
}
