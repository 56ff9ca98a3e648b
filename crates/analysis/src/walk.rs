//! Replaying a population in `ts` order: what the log said at each moment.
//!
//! Three things depend on *when*, not just on the final counts, and all three are fixed by
//! the log alone (so the CLI and the live view agree):
//! * the **estimated baseline**: the control's rate over its *matured* units (exposed at
//!   least the maturity delay earlier) at the first moment those hold `min_conversions`
//!   conversions, then frozen. Young units have not had the time to convert yet, so
//!   counting them biases the rate low when conversions arrive late;
//! * the **fixed-method decision**, made once when every weighted arm first reaches the
//!   planned sample, then frozen;
//! * the **expected counts** for the sample-ratio check: each unit adds the shares in
//!   force at its first exposure (and a crossover removes them when it leaves).
//!
//! It also samples the counts over time for the report's charts.

use super::population::{Population, Step};
use super::versions::ShareTable;
use cohort_stats::decision::{self, Arm, Decision, Judgement, Look, Method, Rule};
use cohort_stats::power::required_units_per_variant;

/// Counts at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct TimePoint {
    pub ts: i64,
    pub units: Vec<u64>,
    pub converted: Vec<u64>,
}

/// What the walk needs to know about the experiment.
pub struct Plan<'a> {
    pub control: usize,
    /// Weight > 0 now, per variant of the population.
    pub weighted: &'a [bool],
    pub rule: Rule,
    pub fixed: bool,
    pub mde: f64,
    pub power: f64,
    pub baseline_rate: Option<f64>,
    pub sequential_n_star: Option<f64>,
    /// Expected shares (over the weighted variants, summing to 1) of each unit.
    pub shares: &'a ShareTable,
    /// Points of the time series (at most).
    pub samples: usize,
}

impl Plan<'_> {
    /// Units per variant the plan needs, from a baseline rate.
    pub fn required(&self, baseline: f64) -> Option<f64> {
        required_units_per_variant(baseline, self.mde, self.rule.alpha, self.power)
    }

    /// N* of the sequential test: configured, else 2 × required units, else 5000.
    pub fn n_star(&self, required: Option<f64>) -> f64 {
        self.sequential_n_star
            .or(required.map(|r| 2.0 * r))
            .unwrap_or(5000.0)
    }
}

/// What the replay found.
#[derive(Debug, Clone, Default)]
pub struct Walk {
    /// The estimated baseline and when it froze.
    pub baseline: Option<(f64, i64)>,
    /// The fixed-method decision and when it was made.
    pub fixed: Option<(Decision, i64)>,
    /// Expected units per variant (only weighted ones are non-zero).
    pub expected: Vec<f64>,
    pub series: Vec<TimePoint>,
}

/// The estimated baseline and when it froze: the control's rate over its matured units at
/// the first moment (up to `end`, the log's last event) they hold `min_conversions`
/// conversions.
fn matured_baseline(
    pop: &Population,
    control: usize,
    min_conversions: u64,
    end: i64,
) -> Option<(f64, i64)> {
    let (mut units, mut converted) = (0u64, 0u64);
    let r = &pop.ripenings;
    let mut i = 0;
    while i < r.len() && r[i].ts <= end {
        let ts = r[i].ts;
        while i < r.len() && r[i].ts == ts {
            if r[i].variant as usize == control {
                if r[i].conversion {
                    converted += 1;
                } else {
                    units += 1;
                }
            }
            i += 1;
        }
        if converted >= min_conversions && units > 0 {
            return Some((converted as f64 / units as f64, ts));
        }
    }
    None
}

/// Replays `pop` under `plan`.
pub fn walk(pop: &Population, plan: &Plan) -> Walk {
    let k = pop.names.len();
    let mut out = Walk {
        expected: vec![0.0; k],
        ..Walk::default()
    };
    let (mut units, mut converted) = (vec![0u64; k], vec![0u64; k]);
    let ms = &pop.milestones;
    let (Some(first), Some(last)) = (ms.first(), ms.last()) else {
        return out;
    };
    let matured = if plan.baseline_rate.is_none() {
        matured_baseline(pop, plan.control, plan.rule.min_conversions, last.ts)
    } else {
        None
    };
    let span = (last.ts - first.ts).max(1);
    let step_ns = span / plan.samples.max(1) as i64;
    let mut next_sample = first.ts;
    let mut i = 0;
    while i < ms.len() {
        let ts = ms[i].ts;
        while i < ms.len() && ms[i].ts == ts {
            let m = &ms[i];
            let v = m.variant as usize;
            match m.step {
                Step::Enter => {
                    units[v] += 1;
                    if let Some(s) = plan.shares.get(m.version, m.ts) {
                        out.expected.iter_mut().zip(s).for_each(|(e, s)| *e += *s);
                    }
                }
                Step::Convert => converted[v] += 1,
                Step::Leave => {
                    units[v] -= 1;
                    // A crossover that converted before leaving takes its conversion along.
                    if m.converted {
                        converted[v] -= 1;
                    }
                    if let Some(s) = plan.shares.get(m.version, m.ts) {
                        out.expected.iter_mut().zip(s).for_each(|(e, s)| *e -= *s);
                    }
                }
            }
            i += 1;
        }
        let c = plan.control;
        if out.baseline.is_none() {
            out.baseline = matured.filter(|b| b.1 <= ts);
        }
        if plan.fixed && out.fixed.is_none() {
            let baseline = plan.baseline_rate.or(out.baseline.map(|b| b.0));
            if let Some(required) = baseline.and_then(|b| plan.required(b)) {
                let arms = arms_of(pop, plan.weighted, &units, &converted);
                let look = Look {
                    arms: &arms,
                    control: c,
                    p: &[],
                    fixed_p: &[],
                    rule: plan.rule,
                    required: Some(required),
                    invalid: None,
                    judgement: Judgement::Now,
                };
                if look.planned_sample_reached(&[]) {
                    let p = decision::decision_p(&arms, c, Method::Fixed, plan.rule.alpha);
                    let d = decision::decide(&Look { p: &p, ..look });
                    out.fixed = Some((d, ts));
                }
            }
        }
        if ts >= next_sample || i == ms.len() {
            out.series.push(TimePoint {
                ts,
                units: units.clone(),
                converted: converted.clone(),
            });
            next_sample = ts + step_ns;
        }
    }
    out
}

/// The rule's view of the counts.
pub fn arms_of(pop: &Population, weighted: &[bool], units: &[u64], converted: &[u64]) -> Vec<Arm> {
    pop.names
        .iter()
        .enumerate()
        .map(|(i, n)| Arm {
            name: n.clone(),
            weighted: weighted.get(i).copied().unwrap_or(false),
            units: units[i],
            conversions: converted[i],
        })
        .collect()
}
