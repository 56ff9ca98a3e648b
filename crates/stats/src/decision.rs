//! The decision rule: winner, control wins, no difference, keep running, or invalid.
//!
//! Pure: it sees counts and p-values, never the log, so the A/A simulation in
//! tests/decision_aa.rs can call it millions of times. The rule, in order:
//!
//! 1. **Invalid** when the sample-ratio check failed: the split is not what was configured,
//!    so no comparison can be trusted (nothing is rolled back either).
//! 2. **Guardrail**: a weighted treatment with 0 conversions while the control has
//!    ≥ `min_conversions` and every weighted arm has ≥ `min_units` is rolled back even
//!    though its relative test is undefined: a broken model must not hide behind a null.
//!    It applies at any time, in both methods.
//! 3. **Gates**: no arm is judged until every weighted arm (except those the guardrail
//!    rolled back) has ≥ `min_units` units and ≥ `min_conversions` conversions. The
//!    asymptotic tests are not valid at small counts (without this gate the sequential
//!    test's A/A false-positive rate reaches 8–10% at 1% base rates).
//! 4. **Verdicts** per weighted treatment with its decision p (Holm-adjusted; sequential
//!    or fixed): `win` when p < alpha and its rate is above the control's, `roll_back`
//!    when p < alpha and below. `method: fixed` judges once, at the planned sample, and
//!    that decision is frozen ([`Judgement::Frozen`]).
//! 5. **Status**, first match: `winner` (the winning treatment with the highest rate),
//!    `control_wins` (every weighted treatment rolled back), `no_difference` (the planned
//!    sample is reached and nothing wins), `continue`.
//!
//! Weight-0 treatments are compared in the report but take no part here.

use serde::{Deserialize, Serialize};

use super::proportions::{fisher_exact, holm, pooled_z};
use super::relative::sequential_p;

/// One variant as the rule sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    pub name: String,
    /// Weight > 0 in the configuration in force.
    pub weighted: bool,
    pub units: u64,
    /// Converted units.
    pub conversions: u64,
}

impl Arm {
    pub fn rate(&self) -> f64 {
        if self.units == 0 {
            0.0
        } else {
            self.conversions as f64 / self.units as f64
        }
    }
}

/// The experiment's `decision` settings that the rule uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub alpha: f64,
    pub min_units: u64,
    pub min_conversions: u64,
}

/// The overall status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Winner,
    ControlWins,
    NoDifference,
    Continue,
    Invalid,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Winner => "winner",
            Status::ControlWins => "control_wins",
            Status::NoDifference => "no_difference",
            Status::Continue => "continue",
            Status::Invalid => "invalid",
        }
    }
}

/// `decision` in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub status: Status,
    /// The winner (`winner`), the control (`control_wins`), else null.
    pub variant: Option<String>,
    pub reason: String,
    /// Treatments to roll back, also while others keep running.
    pub roll_back: Vec<String>,
}

/// How the verdicts are reached at this look.
#[derive(Debug, Clone, Copy)]
pub enum Judgement<'a> {
    /// Judge now with these p-values (sequential: at every look; fixed: once, at the
    /// planned sample — the caller freezes the result).
    Now,
    /// Fixed method before the planned sample: no verdict yet (the guardrail still acts).
    NotYet,
    /// Fixed method after the planned sample: this decision, made then, stands.
    Frozen(&'a Decision),
}

/// Everything one look at an experiment knows.
#[derive(Debug, Clone, Copy)]
pub struct Look<'a> {
    pub arms: &'a [Arm],
    pub control: usize,
    /// The decision p per arm (None for the control and where the test is undefined).
    pub p: &'a [Option<f64>],
    /// Under the sequential method, the fixed-horizon p per arm, for the wording only: a
    /// fixed p below alpha while the sequential one is not must not read as "no
    /// difference". Empty under the fixed method.
    pub fixed_p: &'a [Option<f64>],
    pub rule: Rule,
    /// Units per variant the plan needs (None: unknown yet).
    pub required: Option<f64>,
    /// Some(reason) when the sample-ratio check failed.
    pub invalid: Option<&'a str>,
    pub judgement: Judgement<'a>,
}

