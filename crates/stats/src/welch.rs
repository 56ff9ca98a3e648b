//! Value per unit (revenue): the difference of means and Welch's t-test, on per-unit
//! values (a unit's summed conversion values, 0 when it never converted) — scipy's
//! `ttest_ind(equal_var=False)`. Kept as running moments (Welford), so a live view can
//! update it one unit at a time without storing the values.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// Count, mean and sum of squared deviations of a sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    pub n: u64,
    pub mean: f64,
    pub m2: f64,
}

impl Moments {
    /// Adds one value (Welford's update: no cancellation for large values).
    pub fn push(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }

    pub fn of(values: &[f64]) -> Self {
        let mut m = Self::default();
        for &v in values {
            m.push(v);
        }
        m
    }

    /// The sample variance (n − 1 in the denominator).
    pub fn variance(&self) -> f64 {
        if self.n < 2 {
            f64::NAN
        } else {
            self.m2 / (self.n - 1) as f64
        }
    }
}

/// Welch's t statistic, degrees of freedom and two-sided p for treatment vs control.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Welch {
    pub diff: f64,
    pub t: f64,
    pub df: f64,
    pub p_value: f64,
}

/// None when an arm has fewer than 2 units or both arms have zero variance.
pub fn welch(t: &Moments, c: &Moments) -> Option<Welch> {
    if t.n < 2 || c.n < 2 {
        return None;
    }
    let (at, ac) = (t.variance() / t.n as f64, c.variance() / c.n as f64);
    if at + ac <= 0.0 {
        return None;
    }
    let diff = t.mean - c.mean;
    let stat = diff / (at + ac).sqrt();
    let df = (at + ac).powi(2) / (at * at / (t.n - 1) as f64 + ac * ac / (c.n - 1) as f64);
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    Some(Welch {
        diff,
        t: stat,
        df,
        p_value: 2.0 * dist.sf(stat.abs()),
    })
}
