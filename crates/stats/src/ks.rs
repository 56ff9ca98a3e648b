//! The two-sample Kolmogorov–Smirnov test, two-sided, with its exact p-value: scipy's
//! `ks_2samp(a, b, method="exact")`.
//!
//! The statistic is the largest distance between the two empirical distribution functions,
//! taken at every value of either sample (ties included). Its exact null distribution is
//! that of a random lattice path from (0, 0) to (m, n), each of the C(m + n, m) orders of
//! the pooled sample equally likely: the statistic is at least `d` exactly when the path
//! reaches a point (i, j) with |i/m − j/n| ≥ d. The p-value is one minus the probability of
//! staying strictly inside that band, walked cell by cell with each step's probability
//! (never counts of paths, which overflow), so it is exact to rounding for any sizes; the
//! cost is m·n steps. Ties make the exact test conservative, as in scipy.

/// A two-sample KS result.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Ks {
    /// The largest distance between the two empirical distribution functions.
    pub statistic: f64,
    pub p_value: f64,
}

/// The two-sided test of `a` against `b`. None when either is empty or holds a value that
/// is not a finite number.
pub fn ks_2samp(a: &[f64], b: &[f64]) -> Option<Ks> {
    if a.is_empty() || b.is_empty() || a.iter().chain(b).any(|v| !v.is_finite()) {
        return None;
    }
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (m, n) = (a.len() as u64, b.len() as u64);
    // The largest |i·n − j·m| over the points the two distribution functions reach (i of
    // a's values and j of b's at or below each value), in integers: the statistic is that
    // over m·n, and comparing integers keeps the band below exact.
    let (mut i, mut j, mut widest) = (0usize, 0usize, 0u64);
    while i < a.len() || j < b.len() {
        let v = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => unreachable!("the loop runs while either has values left"),
        };
        while a.get(i).is_some_and(|&x| x <= v) {
            i += 1;
        }
        while b.get(j).is_some_and(|&y| y <= v) {
            j += 1;
        }
        widest = widest.max((i as u64 * n).abs_diff(j as u64 * m));
    }
    let statistic = widest as f64 / (m * n) as f64;
    Some(Ks {
        statistic,
        p_value: p_at_least(m, n, widest),
    })
}

/// P(the statistic ≥ `widest` / (m·n)) under the null, for samples of m and n.
fn p_at_least(m: u64, n: u64, widest: u64) -> f64 {
    if widest == 0 {
        return 1.0;
    }
    // Walk over i (a's values taken), a row of j (b's values taken) at a time; `row[j]` is
    // the probability that the path reaches (i, j) without having left the band.
    let inside = |i: u64, j: u64| (i * n).abs_diff(j * m) < widest;
    let width = n as usize + 1;
    let mut row = vec![0.0f64; width];
    row[0] = 1.0;
    for j in 1..=n {
        let (ju, left) = (j as usize, (n - j + 1) as f64);
        // From (0, j − 1), the next value is b's with probability (n − j + 1)/(m + n − j + 1).
        row[ju] = if inside(0, j) {
            row[ju - 1] * left / (m as f64 + left)
        } else {
            0.0
        };
    }
    for i in 1..=m {
        let a_left = (m - i + 1) as f64;
        let mut prev = 0.0;
        for j in 0..=n {
            let ju = j as usize;
            let p = if inside(i, j) {
                // From (i − 1, j): a's value next; from (i, j − 1): b's.
                let from_a = row[ju] * a_left / (a_left + (n - j) as f64);
                let from_b = if j == 0 {
                    0.0
                } else {
                    let b_left = (n - j + 1) as f64;
                    prev * b_left / ((m - i) as f64 + b_left)
                };
                from_a + from_b
            } else {
                0.0
            };
            row[ju] = p;
            prev = p;
        }
    }
    (1.0 - row[n as usize]).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_samples_have_statistic_zero_and_p_one() {
        let k = ks_2samp(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap();
        assert_eq!((k.statistic, k.p_value), (0.0, 1.0));
    }

    #[test]
    fn disjoint_samples_have_statistic_one_and_the_p_of_one_order() {
        // Every a below every b: one of C(6, 3) = 20 orders, and its mirror.
        let k = ks_2samp(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert_eq!(k.statistic, 1.0);
        assert!((k.p_value - 2.0 / 20.0).abs() < 1e-15, "{}", k.p_value);
    }

    #[test]
    fn no_test_without_values_or_with_non_numbers() {
        assert_eq!(ks_2samp(&[], &[1.0]), None);
        assert_eq!(ks_2samp(&[1.0], &[f64::NAN]), None);
    }
}