impl Look<'_> {
    fn weighted_treatments(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.arms.len()).filter(|&i| i != self.control && self.arms[i].weighted)
    }

    /// Treatments the guardrail rolls back.
    pub fn guardrail(&self) -> Vec<usize> {
        let c = &self.arms[self.control];
        let every_arm_has_units = self
            .arms
            .iter()
            .enumerate()
            .filter(|(i, a)| a.weighted || *i == self.control)
            .all(|(_, a)| a.units >= self.rule.min_units);
        if !every_arm_has_units || c.conversions < self.rule.min_conversions {
            return Vec::new();
        }
        self.weighted_treatments()
            .filter(|&i| self.arms[i].conversions == 0)
            .collect()
    }

    /// Whether every arm that still counts has passed the gates.
    pub fn gates_pass(&self, guarded: &[usize]) -> bool {
        self.arms
            .iter()
            .enumerate()
            .filter(|(i, a)| (a.weighted || *i == self.control) && !guarded.contains(i))
            .all(|(_, a)| {
                a.units >= self.rule.min_units && a.conversions >= self.rule.min_conversions
            })
    }

    /// Whether every weighted arm still running has reached the planned sample.
    pub fn planned_sample_reached(&self, rolled_back: &[usize]) -> bool {
        let Some(required) = self.required else {
            return false;
        };
        self.arms
            .iter()
            .enumerate()
            .filter(|(i, a)| (a.weighted || *i == self.control) && !rolled_back.contains(i))
            .all(|(_, a)| a.units as f64 >= required)
    }
}

/// Applies the rule.
pub fn decide(look: &Look) -> Decision {
    let arms = look.arms;
    let control = &arms[look.control];
    if let Some(why) = look.invalid {
        return Decision {
            status: Status::Invalid,
            variant: None,
            reason: why.to_owned(),
            roll_back: Vec::new(),
        };
    }
    let guarded = look.guardrail();
    let mut wins: Vec<usize> = Vec::new();
    let mut rolled: Vec<usize> = guarded.clone();
    let mut gated = false;
    match look.judgement {
        Judgement::Frozen(d) => {
            let named = |n: &String| arms.iter().position(|a| &a.name == n);
            if d.status == Status::Winner {
                wins.extend(d.variant.iter().filter_map(named));
            }
            rolled.extend(d.roll_back.iter().filter_map(named));
        }
        Judgement::NotYet => {}
        Judgement::Now => {
            gated = !look.gates_pass(&guarded);
            if !gated {
                for i in look.weighted_treatments().filter(|i| !guarded.contains(i)) {
                    let Some(p) = look.p.get(i).copied().flatten() else {
                        continue;
                    };
                    if p < look.rule.alpha {
                        if arms[i].rate() > control.rate() {
                            wins.push(i);
                        } else if arms[i].rate() < control.rate() {
                            rolled.push(i);
                        }
                    }
                }
            }
        }
    }
    rolled.sort_unstable();
    rolled.dedup();
    let roll_back: Vec<String> = rolled.iter().map(|&i| arms[i].name.clone()).collect();
    let treatments: Vec<usize> = look.weighted_treatments().collect();
    let best = wins.iter().copied().max_by(|&a, &b| {
        arms[a]
            .rate()
            .total_cmp(&arms[b].rate())
            .then(arms[b].name.cmp(&arms[a].name))
    });
    let (status, variant, reason) = if let Some(w) = best {
        (
            Status::Winner,
            Some(arms[w].name.clone()),
            format!(
                "{} converts better than {} ({:.3}% vs {:.3}%), significant at alpha {}",
                arms[w].name,
                control.name,
                100.0 * arms[w].rate(),
                100.0 * control.rate(),
                look.rule.alpha
            ),
        )
    } else if !treatments.is_empty() && treatments.iter().all(|t| rolled.contains(t)) {
        (
            Status::ControlWins,
            Some(control.name.clone()),
            format!(
                "every treatment converts worse than {} (or not at all): keep {}",
                control.name, control.name
            ),
        )
    } else if matches!(look.judgement, Judgement::Frozen(_))
        || (!gated
            && !matches!(look.judgement, Judgement::NotYet)
            && look.planned_sample_reached(&rolled))
    {
        (
            Status::NoDifference,
            None,
            "the planned sample is reached and no treatment is significantly better".to_owned(),
        )
    } else {
        (
            Status::Continue,
            None,
            continue_reason(look, &guarded, gated),
        )
    };
    Decision {
        status,
        variant,
        reason,
        roll_back,
    }
}

