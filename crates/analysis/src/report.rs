//! The report: every number of an experiment's analysis, in the JSON contract's shape.
//!
//! A number that is undefined is `None` (JSON null) with the reason in `notes`: never NaN.

use serde::Serialize;

/// The decision's types, as renderers name them.
pub use cohort_stats::decision::{Decision, Status};

use super::analyze::Counted;
use super::population::Population;
use super::rollout::{Kind, Status as RolloutStatus, TAKES_EFFECT_WITHIN_NS};
use super::versions::ShareTable;
use super::walk::{self, Plan, TimePoint, Walk};
use cohort_stats::bayes::{self, Posterior};
use cohort_stats::decision::{
    self, decide, fixed_p, holm_some, Arm, Judgement, Look, Method, Rule, Test,
};
use cohort_stats::proportions::{newcombe, pooled_z, wilson};
use cohort_stats::relative::{relative_lift, sequential_relative_lift};
use cohort_stats::tables::{self, omnibus, ChiSquare, OmnibusSkipped};
use cohort_stats::welch::welch;

/// `variants[]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantRow {
    pub name: String,
    pub weight: f64,
    pub share: f64,
    pub units: u64,
    /// Converted units.
    pub conversions: u64,
    pub rate: Option<f64>,
    pub rate_ci: Option<[f64; 2]>,
    pub value_sum: f64,
    pub value_mean: Option<f64>,
    pub crossovers: u64,
}

/// `comparisons[]`: one treatment against the control.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub variant: String,
    pub control: String,
    pub abs_diff: Option<f64>,
    pub abs_diff_ci: Option<[f64; 2]>,
    pub rel_lift: Option<f64>,
    pub rel_lift_ci: Option<[f64; 2]>,
    pub z: Option<f64>,
    pub p_value: Option<f64>,
    pub test: Option<Test>,
    pub p_value_holm: Option<f64>,
    pub seq_p_value: Option<f64>,
    pub seq_p_value_holm: Option<f64>,
    pub seq_ci: Option<[f64; 2]>,
    pub prob_beat_control: Option<f64>,
    pub expected_loss: Option<f64>,
    pub value_diff: Option<f64>,
    pub value_p_value: Option<f64>,
}

/// `srm`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Srm {
    pub chi2: Option<f64>,
    pub df: Option<u32>,
    pub p_value: Option<f64>,
    pub ok: Option<bool>,
}

/// `power`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Power {
    pub mde: f64,
    pub power: f64,
    pub baseline_rate: Option<f64>,
    /// "configured" | "estimated" | null.
    pub baseline_source: Option<&'static str>,
    pub required_units_per_variant: Option<f64>,
    pub progress: Option<f64>,
}

/// The report of one experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub experiment: String,
    pub unit: &'static str,
    pub control: String,
    pub alpha: f64,
    pub computed_at: String,
    /// "sequential" | "fixed": which p the decision uses.
    pub method: &'static str,
    pub variants: Vec<VariantRow>,
    pub comparisons: Vec<Comparison>,
    pub prob_best: serde_json::Map<String, serde_json::Value>,
    pub omnibus: Option<ChiSquare>,
    pub srm: Srm,
    pub power: Power,
    pub decision: Decision,
    /// The experiment's rollout, when its actions are recorded (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutReport>,
    /// Drift per variant and column, from the log's monitor lines (absent without them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<crate::monitoring::MonitoringReport>,
    /// Shadow traffic per shadow and variant, from the log's shadow lines (absent without
    /// them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<crate::shadow::ShadowReport>,
    pub notes: Vec<String>,
    /// Counts over time, for the charts (not part of the JSON contract).
    #[serde(skip)]
    pub timeline: Timeline,
}

/// `rollout`: which rollout, where it is, and every action it recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutReport {
    pub rollout_id: String,
    /// The variant rolled out (null when the log alone does not say which).
    pub treatment: Option<String>,
    /// `running`, `paused`, `rolled_back`, `promoted` or `done`.
    pub state: RolloutStatus,
    /// Counts the starts, from 0: a resume after a rollback begins the next attempt.
    pub attempt: u32,
    /// The step in force, from 1 (for a rollback, the step it left).
    pub step: usize,
    /// When the comparison was frozen (the rollback), or null.
    pub frozen_at: Option<String>,
    /// The actions, copies removed, oldest first.
    pub timeline: Vec<RolloutAction>,
}

