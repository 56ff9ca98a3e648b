//! A rollout's recorded actions in the report: which rollout, its timeline, the action
//! behind each share change on the charts, and the rollback at which the comparison
//! freezes.
//!
//! The actions are the `type: "rollout"` lines of `rollouts.jsonl`, beside
//! `config-versions.jsonl` in each event directory. Replicas' copies of one action are
//! one: the rollout's state and history are [`cohort_rollout::fold()`]'s, the same fold
//! the control plane acts on.
//!
//! **The freeze.** A rollback sets the treatment's share to 0, so the treatment's units
//! return to the control. Counted as they come, each would be a crossover and leave the
//! comparison, which would then no longer compare the units the treatment served. So
//! when the rollout is rolled back, the comparison counts what happened before the
//! rollback only, exactly as if the log had been read with `--until` at the rollback's
//! `ts` (an earlier `--until` wins). The cut is applied when the phase is counted
//! ([`crate::Population::count`]), so that the CLI (which reads everything) and the live
//! view (whose tally holds everything) cut alike.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use cohort_rollout::record::GuardrailRecord;
pub use cohort_rollout::{Kind, RolloutEvent, RolloutState, Status};

use crate::report::{RolloutAction, RolloutReport};
use crate::versions::ConfigVersions;

/// How long after an action is recorded its shares go into force, at most: the control
/// plane records the action, then installs the table (whose version records the shares).
pub const TAKES_EFFECT_WITHIN_NS: i64 = 1_000_000_000;

/// Two shares closer than this are the same (a version's shares are whole buckets).
const SAME_SHARE: f64 = 1e-3;

/// Every rollout action read from event directories: any rollout, any experiment,
/// replicas' copies included (folding makes them one).
#[derive(Debug, Clone, Default)]
pub struct RolloutLog {
    events: Vec<RolloutEvent>,
    /// Lines of rollouts.jsonl that are not rollout actions (skipped).
    pub malformed: u64,
}

/// One experiment's rollout, as the analysis takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// The fold of its recorded actions.
    pub state: RolloutState,
    /// The variant rolled out: the configured one, or (without a config) the one whose
    /// share the actions set, read from the versions; None when that is ambiguous.
    pub treatment: Option<String>,
    /// The comparison counts only events before this (ns since the epoch): the rollback's
    /// `ts` when the rollout is rolled back. None: not frozen.
    pub frozen_at: Option<i64>,
    /// The comparison counts only units first exposed at or after this (ns): the verdict
    /// a promotion is judged on, the last step's own units, since pooling units of several
    /// steps would confound the comparison with time. None: every unit.
    pub judged_since: Option<i64>,
}

impl RolloutLog {
    /// Adds `dir/rollouts.jsonl` (absent: nothing).
    pub fn add_dir(&mut self, dir: &Path) -> io::Result<()> {
        let (events, bad) = cohort_rollout::record::read(dir)?;
        self.events.extend(events);
        self.malformed += bad;
        Ok(())
    }

    /// Adds actions read elsewhere.
    pub fn extend(&mut self, events: impl IntoIterator<Item = RolloutEvent>) {
        self.events.extend(events);
    }

    /// Every action read, in the order read.
    pub fn events(&self) -> &[RolloutEvent] {
        &self.events
    }