fn continue_reason(look: &Look, guarded: &[usize], gated: bool) -> String {
    if look.weighted_treatments().next().is_none() {
        return "no treatment receives traffic".to_owned();
    }
    if gated || !look.gates_pass(guarded) {
        let r = look.rule;
        let short: Vec<&str> = look
            .arms
            .iter()
            .enumerate()
            .filter(|(i, a)| (a.weighted || *i == look.control) && !guarded.contains(i))
            .filter(|(_, a)| a.units < r.min_units || a.conversions < r.min_conversions)
            .map(|(_, a)| a.name.as_str())
            .collect();
        return format!(
            "waiting for {} units and {} conversions per arm (not yet: {})",
            r.min_units,
            r.min_conversions,
            short.join(", ")
        );
    }
    if matches!(look.judgement, Judgement::NotYet) {
        return match look.required {
            Some(n) => format!(
                "fixed-horizon test: judged once every arm has {} units",
                n.ceil()
            ),
            None => "fixed-horizon test: the planned sample is not known yet".to_owned(),
        };
    }
    let naive: Vec<String> = look
        .fixed_p
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.filter(|&p| p < look.rule.alpha).map(|p| (i, p)))
        .map(|(i, p)| format!("{} ({})", fmt_p(p), look.arms[i].name))
        .collect();
    if naive.is_empty() {
        "not yet significant under the sequential test (peeking-safe)".to_owned()
    } else {
        format!(
            "not yet significant under the sequential test (peeking-safe); the fixed-horizon p of {} is not valid while the experiment is watched continuously",
            naive.join(", ")
        )
    }
}

/// A p-value as people read it: three decimals, or scientific notation when smaller.
fn fmt_p(p: f64) -> String {
    if p >= 0.001 {
        format!("{p:.3}")
    } else {
        format!("{p:.1e}")
    }
}

/// The test behind a fixed-horizon p.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Test {
    Z,
    Fisher,
}

/// The fixed-horizon two-sided p of a treatment against the control: the pooled z test,
/// or Fisher's exact test when any expected cell of the 2×2 table is below 5. None when
/// an arm has no units.
pub fn fixed_p(c_t: u64, n_t: u64, c_c: u64, n_c: u64) -> Option<(f64, Test)> {
    if n_t == 0 || n_c == 0 {
        return None;
    }
    let (n, conv) = ((n_t + n_c) as f64, (c_t + c_c) as f64);
    let min_expected = [n_t as f64, n_c as f64]
        .iter()
        .flat_map(|&row| [row * conv / n, row * (n - conv) / n])
        .fold(f64::INFINITY, f64::min);
    if min_expected < 5.0 {
        return Some((fisher_exact(c_t, n_t, c_c, n_c), Test::Fisher));
    }
    // Expected cells ≥ 5 imply a non-zero pooled variance.
    pooled_z(c_t, n_t, c_c, n_c).map(|(_, p)| (p, Test::Z))
}

/// Which p-value the rule uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// GrowthBook's always-valid p for the relative lift, with tuning parameter N*.
    Sequential { n_star: f64 },
    /// The fixed-horizon p ([`fixed_p`]).
    Fixed,
}

/// The decision p of every arm (None for the control and where undefined), Holm-adjusted
/// across the treatments that have one.
pub fn decision_p(arms: &[Arm], control: usize, method: Method, alpha: f64) -> Vec<Option<f64>> {
    let c = &arms[control];
    let raw: Vec<Option<f64>> = arms
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if i == control {
                return None;
            }
            match method {
                Method::Fixed => {
                    fixed_p(t.conversions, t.units, c.conversions, c.units).map(|p| p.0)
                }
                Method::Sequential { n_star } => sequential_p(
                    t.conversions,
                    t.units,
                    c.conversions,
                    c.units,
                    alpha,
                    n_star,
                )
                .ok(),
            }
        })
        .collect();
    holm_some(&raw)
}

