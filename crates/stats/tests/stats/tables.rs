//! Omnibus, SRM and power against scipy (tests/fixtures/stats/tables.py → tables.json).

use cohort_stats::power::required_units_per_variant;
use cohort_stats::tables::{omnibus, srm, OmnibusSkipped};
use serde_json::Value;

fn close(got: f64, want: f64, what: &str) {
    let tol = 1e-9 * want.abs().max(1e-3);
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, reference {want}"
    );
}

fn fixture() -> Value {
    serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/stats/tables.json"
    )))
    .unwrap()
}

#[test]
fn omnibus_matches_chi2_contingency() {
    for case in fixture()["omnibus"].as_array().unwrap() {
        let rows: Vec<(u64, u64)> = case["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].as_u64().unwrap(), r[1].as_u64().unwrap()))
            .collect();
        let got = omnibus(&rows).unwrap();
        close(got.chi2, case["chi2"].as_f64().unwrap(), "omnibus chi2");
        close(got.p_value, case["p"].as_f64().unwrap(), "omnibus p");
        assert_eq!(u64::from(got.df), case["df"].as_u64().unwrap());
    }
    assert_eq!(
        omnibus(&[(1, 10), (2, 10)]),
        Err(OmnibusSkipped::TooFewVariants)
    );
    assert_eq!(
        omnibus(&[(0, 10), (0, 10), (0, 12)]),
        Err(OmnibusSkipped::ZeroColumn)
    );
    assert_eq!(
        omnibus(&[(1, 10), (2, 10), (0, 0)]),
        Err(OmnibusSkipped::TooFewVariants),
        "empty variants do not count"
    );
}

#[test]
fn srm_matches_chisquare() {
    for case in fixture()["srm"].as_array().unwrap() {
        let observed: Vec<u64> = case["observed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let shares: Vec<f64> = case["shares"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let got = srm(&observed, &shares).unwrap();
        close(got.chi2, case["chi2"].as_f64().unwrap(), "srm chi2");
        close(got.p_value, case["p"].as_f64().unwrap(), "srm p");
    }
    assert_eq!(srm(&[10], &[1.0]), None);
}

#[test]
fn required_units_match_the_formula_with_scipy_quantiles() {
    for case in fixture()["power"].as_array().unwrap() {
        let f = |k: &str| case[k].as_f64().unwrap();
        let got = required_units_per_variant(f("p1"), f("mde"), f("alpha"), f("power")).unwrap();
        close(got, f("required"), "required units");
    }
    assert_eq!(required_units_per_variant(0.0, 0.1, 0.05, 0.8), None);
    assert_eq!(required_units_per_variant(0.95, 0.1, 0.05, 0.8), None);
}
