//! The relative lift against GrowthBook's engine (tests/fixtures/stats/relative.py, gbstats
//! 0.8.0): values where gbstats computes them, a reason (never a placeholder) where it errs.

use cohort_stats::relative::{relative_lift, NoRelativeLift};
use serde_json::Value;

fn close(got: f64, want: f64, what: &str) {
    let tol = 1e-8 * want.abs().max(1e-3);
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, reference {want}"
    );
}

#[test]
fn relative_lift_matches_gbstats() {
    let fx: Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/stats/relative.json"
    )))
    .unwrap();
    let cases = fx["cases"].as_array().unwrap();
    let mut computed = 0;
    for case in cases {
        let g = |k: &str| case[k].as_u64().unwrap();
        let (ct, nt, cc, nc) = (g("c_t"), g("n_t"), g("c_c"), g("n_c"));
        let alpha = case["alpha"].as_f64().unwrap();
        let label = format!("{ct}/{nt} vs {cc}/{nc} at alpha {alpha}");
        match (relative_lift(ct, nt, cc, nc, alpha), case["error"].as_str()) {
            (Ok(r), None) => {
                close(
                    r.estimate,
                    case["estimate"].as_f64().unwrap(),
                    &format!("{label} estimate"),
                );
                close(
                    r.ci.low,
                    case["ci"][0].as_f64().unwrap(),
                    &format!("{label} ci low"),
                );
                close(
                    r.ci.high,
                    case["ci"][1].as_f64().unwrap(),
                    &format!("{label} ci high"),
                );
                close(
                    r.p_value,
                    case["p_value"].as_f64().unwrap(),
                    &format!("{label} p"),
                );
                close(r.df, case["df"].as_f64().unwrap(), &format!("{label} df"));
                computed += 1;
            }
            (Err(NoRelativeLift::ZeroBaseline), Some("ZERO_NEGATIVE_BASELINE_VARIATION")) => {}
            (Err(NoRelativeLift::ZeroVariance), Some("ZERO_NEGATIVE_VARIANCE")) => {}
            (got, want) => panic!("{label}: cohort {got:?}, gbstats {want:?}"),
        }
    }
    assert!(computed >= 10, "only {computed} cases had values");
    assert_eq!(
        relative_lift(1, 0, 1, 10, 0.05),
        Err(NoRelativeLift::EmptyArm)
    );
}

#[test]
fn the_sequential_interval_and_p_match_gbstats() {
    use cohort_stats::relative::sequential_relative_lift;
    let fx: Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/stats/relative.json"
    )))
    .unwrap();
    let mut computed = 0;
    for case in fx["sequential"].as_array().unwrap() {
        let g = |k: &str| case[k].as_u64().unwrap();
        let (ct, nt, cc, nc) = (g("c_t"), g("n_t"), g("c_c"), g("n_c"));
        let (alpha, n_star) = (
            case["alpha"].as_f64().unwrap(),
            case["n_star"].as_f64().unwrap(),
        );
        let label = format!("{ct}/{nt} vs {cc}/{nc}, alpha {alpha}, N* {n_star}");
        match (
            sequential_relative_lift(ct, nt, cc, nc, alpha, n_star),
            case["error"].as_str(),
        ) {
            (Ok((ci, p)), None) => {
                close(
                    ci.low,
                    case["ci"][0].as_f64().unwrap(),
                    &format!("{label} ci low"),
                );
                close(
                    ci.high,
                    case["ci"][1].as_f64().unwrap(),
                    &format!("{label} ci high"),
                );
                close(p, case["p_value"].as_f64().unwrap(), &format!("{label} p"));
                computed += 1;
            }
            (Err(_), Some(_)) => {}
            (got, want) => panic!("{label}: cohort {got:?}, gbstats {want:?}"),
        }
    }
    assert!(computed >= 20, "only {computed} cases had values");
}

#[test]
fn t_quantiles_match_scipy_at_every_df() {
    let fx: Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/stats/t_quantile.json"
    )))
    .unwrap();
    for case in fx["cases"].as_array().unwrap() {
        let (p, df, want) = (
            case["p"].as_f64().unwrap(),
            case["df"].as_f64().unwrap(),
            case["q"].as_f64().unwrap(),
        );
        let got = cohort_stats::relative::t_quantile(p, df);
        assert!(
            (got - want).abs() <= 1e-9 * want.abs(),
            "t quantile p={p} df={df}: {got} vs scipy {want}"
        );
    }
}
