//! What a config change does to units: the function behind `cohort check NEW --against OLD`
//! and behind every reload.
//!
//! For each experiment, the old and new layouts are walked together over the whole bucket
//! space (exactly, not by sampling) and every overlap of an old variant's run with a new
//! variant's run of a different name is a *move*: that share of the experiment's units
//! changes variant. A change is a **reshuffle** when
//! * units move between two treatments, or
//! * a treatment both gains and loses units (it lost units although its share did not go
//!   down, or gained some although it shrank: its lane moved), or
//! * the control changed, or the salt or the unit kind changed (everyone is re-randomized),
//!
//! except that promoting one variant to 100% is never a reshuffle. A reshuffle is
//! *acknowledged* when the new experiment says `allow_reshuffle: true` or its salt changed
//! (a new phase); an unacknowledged one makes `cohort check` exit 3 and a reload refuse.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{Experiment, Routes};
use cohort_assign::BUCKETS;

/// The effect of replacing one config by another.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Comparison {
    pub experiments: BTreeMap<String, ExperimentChange>,
}

impl Comparison {
    /// Experiments whose reshuffle is not acknowledged (the reason to exit 3 or refuse).
    pub fn unacknowledged(&self) -> Vec<&str> {
        self.experiments
            .iter()
            .filter(|(_, c)| c.reshuffle && !c.acknowledged)
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// What happens to one experiment.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ExperimentChange {
    pub status: ChangeKind,
    /// Shares (0–1) of all of the experiment's units that change variant, by (from, to).
    pub moves: Vec<Move>,
    pub reshuffle: bool,
    /// True when a reshuffle is allowed: `allow_reshuffle: true` or a new salt.
    pub acknowledged: bool,
    /// Why it is a reshuffle (empty when it is not).
    pub reasons: Vec<String>,
    pub share_changes: Vec<ShareChange>,
    /// Allowed but worth a look (e.g. a share that changed with an unchanged weight).
    pub warnings: Vec<String>,
}

/// Added, removed, changed or unchanged.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
    Unchanged,
}

/// A share of units moving from one variant to another.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Move {
    pub from: String,
    pub to: String,
    /// Fraction (0–1) of all the experiment's units.
    pub share: f64,
}

/// One variant's weight and share before and after (absent = not in that config).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShareChange {
    pub variant: String,
    pub old_weight: Option<f64>,
    pub new_weight: Option<f64>,
    pub old_share: f64,
    pub new_share: f64,
}

/// Compares every experiment of `old` with its namesake in `new`.
pub fn compare(old: &Routes, new: &Routes) -> Comparison {
    let mut experiments = BTreeMap::new();
    for n in &new.experiments {
        let change = match old.experiment(&n.name) {
            Some(o) => compare_experiment(o, n),
            None => one_sided(n, ChangeKind::Added),
        };
        experiments.insert(n.name.clone(), change);
    }
    for o in &old.experiments {
        if new.experiment(&o.name).is_none() {
            experiments.insert(o.name.clone(), one_sided(o, ChangeKind::Removed));
        }
    }
    Comparison { experiments }
}

fn one_sided(e: &Experiment, status: ChangeKind) -> ExperimentChange {
    let share_changes = e
        .variants
        .iter()
        .map(|v| {
            let (old, new) = match status {
                ChangeKind::Added => ((None, 0.0), (Some(v.weight), bucket_share(v.buckets))),
                _ => ((Some(v.weight), bucket_share(v.buckets)), (None, 0.0)),
            };
            ShareChange {
                variant: v.name.clone(),
                old_weight: old.0,
                new_weight: new.0,
                old_share: old.1,
                new_share: new.1,
            }
        })
        .collect();
    ExperimentChange {
        status,
        moves: Vec::new(),
        reshuffle: false,
        acknowledged: false,
        reasons: Vec::new(),
        share_changes,
        warnings: Vec::new(),
    }
}

fn bucket_share(buckets: u32) -> f64 {
    f64::from(buckets) / f64::from(BUCKETS)
}

/// Buckets of `e` served by each variant, by name.
fn buckets_by_name(e: &Experiment) -> BTreeMap<&str, u32> {
    e.variants
        .iter()
        .map(|v| (v.name.as_str(), v.buckets))
        .collect()
}

