//! One evaluation of a rollout: each guardrail's value against its bound, and the action
//! that is due, if any. Pure: the same inputs give the same answer.
//!
//! * **error rate**: the always-valid confidence sequence of the difference of per-unit
//!   error rates (treatment − control, [`cohort_stats::sequential`]); it fails when its
//!   lower end exceeds `max_error_rate_increase`, judged only once the treatment has
//!   `min_errors` failed requests and each arm `step_min_units` units (a sequential test
//!   of a rare event fires falsely on a handful of counts);
//! * **latency**: the treatment's p99 over the window against `max_latency_p99_ratio` ×
//!   the control's, with `latency_min_requests` in each arm; a threshold check, as in
//!   Flagger, that rolls back after `failures_before_rollback` failing evaluations in a
//!   row (an evaluation without enough requests neither fails nor passes);
//! * **primary metric**: the decision rule's verdict for the treatment is roll back.
//!
//! A failing guardrail rolls back from any state the guardrails watch (running, paused,
//! done). Otherwise a running rollout advances once its step has lasted `step_min_s`
//! and each arm has `step_min_units` units exposed during it; after the last step it is
//! done (`hold`) or promoted when the treatment's verdict on the units first exposed
//! during the last step is a win (`promote`).

use std::collections::BTreeMap;

use serde::Serialize;

use cohort_config::schema::{OnLastStep, RolloutConfig};
use cohort_stats::sequential::sequential_mean_difference;

use crate::fold::{RolloutState, Status};
use crate::record::{GuardrailRecord, Kind};
use crate::tally::ArmStats;

/// What the decision rule says of the treatment (from the experiment's analysis).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdicts {
    /// The decision lists the treatment among those to roll back.
    pub roll_back: bool,
    /// The verdict on the units first exposed during the last step is a win for the
    /// treatment (None: not judged, e.g. not on the last step).
    pub win_last_step: Option<bool>,
}

/// A guardrail's reading.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardrailValue {
    /// `error_rate`, `latency_p99_ratio` or `primary_metric`.
    pub name: &'static str,
    /// What is compared with the bound: the lower end of the error-rate difference's
    /// interval, the p99 ratio, 1 for a roll-back verdict (None: not judged yet).
    pub value: Option<f64>,
    pub bound: f64,
    pub failing: bool,
    /// What the value is, or why it is not judged yet.
    pub note: String,
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub guardrails: Vec<GuardrailValue>,
    /// The action due and why (None: stay).
    pub action: Option<(Kind, String)>,
    /// Failing latency evaluations in a row, this one included.
    pub latency_failures: u32,
}

impl Evaluation {
    /// The guardrails as recorded with an action.
    pub fn records(&self) -> BTreeMap<String, GuardrailRecord> {
        self.guardrails
            .iter()
            .map(|g| {
                (
                    g.name.to_owned(),
                    GuardrailRecord {
                        value: g.value,
                        bound: g.bound,
                    },
                )
            })
            .collect()
    }
}

