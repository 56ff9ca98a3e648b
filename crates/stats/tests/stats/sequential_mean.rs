//! The always-valid interval of a difference of means against GrowthBook's engine
//! (tests/fixtures/stats/sequential_mean.py, gbstats 0.8.0) where gbstats computes it, the
//! script's independent formula where gbstats refuses an arm of zero variance or a control
//! mean of 0, and None where no sequence exists.

use cohort_stats::sequential::{half_width, sequential_mean_difference};
use cohort_stats::welch::Moments;
use serde_json::Value;

fn close(got: f64, want: f64, what: &str) {
    let tol = (1e-9 * want.abs()).max(1e-12);
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, reference {want}"
    );
}

fn moments(v: &Value) -> Moments {
    Moments {
        n: v["n"].as_u64().unwrap(),
        mean: v["mean"].as_f64().unwrap(),
        m2: v["m2"].as_f64().unwrap(),
    }
}

#[test]
fn the_sequence_matches_gbstats_and_goes_on_where_it_refuses() {
    let fx: Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/stats/sequential_mean.json"
    )))
    .unwrap();
    let (mut by_gbstats, mut by_formula, mut none) = (0, 0, 0);
    for case in fx["cases"].as_array().unwrap() {
        let (t, c) = (moments(&case["treatment"]), moments(&case["control"]));
        let (alpha, n_star) = (
            case["alpha"].as_f64().unwrap(),
            case["n_star"].as_f64().unwrap(),
        );
        let label = format!(
            "{}, alpha {alpha}, N* {n_star}",
            case["name"].as_str().unwrap()
        );
        let got = sequential_mean_difference(&t, &c, alpha, n_star);
        if let Some(why) = case["error"].as_str() {
            assert_eq!(got, None, "{label}: expected none ({why})");
            none += 1;
            continue;
        }
        let r = got.unwrap_or_else(|| panic!("{label}: none, reference has values"));
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
        let hw = half_width(t.n, t.variance(), c.n, c.variance(), alpha, n_star);
        close(
            hw,
            (r.ci.high - r.ci.low) / 2.0,
            &format!("{label} half_width"),
        );
        match case["source"].as_str().unwrap() {
            "gbstats" => by_gbstats += 1,
            "formula" => by_formula += 1,
            other => panic!("{label}: unknown source {other}"),
        }
    }
    assert!(by_gbstats >= 60, "only {by_gbstats} gbstats cases");
    assert!(by_formula >= 40, "only {by_formula} formula cases");
    assert!(none >= 5, "only {none} cases without a sequence");
}

#[test]
fn a_healthy_control_without_failures_still_gives_a_sequence() {
    let control = Moments::of(&[0.0; 50]);
    let treatment = Moments::of(&[0.0, 0.5, 0.0, 0.25, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
    let r = sequential_mean_difference(&treatment, &control, 0.05, 5000.0).unwrap();
    assert!(r.ci.low < r.estimate && r.estimate < r.ci.high);
    assert_eq!(
        sequential_mean_difference(&control, &control, 0.05, 5000.0),
        None
    );
    assert_eq!(
        sequential_mean_difference(&Moments::of(&[0.3]), &treatment, 0.05, 5000.0),
        None
    );
}
