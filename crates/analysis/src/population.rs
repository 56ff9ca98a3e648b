//! From a phase's folded units and the pending conversions to what the statistics count:
//! per-variant units, converted units, per-unit values, crossovers, and the milestones
//! (enter, convert, leave) that replay the experiment in `ts` order.
//!
//! Rules (README, "Reading a report"):
//! * a unit belongs to the variant of its first exposure; a unit later seen in another
//!   variant is a **crossover**: it counts until then and is excluded from the final
//!   numbers (counted per its first variant);
//! * a conversion counts once per unit, only at or after the unit's first exposure and,
//!   with `attribution_window_s`, within that many seconds of it; values sum per unit;
//! * a conversion for a unit never exposed (in this phase) is unattributed;
//! * for the estimated baseline a unit counts only once it has **matured**: its first
//!   exposure is the maturity delay old (see [`Ripening`]);
//! * with a cut-off (a rollout's rollback), only what happened before it counts, as if
//!   the log ended there.

use super::tally::{ExperimentTally, PhaseTally, NEVER};
use cohort_stats::welch::Moments;

/// What happens to a unit at a milestone. The order breaks ties at equal `ts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Enter,
    Convert,
    Leave,
}

/// One step of the replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Milestone {
    pub ts: i64,
    pub step: Step,
    /// Index into [`Population::names`].
    pub variant: u16,
    /// Index into the tally's versions (or NO_VERSION): the unit's first exposure.
    pub version: u32,
    /// On a Leave: the unit had converted before (its conversion leaves with it).
    pub converted: bool,
}

/// When a unit, or a unit's conversion, starts counting toward the estimated baseline:
/// a unit at its first exposure plus the maturity delay, its conversion at that moment or
/// when it converted, whichever is later. Crossovers never count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ripening {
    pub ts: i64,
    /// Index into [`Population::names`].
    pub variant: u16,
    pub conversion: bool,
}

/// The counted population of one phase, in report variant order.
#[derive(Debug, Clone, Default)]
pub struct Population {
    /// The report's variants (configured order), then any only the log names.
    pub names: Vec<String>,
    pub units: Vec<u64>,
    pub converted: Vec<u64>,
    /// Per-unit value (sum of its conversions' values; 0 when none).
    pub values: Vec<Moments>,
    pub value_sum: Vec<f64>,
    pub crossovers: Vec<u64>,
    pub unattributed: u64,
    pub before_exposure: u64,
    pub outside_window: u64,
    /// Milestones sorted by (ts, step, variant).
    pub milestones: Vec<Milestone>,
    /// Sorted by `ts`.
    pub ripenings: Vec<Ripening>,
}

impl Population {
    /// Counts `phase` of `tally` for the variants `names` (others the log has are appended).
    /// With `until`, exposures and conversions at or after it do not count, exactly as if
    /// the log had been read up to it: a unit's first exposure and the earliest one in
    /// another variant are each either before the cut-off, and kept, or not seen. With
    /// `since`, only units first exposed at or after it count, with their conversions.
    pub fn count(
        tally: &ExperimentTally,
        phase: &PhaseTally,
        names: &[String],
        window_s: Option<f64>,
        maturity_s: f64,
        (since, until): (Option<i64>, Option<i64>),
    ) -> Population {
        let until = until.unwrap_or(NEVER);
        let since = since.unwrap_or(i64::MIN);
        let mut names = names.to_vec();
        let map: Vec<u16> = tally
            .variants
            .iter()
            .map(|v| match names.iter().position(|n| n == v) {
                Some(i) => i as u16,
                None => {
                    names.push(v.clone());
                    (names.len() - 1) as u16
                }
            })
            .collect();
        let k = names.len();
        let mut pop = Population {
            names,
            units: vec![0; k],
            converted: vec![0; k],
            values: vec![Moments::default(); k],
            value_sum: vec![0.0; k],
            crossovers: vec![0; k],
            unattributed: tally.left_out.unattributed,
            before_exposure: tally.left_out.before_exposure,
            outside_window: tally.left_out.outside_window,
            ..Population::default()
        };
        let window_ns = window_s.map(|s| (s * 1e9) as i64);
        let maturity_ns = (maturity_s * 1e9) as i64;
        // Per unit: (earliest counted conversion, value sum).
        // Floating-point sums depend on order: sum in a canonical one, so that the live
        // view and the CLI (which read the same events in different orders) agree exactly.
        let mut conversions: Vec<&super::tally::PendingConversion> =
            tally.conversions.iter().collect();
        conversions.sort_unstable_by(|a, b| {
            (a.ts, a.value.to_bits(), &a.unit).cmp(&(b.ts, b.value.to_bits(), &b.unit))
        });
        let mut conv: super::tally::Map<u128, (i64, f64)> = super::tally::Map::default();
        for c in conversions.into_iter().filter(|c| c.ts < until) {
            let Some(u) = phase.units.get(&c.unit).filter(|u| u.first < until) else {
                pop.unattributed += 1;
                continue;
            };
            if u.first < since {
                // A unit of the steps before: left out with its conversions.
                continue;
            }
            if c.ts < u.first {
                pop.before_exposure += 1;
                continue;
            }
            if window_ns.is_some_and(|w| c.ts - u.first > w) {
                pop.outside_window += 1;
                continue;
            }
            let e = conv.entry(c.unit).or_insert((NEVER, 0.0));
            e.0 = e.0.min(c.ts);
            e.1 += c.value;
        }
        pop.milestones.reserve(phase.units.len() + conv.len());
        let mut nonzero: Vec<Vec<f64>> = vec![Vec::new(); k];
        let mut zeros = vec![0u64; k];
        for (unit, s) in phase
            .units
            .iter()
            .filter(|(_, s)| s.first < until && s.first >= since)
        {
            let other = if s.other < until { s.other } else { NEVER };
            let v = map[s.variant as usize];
            let (conv_ts, value) = conv.get(unit).copied().unwrap_or((NEVER, 0.0));
            let at = |ts, step| Milestone {
                ts,
                step,
                variant: v,
                version: s.version,
                converted: step == Step::Leave && conv_ts < other,
            };
            pop.milestones.push(at(s.first, Step::Enter));
            if conv_ts < other {
                pop.milestones.push(at(conv_ts, Step::Convert));
            }
            if other != NEVER {
                pop.milestones.push(at(other, Step::Leave));
                pop.crossovers[v as usize] += 1;
                continue;
            }
            let ripe = s.first.saturating_add(maturity_ns);
            pop.ripenings.push(Ripening {
                ts: ripe,
                variant: v,
                conversion: false,
            });
            if conv_ts != NEVER {
                pop.ripenings.push(Ripening {
                    ts: ripe.max(conv_ts),
                    variant: v,
                    conversion: true,
                });
            }
            let v = v as usize;
            pop.units[v] += 1;
            if conv_ts != NEVER {
                pop.converted[v] += 1;
            }
            if value == 0.0 {
                zeros[v] += 1;
            } else {
                nonzero[v].push(value);
            }
        }
        for (v, mut vals) in nonzero.into_iter().enumerate() {
            vals.sort_unstable_by(f64::total_cmp);
            let m = &mut pop.values[v];
            for _ in 0..zeros[v] {
                m.push(0.0);
            }
            for x in vals {
                m.push(x);
                pop.value_sum[v] += x;
            }
        }
        pop.milestones.sort_unstable();
        pop.ripenings.sort_unstable();
        pop
    }
}
