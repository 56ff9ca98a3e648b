//! Properties every statistic must have, whatever the counts: intervals contain their
//! estimate, p-values lie in [0, 1], and swapping the two arms mirrors the comparison.

use cohort_stats::bayes::{expected_loss, prob_beat_control, Posterior};
use cohort_stats::decision::fixed_p;
use cohort_stats::proportions::{newcombe, pooled_z, wilson};
use cohort_stats::relative::{relative_lift, sequential_relative_lift};
use proptest::prelude::*;

/// (converted, units) with units ≥ 1, from tiny to large.
fn arm() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![1u64..30, 30u64..5_000, 5_000u64..10_000_000].prop_flat_map(|n| (0..=n, Just(n)))
}

const EPS: f64 = 1e-12;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn intervals_contain_their_estimates((c, n) in arm(), (c2, n2) in arm(), alpha in 0.001f64..0.3) {
        let w = wilson(c, n, alpha).unwrap();
        let rate = c as f64 / n as f64;
        prop_assert!(w.low - EPS <= rate && rate <= w.high + EPS, "wilson {w:?} ∌ {rate}");
        prop_assert!(w.low >= -EPS && w.high <= 1.0 + EPS);
        let diff = rate - c2 as f64 / n2 as f64;
        let nc = newcombe(c, n, c2, n2, alpha).unwrap();
        prop_assert!(nc.low - EPS <= diff && diff <= nc.high + EPS, "newcombe {nc:?} ∌ {diff}");
        if let Ok(r) = relative_lift(c, n, c2, n2, alpha) {
            prop_assert!(r.ci.low <= r.estimate && r.estimate <= r.ci.high);
            prop_assert!((0.0..=1.0).contains(&r.p_value));
            let (ci, p) = sequential_relative_lift(c, n, c2, n2, alpha, 5000.0).unwrap();
            prop_assert!(ci.low <= r.estimate && r.estimate <= ci.high);
            prop_assert!((0.0..=1.0).contains(&p));
        }
    }

    #[test]
    fn p_values_lie_in_0_1((c, n) in arm(), (c2, n2) in arm()) {
        let (p, _) = fixed_p(c, n, c2, n2).unwrap();
        prop_assert!((0.0..=1.0).contains(&p), "{p}");
        if let Some((_, p)) = pooled_z(c, n, c2, n2) {
            prop_assert!((0.0..=1.0).contains(&p), "{p}");
        }
    }

    #[test]
    fn swapping_the_arms_mirrors_the_comparison((c, n) in arm(), (c2, n2) in arm()) {
        let fwd = newcombe(c, n, c2, n2, 0.05).unwrap();
        let back = newcombe(c2, n2, c, n, 0.05).unwrap();
        prop_assert!((fwd.low + back.high).abs() < 1e-12 && (fwd.high + back.low).abs() < 1e-12,
            "{fwd:?} vs {back:?}");
        match (pooled_z(c, n, c2, n2), pooled_z(c2, n2, c, n)) {
            (Some((z, p)), Some((z2, p2))) => {
                prop_assert!((z + z2).abs() < 1e-12 * z.abs().max(1.0), "{z} {z2}");
                prop_assert!((p - p2).abs() < 1e-12, "{p} {p2}");
            }
            (None, None) => {}
            other => prop_assert!(false, "one direction undefined: {other:?}"),
        }
        let (p, test) = fixed_p(c, n, c2, n2).unwrap();
        let (p2, test2) = fixed_p(c2, n2, c, n).unwrap();
        prop_assert_eq!(test, test2);
        prop_assert!((p - p2).abs() < 1e-12, "{p} {p2}");
    }
}

proptest! {
    // Quadrature is slower in debug builds: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn bayesian_probabilities_are_complementary((c, n) in arm(), (c2, n2) in arm()) {
        let (t, k) = (Posterior::of(c, n), Posterior::of(c2, n2));
        let (p, q) = (prob_beat_control(&t, &k), prob_beat_control(&k, &t));
        prop_assert!((0.0..=1.0).contains(&p));
        prop_assert!((p + q - 1.0).abs() < 1e-8, "{p} + {q}");
        // E[max(c − t, 0)] − E[max(t − c, 0)] = E[c] − E[t].
        let gap = expected_loss(&t, &k) - expected_loss(&k, &t);
        prop_assert!((gap - (k.mean() - t.mean())).abs() < 1e-9, "{gap}");
    }
}
