//! Chi-square tests on counts: the omnibus test of independence across variants and the
//! sample-ratio-mismatch (SRM) goodness of fit.

use statrs::distribution::{ChiSquared, ContinuousCDF};

/// A chi-square statistic with its degrees of freedom and upper-tail p.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ChiSquare {
    pub chi2: f64,
    pub df: u32,
    pub p_value: f64,
}

/// P(χ²_df ≥ x).
pub fn chi2_sf(x: f64, df: u32) -> f64 {
    ChiSquared::new(f64::from(df)).map_or(f64::NAN, |d| d.sf(x))
}

/// Why the omnibus test has no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OmnibusSkipped {
    /// Fewer than three variants with at least one unit.
    TooFewVariants,
    /// No unit converted, or every unit did: a column of the table is all zero.
    ZeroColumn,
}

/// The chi-square test of independence (no continuity correction) on the k×2 table of
/// (converted, not converted) per variant, over the variants with ≥ 1 unit — scipy's
/// `chi2_contingency(correction=False)`.
pub fn omnibus(rows: &[(u64, u64)]) -> Result<ChiSquare, OmnibusSkipped> {
    let rows: Vec<(f64, f64)> = rows
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|&(c, n)| (c as f64, (n - c.min(n)) as f64))
        .collect();
    if rows.len() < 3 {
        return Err(OmnibusSkipped::TooFewVariants);
    }
    let col_yes: f64 = rows.iter().map(|r| r.0).sum();
    let col_no: f64 = rows.iter().map(|r| r.1).sum();
    if col_yes == 0.0 || col_no == 0.0 {
        return Err(OmnibusSkipped::ZeroColumn);
    }
    let total = col_yes + col_no;
    let chi2: f64 = rows
        .iter()
        .map(|&(yes, no)| {
            let n = yes + no;
            let (e_yes, e_no) = (n * col_yes / total, n * col_no / total);
            (yes - e_yes).powi(2) / e_yes + (no - e_no).powi(2) / e_no
        })
        .sum();
    let df = (rows.len() - 1) as u32;
    Ok(ChiSquare {
        chi2,
        df,
        p_value: chi2_sf(chi2, df),
    })
}

/// The goodness of fit of `observed` unit counts to `shares` (normalized here) — scipy's
/// `chisquare(observed, f_exp=total × share)`. None with fewer than two variants or no units.
pub fn srm(observed: &[u64], shares: &[f64]) -> Option<ChiSquare> {
    if observed.len() < 2 || observed.len() != shares.len() {
        return None;
    }
    let total: f64 = observed.iter().map(|&o| o as f64).sum();
    let share_sum: f64 = shares.iter().sum();
    if total == 0.0 || share_sum <= 0.0 {
        return None;
    }
    let chi2: f64 = observed
        .iter()
        .zip(shares)
        .map(|(&o, &s)| {
            let e = total * s / share_sum;
            (o as f64 - e).powi(2) / e
        })
        .sum();
    let df = (observed.len() - 1) as u32;
    Some(ChiSquare {
        chi2,
        df,
        p_value: chi2_sf(chi2, df),
    })
}

/// The goodness of fit of `live` category counts to a reference's: scipy's
/// `chisquare(live, f_exp = L × p)`, with the reference's proportions taken by the PSI's
/// rule ([`crate::psi`]): `p_i = (r_i + 0.5) / (R + 0.5·B)`, so a category the reference
/// never had (the last bin, "other", by the caller's convention) expects a little, never
/// nothing. df = B − 1. None with fewer than two bins, different lengths, or nothing live.
pub fn goodness_of_fit(live: &[u64], reference: &[u64]) -> Option<ChiSquare> {
    if live.len() != reference.len() {
        return None;
    }
    // The same test as the sample-ratio check, with the smoothed counts as the shares.
    let shares: Vec<f64> = reference.iter().map(|&r| r as f64 + 0.5).collect();
    srm(live, &shares)
}
