//! Value per unit against scipy's Welch test (tests/fixtures/stats/welch.py → welch.json).

use cohort_stats::welch::{welch, Moments};
use serde_json::Value;

fn close(got: f64, want: f64, what: &str) {
    let tol = 1e-8 * want.abs().max(1e-6);
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, reference {want}"
    );
}

#[test]
fn welch_matches_scipy_ttest_ind() {
    let fx: Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/stats/welch.json"
    )))
    .unwrap();
    let values = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    for (i, case) in fx["cases"].as_array().unwrap().iter().enumerate() {
        let (t, c) = (
            Moments::of(&values(&case["treatment"])),
            Moments::of(&values(&case["control"])),
        );
        let w = welch(&t, &c).unwrap();
        close(w.t, case["t"].as_f64().unwrap(), &format!("case {i} t"));
        close(
            w.p_value,
            case["p"].as_f64().unwrap(),
            &format!("case {i} p"),
        );
    }
}

#[test]
fn too_few_units_or_no_variance_is_none() {
    assert_eq!(welch(&Moments::of(&[1.0]), &Moments::of(&[1.0, 2.0])), None);
    assert_eq!(
        welch(&Moments::of(&[0.0, 0.0]), &Moments::of(&[0.0, 0.0, 0.0])),
        None
    );
    assert!(welch(&Moments::of(&[0.0, 0.0]), &Moments::of(&[0.0, 1.0, 0.0])).is_some());
}
