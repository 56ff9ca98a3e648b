//! Bayesian quantities against scipy quadrature (tests/fixtures/stats/bayes.py → bayes.json).

use cohort_stats::bayes::{expected_loss, prob_beat_control, prob_best, Posterior};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/stats/bayes.json"
    )))
    .unwrap()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

#[test]
fn prob_beat_control_and_expected_loss_match_scipy_to_1e_8() {
    let fx = fixture();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for (i, case) in cases.iter().enumerate() {
        let t = Posterior::of(u(&case["c_t"]), u(&case["n_t"]));
        let c = Posterior::of(u(&case["c_c"]), u(&case["n_c"]));
        let (p, want_p) = (
            prob_beat_control(&t, &c),
            case["prob_beat_control"].as_f64().unwrap(),
        );
        assert!(
            (p - want_p).abs() < 1e-8,
            "case {i}: P(beat) {p} vs {want_p}"
        );
        let (l, want_l) = (
            expected_loss(&t, &c),
            case["expected_loss"].as_f64().unwrap(),
        );
        assert!(
            (l - want_l).abs() < 1e-8,
            "case {i}: expected loss {l} vs {want_l}"
        );
    }
}

#[test]
fn prob_best_matches_scipy_to_1e_8() {
    let fx = fixture();
    for (i, case) in fx["prob_best"].as_array().unwrap().iter().enumerate() {
        let arms: Vec<Posterior> = case["arms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| Posterior::of(u(&a[0]), u(&a[1])))
            .collect();
        let got = prob_best(&arms);
        for (j, want) in case["prob_best"].as_array().unwrap().iter().enumerate() {
            let want = want.as_f64().unwrap();
            assert!(
                (got[j] - want).abs() < 1e-8,
                "set {i} arm {j}: {} vs {want}",
                got[j]
            );
        }
    }
}