/// Holm's adjustment over the values present; absent ones stay absent.
pub fn holm_some(raw: &[Option<f64>]) -> Vec<Option<f64>> {
    let present: Vec<f64> = raw.iter().flatten().copied().collect();
    let mut adjusted = holm(&present).into_iter();
    raw.iter()
        .map(|p| p.and_then(|_| adjusted.next()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(name: &str, units: u64, conversions: u64) -> Arm {
        Arm {
            name: name.into(),
            weighted: true,
            units,
            conversions,
        }
    }

    const RULE: Rule = Rule {
        alpha: 0.05,
        min_units: 100,
        min_conversions: 30,
    };

    fn look<'a>(arms: &'a [Arm], p: &'a [Option<f64>]) -> Look<'a> {
        Look {
            arms,
            control: 0,
            p,
            fixed_p: &[],
            rule: RULE,
            required: Some(5000.0),
            invalid: None,
            judgement: Judgement::Now,
        }
    }

    #[test]
    fn every_status() {
        let arms = [arm("a", 1000, 100), arm("b", 1000, 150), arm("c", 1000, 60)];
        // b wins, c is rolled back beside it.
        let d = decide(&look(&arms, &[None, Some(0.001), Some(0.01)]));
        assert_eq!(d.status, Status::Winner);
        assert_eq!(d.variant.as_deref(), Some("b"));
        assert_eq!(d.roll_back, ["c"]);
        // Only c significant: rolled back while b keeps running.
        let d = decide(&look(&arms, &[None, Some(0.2), Some(0.01)]));
        assert_eq!(
            (d.status, d.roll_back.clone()),
            (Status::Continue, vec!["c".to_owned()])
        );
        // Both worse and significant: the control wins.
        let arms2 = [arm("a", 1000, 150), arm("b", 1000, 100), arm("c", 1000, 60)];
        let d = decide(&look(&arms2, &[None, Some(0.01), Some(0.01)]));
        assert_eq!(d.status, Status::ControlWins);
        assert_eq!(d.variant.as_deref(), Some("a"));
        // The plan is reached without a difference.
        let big = [arm("a", 6000, 600), arm("b", 6000, 610)];
        let d = decide(&look(&big, &[None, Some(0.7)]));
        assert_eq!(d.status, Status::NoDifference);
        // An SRM failure overrides everything.
        let mut l = look(&arms, &[None, Some(0.001), Some(0.01)]);
        l.invalid = Some("srm");
        let d = decide(&l);
        assert_eq!(
            (d.status, d.roll_back.len(), d.variant),
            (Status::Invalid, 0, None)
        );
    }

    #[test]
    fn a_naive_fixed_p_is_named_as_invalid_while_sequential_is_not_significant() {
        let arms = [arm("a", 2000, 200), arm("b", 2000, 250)];
        let fixed = [None, Some(0.006)];
        let mut l = look(&arms, &[None, Some(0.2)]);
        l.required = Some(50_000.0);
        l.fixed_p = &fixed;
        let d = decide(&l);
        assert_eq!(d.status, Status::Continue);
        assert_eq!(
            d.reason,
            "not yet significant under the sequential test (peeking-safe); the fixed-horizon p of 0.006 (b) is not valid while the experiment is watched continuously"
        );
        l.fixed_p = &[None, Some(0.3)];
        let d = decide(&l);
        assert_eq!(
            d.reason,
            "not yet significant under the sequential test (peeking-safe)"
        );
    }

    #[test]
    fn gates_hold_back_verdicts_but_not_the_guardrail() {
        let arms = [arm("a", 1000, 40), arm("b", 1000, 20), arm("c", 1000, 0)];
        let d = decide(&look(&arms, &[None, Some(0.0001), None]));
        // b has 20 < 30 conversions: nothing is judged; c (0 conversions) is rolled back.
        assert_eq!(d.status, Status::Continue);
        assert_eq!(d.roll_back, ["c"]);
        assert!(d.reason.contains("b"), "{}", d.reason);
        // A guarded arm no longer blocks the others.
        let arms = [arm("a", 1000, 40), arm("b", 1000, 80), arm("c", 1000, 0)];
        let d = decide(&look(&arms, &[None, Some(0.0001), None]));
        assert_eq!(
            (d.status, d.roll_back.clone()),
            (Status::Winner, vec!["c".to_owned()])
        );
    }

    #[test]
    fn weight_zero_treatments_take_no_part() {
        let mut arms = vec![arm("a", 1000, 100), arm("b", 1000, 160), arm("z", 3, 0)];
        arms[2].weighted = false;
        let d = decide(&look(&arms, &[None, Some(0.001), Some(0.0001)]));
        assert_eq!(
            (d.status, d.variant.as_deref()),
            (Status::Winner, Some("b"))
        );
        assert!(d.roll_back.is_empty());
    }

    #[test]
    fn fixed_decides_once_and_the_guardrail_still_acts() {
        let arms = [arm("a", 1000, 100), arm("b", 1000, 150)];
        let mut l = look(&arms, &[None, Some(0.001)]);
        l.judgement = Judgement::NotYet;
        assert_eq!(decide(&l).status, Status::Continue);
        let frozen = Decision {
            status: Status::NoDifference,
            variant: None,
            reason: "then".into(),
            roll_back: vec![],
        };
        l.judgement = Judgement::Frozen(&frozen);
        // Later data would be significant, but the frozen decision stands.
        assert_eq!(decide(&l).status, Status::NoDifference);
        let later = [arm("a", 1000, 100), arm("b", 1000, 0)];
        let mut l2 = look(&later, &[None, None]);
        l2.judgement = Judgement::Frozen(&frozen);
        let d = decide(&l2);
        assert_eq!(
            (d.status, d.roll_back),
            (Status::ControlWins, vec!["b".to_owned()])
        );
    }
}