    /// The rollout of `experiment`: the configured one when `configured` has a rollout
    /// block, else the one of the latest action recorded for the experiment. None when
    /// that rollout has no recorded action.
    pub fn rollout(
        &self,
        experiment: &str,
        configured: Option<&cohort_config::Experiment>,
        versions: &ConfigVersions,
    ) -> Option<Rollout> {
        let mine: Vec<&RolloutEvent> = self
            .events
            .iter()
            .filter(|e| e.experiment == experiment)
            .collect();
        let block = configured.and_then(|e| Some((e, e.rollout.as_ref()?)));
        let id = match block {
            Some((_, r)) => r.id.clone(),
            None => mine
                .iter()
                .max_by(|a, b| (a.ts_ns(), &a.rollout_id).cmp(&(b.ts_ns(), &b.rollout_id)))?
                .rollout_id
                .clone(),
        };
        let state = cohort_rollout::fold(&id, mine.iter().copied())?;
        let treatment = match block {
            Some((e, r)) => e.variants.get(r.treatment).map(|v| v.name.clone()),
            None => inferred_treatment(&state, experiment, versions),
        };
        let frozen_at = (state.status == Status::RolledBack)
            .then(|| {
                state
                    .history
                    .iter()
                    .find(|e| e.attempt == state.attempt && e.kind == Kind::Rollback)
                    .map(RolloutEvent::ts_ns)
            })
            .flatten();
        Some(Rollout {
            state,
            treatment,
            frozen_at,
            judged_since: None,
        })
    }
}

impl Rollout {
    /// The rollout of a log read only before `until` (`--until`): a cut at or before the
    /// rollback already freezes the comparison, so the rollback's does not apply.
    pub fn read_until(mut self, until: Option<i64>) -> Self {
        if until.is_some_and(|u| self.frozen_at.is_some_and(|f| u <= f)) {
            self.frozen_at = None;
        }
        self
    }

    /// What the report JSON says of it.
    pub fn report(&self) -> RolloutReport {
        let s = &self.state;
        RolloutReport {
            rollout_id: s.rollout_id.clone(),
            treatment: self.treatment.clone(),
            state: s.status,
            attempt: s.attempt,
            step: s.step + 1,
            frozen_at: self.frozen_at.map(cohort_events::clock::from_nanos),
            timeline: s
                .history
                .iter()
                .map(|e| RolloutAction {
                    ts: e.ts.clone(),
                    kind: e.kind,
                    attempt: e.attempt,
                    step: e.step + 1,
                    share: e.share,
                    reason: e.reason.clone(),
                    by: e.by.clone(),
                    guardrails: e
                        .guardrails
                        .iter()
                        .map(|(k, g)| (k.clone(), g.clone()))
                        .collect::<BTreeMap<String, GuardrailRecord>>(),
                })
                .collect(),
        }
    }

    /// Relabels the share changes (ts order) that this rollout's actions made, e.g.
    /// "step 2 · lr 5%": each action that moves shares claims the first change at or after
    /// it, within [`TAKES_EFFECT_WITHIN_NS`]; of several actions before one change, the
    /// latest (the nearest) names it. Other changes keep their labels.
    pub fn label_changes(&self, changes: &mut [(i64, String)]) {
        let mut by: Vec<Option<&RolloutEvent>> = vec![None; changes.len()];
        for a in self.state.history.iter().filter(|e| moves_shares(e.kind)) {
            let at = a.ts_ns();
            let i = changes.partition_point(|c| c.0 < at);
            if changes
                .get(i)
                .is_some_and(|c| c.0 - at <= TAKES_EFFECT_WITHIN_NS)
                && by[i].is_none_or(|b| b.ts_ns() <= at)
            {
                by[i] = Some(a);
            }
        }
        for (c, a) in changes.iter_mut().zip(by) {
            if let Some(a) = a {
                c.1 = action_label(a, self.treatment.as_deref());
            }
        }
    }
}

/// Whether an action of this kind sets new shares.
fn moves_shares(k: Kind) -> bool {
    matches!(
        k,
        Kind::Start | Kind::Advance | Kind::Rollback | Kind::Promote
    )
}

/// "step 2 · lr 5%", "rollback · lr 0%": the action and the treatment's share after it.
fn action_label(a: &RolloutEvent, treatment: Option<&str>) -> String {
    let what = match a.kind {
        Kind::Start | Kind::Advance => format!("step {}", a.step + 1),
        k => k.label().to_owned(),
    };
    match treatment {
        Some(t) => format!("{what} · {t} {}", percent(a.share)),
        None => format!("{what} · {}", percent(a.share)),
    }
}

