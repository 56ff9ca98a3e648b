//! The relative lift rate_t / rate_c − 1 with its interval and p, exactly as GrowthBook's
//! frequentist engine computes it (gbstats 0.8.0 `TwoSidedTTest` on
//! `ProportionStatistic`s, control as the baseline, `difference_type="relative"`):
//!
//! * variance by the delta method: v_t / (p_c² n_t) + v_c p_t² / (p_c⁴ n_c), v = p(1 − p);
//! * Welch–Satterthwaite degrees of freedom on the *raw* per-arm variances;
//! * interval estimate ± t₁₋α/₂,df · √variance; p = 2 (1 − F_t(|estimate| / √variance)).
//!
//! Where gbstats returns an error (control rate 0; an arm's rate 0 or 1, which includes
//! every arm of one unit) this returns the reason instead of gbstats' placeholder
//! 0 / [0, 0] / 1, so that no report shows a made-up number.

use statrs::distribution::{ContinuousCDF, StudentsT};

use super::proportions::Interval;
use super::sequential::{cs_half_width, cs_p_value};

/// The relative lift of a treatment over the control.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RelativeLift {
    pub estimate: f64,
    pub ci: Interval,
    pub p_value: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
}

/// Why there is no relative lift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoRelativeLift {
    /// An arm has no units.
    EmptyArm,
    /// The control's rate is 0: a relative change of 0 is undefined.
    ZeroBaseline,
    /// An arm's rate is 0 or 1, so its variance is 0 (every one-unit arm).
    ZeroVariance,
}

impl NoRelativeLift {
    pub fn reason(self) -> &'static str {
        match self {
            Self::EmptyArm => "an arm has no units",
            Self::ZeroBaseline => {
                "the control's conversion rate is 0, so a relative lift is undefined"
            }
            Self::ZeroVariance => {
                "an arm's conversion rate is 0 or 1 (zero variance), so the t interval is undefined"
            }
        }
    }
}

/// The `p`-quantile of Student's t with `df` degrees of freedom (p > 0.5).
///
/// statrs 0.19's `StudentsT::inverse_cdf` loses accuracy above df ≈ 10⁴ (1.9563 instead
/// of 1.95996 at df = 3·10⁶, 1.83 at 10⁷) and does not return at 2·10⁷ — and a report
/// with millions of units per arm has such df. From df = 1000 on, this uses the
/// Cornish–Fisher expansion in 1/df to the fourth order (Abramowitz & Stegun 26.7.5),
/// whose error there is below 10⁻¹⁴; below, statrs (checked against scipy's `t.ppf` in
/// tests/fixtures/stats/t_quantile.py for both ranges).
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if df < 1000.0 {
        if let Ok(t) = StudentsT::new(0.0, 1.0, df) {
            return t.inverse_cdf(p);
        }
    }
    let z = statrs::distribution::Normal::new(0.0, 1.0).map_or(f64::NAN, |n| n.inverse_cdf(p));
    let (z2, v) = (z * z, 1.0 / df);
    let g1 = (z2 + 1.0) * z / 4.0;
    let g2 = ((5.0 * z2 + 16.0) * z2 + 3.0) * z / 96.0;
    let g3 = (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) * z / 384.0;
    let g4 = ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) * z / 92160.0;
    z + v * (g1 + v * (g2 + v * (g3 + v * g4)))
}

/// The delta-method estimate of rate_t / rate_c − 1 and its variance.
struct Delta {
    estimate: f64,
    variance: f64,
    nt: f64,
    nc: f64,
    vt: f64,
    vc: f64,
}

fn delta(c_t: u64, n_t: u64, c_c: u64, n_c: u64) -> Result<Delta, NoRelativeLift> {
    if n_t == 0 || n_c == 0 {
        return Err(NoRelativeLift::EmptyArm);
    }
    let (nt, nc) = (n_t as f64, n_c as f64);
    let (pt, pc) = (c_t as f64 / nt, c_c as f64 / nc);
    if pc == 0.0 {
        return Err(NoRelativeLift::ZeroBaseline);
    }
    let (vt, vc) = (pt * (1.0 - pt), pc * (1.0 - pc));
    if vt <= 0.0 || vc <= 0.0 {
        return Err(NoRelativeLift::ZeroVariance);
    }
    Ok(Delta {
        estimate: (pt - pc) / pc,
        variance: vt / (pc * pc * nt) + vc * pt * pt / (pc.powi(4) * nc),
        nt,
        nc,
        vt,
        vc,
    })
}

/// The relative lift of `c_t / n_t` over `c_c / n_c` at level `1 − alpha`.
pub fn relative_lift(
    c_t: u64,
    n_t: u64,
    c_c: u64,
    n_c: u64,
    alpha: f64,
) -> Result<RelativeLift, NoRelativeLift> {
    let Delta {
        estimate,
        variance,
        nt,
        nc,
        vt,
        vc,
    } = delta(c_t, n_t, c_c, n_c)?;
    let df = (vt / nt + vc / nc).powi(2)
        / (vt * vt / (nt * nt * (nt - 1.0)) + vc * vc / (nc * nc * (nc - 1.0)));
    let t = StudentsT::new(0.0, 1.0, df).map_err(|_| NoRelativeLift::ZeroVariance)?;
    let se = variance.sqrt();
    let width = t_quantile(1.0 - alpha / 2.0, df) * se;
    Ok(RelativeLift {
        estimate,
        ci: Interval {
            low: estimate - width,
            high: estimate + width,
        },
        p_value: 2.0 * (1.0 - t.cdf((estimate / se).abs())),
        df,
    })
}

/// GrowthBook's always-valid (sequential) interval and p for the relative lift: the
/// asymptotic confidence sequence of [`crate::sequential`] on the delta-method variance,
/// as gbstats 0.8.0 `SequentialTwoSidedTTest` computes it, with tuning parameter `n_star`.
/// p = min(1, 1/E). Same errors as [`relative_lift`].
pub fn sequential_relative_lift(
    c_t: u64,
    n_t: u64,
    c_c: u64,
    n_c: u64,
    alpha: f64,
    n_star: f64,
) -> Result<(Interval, f64), NoRelativeLift> {
    let d = delta(c_t, n_t, c_c, n_c)?;
    let n = d.nt + d.nc;
    let width = cs_half_width(d.variance, n, alpha, n_star);
    Ok((
        Interval {
            low: d.estimate - width,
            high: d.estimate + width,
        },
        cs_p_value(d.estimate, d.variance, n, alpha, n_star),
    ))
}

/// Only the always-valid p of [`sequential_relative_lift`] (no interval: what the
/// decision rule needs, cheaply).
pub fn sequential_p(
    c_t: u64,
    n_t: u64,
    c_c: u64,
    n_c: u64,
    alpha: f64,
    n_star: f64,
) -> Result<f64, NoRelativeLift> {
    let d = delta(c_t, n_t, c_c, n_c)?;
    Ok(cs_p_value(
        d.estimate,
        d.variance,
        d.nt + d.nc,
        alpha,
        n_star,
    ))
}
