//! Proportion statistics against the committed references (statsmodels, exact fractions):
//! tests/fixtures/stats/proportions.py made tests/fixtures/stats/proportions.json.

use cohort_stats::proportions::{fisher_exact, holm, newcombe, pooled_z, wilson};
use serde_json::Value;

fn close(got: f64, want: f64, what: &str) {
    let tol = 1e-9 * want.abs().max(1e-3);
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, reference {want}"
    );
}

#[test]
fn every_statistic_matches_its_reference() {
    let fx: Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/stats/proportions.json"
    )))
    .unwrap();
    let alpha = fx["alpha"].as_f64().unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 12);
    for case in cases {
        let g = |k: &str| case[k].as_u64().unwrap();
        let (ct, nt, cc, nc) = (g("c_t"), g("n_t"), g("c_c"), g("n_c"));
        let label = format!("{ct}/{nt} vs {cc}/{nc}");
        let wt = wilson(ct, nt, alpha).unwrap();
        close(
            wt.low,
            case["wilson_t"][0].as_f64().unwrap(),
            &format!("{label} wilson_t low"),
        );
        close(
            wt.high,
            case["wilson_t"][1].as_f64().unwrap(),
            &format!("{label} wilson_t high"),
        );
        let wc = wilson(cc, nc, alpha).unwrap();
        close(
            wc.low,
            case["wilson_c"][0].as_f64().unwrap(),
            &format!("{label} wilson_c low"),
        );
        close(
            wc.high,
            case["wilson_c"][1].as_f64().unwrap(),
            &format!("{label} wilson_c high"),
        );
        match case["newcombe"].as_array() {
            Some(ci) => {
                let n = newcombe(ct, nt, cc, nc, alpha).unwrap();
                close(
                    n.low,
                    ci[0].as_f64().unwrap(),
                    &format!("{label} newcombe low"),
                );
                close(
                    n.high,
                    ci[1].as_f64().unwrap(),
                    &format!("{label} newcombe high"),
                );
            }
            None => panic!("{label}: the reference has no Newcombe interval"),
        }
        match (pooled_z(ct, nt, cc, nc), case["z"].as_f64()) {
            (Some((z, p)), Some(want_z)) => {
                close(z, want_z, &format!("{label} z"));
                close(p, case["z_p"].as_f64().unwrap(), &format!("{label} z p"));
            }
            (None, None) => {}
            (got, want) => panic!("{label}: z {got:?} vs reference {want:?}"),
        }
        close(
            fisher_exact(ct, nt, cc, nc),
            case["fisher_p"].as_f64().unwrap(),
            &format!("{label} fisher"),
        );
    }
}

#[test]
fn holm_matches_statsmodels() {
    let fx: Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/stats/proportions.json"
    )))
    .unwrap();
    let p: Vec<f64> = fx["holm"]["p"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let want: Vec<f64> = fx["holm"]["adjusted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (got, want) in holm(&p).iter().zip(&want) {
        close(*got, *want, "holm");
    }
}
