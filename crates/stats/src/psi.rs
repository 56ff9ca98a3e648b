//! The population stability index (PSI) of a live sample against a reference, defined
//! exactly:
//!
//! * **Bins of a numeric column** are cut at the reference's deciles, numpy's default
//!   (`linear`) quantiles at 0.1, 0.2, …, 0.9, with repeated edges merged: a column with
//!   few distinct values gets fewer bins (a reference of a single value, two: up to it and
//!   above it). A value `v` falls in the first bin whose edge is ≥ `v` (the last
//!   bin when there is none): bins are closed on the right, so a value that repeats sits
//!   in the bin its own edge closes.
//! * **Bins of a categorical column** are the reference's categories and one more for every
//!   value the reference never had; building them is the caller's (it knows the names).
//! * **Each bin's count gets + 0.5**, on the reference's side and on the live side, so an
//!   empty bin gives a finite index: with `B` bins, reference counts `r` (total `R`) and live
//!   counts `l` (total `L`), `p_i = (r_i + 0.5) / (R + 0.5·B)`, `q_i = (l_i + 0.5) / (L +
//!   0.5·B)` and `PSI = Σ (q_i − p_i) · ln(q_i / p_i)`.
//!
//! Only the counts enter the index, so a window is kept as bin counts (per sub-window), not
//! as rows.

/// Bin edges of a numeric column, from its reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Bins {
    /// Strictly increasing; bin `i` holds the values in `(edges[i-1], edges[i]]`.
    edges: Vec<f64>,
}

impl Bins {
    /// The reference's decile edges. None when the reference is empty or holds a value
    /// that is not a finite number.
    pub fn deciles(reference: &[f64]) -> Option<Self> {
        if reference.is_empty() || reference.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let mut sorted = reference.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mut edges: Vec<f64> = Vec::with_capacity(9);
        for k in 1..10 {
            let e = quantile(&sorted, f64::from(k) / 10.0);
            if edges.last().is_none_or(|&last| e > last) {
                edges.push(e);
            }
        }
        Some(Self { edges })
    }

    /// Bins from edges given in increasing order (repeats are merged).
    pub fn from_edges(edges: &[f64]) -> Self {
        let mut e: Vec<f64> = Vec::with_capacity(edges.len());
        for &x in edges {
            if e.last().is_none_or(|&last| x > last) {
                e.push(x);
            }
        }
        Self { edges: e }
    }

    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    /// How many bins (one more than the edges).
    pub fn len(&self) -> usize {
        self.edges.len() + 1
    }

    /// Never: a column has at least one bin.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The bin of a finite value.
    pub fn index(&self, v: f64) -> usize {
        self.edges.partition_point(|&e| e < v)
    }

    /// The counts per bin of `values` (values that are not finite numbers are skipped).
    pub fn counts(&self, values: &[f64]) -> Vec<u64> {
        let mut c = vec![0; self.len()];
        for &v in values.iter().filter(|v| v.is_finite()) {
            c[self.index(v)] += 1;
        }
        c
    }
}

/// The `q` quantile of sorted, non-empty `sorted`, as numpy computes it by default
/// (`method="linear"`: between the two nearest order statistics, at virtual index
/// q·(n − 1)), including its way of interpolating, so that the edges agree to the last bit.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    // numpy: n·q + (α + q·(1 − α − β)) − 1 with α = β = 1, in its order of operations
    // (not (n − 1)·q, which rounds differently).
    let virtual_index = n as f64 * q + (1.0 - q) - 1.0;
    let below = virtual_index.floor();
    let gamma = virtual_index - below;
    let last = (n - 1) as f64;
    let lo = below.clamp(0.0, last) as usize;
    let hi = (below + 1.0).clamp(0.0, last) as usize;
    lerp(sorted[lo], sorted[hi], gamma)
}

/// numpy's interpolation between `a` and `b`: from whichever end is nearer, so that t = 1
/// gives `b` exactly.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let d = b - a;
    if t >= 0.5 {
        b - d * (1.0 - t)
    } else {
        a + d * t
    }
}

/// The PSI of `live` bin counts against `reference` bin counts (the same bins, in the same
/// order), with the + 0.5 rule above. None when the two differ in length, there is no bin,
/// or either side counted nothing.
pub fn psi(reference: &[u64], live: &[u64]) -> Option<f64> {
    if reference.len() != live.len() || reference.is_empty() {
        return None;
    }
    let r_total: u64 = reference.iter().sum();
    let l_total: u64 = live.iter().sum();
    if r_total == 0 || l_total == 0 {
        return None;
    }
    let half_bins = 0.5 * reference.len() as f64;
    let (r_den, l_den) = (r_total as f64 + half_bins, l_total as f64 + half_bins);
    let index = reference
        .iter()
        .zip(live)
        .map(|(&r, &l)| {
            let p = (r as f64 + 0.5) / r_den;
            let q = (l as f64 + 0.5) / l_den;
            (q - p) * (q / p).ln()
        })
        .sum();
    Some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_on_an_edge_fall_in_the_bin_it_closes() {
        let b = Bins::from_edges(&[1.0, 2.0, 2.0, 3.0]);
        assert_eq!(b.len(), 4);
        assert_eq!(b.index(1.0), 0);
        assert_eq!(b.index(1.5), 1);
        assert_eq!(b.index(2.0), 1);
        assert_eq!(b.index(3.5), 3);
        assert_eq!(b.counts(&[0.0, 2.0, f64::NAN, 9.0]), vec![1, 1, 0, 1]);
    }

    #[test]
    fn a_constant_reference_has_two_bins_and_no_drift_when_live_matches() {
        let b = Bins::deciles(&[4.0; 50]).unwrap();
        assert_eq!(b.edges(), &[4.0]);
        let reference = b.counts(&[4.0; 50]);
        let same = psi(&reference, &b.counts(&[4.0; 30])).unwrap();
        assert!(same.abs() < 0.01, "{same}");
        let moved = psi(&reference, &b.counts(&[5.0; 30])).unwrap();
        assert!(moved > 2.0, "{moved}");
        assert_eq!(Bins::deciles(&[]), None);
        assert_eq!(Bins::deciles(&[1.0, f64::INFINITY]), None);
    }

    #[test]
    fn empty_bins_stay_finite_and_mismatches_have_no_index() {
        let v = psi(&[10, 0, 10], &[0, 20, 0]).unwrap();
        assert!(v.is_finite() && v > 1.0, "{v}");
        assert_eq!(psi(&[1, 2], &[1]), None);
        assert_eq!(psi(&[0, 0], &[1, 1]), None);
        assert_eq!(psi(&[], &[]), None);
    }
}
