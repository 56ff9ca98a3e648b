//! Sample size: how many units per variant a fixed-horizon test needs.

use statrs::distribution::{ContinuousCDF, Normal};

/// Units per variant to detect a relative lift `mde` over baseline rate `p1` with a
/// two-sided test at level `alpha` and the given `power`:
/// (z₁₋α/₂ + z_power)² · (p₁(1−p₁) + p₂(1−p₂)) / (p₂ − p₁)², p₂ = p₁(1 + mde), unrounded.
/// None when p₁ = 0, mde = 0 or p₂ ≥ 1 (no such test exists).
pub fn required_units_per_variant(p1: f64, mde: f64, alpha: f64, power: f64) -> Option<f64> {
    let p2 = p1 * (1.0 + mde);
    if p1 <= 0.0 || p2 >= 1.0 || mde == 0.0 {
        return None;
    }
    let normal = Normal::new(0.0, 1.0).ok()?;
    let z = normal.inverse_cdf(1.0 - alpha / 2.0) + normal.inverse_cdf(power);
    Some(z * z * (p1 * (1.0 - p1) + p2 * (1.0 - p2)) / (p2 - p1).powi(2))
}
