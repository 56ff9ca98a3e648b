//! Always-valid inference: the asymptotic confidence sequence of Waudby-Smith et al. 2023
//! (arXiv 2103.06476v7: the interval of eq. 9, ρ from eq. 161, the e-value of eq. 155) as
//! GrowthBook computes it (gbstats 0.8.0 `SequentialTwoSidedTTest`). The interval and p
//! hold at every look, so a guardrail may check them after each unit.
//!
//! The sequence needs only an asymptotically normal estimate, its variance, and N, the units
//! in both arms together; [`crate::relative`] uses it for the relative lift, and
//! [`sequential_mean_difference`] for the difference of two per-unit means.
//!
//! With V the variance of the estimate, ρ² = (−2 ln α + ln(1 − 2 ln α)) / N* and
//! a = Nρ² + 1:
//!
//! * half-width √(V N) · √(2a ln(√a / α) / (Nρ)²);
//! * p = min(1, 1/E), E = exp(ρ² S / (2a)) / √a with S = estimate² N / V.
//!
//! N* (`n_star`) is the tuning parameter: the sequence is tightest around N = N*.

use super::proportions::Interval;
use super::welch::Moments;

/// ρ of eq. 161.
fn rho(alpha: f64, n_star: f64) -> f64 {
    ((-2.0 * alpha.ln() + (-2.0 * alpha.ln() + 1.0).ln()) / n_star).sqrt()
}

/// The half-width of the sequence around an estimate of variance `variance` after `n`
/// units in all (eq. 9).
pub(crate) fn cs_half_width(variance: f64, n: f64, alpha: f64, n_star: f64) -> f64 {
    let rho = rho(alpha, n_star);
    let nr2p1 = n * rho * rho + 1.0;
    (variance * n).sqrt() * ((2.0 * nr2p1) * (nr2p1.sqrt() / alpha).ln() / (n * rho).powi(2)).sqrt()
}

/// The always-valid p of an estimate of variance `variance` after `n` units in all:
/// min(1, 1/E) with the e-value of eq. 155 against a difference of 0.
pub(crate) fn cs_p_value(estimate: f64, variance: f64, n: f64, alpha: f64, n_star: f64) -> f64 {
    let rho = rho(alpha, n_star);
    let nr2p1 = n * rho * rho + 1.0;
    let st2 = estimate.powi(2) * n / variance;
    let evalue = (rho * rho * st2 / (2.0 * nr2p1)).exp() / nr2p1.sqrt();
    (1.0 / evalue).min(1.0)
}

/// Treatment mean − control mean with its always-valid interval and p.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MeanDifference {
    pub estimate: f64,
    pub ci: Interval,
    pub p_value: f64,
}

/// The always-valid two-sided interval and p for the absolute difference of the per-unit
/// means, treatment `t` minus control `c`, at level `1 − alpha` with tuning parameter
/// `n_star`: gbstats 0.8.0 `SequentialTwoSidedTTest` with
/// `SequentialConfig(alpha, difference_type="absolute", sequential_tuning_parameter=n_star)`
/// on `SampleMeanStatistic`s, control as `stat_a`. Each arm's variance is the sample
/// variance (n − 1), V = s_t²/n_t + s_c²/n_c and N = n_t + n_c.
///
/// None only when there is no sequence: an arm has fewer than 2 units, or V is not
/// positive (both arms have zero variance).
///
/// Where this departs from gbstats, on purpose: gbstats refuses when either arm has zero
/// variance (`ZERO_NEGATIVE_VARIANCE`) or the control's mean is 0
/// (`ZERO_NEGATIVE_BASELINE_VARIATION`, a check meant for the relative lift). Neither makes
/// the absolute difference undefined: V is still positive when one arm varies, and this
/// computes the same formula. That is the usual case for error rates, where a healthy
/// control has no failures at all (mean 0, variance 0). The values there are checked
/// against the formula written independently in tests/fixtures/stats/sequential_mean.py,
/// which also shows it equal to gbstats' where gbstats computes.
///
/// `alpha` must be in (0, 1) and `n_star` positive.
pub fn sequential_mean_difference(
    t: &Moments,
    c: &Moments,
    alpha: f64,
    n_star: f64,
) -> Option<MeanDifference> {
    if t.n < 2 || c.n < 2 {
        return None;
    }
    let variance = t.variance() / t.n as f64 + c.variance() / c.n as f64;
    if variance.is_nan() || variance <= 0.0 {
        return None;
    }
    let n = (t.n + c.n) as f64;
    let estimate = t.mean - c.mean;
    let width = cs_half_width(variance, n, alpha, n_star);
    Some(MeanDifference {
        estimate,
        ci: Interval {
            low: estimate - width,
            high: estimate + width,
        },
        p_value: cs_p_value(estimate, variance, n, alpha, n_star),
    })
}

/// The half-width of [`sequential_mean_difference`]'s interval for `n_t` treatment units
/// of per-unit sample variance `var_t` and `n_c` control units of `var_c`: what a caller
/// needs to know how far the interval reaches at a given size, e.g. to pick a guardrail's
/// bound that a given difference crosses. Either variance may be 0 (a control without
/// failures). No checks: meaningful for n_t, n_c ≥ 1 and variances ≥ 0; a zero count gives
/// a result that is not finite.
pub fn half_width(n_t: u64, var_t: f64, n_c: u64, var_c: f64, alpha: f64, n_star: f64) -> f64 {
    let variance = var_t / n_t as f64 + var_c / n_c as f64;
    cs_half_width(variance, (n_t + n_c) as f64, alpha, n_star)
}