/// Buckets that go from each old variant to each new one, same salt (exact).
fn overlaps<'a>(old: &'a Experiment, new: &'a Experiment) -> BTreeMap<(&'a str, &'a str), u32> {
    let mut out = BTreeMap::new();
    let (a, b) = (old.layout.segments(), new.layout.segments());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let start = a[i].start.max(b[j].start);
        let end = a[i].end.min(b[j].end);
        if end > start {
            let from = old.variants[a[i].variant].name.as_str();
            let to = new.variants[b[j].variant].name.as_str();
            *out.entry((from, to)).or_insert(0) += end - start;
        }
        if a[i].end <= b[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

fn compare_experiment(old: &Experiment, new: &Experiment) -> ExperimentChange {
    let old_buckets = buckets_by_name(old);
    let new_buckets = buckets_by_name(new);
    let mut reasons = Vec::new();
    let mut warnings = Vec::new();

    let rerandomized = old.salt != new.salt || old.unit != new.unit;
    let moves: Vec<Move> = if rerandomized {
        // Independent re-randomization: the expected share moving from a to b is the
        // product of a's old share and b's new share.
        let mut moves = Vec::new();
        for (from, &fb) in &old_buckets {
            for (to, &tb) in &new_buckets {
                if from != to && fb > 0 && tb > 0 {
                    moves.push(Move {
                        from: (*from).to_owned(),
                        to: (*to).to_owned(),
                        share: bucket_share(fb) * bucket_share(tb),
                    });
                }
            }
        }
        moves
    } else {
        overlaps(old, new)
            .into_iter()
            .filter(|((from, to), _)| from != to)
            .map(|((from, to), n)| Move {
                from: from.to_owned(),
                to: to.to_owned(),
                share: bucket_share(n),
            })
            .collect()
    };

    let promotion = new.promoted().map(|v| new.variants[v].name.as_str());
    if old.salt != new.salt {
        reasons.push(format!(
            "the salt changed ({:?} → {:?}): every unit is re-randomized (a new phase)",
            old.salt, new.salt
        ));
    }
    if old.unit != new.unit {
        reasons.push(format!(
            "the unit changed ({:?} → {:?}): every unit is re-randomized",
            old.unit, new.unit
        ));
    }
    let old_control = old.variants[old.control].name.as_str();
    let new_control = new.variants[new.control].name.as_str();
    if !rerandomized && promotion.is_none() {
        if old_control != new_control {
            reasons.push(format!(
                "the control changed ({old_control} → {new_control})"
            ));
        }
        for m in &moves {
            if m.from != old_control && m.to != new_control {
                reasons.push(format!(
                    "units move between treatments: {} → {} {}",
                    m.from,
                    m.to,
                    pct(m.share)
                ));
            }
        }
        for name in old_buckets.keys().chain(new_buckets.keys()) {
            if *name == old_control || *name == new_control {
                continue;
            }
            let gained: f64 = moves
                .iter()
                .filter(|m| m.to == *name)
                .map(|m| m.share)
                .sum();
            let lost: f64 = moves
                .iter()
                .filter(|m| m.from == *name)
                .map(|m| m.share)
                .sum();
            if gained > 0.0 && lost > 0.0 {
                let reason = format!(
                    "{name} both gains {} and loses {} of units: its lane moved, so units \
                     leave a treatment whose share did not go down by as much",
                    pct(gained),
                    pct(lost)
                );
                if !reasons.contains(&reason) {
                    reasons.push(reason);
                }
            }
        }
    }

    let mut share_changes = Vec::new();
    let mut names: Vec<&str> = new.variants.iter().map(|v| v.name.as_str()).collect();
    names.extend(
        old.variants
            .iter()
            .map(|v| v.name.as_str())
            .filter(|n| new.variant_index(n).is_none()),
    );
    for name in names {
        let o = old.variant_index(name).map(|i| &old.variants[i]);
        let n = new.variant_index(name).map(|i| &new.variants[i]);
        let change = ShareChange {
            variant: name.to_owned(),
            old_weight: o.map(|v| v.weight),
            new_weight: n.map(|v| v.weight),
            old_share: o.map_or(0.0, |v| bucket_share(v.buckets)),
            new_share: n.map_or(0.0, |v| bucket_share(v.buckets)),
        };
        if let (Some(ow), Some(nw)) = (change.old_weight, change.new_weight) {
            if ow == nw && change.old_share != change.new_share {
                warnings.push(format!(
                    "{name} keeps weight {nw} but its share changes {} → {} (weights are relative \
                     to their sum)",
                    pct(change.old_share),
                    pct(change.new_share)
                ));
            }
        }
        share_changes.push(change);
    }

    let reshuffle = !reasons.is_empty();
    let unchanged = moves.is_empty()
        && !reshuffle
        && share_changes
            .iter()
            .all(|c| c.old_weight == c.new_weight && c.old_share == c.new_share);
    ExperimentChange {
        status: if unchanged {
            ChangeKind::Unchanged
        } else {
            ChangeKind::Changed
        },
        moves,
        reshuffle,
        acknowledged: reshuffle && (new.allow_reshuffle || old.salt != new.salt),
        reasons,
        share_changes,
        warnings,
    }
}

/// A share as a percentage with three decimals (one bucket = 0.001%).
pub fn pct(share: f64) -> String {
    format!("{:.3}%", share * 100.0)
}
/// A route or an experiment of the old table that the new one drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// Index into the old table's routes.
    Route(usize, String),
    /// Index into the old table's experiments.
    Experiment(usize, String),
}

impl std::fmt::Display for Removed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Removed::Route(_, name) => write!(f, "route {name}"),
            Removed::Experiment(_, name) => write!(f, "experiment {name}"),
        }
    }
}

/// Routes and experiments of `old` that `new` drops without naming them in its
/// `allow_remove`. A running replica refuses such a reload only for what served requests,
/// or when no route is left; offline, every removal counts.
pub fn unacknowledged_removals(old: &Routes, new: &Routes) -> Vec<Removed> {
    let acknowledged = |name: &str| new.file.allow_remove.iter().any(|a| a == name);
    let routes = old
        .routes
        .iter()
        .enumerate()
        .filter(|(_, r)| !new.routes.iter().any(|n| n.name == r.name) && !acknowledged(&r.name))
        .map(|(i, r)| Removed::Route(i, r.name.clone()));
    let experiments = old
        .experiments
        .iter()
        .enumerate()
        .filter(|(_, e)| new.experiment(&e.name).is_none() && !acknowledged(&e.name))
        .map(|(i, e)| Removed::Experiment(i, e.name.clone()));
    routes.chain(experiments).collect()
}