/// `rollout.timeline[]`: one recorded action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutAction {
    pub ts: String,
    /// `start`, `advance`, `rollback`, `promote`, `done`, `pause` or `resume`.
    pub kind: Kind,
    pub attempt: u32,
    /// The step in force after the action, from 1.
    pub step: usize,
    /// The treatment's share after the action.
    pub share: f64,
    pub reason: String,
    /// `cohort`, or the admin caller.
    pub by: String,
    /// Each guardrail's value and bound when the action was decided (empty for an
    /// operator's action).
    pub guardrails: std::collections::BTreeMap<String, cohort_rollout::record::GuardrailRecord>,
}

/// What the charts draw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    pub points: Vec<TimePoint>,
    pub n_star: f64,
    /// When the experiment's shares changed (a ramp, a weight change, a reload that moved
    /// them), within the timeline: (ts, the shares then in force, as "rf 40% · lr 60%",
    /// or the rollout action that set them, as "step 2 · lr 5%").
    pub changes: Vec<(i64, String)>,
}

/// The moments in `versions` at which `experiment`'s shares changed, between `from` and
/// `to`, each with the shares that took effect, or the rollout action that set them.
fn share_changes(
    versions: &super::versions::ConfigVersions,
    experiment: &str,
    names: &[String],
    (from, to): (i64, i64),
    rollout: Option<&super::rollout::Rollout>,
) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut last: Option<Vec<(String, f64)>> = None;
    for v in versions.entries() {
        let Some(shares) = v.shares.get(experiment) else {
            continue;
        };
        let now: Vec<(String, f64)> = names
            .iter()
            .filter_map(|n| shares.get(n).map(|s| (n.clone(), *s)))
            .collect();
        let changed = last.as_ref().is_some_and(|l| {
            l.len() != now.len()
                || l.iter()
                    .zip(&now)
                    .any(|(a, b)| a.0 != b.0 || (a.1 - b.1).abs() > 1e-9)
        });
        if changed {
            let label = now
                .iter()
                .map(|(n, s)| format!("{n} {:.0}%", 100.0 * s))
                .collect::<Vec<_>>()
                .join(" · ");
            out.push((v.ts, label));
        }
        last = Some(now);
    }
    // Matched over every change, so that an action just before the window cannot claim
    // a change inside it that another action made.
    if let Some(r) = rollout {
        r.label_changes(&mut out);
    }
    out.retain(|c| c.0 > from && c.0 <= to);
    out
}

/// Below this, p of the sample-ratio check means a mismatch.
pub const SRM_P: f64 = 0.001;
/// Expected units of the smallest weighted variant before the check says anything.
const SRM_MIN_EXPECTED: f64 = 8.0;
/// Units every other weighted arm needs before an empty arm counts as starved.
const STARVED_AFTER: u64 = 100;

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn pair(lo: f64, hi: f64) -> Option<[f64; 2]> {
    (lo.is_finite() && hi.is_finite()).then_some([lo, hi])
}

