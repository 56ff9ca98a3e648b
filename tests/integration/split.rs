//! Split accuracy: 100 000 units land in each variant in proportion to its share.

use crate::common;

use cohort_config::assign;
use common::{compile, experiment_yaml, v};
use statrs::distribution::{ChiSquared, ContinuousCDF};

/// Pearson's chi-square goodness of fit of observed counts to expected shares.
fn chi_square_p(observed: &[u64], shares: &[f64]) -> f64 {
    let n: u64 = observed.iter().sum();
    let stat: f64 = observed
        .iter()
        .zip(shares)
        .map(|(&o, &s)| {
            let e = s * n as f64;
            (o as f64 - e).powi(2) / e
        })
        .sum();
    let dist = ChiSquared::new((observed.len() - 1) as f64).expect("df > 0");
    dist.sf(stat)
}

/// Assigns 100 000 units and asserts that chi-square does not reject the configured shares.
fn assert_split_fits(variants: &[common::V], control: &str, salt: &str) {
    let (counts, shares) = split(variants, control, salt);
    let p = chi_square_p(&counts, &shares);
    assert!(
        p >= 0.001,
        "chi-square rejects the split: p = {p}, counts {counts:?}"
    );
}

fn split(variants: &[common::V], control: &str, salt: &str) -> (Vec<u64>, Vec<f64>) {
    let routes = compile(&experiment_yaml(control, salt, false, variants));
    let exp = &routes.experiments[0];
    let mut counts = vec![0u64; exp.variants.len()];
    for i in 0..100_000 {
        counts[assign(exp, &format!("user-{i}")).variant] += 1;
    }
    let shares = exp.variants.iter().map(|v| v.share).collect();
    (counts, shares)
}

#[test]
fn split_matches_shares_two_variants() {
    assert_split_fits(&[v("rf", 50.0), v("lr", 50.0)], "rf", "split-seed-1");
}

#[test]
fn split_matches_shares_uneven_three_variants() {
    assert_split_fits(
        &[v("rf", 70.0), v("lr", 20.0), v("gb", 10.0)],
        "rf",
        "split-seed-2",
    );
}

#[test]
fn split_matches_shares_with_lanes() {
    let mut vs = vec![v("ctl", 45.0), v("a", 10.0), v("b", 20.0), v("c", 25.0)];
    vs[1].lane = Some((0.0, 0.2, "start"));
    vs[2].lane = Some((0.5, 0.25, "end"));
    vs[3].lane = Some((0.75, 0.25, "start"));
    assert_split_fits(&vs, "ctl", "split-seed-3");
}

#[test]
fn the_chi_square_helper_rejects_a_wrong_split() {
    // The test above could not fail if the helper never rejected: a 52/48 split of 100k
    // against 50/50 must be rejected.
    let p = chi_square_p(&[52_000, 48_000], &[0.5, 0.5]);
    assert!(p < 1e-6, "p = {p}");
}