/// Evaluates `state` of a rollout configured as `cfg`, with the arms' tallies `[control,
/// treatment]`, the verdicts, the latency failures in a row so far and the time now.
pub fn evaluate(
    cfg: &RolloutConfig,
    state: &RolloutState,
    arms: &[ArmStats; 2],
    verdicts: Verdicts,
    latency_failures: u32,
    now_ns: i64,
) -> Evaluation {
    let [c, t] = arms;
    let g = &cfg.guardrails;
    let mut out = Evaluation {
        guardrails: Vec::new(),
        action: None,
        latency_failures,
    };
    if !state.status.guarded() {
        return out;
    }

    // Error rate.
    let min_units = cfg.step_min_units;
    let error = if t.failures < g.min_errors || t.units < min_units || c.units < min_units {
        GuardrailValue {
            name: "error_rate",
            value: None,
            bound: g.max_error_rate_increase,
            failing: false,
            note: format!(
                "waiting for {} failed treatment requests (has {}) and {min_units} units in each arm (control {}, treatment {})",
                g.min_errors, t.failures, c.units, t.units
            ),
        }
    } else {
        match sequential_mean_difference(&t.error_rates, &c.error_rates, g.alpha, g.n_star) {
            Some(d) => GuardrailValue {
                name: "error_rate",
                value: Some(d.ci.low),
                bound: g.max_error_rate_increase,
                failing: d.ci.low > g.max_error_rate_increase,
                note: format!(
                    "per-unit error rate {:.4} vs control {:.4}: the difference is {:.4}, at least {:.4} ({}% confidence sequence)",
                    t.error_rates.mean,
                    c.error_rates.mean,
                    d.estimate,
                    d.ci.low,
                    100.0 * (1.0 - g.alpha)
                ),
            },
            // Neither arm varies (every unit of each fails alike): the sequence has shrunk
            // to its estimate, which is then the difference itself. A treatment failing
            // every request beside a control failing none must not hide here.
            None => {
                let d = t.error_rates.mean - c.error_rates.mean;
                GuardrailValue {
                    name: "error_rate",
                    value: Some(d),
                    bound: g.max_error_rate_increase,
                    failing: d > g.max_error_rate_increase,
                    note: format!(
                        "every unit's error rate is {:.4} in the treatment and {:.4} in the control: the difference is {d:.4}",
                        t.error_rates.mean, c.error_rates.mean
                    ),
                }
            }
        }
    };
    out.guardrails.push(error);

    // Latency.
    if let Some(max_ratio) = g.max_latency_p99_ratio {
        let judged = c.window_requests >= g.latency_min_requests
            && t.window_requests >= g.latency_min_requests;
        let ratio = match (judged, t.p99_ms, c.p99_ms) {
            (true, Some(tp), Some(cp)) if cp > 0.0 => Some(tp / cp),
            _ => None,
        };
        let failing = ratio.is_some_and(|r| r > max_ratio);
        out.latency_failures = match ratio {
            Some(_) if failing => latency_failures + 1,
            Some(_) => 0,
            None => latency_failures,
        };
        out.guardrails.push(GuardrailValue {
            name: "latency_p99_ratio",
            value: ratio,
            bound: max_ratio,
            failing: failing && out.latency_failures >= g.failures_before_rollback,
            note: match ratio {
                Some(r) => format!(
                    "p99 {:.2} ms vs control {:.2} ms over the last {} s: ratio {r:.3}, failing {} of {} evaluations in a row",
                    t.p99_ms.unwrap_or(0.0),
                    c.p99_ms.unwrap_or(0.0),
                    g.latency_window_s,
                    out.latency_failures,
                    g.failures_before_rollback
                ),
                None => format!(
                    "waiting for {} requests of each arm in the last {} s (control {}, treatment {})",
                    g.latency_min_requests, g.latency_window_s, c.window_requests, t.window_requests
                ),
            },
        });
    }

    // The primary metric.
    if g.primary_metric {
        out.guardrails.push(GuardrailValue {
            name: "primary_metric",
            value: Some(if verdicts.roll_back { 1.0 } else { 0.0 }),
            bound: 0.0,
            failing: verdicts.roll_back,
            note: if verdicts.roll_back {
                "the decision rule's verdict for the treatment is roll back".to_owned()
            } else {
                "the decision rule does not say roll back".to_owned()
            },
        });
    }

    if let Some(f) = out.guardrails.iter().find(|g| g.failing) {
        out.action = Some((Kind::Rollback, format!("{}: {}", f.name, f.note)));
        return out;
    }
    if state.status != Status::Running {
        return out;
    }
    let elapsed_s = (now_ns - state.step_started_ns()) as f64 / 1e9;
    if elapsed_s < cfg.step_min_s || t.step_units < min_units || c.step_units < min_units {
        return out;
    }
    let held = format!(
        "step {} held {:.0} s (at least {}) with {} control and {} treatment units (at least {min_units}), guardrails passing",
        state.step + 1,
        elapsed_s,
        cfg.step_min_s,
        c.step_units,
        t.step_units
    );
    out.action = if state.step + 1 < cfg.steps.len() {
        Some((Kind::Advance, held))
    } else {
        match cfg.on_last_step {
            OnLastStep::Hold => Some((Kind::Done, format!("{held}; on_last_step: hold"))),
            OnLastStep::Promote if verdicts.win_last_step == Some(true) => Some((
                Kind::Promote,
                format!(
                    "{held}; the treatment wins on the units first exposed during the last step"
                ),
            )),
            OnLastStep::Promote => None,
        }
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fold::fold;
    use crate::record::{RolloutEvent, RolloutTag};
    use cohort_stats::welch::Moments;

    fn running() -> RolloutState {
        let start = RolloutEvent {
            kind_of_line: RolloutTag::Rollout,
            ts: "2026-12-07T10:00:00.000Z".into(),
            experiment: "e".into(),
            rollout_id: "r".into(),
            attempt: 0,
            step: 0,
            kind: Kind::Start,
            share: 0.1,
            reason: String::new(),
            by: "cohort".into(),
            guardrails: Default::default(),
        };
        fold("r", [&start]).unwrap()
    }

    fn arm(units: u64, rate: f64, requests: u64) -> ArmStats {
        ArmStats {
            units,
            requests,
            failures: (rate * requests as f64) as u64,
            step_units: units,
            error_rates: Moments {
                n: units,
                mean: rate,
                m2: 0.0,
            },
            window_requests: 0,
            p99_ms: None,
        }
    }

    /// A treatment failing every request beside a control failing none: neither arm
    /// varies, so there is no sequence, and the difference itself decides.
    #[test]
    fn a_treatment_that_always_fails_beside_a_clean_control_is_rolled_back() {
        let cfg: RolloutConfig = serde_json::from_str(
            r#"{"treatment": "t", "steps": [0.1, 0.5], "step_min_s": 1e9, "guardrails": {"max_latency_p99_ratio": null, "primary_metric": false}}"#,
        )
        .unwrap();
        let arms = [arm(250, 0.0, 600), arm(250, 1.0, 600)];
        let ev = evaluate(&cfg, &running(), &arms, Verdicts::default(), 0, 0);
        assert_eq!(ev.guardrails[0].value, Some(1.0));
        assert!(matches!(ev.action, Some((Kind::Rollback, _))), "{ev:?}");
        // Both arms alike and constant: no rollback.
        let arms = [arm(250, 0.0, 600), arm(250, 0.0, 600)];
        let ev = evaluate(&cfg, &running(), &arms, Verdicts::default(), 0, 0);
        assert_eq!(ev.action, None);
    }
}
