//! Conversion rates and their comparison.
//!
//! * [`wilson`]: the Wilson score interval of c/n (statsmodels
//!   `proportion_confint(method="wilson")`);
//! * [`newcombe`]: the Newcombe hybrid score interval of rate_t − rate_c (statsmodels
//!   `confint_proportions_2indep(compare="diff", method="newcomb")`);
//! * [`pooled_z`]: the pooled two-proportion z and its two-sided p (statsmodels
//!   `proportions_ztest`);
//! * [`fisher_exact`]: Fisher's exact test, two-sided as scipy defines it, computed exactly
//!   in log space (exact ratios of consecutive hypergeometric terms), never by a normal approximation;
//! * [`holm`]: Holm's step-down adjustment (statsmodels `multipletests(method="holm")`).

use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::erf::erfc;

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

/// Fisher's exact test on the 2×2 table (arms × converted / not), two-sided: the sum of
/// the probabilities of every table with the same margins that is no more likely than the
/// observed one (within a relative 1e-7, as scipy does). 1 for an empty table.
///
/// Computed in log space from the mode outward with the exact ratio of consecutive
/// hypergeometric terms, pmf(x+1)/pmf(x) = (n_t − x)(k − x) / ((x + 1)(n_c − k + x + 1)):
/// each step is accurate to a few ulps whatever n is. (ln-gamma differences are not: at
/// n = 10⁹ each lnΓ is ~2·10¹⁰ and its last-bit error is a relative 10⁻⁶ in the term —
/// the reason scipy's `fisher_exact` is only ~1e-7 accurate there.) The walk stops once a
/// term is below e⁻⁶⁰ of the observed one: the rest adds < 10⁻¹⁷ relative.
pub fn fisher_exact(c_t: u64, n_t: u64, c_c: u64, n_c: u64) -> f64 {
    let n = n_t + n_c;
    let k = c_t + c_c;
    if n == 0 {
        return 1.0;
    }
    let lo = k.saturating_sub(n_c);
    let hi = n_t.min(k);
    // ln pmf(x+1) − ln pmf(x), for lo ≤ x < hi.
    let step = |x: u64| -> f64 {
        let num = (n_t - x) as f64 * (k - x) as f64;
        let den = (x + 1) as f64 * (n_c + x + 1 - k) as f64;
        (num / den).ln()
    };
    let mode = (((k + 1) as f64) * ((n_t + 1) as f64) / ((n + 2) as f64)).floor() as u64;
    let mode = mode.clamp(lo, hi);
    // ln pmf(c_t) − ln pmf(mode) (≤ 0: the mode is the most likely table).
    let mut l_obs = 0.0;
    if c_t > mode {
        for x in mode..c_t {
            l_obs += step(x);
        }
    } else {
        for x in c_t..mode {
            l_obs -= step(x);
        }
    }
    let bound = l_obs + (1.0f64 + 1e-7).ln();
    let floor = l_obs.min(0.0) - 60.0;
    // Sums relative to the observed term (accepted) and to the mode (all).
    let (mut accepted, mut total) = (0.0f64, 0.0f64);
    let mut add = |l: f64| {
        total += l.exp();
        if l <= bound {
            accepted += (l - l_obs).exp();
        }
    };
    add(0.0);
    let mut l = 0.0;
    for x in mode..hi {
        l += step(x);
        add(l);
        if l < floor {
            break;
        }
    }
    let mut l = 0.0;
    for x in (lo..mode).rev() {
        l -= step(x);
        add(l);
        if l < floor {
            break;
        }
    }
    (l_obs + accepted.ln() - total.ln()).exp().min(1.0)
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