/// Builds the report of what [`crate::count`] counted. `computed_at` is passed in (the
/// live view and the CLI stamp their own time).
pub fn build(counted: Counted, computed_at: String) -> Report {
    let Counted {
        setup,
        population,
        mut notes,
        rollout,
    } = counted;
    let pop = &population;
    let d = &setup.decision;
    let alpha = d.alpha;
    let k = pop.names.len();
    let control = pop
        .names
        .iter()
        .position(|n| n == &setup.control)
        .unwrap_or(0);
    let weight_of = |name: &str| {
        setup
            .variants
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0.0, |v| v.1)
    };
    let total_weight: f64 = setup.variants.iter().map(|v| v.1).sum();
    let weighted: Vec<bool> = pop.names.iter().map(|n| weight_of(n) > 0.0).collect();
    for n in pop
        .names
        .iter()
        .filter(|n| !setup.variants.iter().any(|v| &v.0 == *n))
    {
        notes.push(format!(
            "variant {n} appears in the log but not in the configuration: reported with weight 0"
        ));
    }

    // The replay: baseline, frozen fixed decision, expected counts, series.
    let configured: Vec<f64> = pop
        .names
        .iter()
        .enumerate()
        .map(|(i, n)| if weighted[i] { weight_of(n) } else { 0.0 })
        .collect();
    let shares = ShareTable::new(
        &setup.versions,
        &setup.experiment,
        &setup.tally_versions,
        &pop.names,
        &weighted,
        &configured,
    );
    let rule = Rule {
        alpha,
        min_units: d.min_units,
        min_conversions: d.min_conversions,
    };
    let fixed = d.method == cohort_config::schema::DecisionMethod::Fixed;
    let plan = Plan {
        control,
        weighted: &weighted,
        rule,
        fixed,
        mde: d.mde,
        power: d.power,
        baseline_rate: d.baseline_rate,
        sequential_n_star: d.sequential_n_star.map(|n| n as f64),
        shares: &shares,
        samples: 120,
    };
    let w: Walk = walk::walk(pop, &plan);

    // Variants.
    let variants: Vec<VariantRow> = (0..k)
        .map(|i| {
            let n = &pop.names[i];
            let (units, c) = (pop.units[i], pop.converted[i]);
            VariantRow {
                name: n.clone(),
                weight: weight_of(n),
                share: if total_weight > 0.0 {
                    weight_of(n) / total_weight
                } else {
                    0.0
                },
                units,
                conversions: c,
                rate: (units > 0).then(|| c as f64 / units as f64),
                rate_ci: wilson(c, units, alpha).and_then(|w| pair(w.low, w.high)),
                value_sum: pop.value_sum[i],
                value_mean: (units > 0).then_some(pop.values[i].mean),
                crossovers: pop.crossovers[i],
            }
        })
        .collect();
    for v in variants.iter().filter(|v| v.units == 0) {
        notes.push(format!(
            "{} has no units: its rate and comparisons are null",
            v.name
        ));
    }

    // Power and N*.
    let (delay, delay_key) = d.maturity_s();
    let matured =
        format!("the control's units exposed at least {delay} s earlier (decision.{delay_key})");
    let (baseline, source) = match (d.baseline_rate, w.baseline) {
        (Some(b), _) => (Some(b), Some("configured")),
        (None, Some((b, ts))) => {
            notes.push(format!(
                "baseline rate {b:.6} estimated from {matured} when they reached {} conversions ({}), then frozen",
                d.min_conversions,
                cohort_events::clock::from_nanos(ts)
            ));
            (Some(b), Some("estimated"))
        }
        (None, None) => {
            notes.push(format!(
                "no baseline yet: it is estimated once {matured} have {} conversions",
                d.min_conversions
            ));
            (None, None)
        }
    };
    let required = baseline.and_then(|b| plan.required(b));
    if baseline.is_some() && required.is_none() {
        notes.push(
            "required_units_per_variant is null: the baseline rate is 0 or baseline × (1 + mde) ≥ 1"
                .to_owned(),
        );
    }
    let min_units = (0..k)
        .filter(|&i| weighted[i] || i == control)
        .map(|i| pop.units[i])
        .min()
        .unwrap_or(0);
    let power = Power {
        mde: d.mde,
        power: d.power,
        baseline_rate: baseline,
        baseline_source: source,
        required_units_per_variant: required,
        progress: required.map(|r| min_units as f64 / r),
    };
    let n_star = plan.n_star(required);

    // Comparisons.
    let c = control;
    let (cc, nc) = (pop.converted[c], pop.units[c]);
    let posteriors: Vec<Posterior> = (0..k)
        .map(|i| Posterior::of(pop.converted[i], pop.units[i]))
        .collect();
    let mut comparisons: Vec<Comparison> = Vec::new();
    let mut raw_p: Vec<Option<f64>> = Vec::new();
    let mut raw_seq: Vec<Option<f64>> = Vec::new();
    for t in (0..k).filter(|&i| i != c) {
        let (ct, nt) = (pop.converted[t], pop.units[t]);
        let name = &pop.names[t];
        let mut cmp = Comparison {
            variant: name.clone(),
            control: pop.names[c].clone(),
            abs_diff: None,
            abs_diff_ci: None,
            rel_lift: None,
            rel_lift_ci: None,
            z: None,
            p_value: None,
            test: None,
            p_value_holm: None,
            seq_p_value: None,
            seq_p_value_holm: None,
            seq_ci: None,
            prob_beat_control: None,
            expected_loss: None,
            value_diff: None,
            value_p_value: None,
        };
        if nt == 0 || nc == 0 {
            notes.push(format!(
                "{name} vs {}: an arm has no units, so the comparison is null",
                pop.names[c]
            ));
            raw_p.push(None);
            raw_seq.push(None);
            comparisons.push(cmp);
            continue;
        }
        cmp.abs_diff = finite(ct as f64 / nt as f64 - cc as f64 / nc as f64);
        cmp.abs_diff_ci = newcombe(ct, nt, cc, nc, alpha).and_then(|i| pair(i.low, i.high));
        match pooled_z(ct, nt, cc, nc) {
            Some((z, _)) => cmp.z = finite(z),
            None => notes.push(format!(
                "{name}: z is null (the pooled variance is 0: no unit or every unit converted)"
            )),
        }
        if let Some((p, test)) = fixed_p(ct, nt, cc, nc) {
            cmp.p_value = finite(p);
            cmp.test = Some(test);
        }
        match relative_lift(ct, nt, cc, nc, alpha) {
            Ok(r) => {
                cmp.rel_lift = finite(r.estimate);
                cmp.rel_lift_ci = pair(r.ci.low, r.ci.high);
            }
            Err(e) => {
                // The point estimate is defined whenever the control converts (a treatment
                // with no conversions is −100%); only the interval needs a variance.
                if cc > 0 {
                    cmp.rel_lift = finite((ct as f64 / nt as f64) / (cc as f64 / nc as f64) - 1.0);
                }
                let what = if cmp.rel_lift.is_some() {
                    "rel_lift's interval and the sequential test are null"
                } else {
                    "rel_lift, its interval and the sequential test are null"
                };
                notes.push(format!("{name}: {what}: {}", e.reason()))
            }
        }
        if let Ok((ci, p)) = sequential_relative_lift(ct, nt, cc, nc, alpha, n_star) {
            cmp.seq_ci = pair(ci.low, ci.high);
            cmp.seq_p_value = finite(p);
        }
        cmp.prob_beat_control = Some(bayes::prob_beat_control(&posteriors[t], &posteriors[c]));
        cmp.expected_loss = Some(bayes::expected_loss(&posteriors[t], &posteriors[c]));
        cmp.value_diff = finite(pop.values[t].mean - pop.values[c].mean);
        match welch(&pop.values[t], &pop.values[c]) {
            Some(wt) => cmp.value_p_value = finite(wt.p_value),
            None => notes.push(format!(
                "{name}: value_p_value is null (an arm has fewer than 2 units, or no value varies)"
            )),
        }
        raw_p.push(cmp.p_value);
        raw_seq.push(cmp.seq_p_value);
        comparisons.push(cmp);
    }
    for (cmp, (p, s)) in comparisons
        .iter_mut()
        .zip(holm_some(&raw_p).into_iter().zip(holm_some(&raw_seq)))
    {
        cmp.p_value_holm = p;
        cmp.seq_p_value_holm = s;
    }

    // P(best) over the variants with units.
    let with_units: Vec<usize> = (0..k).filter(|&i| pop.units[i] > 0).collect();
    let best = bayes::prob_best(
        &with_units
            .iter()
            .map(|&i| posteriors[i].clone())
            .collect::<Vec<_>>(),
    );
    let mut prob_best = serde_json::Map::new();
    for i in 0..k {
        let v = with_units
            .iter()
            .position(|&j| j == i)
            .map_or(serde_json::Value::Null, |j| serde_json::json!(best[j]));
        prob_best.insert(pop.names[i].clone(), v);
    }

    // Omnibus.
    let rows: Vec<(u64, u64)> = (0..k).map(|i| (pop.converted[i], pop.units[i])).collect();
    let omnibus = match omnibus(&rows) {
        Ok(o) => Some(o),
        Err(OmnibusSkipped::TooFewVariants) => None,
        Err(OmnibusSkipped::ZeroColumn) => {
            notes.push(
                "omnibus is null: no unit converted, or every unit did (a column of the table is 0)"
                    .to_owned(),
            );
            None
        }
    };

    // Sample-ratio mismatch.
    let srm = srm_check(pop, &weighted, &w.expected, &mut notes);
    let invalid_reason = (srm.ok == Some(false)).then(|| {
        format!(
            "sample ratio mismatch (p = {}): units are not split as configured, so no comparison can be trusted; find the cause, then start a new phase (change the salt)",
            srm.p_value.map_or("n/a".to_owned(), |p| format!("{p:.3e}"))
        )
    });

    // Decision.
    let arms: Vec<Arm> = walk::arms_of(pop, &weighted, &pop.units, &pop.converted);
    let p = if fixed {
        decision::decision_p(&arms, c, Method::Fixed, alpha)
    } else {
        decision::decision_p(&arms, c, Method::Sequential { n_star }, alpha)
    };
    let fixed_p: Vec<Option<f64>> = if fixed {
        Vec::new()
    } else {
        decision::decision_p(&arms, c, Method::Fixed, alpha)
    };
    let frozen = w.fixed.as_ref().map(|f| &f.0);
    if let Some((_, ts)) = &w.fixed {
        notes.push(format!(
            "fixed-horizon decision made at {} (the planned sample), then frozen",
            cohort_events::clock::from_nanos(*ts)
        ));
    }
    let look = Look {
        arms: &arms,
        control: c,
        p: &p,
        fixed_p: &fixed_p,
        rule,
        required,
        invalid: invalid_reason.as_deref(),
        judgement: match (fixed, frozen) {
            (false, _) => Judgement::Now,
            (true, Some(f)) => Judgement::Frozen(f),
            (true, None) => Judgement::NotYet,
        },
    };
    let decision = decide(&look);

    // A frozen comparison's charts run to the freeze, where its counts stay, and keep the
    // marker of the rollback whose shares take effect just after it.
    let mut points = w.series;
    let frozen = rollout.as_ref().and_then(|r| r.frozen_at);
    if let (Some(f), Some(last)) = (frozen, points.last()) {
        if last.ts < f {
            let end = TimePoint {
                ts: f,
                ..last.clone()
            };
            points.push(end);
        }
    }
    let changes = match (points.first(), points.last()) {
        (Some(a), Some(b)) => {
            let to = frozen.map_or(b.ts, |f| b.ts.max(f + TAKES_EFFECT_WITHIN_NS));
            share_changes(
                &setup.versions,
                &setup.experiment,
                &pop.names,
                (a.ts, to),
                rollout.as_ref(),
            )
        }
        _ => Vec::new(),
    };

    Report {
        experiment: setup.experiment.clone(),
        unit: setup.unit_name(),
        control: pop.names[c].clone(),
        alpha,
        computed_at,
        method: if fixed { "fixed" } else { "sequential" },
        variants,
        comparisons,
        prob_best,
        omnibus,
        srm,
        power,
        decision,
        rollout: rollout.as_ref().map(super::rollout::Rollout::report),
        monitoring: None,
        shadow: None,
        notes,
        timeline: Timeline {
            changes,
            points,
            n_star,
        },
    }
}

