//! Conversion rates and their comparison.
//!
//! * [`wilson`]: the Wilson score interval of c/n (statsmodels
//!   `proportion_confint(method="wilson")`);
//! * [`newcombe`]: the Newcombe hybrid score interval of rate_t − rate_c (statsmodels
//!   `confint_proportions_2indep(compare="diff", method="newcomb")`);
//! * [`pooled_z`]: the pooled two-proportion z and its two-sided p (statsmodels
//!   `proportions_ztest`);
//! * [`fisher_exact`]: Fisher's exact test, two-sided as scipy defines it, computed exactly
//!   in log space (hypergeometric terms via ln-gamma), never by a normal approximation;
//! * [`holm`]: Holm's step-down adjustment (statsmodels `multipletests(method="holm")`).

use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::erf::erfc;
use statrs::function::gamma::ln_gamma;

/// A closed interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// The two-sided critical value z₁₋α/₂.
pub fn z_critical(alpha: f64) -> f64 {
    // Normal::new(0, 1) cannot fail; the fallback is the 95% value.
    Normal::new(0.0, 1.0).map_or(1.959_963_984_540_054, |n| n.inverse_cdf(1.0 - alpha / 2.0))
}

/// The Wilson score interval of `c` successes in `n` trials; None when n = 0.
pub fn wilson(c: u64, n: u64, alpha: f64) -> Option<Interval> {
    if n == 0 {
        return None;
    }
    let (c, n) = (c as f64, n as f64);
    let p = c / n;
    let z = z_critical(alpha);
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    Some(Interval {
        low: center - half,
        high: center + half,
    })
}

/// Newcombe's hybrid score interval of c_t/n_t − c_c/n_c; None when an arm is empty.
pub fn newcombe(c_t: u64, n_t: u64, c_c: u64, n_c: u64, alpha: f64) -> Option<Interval> {
    let (t, c) = (wilson(c_t, n_t, alpha)?, wilson(c_c, n_c, alpha)?);
    let (p_t, p_c) = (c_t as f64 / n_t as f64, c_c as f64 / n_c as f64);
    let d = p_t - p_c;
    Some(Interval {
        low: d - ((p_t - t.low).powi(2) + (c.high - p_c).powi(2)).sqrt(),
        high: d + ((t.high - p_t).powi(2) + (p_c - c.low).powi(2)).sqrt(),
    })
}

/// The pooled two-proportion z statistic and its two-sided p; None when the pooled
/// variance is 0 (no conversions at all, or every unit converted) or an arm is empty.
pub fn pooled_z(c_t: u64, n_t: u64, c_c: u64, n_c: u64) -> Option<(f64, f64)> {
    if n_t == 0 || n_c == 0 {
        return None;
    }
    let (ct, nt, cc, nc) = (c_t as f64, n_t as f64, c_c as f64, n_c as f64);
    let pooled = (ct + cc) / (nt + nc);
    let var = pooled * (1.0 - pooled) * (1.0 / nt + 1.0 / nc);
    if var <= 0.0 {
        return None;
    }
    let z = (ct / nt - cc / nc) / var.sqrt();
    // 2 · (1 − Φ(|z|)) = erfc(|z| / √2), accurate far into the tail.
    Some((z, erfc(z.abs() / std::f64::consts::SQRT_2)))
}

/// ln C(n, k).
fn ln_choose(n: u64, k: u64) -> f64 {
    ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
}

/// Fisher's exact test on the 2×2 table (arms × converted / not), two-sided: the sum of
/// the probabilities of every table with the same margins that is no more likely than the
/// observed one (within a relative 1e-7, as scipy does). 1 for an empty table.
pub fn fisher_exact(c_t: u64, n_t: u64, c_c: u64, n_c: u64) -> f64 {
    let n = n_t + n_c;
    let k = c_t + c_c;
    if n == 0 {
        return 1.0;
    }
    let ln_total = ln_choose(n, k);
    let ln_pmf = |x: u64| ln_choose(n_t, x) + ln_choose(n_c, k - x) - ln_total;
    let lo = k.saturating_sub(n_c);
    let hi = n_t.min(k);
    let observed = ln_pmf(c_t);
    let bound = observed + (1.0f64 + 1e-7).ln();
    // The pmf is unimodal: walk out from the mode on both sides and stop once a term is
    // below e⁻⁶⁰ of the observed one (the rest, at most n terms, add < 10⁻¹⁸ relative to
    // p ≥ pmf(observed)). Without this, n = 10⁷ would sum millions of ln-gamma terms.
    let mode = (((k + 1) as f64) * ((n_t + 1) as f64) / ((n + 2) as f64)).floor() as u64;
    let mode = mode.clamp(lo, hi);
    let floor = observed - 60.0;
    let mut p = 0.0;
    let mut add = |l: f64| {
        if l <= bound {
            p += l.exp();
        }
    };
    for x in (lo..=mode).rev() {
        let l = ln_pmf(x);
        add(l);
        if l < floor {
            break;
        }
    }
    for x in mode + 1..=hi {
        let l = ln_pmf(x);
        add(l);
        if l < floor {
            break;
        }
    }
    p.min(1.0)
}

/// Holm's step-down adjustment of `p` (same order as given).
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        let adjusted = ((m - rank) as f64 * p[i]).min(1.0);
        running = running.max(adjusted);
        out[i] = running;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_of_nothing_is_none_and_bounds_stay_in_0_1() {
        assert_eq!(wilson(0, 0, 0.05), None);
        let w = wilson(0, 10, 0.05).unwrap();
        assert!(w.low.abs() < 1e-15 && w.high > 0.0 && w.high < 1.0);
        let w = wilson(10, 10, 0.05).unwrap();
        assert!((w.high - 1.0).abs() < 1e-12 && w.low < 1.0);
    }

    #[test]
    fn fisher_of_a_balanced_table_is_one() {
        assert!((fisher_exact(5, 10, 5, 10) - 1.0).abs() < 1e-12);
    }
}