/// A share as a percentage with the digits it has: "5%", "0.5%", "12.34%".
pub fn percent(share: f64) -> String {
    let s = format!("{:.2}", 100.0 * share);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// The variant whose share every share-moving action set, read from the version that
/// followed each: None when no action has a version after it, or more than one variant
/// fits.
fn inferred_treatment(
    state: &RolloutState,
    experiment: &str,
    versions: &ConfigVersions,
) -> Option<String> {
    let entries: Vec<(i64, &std::collections::HashMap<String, f64>)> = versions
        .entries()
        .iter()
        .filter_map(|v| Some((v.ts, v.shares.get(experiment)?)))
        .collect();
    let mut fits: Option<Vec<&String>> = None;
    for a in state.history.iter().filter(|e| moves_shares(e.kind)) {
        let at = a.ts_ns();
        let i = entries.partition_point(|e| e.0 < at);
        let Some((ts, shares)) = entries.get(i) else {
            continue;
        };
        if ts - at > TAKES_EFFECT_WITHIN_NS {
            continue;
        }
        let here: Vec<&String> = shares
            .iter()
            .filter(|(_, s)| (*s - a.share).abs() < SAME_SHARE)
            .map(|(n, _)| n)
            .collect();
        fits = Some(match fits {
            None => here,
            Some(f) => f.into_iter().filter(|n| here.contains(n)).collect(),
        });
    }
    match fits.as_deref() {
        Some([one]) => Some((*one).clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_rollout::record::RolloutTag;

    fn ev(ts_ms: i64, step: usize, kind: Kind, share: f64) -> RolloutEvent {
        RolloutEvent {
            kind_of_line: RolloutTag::Rollout,
            ts: cohort_events::clock::from_nanos(1_796_083_200_000_000_000 + ts_ms * 1_000_000),
            experiment: "e".into(),
            rollout_id: "r1".into(),
            attempt: 0,
            step,
            kind,
            share,
            reason: String::new(),
            by: "cohort".into(),
            guardrails: Default::default(),
        }
    }

    fn at(ts_ms: i64) -> i64 {
        1_796_083_200_000_000_000 + ts_ms * 1_000_000
    }

    #[test]
    fn percentages_keep_the_digits_they_have() {
        assert_eq!(percent(0.05), "5%");
        assert_eq!(percent(0.005), "0.5%");
        assert_eq!(percent(0.1234), "12.34%");
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(1.0), "100%");
    }

    /// An action names the change nearest after it within a second; a change with no
    /// action just before it keeps its shares label.
    #[test]
    fn each_action_names_the_change_it_made() {
        let mut log = RolloutLog::default();
        log.extend([
            ev(0, 0, Kind::Start, 0.05),
            ev(10_000, 1, Kind::Advance, 0.2),
            ev(20_000, 1, Kind::Pause, 0.2),
            ev(30_000, 1, Kind::Rollback, 0.0),
        ]);
        let r = log
            .rollout("e", None, &ConfigVersions::default())
            .expect("recorded");
        assert_eq!(r.treatment, None, "no versions: the treatment is unknown");
        assert_eq!(r.frozen_at, Some(at(30_000)));
        let mut changes = vec![
            (at(200), "a 95% · b 5%".to_owned()),
            (at(5_000), "a 50% · b 50%".to_owned()), // a manual change
            (at(12_000), "a 80% · b 20%".to_owned()), // 2 s late: not the advance's
            (at(30_100), "a 100% · b 0%".to_owned()),
        ];
        r.label_changes(&mut changes);
        let labels: Vec<&str> = changes.iter().map(|c| c.1.as_str()).collect();
        assert_eq!(
            labels,
            [
                "step 1 · 5%",
                "a 50% · b 50%",
                "a 80% · b 20%",
                "rollback · 0%"
            ]
        );
        // An earlier --until wins over the rollback.
        assert_eq!(r.clone().read_until(Some(at(30_000))).frozen_at, None);
        assert_eq!(
            r.clone().read_until(Some(at(40_000))).frozen_at,
            Some(at(30_000))
        );
    }
}