/// The sample-ratio check over the weighted variants.
fn srm_check(
    pop: &Population,
    weighted: &[bool],
    expected: &[f64],
    notes: &mut Vec<String>,
) -> Srm {
    let idx: Vec<usize> = (0..pop.names.len()).filter(|&i| weighted[i]).collect();
    let mut srm = Srm {
        chi2: None,
        df: None,
        p_value: None,
        ok: None,
    };
    if idx.len() < 2 {
        notes.push("srm is null: fewer than two variants have weight".to_owned());
        return srm;
    }
    let observed: Vec<u64> = idx.iter().map(|&i| pop.units[i]).collect();
    let exp: Vec<f64> = idx.iter().map(|&i| expected[i].max(0.0)).collect();
    let total: u64 = observed.iter().sum();
    let exp_total: f64 = exp.iter().sum();
    if total == 0 || exp_total <= 0.0 {
        notes.push("srm: no units yet".to_owned());
        return srm;
    }
    if exp.iter().any(|&e| e <= 0.0) {
        // A weighted variant that had no share when these units arrived (just added).
        notes.push(
            "srm is null: a weighted variant had share 0 when every counted unit arrived"
                .to_owned(),
        );
        return srm;
    }
    if let Some(t) = tables::srm(&observed, &exp) {
        srm.chi2 = finite(t.chi2);
        srm.df = Some(t.df);
        srm.p_value = finite(t.p_value);
    }
    let smallest = exp.iter().copied().fold(f64::INFINITY, f64::min) / exp_total;
    if (total as f64) * smallest < SRM_MIN_EXPECTED {
        notes.push("srm.ok is null: too few units".to_owned());
        return srm;
    }
    let starved = observed.iter().enumerate().find(|&(j, &o)| {
        o == 0
            && observed
                .iter()
                .enumerate()
                .all(|(m, &x)| m == j || x >= STARVED_AFTER)
    });
    if let Some((j, _)) = starved {
        notes.push(format!(
            "srm: {} has weight but no units while every other arm has ≥ {STARVED_AFTER}",
            pop.names[idx[j]]
        ));
        srm.ok = Some(false);
        return srm;
    }
    srm.ok = srm.p_value.map(|p| p >= SRM_P);
    srm
}
